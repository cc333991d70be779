// How FsStore (stores/fs-store.ts) checks the bytes of a file. Files hold plain automerge-repo
// values, exactly as @automerge/automerge-repo-storage-nodefs writes them, so no header of our own:
// - an Automerge chunk checks itself (magic bytes, and a checksum over its type, length and body);
// - automerge-repo names an incremental chunk by the SHA-256 of its bytes (keyHash in its
//   storage/keyHash.js) and a snapshot by a hash of its heads, 64 hex digits either way.
// Files in flt 0.1's format (`FLTCHNK1 ‖ sha256(data) ‖ data`) are still read; FsStore rewrites them.

import { createHash } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import type { StorageKey } from '@automerge/automerge-repo';

/** First bytes of every file flt 0.1's FsStore wrote; the digit was its format version. */
export const LEGACY_MAGIC = Buffer.from('FLTCHNK1', 'latin1');
/** flt 0.1's header: magic plus the SHA-256 of the data. */
export const LEGACY_HEADER_BYTES = LEGACY_MAGIC.length + 32;
/** Every Automerge chunk starts with these bytes (MAGIC_BYTES in automerge's storage.rs). */
export const AUTOMERGE_MAGIC = Buffer.from([0x85, 0x6f, 0x4a, 0x83]);
/** How automerge-repo names the chunks it writes: a SHA-256 in lowercase hex. */
const HASH_NAME = /^[0-9a-f]{64}$/;
/** Chunk types automerge knows (ChunkType in automerge's storage/chunk.rs). */
const DOCUMENT = 0;
const CHANGE = 1;
const COMPRESSED = 2;
const BUNDLE = 3;
/**
 * Largest body a compressed change may inflate to while we check it. Automerge compresses single
 * changes; 256 MiB is far above any change flt writes, and bounds what a damaged body can cost.
 */
const MAX_INFLATED = 256 * 1024 * 1024;

/** The outcome of reading a file: its value (and whether it is in flt 0.1's format), or why not. */
export type Decoded =
  | { ok: true; data: Uint8Array; legacy: boolean }
  | { ok: false; detail: string };

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** True when `data` starts with flt 0.1's header magic (and would be read as that format). */
export function hasLegacyMagic(data: Uint8Array): boolean {
  return data.length >= LEGACY_MAGIC.length && LEGACY_MAGIC.equals(data.subarray(0, 8));
}

/**
 * Checks the bytes of the file holding `key`. A file in flt 0.1's format must match its header's
 * hash; then the value inside (or the whole file) must pass checkValue.
 */
export function decodeFile(key: StorageKey, file: Uint8Array): Decoded {
  if (!hasLegacyMagic(file)) {
    const detail = checkValue(key, file);
    return detail === undefined ? { ok: true, data: copy(file), legacy: false } : bad(detail);
  }
  if (file.length < LEGACY_HEADER_BYTES)
    return bad(`truncated flt 0.1 header (${file.length} bytes)`);
  const data = file.subarray(LEGACY_HEADER_BYTES);
  if (!sha256(data).equals(file.subarray(LEGACY_MAGIC.length, LEGACY_HEADER_BYTES))) {
    return bad(
      `flt 0.1 chunk: hash mismatch over ${data.length} data bytes (truncated or damaged)`,
    );
  }
  const detail = checkValue(key, data);
  if (detail !== undefined)
    return bad(`flt 0.1 chunk: ${detail}, which the plain format cannot keep`);
  return { ok: true, data: copy(data), legacy: true };
}

/**
 * Why `data` cannot be the value of `key`, or undefined when it can. Rules, by what the bytes and
 * the key promise:
 * - no value is empty or only zeros: that is what a crash leaves on some filesystems (ext4
 *   data=writeback, XFS), and automerge-repo never writes one;
 * - `[doc, 'incremental', <64 hex>]`: the SHA-256 of the bytes must be the name (covers every byte);
 * - `[doc, 'snapshot' | 'incremental', name]` starting with Automerge's magic: every chunk must
 *   parse and match its checksum, and the chunks must fill the file exactly;
 * - `[doc, 'snapshot', <64 hex>]` must be Automerge chunks (a damaged magic is caught here);
 * - anything else (sync states, the storage id, other users' values, chunks under names
 *   automerge-repo does not give) has no structure to check and is accepted as it is. A damaged
 *   sync state costs a full sync: automerge-repo drops one that does not decode.
 */
