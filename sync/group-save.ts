// Group commit for saves a node must finish before it answers (the coordinator's enrollment
// answers, doc.fetch, admin operations): every request that arrives while a save is running joins
// the next one, so a burst of N requests costs two saves, not N.
//
// Why it is safe: a request is resolved only by a save that *started* after it was made, and a
// save writes the documents as they are when it starts, so it holds every change the requester
// made before asking. Under a 1,000-agent fan-in each enrollment's answer saved the root alone
// (incremental chunk, settled store write), one after another: 138 s instead of ~80 s (issue 13).

/** Saves the given documents and resolves once they are durable. */
export type SaveDocs<Id> = (ids: readonly Id[]) => Promise<void>;

/**
 * Wraps `save` so that concurrent requests share saves. The returned function resolves once a save
 * that began after the call and covered all of `ids` ended, and rejects with that save's error.
 */
export function groupSave<Id>(save: SaveDocs<Id>): SaveDocs<Id> {
  /** Ids asked for since the last save started; undefined when nothing is waiting. */
  let waiting: Set<Id> | undefined;
  /** The save that starts after the running one: every request made now resolves with it. */
  let next: Promise<void> | undefined;
  /** The save running now (resolved when idle); never rejects, so the chain goes on. */
  let running: Promise<void> = Promise.resolve();

  return (ids) => {
    if (ids.length === 0) return Promise.resolve();
    waiting ??= new Set();
    for (const id of ids) waiting.add(id);
    if (next === undefined) {
      next = running.then(() => {
        const batch = [...waiting!];
        waiting = undefined;
        next = undefined;
        return save(batch);
      });
      running = next.catch(() => undefined);
    }
    return next;
  };
}
