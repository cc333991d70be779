// BLAKE3 chunk lists for flt/blobs/0: a blob is cut into CHUNK-sized chunks, each hashed; the
// list of chunk hashes is bound by one root. A receiver checks the list against the root it
// expects, then each chunk against its own entry before writing it (blob-stream.ts). Knows
// nothing of what the blobs are. BLAKE3 comes from hash-wasm (~700 MiB/s here, design §0).

import { createReadStream } from 'node:fs';
import { createBLAKE3, type IHasher } from 'hash-wasm';
import { FltError } from './errors.js';

/**
 * Chunk size. A quarter of framed-stream's READ_CHUNK: a resumed transfer loses at most the
 * chunks in flight, and the list costs 32 bytes per 256 KiB (0.012%).
 */
export const CHUNK = 256 * 1024;
/** Bytes of one BLAKE3 hash (chunk hash or root). */
export const HASH_BYTES = 32;
/** Largest blob size: every chunk index fits in a u32 (the wire's `index`); ~1 PiB. */
export const MAX_BLOB_SIZE = 0xffff_ffff * CHUNK;
/** Domain prefix of the root, so a root never equals the hash of some chunk. */
const ROOT_DOMAIN = new TextEncoder().encode('flt/blobs/0\0');

/** Chunks of a blob of `size` bytes (0 for an empty blob). */
export function chunkCount(size: number): number {
  return Math.ceil(size / CHUNK);
}

/** Length of chunk `index` of a blob of `size` bytes (CHUNK except for the last). */
export function chunkLength(size: number, index: number): number {
  return Math.min(CHUNK, size - index * CHUNK);
}

/** Entry `index` of a concatenated hash list (a view, not a copy). */
export function hashAt(hashes: Uint8Array, index: number): Uint8Array {
  return hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
}

/** What a whole blob hashes to: its chunk hashes (concatenated, 32 bytes each) and root. */
export interface BlobDigest {
  readonly size: number;
  readonly hashes: Uint8Array;
  readonly root: Uint8Array;
}

/**
 * BLAKE3 bound to one hash-wasm instance. All methods are synchronous: a call runs
 * init/update/digest without yielding, so one instance serves every caller of the process.
 */
export class BlobHasher {
  constructor(private readonly b3: IHasher) {}

  /** BLAKE3-256 of `bytes`. */
  hash(bytes: Uint8Array): Uint8Array {
    return this.b3.init().update(bytes).digest('binary');
  }

  /**
   * The root of a list: BLAKE3("flt/blobs/0\0" ‖ u64be size ‖ u32be CHUNK ‖ h_0 ‖ … ‖ h_n-1).
   * @throws FltError BAD_ARGUMENT when the list does not have chunkCount(size) entries.
   */
  rootOf(size: number, hashes: Uint8Array): Uint8Array {
    checkList(size, hashes);
    const head = new Uint8Array(12);
    const view = new DataView(head.buffer);
    view.setBigUint64(0, BigInt(size), false);
    view.setUint32(8, CHUNK, false);
    return this.b3.init().update(ROOT_DOMAIN).update(head).update(hashes).digest('binary');
  }

  /** Whether `bytes` is chunk `index` of the blob whose list is `hashes` (length included). */
  verifyChunk(hashes: Uint8Array, index: number, size: number, bytes: Uint8Array): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= hashes.length / HASH_BYTES) return false;
    if (bytes.length !== chunkLength(size, index)) return false;
    return equalBytes(this.hash(bytes), hashAt(hashes, index));
  }

  /** A hasher for one blob fed in pieces of any size. */
  chunker(): ChunkHasher {
    return new ChunkHasher(this);
  }
}

let shared: Promise<BlobHasher> | undefined;

/** The process's BlobHasher (one wasm instance, created on first use). */
export function blobHasher(): Promise<BlobHasher> {
  shared ??= createBLAKE3().then((b3) => new BlobHasher(b3));
  return shared;
}

/**
 * Hashes one blob fed in pieces of any size: `push` returns the hashes of the chunks it
 * completed, `finish` the whole digest. Holds at most one partial chunk (copied).
 */
export class ChunkHasher {
  private readonly partial = new Uint8Array(CHUNK);
  private filled = 0;
  private size = 0;
  private readonly done: Uint8Array[] = [];
  private finished = false;

  constructor(private readonly hasher: BlobHasher) {}

  /** Adds the next bytes of the blob; returns the hashes of chunks completed by them. */
  push(bytes: Uint8Array): Uint8Array[] {
    if (this.finished) throw new FltError('CLOSED', 'ChunkHasher: push after finish');
    const out: Uint8Array[] = [];
    let off = 0;
    while (off < bytes.length) {
      if (this.filled === 0 && bytes.length - off >= CHUNK) {
        out.push(this.hasher.hash(bytes.subarray(off, off + CHUNK))); // aligned: no copy
        off += CHUNK;
        continue;
      }
      const k = Math.min(CHUNK - this.filled, bytes.length - off);
      this.partial.set(bytes.subarray(off, off + k), this.filled);
      this.filled += k;
      off += k;
      if (this.filled === CHUNK) {
        out.push(this.hasher.hash(this.partial));
        this.filled = 0;
      }
    }
    this.size += bytes.length;
    this.done.push(...out);
    return out;
  }

  /** Bytes pushed so far. */
  get bytes(): number {
    return this.size;
  }

  /** Hashes the last partial chunk and returns the list and its root. */
  finish(): BlobDigest {
    if (this.finished) throw new FltError('CLOSED', 'ChunkHasher: finished twice');
    this.finished = true;
    if (this.filled > 0) this.done.push(this.hasher.hash(this.partial.subarray(0, this.filled)));
    const hashes = concatHashes(this.done);
    return { size: this.size, hashes, root: this.hasher.rootOf(this.size, hashes) };
  }
}

/** The digest of a stream of bytes (a file's read stream, a child's stdout). */
export async function hashStream(
  source: AsyncIterable<Uint8Array>,
  hasher?: BlobHasher,
): Promise<BlobDigest> {
  const h = (hasher ?? (await blobHasher())).chunker();
  for await (const piece of source) h.push(piece);
  return h.finish();
}

/** The digest of a file's bytes. Errors of the file system keep their `code` (codeOf: IO). */
export function hashFile(file: string, hasher?: BlobHasher): Promise<BlobDigest> {
  return hashStream(createReadStream(file, { highWaterMark: CHUNK }), hasher);
}

/** Concatenates 32-byte hashes into one list. */
export function concatHashes(list: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(list.length * HASH_BYTES);
  list.forEach((h, i) => out.set(h, i * HASH_BYTES));
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkList(size: number, hashes: Uint8Array): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_BLOB_SIZE)
    throw new FltError(
      'BAD_ARGUMENT',
      `blob size ${size} is not an integer in 0..${MAX_BLOB_SIZE}`,
    );
  if (hashes.length !== chunkCount(size) * HASH_BYTES)
    throw new FltError(
      'BAD_ARGUMENT',
      `a blob of ${size} bytes has ${chunkCount(size)} chunk hashes, not ${hashes.length / HASH_BYTES}`,
    );
}