export function checkValue(key: StorageKey, data: Uint8Array): string | undefined {
  if (data.length === 0) return 'empty';
  if (data.every((byte) => byte === 0)) return `zero-filled (${data.length} bytes)`;
  const kind = key.length === 3 ? key[1] : undefined;
  if (kind !== 'snapshot' && kind !== 'incremental') return undefined;
  const named = HASH_NAME.test(key[2] as string);
  if (kind === 'incremental' && named) {
    return sha256(data).toString('hex') === key[2]
      ? undefined
      : `incremental chunk does not match its name, the SHA-256 of its ${data.length} bytes (truncated or damaged)`;
  }
  if (startsWith(data, AUTOMERGE_MAGIC)) return checkAutomergeChunks(data);
  return named ? `not an Automerge chunk (no magic bytes)` : undefined;
}

/**
 * Walks the Automerge chunks in `buf`: magic (4), checksum (4), type (1), uleb128 body length,
 * body. The checksum is the first 4 bytes of SHA-256(type ‖ uleb128(length) ‖ body); for a
 * compressed change, of the inflated change (type 1) it holds (Header::hash in chunk.rs).
 */
export function checkAutomergeChunks(buf: Uint8Array): string | undefined {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  // Each round consumes at least 10 bytes, so this ends.
  for (let at = 0; at < bytes.length; ) {
    if (!startsWith(bytes.subarray(at), AUTOMERGE_MAGIC)) return `no Automerge chunk at byte ${at}`;
    const type = bytes[at + 8];
    if (type === undefined) return `Automerge chunk header cut at byte ${bytes.length}`;
    if (type > BUNDLE) return `unknown Automerge chunk type ${type} at byte ${at}`;
    const length = readUleb(bytes, at + 9);
    if (length === undefined) return `bad Automerge chunk length at byte ${at + 9}`;
    const end = length.next + length.value;
    if (end > bytes.length)
      return `Automerge chunk truncated: needs ${end} bytes, the file has ${bytes.length}`;
    const body = bytes.subarray(length.next, end);
    const detail = checkChecksum(type, body, bytes.subarray(at + 4, at + 8));
    if (detail !== undefined) return `${detail} (chunk at byte ${at})`;
    at = end;
  }
  return undefined;
}

function checkChecksum(type: number, body: Buffer, checksum: Buffer): string | undefined {
  let hashedType = type;
  let hashed = body;
  if (type === COMPRESSED) {
    try {
      hashed = inflateRawSync(body, { maxOutputLength: MAX_INFLATED });
    } catch {
      return 'compressed Automerge change does not inflate';
    }
    hashedType = CHANGE;
  }
  const hash = createHash('sha256')
    .update(Uint8Array.of(hashedType, ...uleb(hashed.length)))
    .update(hashed)
    .digest();
  if (hash.subarray(0, 4).equals(checksum)) return undefined;
  const what = hashedType === DOCUMENT ? 'document' : hashedType === CHANGE ? 'change' : 'bundle';
  return `Automerge ${what} chunk does not match its checksum (damaged)`;
}

/** An unsigned LEB128 of at most 7 bytes (2^49, far above any file we hold in memory). */
function readUleb(buf: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = 0; i < 7 && at + i < buf.length; i++) {
    const byte = buf[at + i] as number;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return { value, next: at + i + 1 };
  }
  return undefined;
}

/** The shortest uleb128 of `n`, as automerge hashes it. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    const low = n % 128;
    n = Math.floor(n / 128);
    out.push(n > 0 ? low | 0x80 : low);
  } while (n > 0);
  return out;
}

function startsWith(data: Uint8Array, prefix: Buffer): boolean {
  return data.length >= prefix.length && prefix.equals(data.subarray(0, prefix.length));
}

/**
 * A plain Uint8Array of its own (callers may keep or mutate it; vitest's toStrictEqual wants the
 * type): `data` itself when it already is one (stores/read-worker.ts hands such arrays over),
 * else a copy. A copy allocates an array buffer, and a restart makes thousands while Automerge's
 * grown memory is young: each then starts a scavenge (sync/wasm-headroom.ts).
 */
function copy(data: Uint8Array): Uint8Array {
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return whole && data.constructor === Uint8Array ? data : new Uint8Array(data);
}

function bad(detail: string): Decoded {
  return { ok: false, detail };
}
