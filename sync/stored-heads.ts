// Answering a peer that is already in sync about a document that is not loaded (issue 13).
//
// A coordinator's agents reconnect all at once after it restarts (or after a network cut), and
// each one's first sync message about its own facts and status documents says "I have heads H".
// automerge-repo answers only from a loaded document: every reconnect loaded two documents that
// had not changed, and 500 agents reconnecting took the coordinator's event loop for a minute.
//
// The mark. Once a document has been saved and its store operations have settled (sync/evict.ts
// does both before it evicts), the heads it had are recorded in the node's marks: one small
// durable map for every document (MarkStore; the coordinator's is stores/journal.ts, one file
// in the Repo's directory, read whole at start so that every mark is known before the first
// agent reconnects). The store holds at least those heads from then on: chunks are only ever added or
// compacted into snapshots that keep every change. A mark can fall behind the document (later
// changes are not marked until the next save settles); it never claims more than is stored.
//
// The answer. A sync message that asks for nothing and carries no changes, from a peer whose heads
// are exactly the mark, gets the reply a holder of those heads would send (our heads, and "we
// have everything up to them"), and the document stays on disk. Any other message takes the
// usual path. Answering from a mark that fell behind is only right when the peer is the
// document's single writer (it cannot lack a change that it wrote and the mark does not name),
// or when this node is, and removes the mark (forget) before each change it makes, so that a
// mark never falls behind: whoever installs the answer decides which documents qualify.

import * as A from '@automerge/automerge';
import type { DocumentId, Message } from '@automerge/automerge-repo';

/**
 * What StoredHeads needs of its marks: a map read whole at start (get answers at once) whose
 * set() resolves once the change is durable (stores/journal.ts).
 */
export interface MarkStore {
  get(key: string): string | undefined;
  set(key: string, value: string | undefined): Promise<void>;
}

const HASH = /^[0-9a-f]{64}$/;

/** Heads as a mark holds them: sorted, comma-joined; undefined for anything else. */
function markOf(heads: readonly string[]): string | undefined {
  if (heads.length === 0 || !heads.every((h) => HASH.test(h))) return undefined;
  return [...heads].sort().join(',');
}

export class StoredHeads {
  constructor(private readonly store: MarkStore) {}

  /** Whether a stored mark is well-formed (sorted hashes): the store keeps only those. */
  static accepts(this: void, _doc: string, mark: string): boolean {
    return markOf(mark.split(',')) === mark;
  }

  /**
   * Records that the store holds `doc` at `heads` at least. Call only once the document's save
   * settled: the mark is written after, never before, what it names. The mark known already:
   * nothing is written. A failed write keeps it in memory (it is true: the save settled), and the
   * store writes it with its next write (stores/journal.ts).
   */
  async record(doc: DocumentId, heads: readonly string[]): Promise<void> {
    const mark = markOf(heads);
    if (mark === undefined || this.store.get(doc) === mark) return;
    await this.store.set(doc, mark);
  }

  /**
   * Removes `doc`'s mark: at once for peek() and answer(), durably before it resolves (after any
   * mark asked before it). A node that writes a document itself calls this, and waits for it,
   * before every change: a mark must never name less than a peer may still be owed.
   */
  async forget(doc: DocumentId): Promise<void> {
    await this.store.set(doc, undefined);
  }

  /** The mark of `doc`, heads sorted and comma-joined; undefined when there is none. */
  peek(doc: DocumentId): string | undefined {
    return this.store.get(doc);
  }

  /**
   * The answer to `message` if it is a sync message that asks for nothing, carries no changes,
   * and names exactly the heads of `doc`'s mark; else undefined (the usual path).
   */
  answer(message: Message): Message | undefined {
    if (message.type !== 'sync' || message.documentId === undefined || message.data === undefined)
      return undefined;
    const mark = this.peek(message.documentId);
    if (mark === undefined) return undefined;
    let decoded: A.DecodedSyncMessage;
    try {
      decoded = A.decodeSyncMessage(message.data);
    } catch {
      return undefined; // the usual path refuses it with its reason
    }
    if (decoded.changes.length > 0 || decoded.need.length > 0) return undefined;
    if (markOf(decoded.heads) !== mark) return undefined;
    const heads = mark.split(',');
    const data = A.encodeSyncMessage({
      heads,
      need: [],
      have: [{ lastSync: heads, bloom: new Uint8Array(0) }],
      changes: [],
    });
    return {
      type: 'sync',
      senderId: message.targetId,
      targetId: message.senderId,
      documentId: message.documentId,
      data,
    };
  }
}
