// Codec of flt/blobs/0 frame bodies: a version byte, a kind byte, then a CBOR control map, a
// data chunk, or a run of chunk hashes (grammar: sync/PROTOCOL.md). Every field is checked here;
// a body that fails is a protocol error. The control messages of the transfer itself (blob,
// ready, end, ok, done, err) are validated here in full; the requests that name what to send
// (get, put, closure, have, ...) belong to the layer above, which validates them itself.

import { decodeCbor, encodeCbor, isRecord } from './codec.js';
import { FltError } from './errors.js';
import { CHUNK, HASH_BYTES, MAX_BLOB_SIZE, chunkCount } from './blob-hash.js';

export const BLOBS_VERSION = 0;

/** Frame kinds (the second byte of every body). */
export const FrameKind = { ctrl: 1, data: 2, hashes: 3 } as const;

/** Most hashes in one hashes frame: 8,192 × 32 B = 256 KiB, one chunk's worth. */
export const MAX_HASHES_PER_FRAME = 8192;
/** version + kind + u32: the header of data and hashes bodies. */
export const BODY_HEADER = 6;

export type BlobFrame =
  | { readonly kind: 'ctrl'; readonly msg: CtrlMap }
  | { readonly kind: 'data'; readonly index: number; readonly bytes: Uint8Array }
  | { readonly kind: 'hashes'; readonly first: number; readonly hashes: Uint8Array };

/** A control map as it arrived: a CBOR map whose `t` is a short string, not yet validated. */
export type CtrlMap = Readonly<Record<string, unknown>> & { readonly t: string };

/** The control messages of a transfer (both directions); the layer above adds its requests. */
export type TransferMsg =
  | {
      readonly t: 'blob';
      readonly size: number;
      readonly chunks: number;
      readonly root: Uint8Array;
    }
  | { readonly t: 'ready'; readonly from: number }
  | { readonly t: 'end' }
  | { readonly t: 'ok' }
  | { readonly t: 'done' }
  | { readonly t: 'err'; readonly code: string; readonly msg: string };

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `blobs: ${what}`);
}

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;

export function encodeCtrl(msg: { readonly t: string } & Record<string, unknown>): Uint8Array {
  const cbor = encodeCbor(msg);
  const out = new Uint8Array(2 + cbor.length);
  out[0] = BLOBS_VERSION;
  out[1] = FrameKind.ctrl;
  out.set(cbor, 2);
  return out;
}

/** A data body: chunk `index`, its bytes (1..CHUNK). */
export function encodeData(index: number, bytes: Uint8Array): Uint8Array {
  if (!isU32(index)) throw new FltError('BAD_ARGUMENT', `blobs: chunk index ${String(index)}`);
  if (bytes.length === 0 || bytes.length > CHUNK)
    throw new FltError('BAD_ARGUMENT', `blobs: a chunk of ${bytes.length} bytes`);
  return withHeader(FrameKind.data, index, bytes);
}

/** A hashes body: entries `first`.. of a list, 1..MAX_HASHES_PER_FRAME of them. */
export function encodeHashes(first: number, hashes: Uint8Array): Uint8Array {
  const n = hashes.length / HASH_BYTES;
  if (!isU32(first) || !Number.isInteger(n) || n < 1 || n > MAX_HASHES_PER_FRAME)
    throw new FltError('BAD_ARGUMENT', `blobs: a hashes frame of ${hashes.length} bytes`);
  return withHeader(FrameKind.hashes, first, hashes);
}

function withHeader(kind: number, n: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(BODY_HEADER + payload.length);
  out[0] = BLOBS_VERSION;
  out[1] = kind;
  new DataView(out.buffer).setUint32(2, n, false);
  out.set(payload, BODY_HEADER);
  return out;
}

/**
 * Decodes one frame body. The bytes of data and hashes frames are views into `body`.
 * @throws FltError UNSUPPORTED_VERSION for another version byte, BAD_MESSAGE for anything else
 *   that is not exactly a valid frame.
 */
export function decodeBlobFrame(body: Uint8Array): BlobFrame {
  if (body.length < 2) bad(`a body of ${body.length} bytes`);
  if (body[0] !== BLOBS_VERSION)
    throw new FltError(
      'UNSUPPORTED_VERSION',
      `blobs: version ${body[0]} (supported: ${BLOBS_VERSION})`,
    );
  const kind = body[1];
  if (kind === FrameKind.ctrl) {
    const msg = decodeCbor(body.subarray(2));
    if (!isRecord(msg) || typeof msg.t !== 'string' || msg.t.length === 0 || msg.t.length > 32)
      bad('a control frame is not a map with a type');
    return { kind: 'ctrl', msg: msg as CtrlMap };
  }
  if (kind !== FrameKind.data && kind !== FrameKind.hashes) bad(`unknown frame kind ${kind}`);
  if (body.length < BODY_HEADER + 1) bad('a data or hashes frame without payload');
  const n = new DataView(body.buffer, body.byteOffset, body.length).getUint32(2, false);
  const payload = body.subarray(BODY_HEADER);
  if (kind === FrameKind.data) {
    if (payload.length > CHUNK) bad(`a chunk of ${payload.length} bytes`);
    return { kind: 'data', index: n, bytes: payload };
  }
  if (payload.length % HASH_BYTES !== 0 || payload.length / HASH_BYTES > MAX_HASHES_PER_FRAME)
    bad(`a hashes frame of ${payload.length} bytes`);
  return { kind: 'hashes', first: n, hashes: payload };
}

/**
 * Validates a control map as one of the transfer's own messages.
 * @throws FltError BAD_MESSAGE for another type or any bad field.
 */
export function decodeTransferMsg(msg: CtrlMap): TransferMsg {
  switch (msg.t) {
    case 'blob': {
      const { size, chunks, root } = msg;
      if (!Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > MAX_BLOB_SIZE)
        bad('blob: bad size');
      if (chunks !== chunkCount(size as number)) bad('blob: chunks does not match size');
      if (!(root instanceof Uint8Array) || root.length !== HASH_BYTES) bad('blob: bad root');
      return { t: 'blob', size: size as number, chunks, root };
    }
    case 'ready':
      if (!isU32(msg.from)) bad('ready: bad from');
      return { t: 'ready', from: msg.from };
    case 'end':
    case 'ok':
    case 'done':
      return { t: msg.t };
    case 'err': {
      const { code, msg: text } = msg;
      if (typeof code !== 'string' || code.length === 0 || code.length > 64) bad('err: bad code');
      if (typeof text !== 'string' || text.length > 4096) bad('err: bad msg');
      return { t: 'err', code, msg: text };
    }
    default:
      return bad(`unexpected message ${msg.t}`);
  }
}
