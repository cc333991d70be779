import { describe, expect, it } from 'vitest';
import { groupSave } from '../sync/group-save.js';

/** A save whose calls are recorded and ended by the test, one by one. */
function controlledSave() {
  const calls: { ids: string[]; end: (err?: Error) => void }[] = [];
  const save = (ids: readonly string[]) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ ids: [...ids].sort(), end: (err) => (err ? reject(err) : resolve()) });
    });
  /** The calls that saved `id`. */
  const of = (id: string) => calls.filter((c) => c.ids.includes(id));
  return { calls, save, of };
}

/** Lets every queued promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** The coordinator's lanes: the root alone, everything else together. */
const lanes = (id: string) => (id === 'root' ? id : 'bulk');

describe('groupSave', () => {
  it('makes the requests of a lane that arrive during its save share the next one', async () => {
    const { calls, save } = controlledSave();
    const flush = groupSave(save, lanes);
    const first = flush(['a']);
    await settle();
    expect(calls).toHaveLength(1);
    let resolved = 0;
    const later = ['b', 'c', 'a', 'd'].map((id) => flush([id]).then(() => resolved++));
    await settle();
    expect(calls).toHaveLength(1); // nothing of the lane starts while it is saving
    calls[0]!.end();
    await first;
    await settle();
    expect(resolved).toBe(0); // the first save began before they asked
    expect(calls).toHaveLength(2);
    expect(calls[1]!.ids).toEqual(['a', 'b', 'c', 'd']);
    calls[1]!.end();
    await Promise.all(later);
    expect(resolved).toBe(4);
    expect(calls).toHaveLength(2);
  });

  it('does not make a request wait for the saves of another lane', async () => {
    const { save, of } = controlledSave();
    const flush = groupSave(save, lanes);
    const bulk = flush(['desired-1', 'desired-2']);
    let rootSaved = false;
    const root = flush(['root']).then(() => (rootSaved = true));
    await settle();
    expect(of('root')).toHaveLength(1);
    of('root')[0]!.end();
    await root;
    expect(rootSaved).toBe(true);
    let both = false;
    const mixed = flush(['root', 'desired-3']).then(() => (both = true));
    await settle();
    of('root')[1]!.end();
    await settle();
    expect(both).toBe(false); // a request across lanes waits for each
    of('desired-1')[0]!.end();
    await bulk;
    await settle();
    of('desired-3')[0]!.end();
    await mixed;
  });

  it('gives each document a lane of its own by default', async () => {
    const { calls, save } = controlledSave();
    const flush = groupSave(save);
    const done = flush(['x', 'y', 'x']);
    await settle();
    expect(calls.map((c) => c.ids)).toEqual([['x'], ['y']]);
    for (const c of calls) c.end();
    await done;
  });

  it('rejects the waiters of a failed save, and the next save still runs', async () => {
    const { save, of } = controlledSave();
    const flush = groupSave(save);
    const first = flush(['x']);
    await settle();
    const second = flush(['x']);
    const boom = new Error('disk full');
    of('x')[0]!.end(boom);
    await expect(first).rejects.toBe(boom);
    await settle();
    expect(of('x')).toHaveLength(2);
    of('x')[1]!.end();
    await expect(second).resolves.toBeUndefined();
  });

  it('saves nothing for an empty request', async () => {
    const { calls, save } = controlledSave();
    await groupSave(save)([]);
    expect(calls).toHaveLength(0);
  });
});
