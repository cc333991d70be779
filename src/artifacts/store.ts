// The coordinator's artifact store: the BlobStore of NARs and the ArtifactIndex of store paths,
// side by side in `<state-dir>/artifacts/` (design §4). The BlobStore's chunk hashing is the
// transfer's BLAKE3 list (sync/blob-hash.ts), so the sidecar beside each blob holds exactly the
// hashes flt/blobs/0 sends and its root is the meta's `b3`: a blob is served as stored, each
// chunk verified on the way out against the same list a receiver checks it with.

import { join } from 'node:path';
import { CHUNK, concatHashes, type BlobHasher } from '../../sync/blob-hash.js';
import { BlobStore, type ChunkHashing } from '../../stores/blob-store.js';
import { checkEntry, ArtifactIndex, type IndexEntry } from './index.js';
import { decodeMeta, type ArtifactMeta } from './meta.js';
import { nix32 } from './nix32.js';

/** The artifacts dir below a state dir. */
export const ARTIFACTS_DIR = 'artifacts';

/** What the coordinator's index holds per path: the meta as pushed, blob key, push time. */
export type StoredEntry = IndexEntry & Pick<ArtifactMeta, 'b3' | 'chunks'>;

/** The transfer's BLAKE3 chunk list as the BlobStore's ChunkHashing (id `blake3`). */
export function blake3Hashing(hasher: BlobHasher): ChunkHashing {
  return {
    id: 'blake3',
    chunkSize: CHUNK,
    chunk: (bytes) => hasher.hash(bytes),
    root: (size, hashes) => hasher.rootOf(size, concatHashes(hashes)),
  };
}

/** A blob's key: nix32 of the NAR's SHA-256 (the narinfo URL's name, `narHashName`). */
export const narKey = (sha256: Uint8Array): string => nix32(sha256);

/** Checks one index file: the entry's shape and its meta in full (decodeMeta). */
export function decodeStoredEntry(v: unknown): StoredEntry {
  const entry = checkEntry(v);
  decodeMeta(v);
  return entry as StoredEntry;
}

/** The meta of an index entry, as the wire sends it. */
export function metaOf(e: StoredEntry): ArtifactMeta {
  const meta = {
    path: e.path,
    narHash: e.narHash,
    narSize: e.narSize,
    references: e.references,
    sigs: e.sigs,
    b3: e.b3,
    chunks: e.chunks,
  } as ArtifactMeta;
  return e.deriver === undefined ? meta : { ...meta, deriver: e.deriver as ArtifactMeta['path'] };
}

/** Opens `<stateDir>/artifacts/`: its BlobStore (BLAKE3 sidecars, nix32 keys) and index. */
export async function openArtifacts(
  stateDir: string,
  hasher: BlobHasher,
  logger?: (line: string) => void,
): Promise<{ dir: string; blobs: BlobStore; index: ArtifactIndex }> {
  const dir = join(stateDir, ARTIFACTS_DIR);
  const blobs = await BlobStore.open(dir, {
    hashing: blake3Hashing(hasher),
    keyOf: narKey,
    logger,
  });
  const index = await ArtifactIndex.open(dir, { decode: decodeStoredEntry, logger });
  return { dir, blobs, index };
}
