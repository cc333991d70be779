// Keeping a large document that is always loaded in one snapshot (issue 13).
//
// automerge-repo saves a document as incremental chunks until their bytes reach the snapshot's,
// and loads it by applying every change in those chunks one by one: what a restart waits for.
// A coordinator's root document at 1,000 agents was found as 12 chunks (833 KB, 1,219 changes),
// and its restart spent 4.5 s opening it under a reconnect storm; bench/root-scale.js loads a
// root of 2,000 agents from one snapshot in 0.13 s of CPU and from a snapshot plus incremental
// chunks in 4.6 s (the cost of a change grows with the document).
//
// compact() writes the loaded document as one snapshot, then removes every chunk of it that was
// listed before: each of those was saved from this document in memory (or loaded into it), so
// the snapshot holds every change they hold. A chunk that the Repo writes meanwhile was not
// listed and stays. The snapshot is named as automerge-repo names its own (a hash of the heads),
// so a compaction of its own at the same heads writes the same file. Its own record of chunks
// still names the removed ones and not ours: its later removals of them find nothing, its size
// rule compacts a little sooner than it would have, and its own compaction leaves ours beside
// its snapshot, which the next look here removes (two snapshots are compacted too: loading a
// 500-agent audit document from two took 428 ms of CPU, from one 31 ms). Crash-safe: the snapshot is durable before any
// chunk goes (FsStore), and a crash in between leaves a chunk too many, never one too few.
// A crash while two snapshots are there (up to everyMs after automerge-repo's compaction, or
// between the two steps here) leaves them for the next start: OwnedDoc.load makes them one
// before the Repo loads the document (consolidate in sync/owned-doc.ts). Loaded as automerge-repo
// loads them, a 1,000-agent root's two took 1.4 s and 865 MiB of wasm memory (issue 13).

import * as A from '@automerge/automerge';
import type { DocHandle, StorageKey } from '@automerge/automerge-repo';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import type { Logger } from './log.js';

/** What compact() needs of a store. */
export interface CompactStore {
  keys(prefix: StorageKey): Promise<StorageKey[]>;
  save(key: StorageKey, data: Uint8Array): Promise<void>;
  remove(key: StorageKey): Promise<void>;
}

/** automerge-repo's name of a snapshot at `heads` (storage/keyHash.js: headsHash). */
export function snapshotName(heads: readonly string[]): string {
  return bytesToHex(sha256(utf8ToBytes(heads.join(''))));
}

/**
 * Saves `bytes` (a save of `doc` at `heads`) as its snapshot, named as automerge-repo names one,
 * then removes every `replaced` chunk but that snapshot: the snapshot is durable (the store's
 * save) before any goes, so a crash in between leaves a chunk too many, never one too few. A
 * removal that fails goes to `failed` if given (the next compaction removes it), else throws.
 * Returns the snapshot's key.
 */
export async function replaceWithSnapshot(
  store: Pick<CompactStore, 'save' | 'remove'>,
  doc: string,
  snapshot: { readonly bytes: Uint8Array; readonly heads: readonly string[] },
  replaced: readonly StorageKey[],
  failed?: (err: unknown) => void,
): Promise<StorageKey> {
  const name = snapshotName(snapshot.heads);
  const key = [doc, 'snapshot', name];
  await store.save(key, snapshot.bytes);
  for (const old of replaced) {
    if (old[1] === 'snapshot' && old[2] === name) continue;
    if (failed === undefined) await store.remove(old);
    else await store.remove(old).catch(failed);
  }
  return key;
}

/**
 * Compacts `handle`'s document (loaded) into one snapshot when the store holds at least
 * `minIncrementals` incremental chunks of it, or more than one snapshot; resolves whether it did.
 */
export async function compact(
  handle: DocHandle<unknown>,
  store: CompactStore,
  minIncrementals: number,
): Promise<boolean> {
  const doc = handle.documentId;
  const listed = (await store.keys([doc])).filter(
    (k) => k[1] === 'snapshot' || k[1] === 'incremental',
  );
  const incrementals = listed.filter((k) => k[1] === 'incremental').length;
  // Two snapshots: one of ours beside one automerge-repo wrote since (its own compaction does
  // not know ours, and removes only the chunks it knows); loading both costs as much as changes.
  if (incrementals < minIncrementals && listed.length - incrementals < 2) return false;
  if (!handle.isReady()) return false;
  const value = handle.doc();
  await replaceWithSnapshot(store, doc, { bytes: A.save(value), heads: A.getHeads(value) }, listed);
  return true;
}

/** Options of Compactor. */
export interface CompactorOptions {
  store: CompactStore;
  /** The documents to keep compacted (loaded, and kept loaded by their owner). */
  handles: () => readonly DocHandle<unknown>[];
  /** Incremental chunks of a document that make it worth compacting. */
  minIncrementals: number;
  /** How often to look. */
  everyMs: number;
  log: Logger;
}

/** Compacts a node's kept documents at start and every `everyMs`, one at a time. */
export class Compactor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: CompactorOptions) {}

  /** Looks once now (a document loaded from many chunks is compacted at once), then every `everyMs`. */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.run(), this.opts.everyMs);
    this.timer.unref();
    void this.run();
  }

  /** Compacts what needs it, unless a run is under way (then: that run). */
  run(): Promise<void> {
    this.running ??= (async () => {
      for (const handle of this.opts.handles()) {
        try {
          await compact(handle, this.opts.store, this.opts.minIncrementals);
        } catch (err) {
          this.opts.log.warn('could not compact a document', {
            doc: handle.documentId,
            err: String(err),
          });
        }
      }
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Stops looking and waits for a run under way. Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
