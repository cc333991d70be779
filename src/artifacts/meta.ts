// What Nix says about one store path, as flt carries it: the narinfo fields (narHash, narSize,
// references, deriver, sigs), the fingerprint Nix signs, the narinfo text a `file://` binary
// cache serves, and the BLAKE3 root and chunk count of the NAR for flt/blobs/0. Every value
// from the wire or a file goes through decodeMeta, once.

import { posix } from 'node:path';
import { chunkCount, MAX_BLOB_SIZE } from '../../sync/blob-hash.js';
import { isRecord } from '../../sync/codec.js';
import { FltError } from '../errors.js';
import { isStorePath } from '../trust/deployment.js';
import { isNix32, nix32Length } from './nix32.js';

/** A full store path (isStorePath of trust/deployment.ts), checked once. */
export type StorePath = string & { readonly __brand: 'StorePath' };
/** `sha256:` and the 52 Nix base-32 characters of the NAR's SHA-256. */
export type NarHash = string & { readonly __brand: 'NarHash' };
/** 64 lowercase hex characters (a BLAKE3 root). */
export type Hex32 = string & { readonly __brand: 'Hex32' };

/** What a narinfo says, minus URL and compression. */
export interface NarMeta {
  readonly path: StorePath;
  readonly narHash: NarHash;
  /** 1 .. MAX_BLOB_SIZE. */
  readonly narSize: number;
  /** Full paths in the same store dir, sorted, without duplicates; may include `path`. */
  readonly references: readonly StorePath[];
  /** Ends in `.drv`. */
  readonly deriver?: StorePath;
  /** `name:base64(64 bytes)`, deduplicated; empty only before signing. */
  readonly sigs: readonly string[];
}

/** A NarMeta as stored and sent by flt: with its NAR's BLAKE3 root and chunk count. */
export interface ArtifactMeta extends NarMeta {
  readonly b3: Hex32;
  readonly chunks: number;
}

export const MAX_REFERENCES = 10_000;
export const MAX_SIGS = 8;
const SIG = /^[\x21-\x39\x3b-\x7e]{1,128}:[A-Za-z0-9+/]{86}==$/;
const HEX32 = /^[0-9a-f]{64}$/;

export const isHex32 = (v: unknown): v is Hex32 => typeof v === 'string' && HEX32.test(v);

export function isNarHash(v: unknown): v is NarHash {
  return typeof v === 'string' && v.startsWith('sha256:') && isNix32(v.slice(7), 32);
}

/** The 52 base-32 characters of a narHash: the NAR's file name in a binary cache and in flt. */
export function narHashName(h: NarHash): string {
  return h.slice('sha256:'.length);
}

/** The 32-character hash part of a store path's basename (`<hash32>.narinfo`). */
export function hashPart(p: StorePath): string {
  return posix.basename(p).slice(0, nix32Length(20));
}

/**
 * A store path, parsed once at the edge (CLI argument, config, Nix's output).
 * @throws FltError BAD_STORE_PATH when `v` is not one (isStorePath of trust/deployment.ts).
 */
export function parseStorePath(v: unknown): StorePath {
  if (!isStorePath(v)) throw new FltError('BAD_STORE_PATH', `not a Nix store path: ${String(v)}`);
  return v as StorePath;
}

/** Whether `v` is a signature in Nix's `name:base64(64 bytes)` form. */
export const isNixSig = (v: unknown): v is string => typeof v === 'string' && SIG.test(v);

/** What Nix signs: `1;<path>;<narHash>;<narSize>;<references, comma-separated>`. */
export function fingerprint(m: NarMeta): string {
  return `1;${m.path};${m.narHash};${m.narSize};${m.references.join(',')}`;
}

/**
 * The narinfo of `m` for a `file://` binary cache holding the NAR uncompressed at
 * `nar/<narHashName>.nar`. References and Deriver are basenames, as Nix writes them.
 */
export function narinfoText(m: NarMeta): string {
  const lines = [
    `StorePath: ${m.path}`,
    `URL: nar/${narHashName(m.narHash)}.nar`,
    'Compression: none',
    `NarHash: ${m.narHash}`,
    `NarSize: ${m.narSize}`,
    `References: ${m.references.map((r) => posix.basename(r)).join(' ')}`,
  ];
  if (m.deriver !== undefined) lines.push(`Deriver: ${posix.basename(m.deriver)}`);
  for (const sig of m.sigs) lines.push(`Sig: ${sig}`);
  return lines.join('\n') + '\n';
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `artifact metadata: ${what}`);
}

/**
 * Checks a NarMeta field by field (sigs may be empty: before signing).
 * @throws FltError BAD_MESSAGE naming the first bad field.
 */
export function decodeNarMeta(v: unknown): NarMeta {
  if (!isRecord(v)) bad('not a map');
  const { path, narHash, narSize, references, deriver, sigs } = v;
  if (!isStorePath(path)) bad('bad path');
  const dir = posix.dirname(path);
  const inStore = (p: unknown): p is StorePath => isStorePath(p) && posix.dirname(p) === dir;
  if (!isNarHash(narHash)) bad(`${path}: bad narHash`);
  if (
    !Number.isSafeInteger(narSize) ||
    (narSize as number) < 1 ||
    (narSize as number) > MAX_BLOB_SIZE
  )
    bad(`${path}: bad narSize`);
  if (!Array.isArray(references) || references.length > MAX_REFERENCES)
    bad(`${path}: bad references`);
  for (let i = 0; i < references.length; i++) {
    if (!inStore(references[i])) bad(`${path}: reference ${i} is not a path of its store`);
    if (i > 0 && !((references[i - 1] as string) < (references[i] as string)))
      bad(`${path}: references not sorted or repeated`);
  }
  if (deriver !== undefined && !(inStore(deriver) && deriver.endsWith('.drv')))
    bad(`${path}: bad deriver`);
  if (!Array.isArray(sigs) || sigs.length > MAX_SIGS || !sigs.every(isNixSig))
    bad(`${path}: bad sigs`);
  if (new Set(sigs).size !== sigs.length) bad(`${path}: repeated sig`);
  const meta = {
    path: path as StorePath,
    narHash,
    narSize: narSize as number,
    references: references as StorePath[],
    sigs: sigs,
  };
  return deriver === undefined ? meta : { ...meta, deriver: deriver };
}

/**
 * Checks an ArtifactMeta (from the wire or an index file) in full: a NarMeta with 1..8 sigs,
 * `b3` 64 hex characters and `chunks` equal to the chunk count of `narSize`.
 * @throws FltError BAD_MESSAGE naming the first bad field.
 */
export function decodeMeta(v: unknown): ArtifactMeta {
  const m = decodeNarMeta(v);
  const { b3, chunks } = v as Record<string, unknown>;
  if (m.sigs.length === 0) bad(`${m.path}: no signature`);
  if (!isHex32(b3)) bad(`${m.path}: bad b3`);
  if (chunks !== chunkCount(m.narSize)) bad(`${m.path}: chunks does not match narSize`);
  return { ...m, b3, chunks };
}
