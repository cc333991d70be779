// The bytes of one chunk file, as FsStore (stores/fs-store.ts) writes and verifies it:
//   magic "FLTCHNK1" (8 bytes) | SHA-256 of the data (32 bytes) | data
// Files without the magic were written by automerge-repo-storage-nodefs and are checked as far as
// their key allows (see decodeChunk).

import { createHash } from 'node:crypto';
import type { StorageKey } from '@automerge/automerge-repo';

/** First bytes of every file FsStore writes; the trailing digit is the format version. */
export const CHUNK_MAGIC = Buffer.from('FLTCHNK1', 'latin1');
/** Magic plus a SHA-256. */
export const HEADER_BYTES = CHUNK_MAGIC.length + 32;
/** Every Automerge chunk (document, change, compressed change) starts with these bytes. */
const AUTOMERGE_MAGIC = Buffer.from([0x85, 0x6f, 0x4a, 0x83]);

/** The outcome of reading a chunk file: its data, or why it must not be trusted. */
export type Decoded = { ok: true; data: Uint8Array } | { ok: false; detail: string };

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** The file bytes for `data`: header then a copy of the data (so later mutation cannot race). */
export function encodeChunk(data: Uint8Array): Buffer {
  const file = Buffer.allocUnsafe(HEADER_BYTES + data.length);
  CHUNK_MAGIC.copy(file, 0);
  file.set(data, HEADER_BYTES);
  sha256(file.subarray(HEADER_BYTES)).copy(file, CHUNK_MAGIC.length);
  return file;
}

/**
 * Verifies a chunk file read for `key`. Empty files, files cut inside the header and legacy files
 * of zeros only are corrupt whatever the key. Files with the magic must match their hash. Legacy (nodefs) files carry no
 * hash of their own, so:
 * - `[doc, 'incremental', h]`: automerge-repo names these by sha256(data), checked here;
 * - `[doc, 'snapshot', h]`: named by a hash of the heads, which only loading the document could
 *   check; we check the Automerge chunk framing instead (magic, lengths add up), which catches
 *   truncation and zero-fill but not a flipped byte;
 * - any other key (sync state, storage id, other users' data): accepted as is. A damaged legacy
 *   file of this kind goes unnoticed until it is rewritten in the new format.
 */
export function decodeChunk(key: StorageKey, file: Uint8Array): Decoded {
  if (file.length === 0) return bad('empty file');
  const buf = Buffer.from(file.buffer, file.byteOffset, file.length);
  const magicLength = Math.min(buf.length, CHUNK_MAGIC.length);
  if (buf.subarray(0, magicLength).equals(CHUNK_MAGIC.subarray(0, magicLength))) {
    return decodeOwn(buf);
  }
  const detail = checkLegacy(key, buf);
  return detail === undefined ? { ok: true, data: new Uint8Array(buf) } : bad(detail);
}

function decodeOwn(buf: Buffer): Decoded {
  if (buf.length < HEADER_BYTES) return bad(`truncated header (${buf.length} bytes)`);
  const data = buf.subarray(HEADER_BYTES);
  if (!sha256(data).equals(buf.subarray(CHUNK_MAGIC.length, HEADER_BYTES))) {
    return bad(`hash mismatch over ${data.length} data bytes (truncated or damaged)`);
  }
  return { ok: true, data: new Uint8Array(data) };
}

function checkLegacy(key: StorageKey, buf: Buffer): string | undefined {
  // No value automerge-repo writes is all zeros (chunks, sync states and ids all start otherwise);
  // a zero-filled file is what a crash leaves on some filesystems (ext4 data=writeback, XFS).
  if (buf.every((byte) => byte === 0)) return `zero-filled (${buf.length} bytes)`;
  if (key.length !== 3) return undefined;
  if (key[1] === 'incremental' && sha256(buf).toString('hex') !== key[2]) {
    return `legacy incremental chunk does not match its hash over ${buf.length} bytes (truncated or damaged)`;
  }
  if (key[1] === 'snapshot') return checkAutomergeFraming(buf);
  return undefined;
}

/** Walks the Automerge chunks in `buf` (magic, 4-byte checksum, type, uleb128 length, body). */
function checkAutomergeFraming(buf: Buffer): string | undefined {
  let at = 0;
  while (at < buf.length) {
    if (!buf.subarray(at, at + 4).equals(AUTOMERGE_MAGIC)) {
      return `legacy snapshot: no Automerge chunk at byte ${at}`;
    }
    const length = readUleb(buf, at + 9);
    if (length === undefined) return `legacy snapshot: bad chunk length at byte ${at + 9}`;
    const end = length.next + length.value;
    if (end > buf.length)
      return `legacy snapshot truncated: chunk needs ${end} bytes, file has ${buf.length}`;
    at = end;
  }
  return undefined;
}

/** An unsigned LEB128 of at most 7 bytes (2^49, far above any file we will hold in memory). */
function readUleb(buf: Buffer, at: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = 0; i < 7 && at + i < buf.length; i++) {
    const byte = buf[at + i] as number;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return { value, next: at + i + 1 };
  }
  return undefined;
}

function bad(detail: string): Decoded {
  return { ok: false, detail };
}
