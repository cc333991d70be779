// Group commit for saves a node must finish before it answers (the coordinator's enrollment
// answers, doc.fetch, admin operations), per document: every request for a document that arrives
// while that document is being saved joins its next save, so a burst of N requests for the root
// costs two saves of it, not N.
//
// Why it is safe: a request is resolved only by saves that *started* after it was made, and a save
// writes a document as it is when it starts, so it holds every change the requester made before
// asking. Why per document: the answers wait only for the documents they name. Under a 1,000-agent
// fan-in each enrollment's answer saved the root alone, one after another: 138 s instead of ~80 s;
// one batch across documents then made them wait for hundreds of new desired documents saved
// with them (21 s for a batch of 342, a doc.fetch of the root unanswered for 30 s; issue 13).

/** Saves one document and resolves once it is durable. */
export type SaveDoc<Id> = (id: Id) => Promise<void>;

/** Saves the given documents and resolves once they are all durable. */
export type SaveDocs<Id> = (ids: readonly Id[]) => Promise<void>;

interface Chain {
  /** The save running now; never rejects, so the next one always starts after it. */
  running: Promise<void>;
  /** The save that starts after the running one (every request made now joins it). */
  next: Promise<void> | undefined;
}

/**
 * Wraps `save` so that concurrent requests for a document share its saves. The returned function
 * resolves once, for each of `ids`, a save that began after the call ended, and rejects with the
 * first failed one's error.
 */
export function groupSave<Id>(save: SaveDoc<Id>): SaveDocs<Id> {
  const chains = new Map<Id, Chain>();

  const one = (id: Id): Promise<void> => {
    let chain = chains.get(id);
    if (chain === undefined)
      chains.set(id, (chain = { running: Promise.resolve(), next: undefined }));
    if (chain.next !== undefined) return chain.next;
    const c = chain;
    const next = c.running.then(() => {
      c.next = undefined;
      return save(id);
    });
    // Saves of one document run one at a time; once the last ended with none queued, the chain
    // goes (a fleet's thousands of documents keep no entry each).
    const ended = () => void (c.next === undefined && chains.get(id) === c && chains.delete(id));
    c.next = next;
    c.running = next.then(ended, ended);
    return next;
  };

  return async (ids) => {
    await Promise.all([...new Set(ids)].map(one));
  };
}
