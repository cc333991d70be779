// `doc.fetch` (issue 13): a document brought to an admin's replica in one rpc round trip, without
// automerge-repo's sync. A fresh admin of a 5,000-agent fleet syncing the root document got its
// 10,000 changes in one sync message and applied them one by one (hashing each, diffing the
// handle from empty, then saving a snapshot of its own): seconds. The document whole (the
// coordinator's stored chunks: a snapshot, then a few incremental chunks) loads several times
// faster, and an admin whose replica is only a few changes behind gets just those changes.
//
// Nothing is trusted more than before: the bytes are the same history automerge-repo would have
// sent, from the same coordinator, and readers show them only through the trusted view at the
// heads their writer signed (sync/owned-doc.ts trustedView). Automerge computes the heads of what
// it loads from the content, so the signature covers exactly what is shown.
//
// The coordinator's side (`answerFetch`) and the admin's (`applyFetch`, `storeFetched`) are here;
// the method and its validation are in src/rpc-methods.ts.

import { createHash } from 'node:crypto';
import * as A from '@automerge/automerge';
import type { Chunk, StorageKey } from '@automerge/automerge-repo';
import { FltError, messageOf } from '../../sync/errors.js';
import { contentChunks, sameHeads } from '../../sync/owned-doc.js';
import { DOC_FETCH_MAX_BYTES } from '../rpc-methods.js';

/** What doc.fetch answers (validated by the method's schema before it gets here). */
export interface FetchAnswer {
  /** The coordinator's heads of the document; null: it does not hold it. */
  heads: string[] | null;
  /** Every change after the asker's `have` heads (A.saveSince), when it holds them all. */
  changes?: Uint8Array;
  /**
   * The whole document (its chunks as the coordinator stores them, or A.save), when it does not
   * hold `have`, or `have` was empty.
   */
  snapshot?: Uint8Array;
}

/** A document saved whole (A.save), the last one kept by heads: admins starting cold share it. */
export class SnapshotCache {
  private last: { docId: string; heads: string; bytes: Uint8Array } | undefined;

  get(docId: string, doc: A.Doc<unknown>): Uint8Array {
    const heads = A.getHeads(doc).join(',');
    const last = this.last;
    if (last?.docId === docId && last.heads === heads) return last.bytes;
    const bytes = A.save(doc);
    this.last = { docId, heads, bytes };
    return bytes;
  }
}

/**
 * The coordinator's answer to doc.fetch of `doc` for an admin that has `have`. `whole` gives the
 * whole document when the admin needs it: bytes Automerge loads to at least `doc`'s heads (the
 * coordinator reads its store's chunks back, SnapshotCache saves one).
 */
export async function answerFetch(
  doc: A.Doc<unknown> | undefined,
  have: readonly string[],
  whole: () => Uint8Array | Promise<Uint8Array>,
  maxBytes = DOC_FETCH_MAX_BYTES,
): Promise<FetchAnswer> {
  if (doc === undefined) return { heads: null };
  const heads = A.getHeads(doc);
  if (sameHeads(heads, have)) return { heads };
  if (have.length > 0 && A.hasHeads(doc, [...have])) {
    const changes = A.saveSince(doc, [...have]);
    if (changes.length <= maxBytes) return { heads, changes };
  }
  const snapshot = await whole();
  return snapshot.length <= maxBytes ? { heads, snapshot } : { heads };
}

/**
 * The admin's replica of a document after a doc.fetch answer: `local` (undefined: none yet) with
 * the answer's bytes, or undefined when the answer carries none although the heads differ (too
 * large to send: sync it instead). Throws BAD_MESSAGE, changing nothing, when the bytes are not
 * an Automerge document or do not lead to the heads the coordinator named.
 */
export function applyFetch<T>(
  local: A.Doc<T> | undefined,
  answer: FetchAnswer,
  what: string,
): A.Doc<T> | undefined {
  const heads = answer.heads ?? [];
  const bytes = answer.changes ?? answer.snapshot;
  if (bytes === undefined) {
    return local !== undefined && A.hasHeads(local, heads) ? local : undefined;
  }
  let doc: A.Doc<T>;
  try {
    // A cold replica takes the snapshot whole (several times faster than loadIncremental);
    // otherwise the bytes are merged, as sync would, so nothing the replica held is lost.
    doc =
      local === undefined && answer.snapshot !== undefined
        ? A.load<T>(answer.snapshot)
        : A.loadIncremental(local === undefined ? A.init<T>() : A.clone(local), bytes);
  } catch (err) {
    throw new FltError(
      'BAD_MESSAGE',
      `doc.fetch of ${what}: not an Automerge document: ${messageOf(err)}`,
    );
  }
  if (!A.hasHeads(doc, heads))
    throw new FltError(
      'BAD_MESSAGE',
      `doc.fetch of ${what}: the coordinator's bytes do not lead to the heads it named`,
    );
  return doc;
}

/** What storeFetched needs of a store: automerge-repo's storage interface (FsStore). */
export interface ChunkStore {
  loadRange(prefix: StorageKey): Promise<Chunk[]>;
  save(key: StorageKey, data: Uint8Array): Promise<void>;
  remove(key: StorageKey): Promise<void>;
}

const hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** automerge-repo's name for a snapshot at `heads` (its storage/keyHash.js headsHash). */
export function snapshotKeyOf(heads: readonly string[]): string {
  return hex(Buffer.concat(heads.map((h) => Buffer.from(h, 'utf8'))));
}

/**
 * Keeps a fetched answer in the replica's store, in automerge-repo's layout (so a Repo opened on
 * it later loads it as its own): a snapshot under its heads' name, or the changes as an
 * incremental chunk. When the incremental chunks outgrow the snapshots (automerge-repo's own
 * rule), the document `doc` is compacted into one snapshot and the chunks it replaces removed,
 * after the snapshot is durable.
 */
export async function storeFetched(
  store: ChunkStore,
  docId: string,
  /** The document after the answer; or how to load it, should a compaction need it. */
  doc: A.Doc<unknown> | (() => Promise<A.Doc<unknown>>),
  answer: FetchAnswer,
  /** The replica held none of the document before: a snapshot is all there is to keep. */
  fresh = false,
): Promise<void> {
  if (answer.changes !== undefined)
    await store.save([docId, 'incremental', hex(answer.changes)], answer.changes);
  else if (answer.snapshot !== undefined) {
    // A fresh replica's document is exactly the snapshot: named by its own heads.
    const heads = fresh ? A.getHeads(await whole(doc)) : (answer.heads ?? []);
    await store.save([docId, 'snapshot', snapshotKeyOf(heads)], answer.snapshot);
  } else return;
  if (fresh && answer.snapshot !== undefined) return;
  const { snapshots, incrementals } = await contentChunks(store, docId);
  const size = (cs: Chunk[]) => cs.reduce((n, c) => n + (c.data?.length ?? 0), 0);
  if (snapshots.length <= 1 && size(incrementals) < size(snapshots)) return;
  const full = await whole(doc);
  const key = snapshotKeyOf(A.getHeads(full));
  await store.save([docId, 'snapshot', key], A.save(full));
  for (const c of [...snapshots, ...incrementals]) if (c.key[2] !== key) await store.remove(c.key);
}

/** The document storeFetched was given, loaded first when it was given as a loader. */
function whole(doc: A.Doc<unknown> | (() => Promise<A.Doc<unknown>>)): Promise<A.Doc<unknown>> {
  // A document is never a function (Automerge's are objects): a function is the loader.
  if (typeof doc !== 'function') return Promise.resolve(doc);
  return (doc as () => Promise<A.Doc<unknown>>)();
}
