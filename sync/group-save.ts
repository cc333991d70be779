// Group commit for saves a node must finish before it answers (the coordinator's enrollment
// answers, doc.fetch, admin operations). Requests go into lanes (by default one per document):
// every request that arrives while its lane is saving joins the lane's next save, so a burst of
// N requests costs two saves, not N.
//
// Why it is safe: a request is resolved only by a save that *started* after it was made, and a
// save writes the documents as they are when it starts, so it holds every change the requester
// made before asking.
//
// Why lanes (issue 13, 1,000-agent fan-in on 2 cores): each enrollment's answer saved the root
// alone, one after another: 138 s instead of ~80 s. One batch for every document brought it to
// 60 s, but an answer about the root then waited for hundreds of new per-agent documents saved
// in the same batch (21 s for a batch of 342; a doc.fetch of the root unanswered for 30 s). A
// lane per document answered quickly, but hundreds of small concurrent saves of per-agent
// documents cost the fan-in and the recovery more CPU. So the coordinator gives the few
// documents its answers wait on (root, audit, admins) a lane each, and batches the rest together.

/** Saves the given documents and resolves once they are all durable. */
export type SaveDocs<Id> = (ids: readonly Id[]) => Promise<void>;

interface Lane<Id> {
  /** The save running now; never rejects, so the next one always starts after it. */
  running: Promise<void>;
  /** The save that starts after the running one (every request made now joins it). */
  next: Promise<void> | undefined;
  /** The documents the next save covers. */
  waiting: Set<Id>;
}

/**
 * Wraps `save` so that concurrent requests in a lane share saves. The returned function resolves
 * once, for each of `ids`, a save that began after the call and covered it ended, and rejects with
 * the first failed one's error. `laneOf` names a document's lane (default: its own).
 */
export function groupSave<Id>(
  save: SaveDocs<Id>,
  laneOf: (id: Id) => unknown = (id) => id,
): SaveDocs<Id> {
  const lanes = new Map<unknown, Lane<Id>>();

  const join = (name: unknown, ids: readonly Id[]): Promise<void> => {
    let lane = lanes.get(name);
    if (lane === undefined)
      lanes.set(name, (lane = { running: Promise.resolve(), next: undefined, waiting: new Set() }));
    for (const id of ids) lane.waiting.add(id);
    if (lane.next !== undefined) return lane.next;
    const l = lane;
    const next = l.running.then(() => {
      const batch = [...l.waiting];
      l.waiting = new Set();
      l.next = undefined;
      return save(batch);
    });
    // Once the last save of a lane ended with none queued, the lane goes (a fleet's thousands of
    // documents keep no entry each).
    const ended = () => void (l.next === undefined && lanes.get(name) === l && lanes.delete(name));
    l.next = next;
    l.running = next.then(ended, ended);
    return next;
  };

  return async (ids) => {
    const byLane = new Map<unknown, Id[]>();
    for (const id of ids) {
      const name = laneOf(id);
      const list = byLane.get(name);
      if (list) list.push(id);
      else byLane.set(name, [id]);
    }
    await Promise.all([...byLane].map(([name, list]) => join(name, list)));
  };
}
