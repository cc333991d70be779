// The requests of flt/blobs/0 (design §3) and the server's answers to closure and have, validated
// in full: a request that fails is BAD_MESSAGE and costs the peer its connection, so nothing
// reaches the BlobServer unvalidated. The transfer's own messages (blob, ready, end, ok, done,
// err) and the frames are sync/blob-wire.ts's.

import { isRecord } from '../../sync/codec.js';
import { FltError } from '../../sync/errors.js';
import type { CtrlMap } from '../../sync/blob-wire.js';
import { MAX_BLOB_SIZE } from '../../sync/blob-hash.js';
import { isStorePath } from '../trust/deployment.js';
import { decodeMeta, isNarHash, type ArtifactMeta, type NarHash, type StorePath } from './meta.js';

/** Most paths in one `have` request (and narHashes in one `closure` request's `have`). */
export const MAX_HAVE_PATHS = 10_000;
/** Most metas in one `metas` frame (the server also keeps a frame under METAS_FRAME_BYTES). */
export const MAX_METAS_PER_FRAME = 2_000;
/** Encoded metas per frame, at most (half the 1 MiB frame cap). */
export const METAS_FRAME_BYTES = 512 * 1024;
/** Most paths a `missing` list names. */
export const MAX_MISSING = 10_000;
/** Longest `name:base64(32)` public key accepted in a put. */
const MAX_KEY_TEXT = 200;

export type BlobRequest =
  | { readonly t: 'closure'; readonly path: StorePath; readonly have: readonly NarHash[] }
  | {
      readonly t: 'have';
      readonly paths: readonly StorePath[];
      /** narHashes whose partial upload the client asks about (answered in `partial`). */
      readonly narHashes: readonly NarHash[];
    }
  | {
      readonly t: 'get';
      readonly narHash: NarHash;
      readonly from: number;
      readonly hashes: boolean;
    }
  | {
      readonly t: 'put';
      readonly meta: ArtifactMeta;
      readonly size: number;
      /** `name:base64(32 bytes)`: the key the pusher signed with. */
      readonly signingKey: string;
    };

/** `{t:'metas', items, more, missing?}`: one frame of a closure answer. */
export interface MetasMsg {
  readonly t: 'metas';
  readonly items: readonly ArtifactMeta[];
  readonly more: boolean;
  /** On the last frame: paths of the closure the coordinator has not got (then `items` is partial). */
  readonly missing: readonly StorePath[];
}

/** `{t:'have', present, partial}`: the answer to a have request. */
export interface HaveMsg {
  readonly t: 'have';
  readonly present: readonly StorePath[];
  /** narHash -> verified chunks of a partial upload (only those asked about, only when > 0). */
  readonly partial: Readonly<Record<string, number>>;
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `blobs: ${what}`);
}

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;

function exactKeys(msg: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(msg)) if (!allowed.includes(k)) bad(`${what}: unexpected field ${k}`);
}

function list<T>(
  v: unknown,
  max: number,
  check: (x: unknown) => x is T,
  what: string,
  min = 0,
): T[] {
  if (!Array.isArray(v) || v.length < min || v.length > max)
    bad(`${what}: not a list of ${min}..${max}`);
  for (const x of v) if (!check(x)) bad(`${what}: a bad entry`);
  return v as T[];
}

const storePath = (v: unknown): v is StorePath => isStorePath(v);

/**
 * Validates a control map as a request (the first frame of a stream).
 * @throws FltError BAD_MESSAGE for an unknown `t`, a missing or extra field or a bad value.
 */
export function decodeRequest(msg: CtrlMap): BlobRequest {
  switch (msg.t) {
    case 'closure': {
      exactKeys(msg, ['t', 'path', 'have'], 'closure');
      if (!storePath(msg.path)) bad('closure: bad path');
      const have =
        msg.have === undefined ? [] : list(msg.have, MAX_HAVE_PATHS, isNarHash, 'closure.have');
      return { t: 'closure', path: msg.path, have };
    }
    case 'have': {
      exactKeys(msg, ['t', 'paths', 'narHashes'], 'have');
      const paths = list(msg.paths, MAX_HAVE_PATHS, storePath, 'have.paths', 1);
      const narHashes =
        msg.narHashes === undefined
          ? []
          : list(msg.narHashes, MAX_HAVE_PATHS, isNarHash, 'have.narHashes');
      return { t: 'have', paths, narHashes };
    }
    case 'get': {
      exactKeys(msg, ['t', 'narHash', 'from', 'hashes'], 'get');
      if (!isNarHash(msg.narHash)) bad('get: bad narHash');
      if (!isU32(msg.from)) bad('get: bad from');
      if (typeof msg.hashes !== 'boolean') bad('get: bad hashes');
      return { t: 'get', narHash: msg.narHash, from: msg.from, hashes: msg.hashes };
    }
    case 'put': {
      exactKeys(msg, ['t', 'meta', 'size', 'signingKey'], 'put');
      const meta = decodeMeta(msg.meta);
      const { size, signingKey } = msg;
      if (!Number.isSafeInteger(size) || (size as number) < 1 || (size as number) > MAX_BLOB_SIZE)
        bad('put: bad size');
      if (size !== meta.narSize) bad('put: size is not the meta narSize');
      if (
        typeof signingKey !== 'string' ||
        signingKey.length > MAX_KEY_TEXT ||
        !/^[^:]{1,128}:[A-Za-z0-9+/]{43}=$/.test(signingKey)
      )
        bad('put: bad signingKey (name:base64 of 32 bytes)');
      return { t: 'put', meta, size, signingKey };
    }
    default:
      return bad(`unknown request ${msg.t}`);
  }
}

/**
 * Validates a `metas` frame (client side of closure).
 * @throws FltError BAD_MESSAGE.
 */
export function decodeMetas(msg: CtrlMap): MetasMsg {
  if (msg.t !== 'metas') bad(`expected metas, got ${msg.t}`);
  exactKeys(msg, ['t', 'items', 'more', 'missing'], 'metas');
  if (!Array.isArray(msg.items) || msg.items.length > MAX_METAS_PER_FRAME) bad('metas: bad items');
  const items = msg.items.map((v) => decodeMeta(v));
  if (typeof msg.more !== 'boolean') bad('metas: bad more');
  const missing =
    msg.missing === undefined ? [] : list(msg.missing, MAX_MISSING, storePath, 'metas.missing');
  return { t: 'metas', items, more: msg.more, missing };
}

/**
 * Validates the answer to a have request (client side).
 * @throws FltError BAD_MESSAGE.
 */
export function decodeHave(msg: CtrlMap): HaveMsg {
  if (msg.t !== 'have') bad(`expected have, got ${msg.t}`);
  exactKeys(msg, ['t', 'present', 'partial'], 'have');
  const present = list(msg.present, MAX_HAVE_PATHS, storePath, 'have.present');
  if (!isRecord(msg.partial)) bad('have: bad partial');
  const entries = Object.entries(msg.partial);
  if (entries.length > MAX_HAVE_PATHS) bad('have: too many partial entries');
  for (const [k, v] of entries) if (!isNarHash(k) || !isU32(v)) bad('have: bad partial entry');
  return { t: 'have', present, partial: msg.partial as Record<string, number> };
}
