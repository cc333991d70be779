// Answering a peer that is already in sync about a document that is not loaded (issue 13).
//
// A coordinator's agents reconnect all at once after it restarts (or after a network cut), and
// each one's first sync message about its own facts and status documents says "I have heads H".
// automerge-repo answers only from a loaded document: every reconnect loaded two documents that
// had not changed, and 500 agents reconnecting took the coordinator's event loop for a minute.
//
// The mark. Once a document has been saved and its store operations have settled (sync/evict.ts
// does both before it evicts), the heads it had are written next to its chunks, under
// `[docId, HEADS_KEY]`, a key automerge-repo never reads or removes. The store holds at least
// those heads from then on: chunks are only ever added or compacted into snapshots that keep
// every change. A mark can fall behind the document (later changes are not marked until the
// next eviction); it never claims more than is stored.
//
// The answer. A sync message that asks for nothing and carries no changes, from a peer whose heads
// are exactly the mark, gets the reply a holder of those heads would send (our heads, and "we
// have everything up to them"), and the document stays on disk. Any other message takes the
// usual path. Answering from a mark that fell behind is only right when the peer is the
// document's single writer (it cannot lack a change that it wrote and the mark does not name),
// or when this node is, and removes the mark (forget) before each change it makes, so that a
// mark never falls behind: whoever installs the answer decides which documents qualify.

import * as A from '@automerge/automerge';
import type { DocumentId, Message, StorageKey } from '@automerge/automerge-repo';

/** The key element, after the document id, of a document's mark. */
export const HEADS_KEY = 'flt-heads';

/** What StoredHeads needs of a store. */
export interface MarkStore {
  load(key: StorageKey): Promise<Uint8Array | undefined>;
  save(key: StorageKey, data: Uint8Array): Promise<void>;
  remove(key: StorageKey): Promise<void>;
}

const HASH = /^[0-9a-f]{64}$/;

/** Heads as a mark holds them: sorted, comma-joined; undefined for anything else. */
function markOf(heads: readonly string[]): string | undefined {
  if (heads.length === 0 || !heads.every((h) => HASH.test(h))) return undefined;
  return [...heads].sort().join(',');
}

export class StoredHeads {
  /** Marks known in memory; null: read from the store, and there is none (or a malformed one). */
  private readonly marks = new Map<DocumentId, string | null>();
  /** Per document, its last write or removal of a mark: they run in the order they were asked. */
  private readonly pending = new Map<DocumentId, Promise<void>>();

  constructor(private readonly store: MarkStore) {}

  /** Runs `work` on `doc`'s mark after the ones asked before it. */
  private serially(doc: DocumentId, work: () => Promise<void>): Promise<void> {
    const next = (this.pending.get(doc) ?? Promise.resolve()).then(work, work);
    const settled = next.catch(() => undefined);
    this.pending.set(doc, settled);
    void settled.then(() => {
      if (this.pending.get(doc) === settled) this.pending.delete(doc);
    });
    return next;
  }

  /**
   * Records that the store holds `doc` at `heads` at least. Call only once the document's save
   * settled: the mark is written after, never before, what it names. The mark known already:
   * nothing is written.
   */
  async record(doc: DocumentId, heads: readonly string[]): Promise<void> {
    const mark = markOf(heads);
    // Known already (recorded, or read from the store): nothing to write again.
    if (mark === undefined || this.marks.get(doc) === mark) return;
    const unread = !this.marks.has(doc);
    this.marks.set(doc, mark);
    try {
      await this.serially(doc, async () => {
        // Not read yet (a coordinator that just started, loading documents its agents asked
        // about): a mark the store holds already is not written again.
        if (unread && (await this.load(doc)) === mark) return;
        await this.store.save([doc, HEADS_KEY], new TextEncoder().encode(mark));
      });
    } catch (err) {
      // Not written: not known either, so that the next record writes it again.
      if (this.marks.get(doc) === mark) this.marks.delete(doc);
      throw err;
    }
  }

  /**
   * Removes `doc`'s mark, from memory at once (known: none, so a read in flight cannot bring the
   * old one back) and from the store before it resolves, after any mark asked before it. A node
   * that writes a document itself calls this, and waits for it, before every change: a mark must
   * never name less than a peer may still be owed.
   */
  async forget(doc: DocumentId): Promise<void> {
    this.marks.set(doc, null);
    await this.serially(doc, () => this.store.remove([doc, HEADS_KEY]));
  }

  /**
   * Reads the mark of `doc` from the store, once: what it found, a mark or none (a malformed one
   * counts as none), is kept, so a coordinator's start (Fleet.readMarks) and its agents'
   * connections read each document's mark once between them. Only this instance writes marks.
   */
  async read(doc: DocumentId): Promise<string | undefined> {
    const known = this.marks.get(doc);
    if (known !== undefined) return known ?? undefined;
    const mark = await this.load(doc);
    // A record() while the store was read wins: it is newer than what was read.
    if (!this.marks.has(doc)) this.marks.set(doc, mark ?? null);
    return this.peek(doc);
  }

  /** The mark of `doc` in the store (a malformed one: undefined). */
  private async load(doc: DocumentId): Promise<string | undefined> {
    const bytes = await this.store.load([doc, HEADS_KEY]);
    return bytes && markOf(new TextDecoder().decode(bytes).split(','));
  }

  /** The mark of `doc` as far as it is known in memory (see read). */
  peek(doc: DocumentId): string | undefined {
    return this.marks.get(doc) ?? undefined;
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
