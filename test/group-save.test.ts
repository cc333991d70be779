import { describe, expect, it } from 'vitest';
import { groupSave } from '../sync/group-save.js';

/** A save whose calls are recorded and ended by the test, one by one. */
function controlledSave() {
  const calls: { id: string; end: (err?: Error) => void }[] = [];
  const save = (id: string) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ id, end: (err) => (err ? reject(err) : resolve()) });
    });
  const of = (id: string) => calls.filter((c) => c.id === id);
  return { calls, save, of };
}

/** Lets every queued promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('groupSave', () => {
  it('makes the requests for a document that arrive during its save share the next one', async () => {
    const { calls, save, of } = controlledSave();
    const flush = groupSave(save);
    const first = flush(['root']);
    await settle();
    expect(calls).toHaveLength(1);
    let resolved = 0;
    const later = Array.from({ length: 5 }, () => flush(['root']).then(() => resolved++));
    await settle();
    expect(calls).toHaveLength(1); // nothing of the root starts while it is being saved
    of('root')[0]!.end();
    await first;
    await settle();
    expect(resolved).toBe(0); // the first save began before they asked
    expect(of('root')).toHaveLength(2);
    of('root')[1]!.end();
    await Promise.all(later);
    expect(resolved).toBe(5);
    expect(calls).toHaveLength(2);
  });

  it('does not make a request wait for the saves of other documents', async () => {
    const { save, of } = controlledSave();
    const flush = groupSave(save);
    const slow = flush(['desired-1', 'desired-2']);
    let rootSaved = false;
    const root = flush(['root']).then(() => (rootSaved = true));
    await settle();
    of('root')[0]!.end();
    await root;
    expect(rootSaved).toBe(true);
    let both = false;
    void slow.then(() => (both = true));
    of('desired-1')[0]!.end();
    await settle();
    expect(both).toBe(false); // a request for two documents waits for both
    of('desired-2')[0]!.end();
    await slow;
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

  it('saves nothing for an empty request, and a repeated id once', async () => {
    const { calls, save } = controlledSave();
    const flush = groupSave(save);
    await flush([]);
    expect(calls).toHaveLength(0);
    const twice = flush(['a', 'a']);
    await settle();
    expect(calls.map((c) => c.id)).toEqual(['a']);
    calls[0]!.end();
    await twice;
  });
});
