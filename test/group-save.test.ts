import { describe, expect, it } from 'vitest';
import { groupSave } from '../sync/group-save.js';

/** A save whose calls are recorded and ended by the test, one by one. */
function controlledSave() {
  const calls: { ids: string[]; end: (err?: Error) => void }[] = [];
  const save = (ids: readonly string[]) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ ids: [...ids], end: (err) => (err ? reject(err) : resolve()) });
    });
  return { calls, save };
}

/** Lets every queued promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('groupSave', () => {
  it('makes the requests that arrive during a save share the next one', async () => {
    const { calls, save } = controlledSave();
    const flush = groupSave(save);
    const first = flush(['root']);
    await settle();
    expect(calls).toHaveLength(1);
    const resolved: string[] = [];
    const later = ['a', 'b', 'root', 'c'].map((id) => flush([id]).then(() => resolved.push(id)));
    await settle();
    expect(calls).toHaveLength(1); // nothing starts while a save runs
    calls[0]!.end();
    await first;
    await settle();
    expect(resolved).toEqual([]); // the first save began before they asked
    expect(calls).toHaveLength(2);
    expect(calls[1]!.ids.sort()).toEqual(['a', 'b', 'c', 'root']);
    calls[1]!.end();
    await Promise.all(later);
    expect(resolved.sort()).toEqual(['a', 'b', 'c', 'root']);
    expect(calls).toHaveLength(2);
  });

  it('rejects the waiters of a failed save, and the next save still runs', async () => {
    const { calls, save } = controlledSave();
    const flush = groupSave(save);
    const first = flush(['x']);
    await settle();
    const second = flush(['y']);
    const boom = new Error('disk full');
    calls[0]!.end(boom);
    await expect(first).rejects.toBe(boom);
    await settle();
    expect(calls[1]!.ids).toEqual(['y']);
    calls[1]!.end();
    await expect(second).resolves.toBeUndefined();
  });

  it('saves nothing for an empty request', async () => {
    const { calls, save } = controlledSave();
    await groupSave(save)([]);
    expect(calls).toHaveLength(0);
  });
});
