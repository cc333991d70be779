// The Store interface every storage implementation provides (MemoryStore, FsStore), and the
// problem reports a store hands to operators. automerge-repo talks to a Store through
// StorageAdapterInterface; flt adds close() so nodes can shut down cleanly.

import type { StorageAdapterInterface } from '@automerge/automerge-repo';

/** An automerge-repo storage adapter that flt can close. close() is idempotent. */
export type Store = StorageAdapterInterface & { close(): Promise<void> };

/**
 * Something wrong found on disk, reported rather than thrown so the rest of the store stays usable.
 * - `STORE_CORRUPT`: a chunk failed its integrity check; it was moved to `quarantinedTo` (absent
 *   when only checking) and is treated as missing.
 * - `STORE_LEFTOVER_TEMP`: a temp file left by an interrupted save; never acknowledged data.
 * - `BLOB_MISSING`: a blob that an index names is not in the BlobStore (stores/blob-store.ts).
 */
export interface StoreProblem {
  code: 'STORE_CORRUPT' | 'STORE_LEFTOVER_TEMP' | 'BLOB_MISSING';
  /** The storage key of the chunk, when the file maps to one. */
  key?: string[];
  /** The file as found, absolute. */
  file: string;
  /** What is wrong, for a person. */
  detail: string;
  /** Where the file was moved (corrupt chunks only). */
  quarantinedTo?: string;
}
