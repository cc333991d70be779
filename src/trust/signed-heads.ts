// Signed heads (ARCHITECTURE.md §5): the writer of a single-writer document signs its heads with
// the document's write key, and readers show the document only as of the newest heads they can
// verify. Automerge change hashes chain the whole history, so one signature over the heads
// vouches for every change below them; a change no signature covers is never shown.
//
// The signed message (all integers big-endian):
//   "flt/v1/heads" 0x00 | u8 len | document id (UTF-8) | u64 seq | u32 n | n × 32-byte head
// with the heads sorted, so that the same heads always give the same message.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId } from '../../sync/ids.js';
import { docIdFor } from '../docs/doc-id.js';
import { sign, verify } from './ed25519.js';

const DOMAIN = new TextEncoder().encode('flt/v1/heads\0');
const HEAD_BYTES = 32;
/** More heads than this is not a single writer's document (it has one head, or a few). */
export const MAX_SIGNED_HEADS = 64;

/** What a writer publishes next to its document; JSON-safe (hex strings). */
export interface SignedHeads {
  readonly docId: DocumentId;
  /** Strictly increasing per writer; the newest verified one wins. */
  readonly seq: number;
  /** Hex change hashes, sorted. */
  readonly heads: readonly string[];
  /** Hex ed25519 public key that signed; docIdFor(key) must be docId. */
  readonly writeKey: string;
  /** Hex ed25519 signature over the message above. */
  readonly sig: string;
}

const HEX = /^[0-9a-f]*$/;
const isHex = (v: unknown, bytes: number): v is string =>
  typeof v === 'string' && v.length === bytes * 2 && HEX.test(v);

function message(docId: string, seq: number, heads: readonly string[]): Uint8Array {
  const id = new TextEncoder().encode(docId);
  const out = new Uint8Array(DOMAIN.length + 1 + id.length + 8 + 4 + heads.length * HEAD_BYTES);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(DOMAIN, at);
  at += DOMAIN.length;
  out[at++] = id.length;
  out.set(id, at);
  at += id.length;
  view.setBigUint64(at, BigInt(seq));
  at += 8;
  view.setUint32(at, heads.length);
  at += 4;
  for (const h of heads) {
    out.set(Buffer.from(h, 'hex'), at);
    at += HEAD_BYTES;
  }
  return out;
}

/** Signs `heads` of `docId` as its writer (`secret` is the document's write key). */
export function signHeads(
  docId: DocumentId,
  seq: number,
  heads: readonly string[],
  secret: Uint8Array,
  writeKey: Uint8Array,
): SignedHeads {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad seq ${seq}`);
  const sorted = [...heads].sort();
  return {
    docId,
    seq,
    heads: sorted,
    writeKey: Buffer.from(writeKey).toString('hex'),
    sig: Buffer.from(sign(message(docId, seq, sorted), secret)).toString('hex'),
  };
}

/**
 * Checks a signed-heads record taken from anywhere (a peer, a document, a file) and returns it
 * typed. Refuses (BAD_SIGNATURE) a record for another document, by another key than `writeKey`
 * when one is expected, with a key that does not own the document, or with a bad signature;
 * malformed records are BAD_MESSAGE.
 */
export function verifySignedHeads(
  value: unknown,
  expect: { readonly docId: DocumentId; readonly writeKey?: string },
): SignedHeads {
  const v = value as Partial<Record<keyof SignedHeads, unknown>> | null;
  if (typeof v !== 'object' || v === null) throw bad('not a record');
  const { docId, seq, heads, writeKey, sig } = v;
  if (typeof docId !== 'string' || docId.length > 64) throw bad('bad docId');
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw bad('bad seq');
  if (!Array.isArray(heads) || heads.length > MAX_SIGNED_HEADS) throw bad('bad heads');
  if (!heads.every((h) => isHex(h, HEAD_BYTES))) throw bad('bad head');
  if (!isHex(writeKey, 32) || !isHex(sig, 64)) throw bad('bad key or signature');
  const sorted = [...heads].sort();
  if (sorted.some((h, i) => h !== heads[i] || (i > 0 && h === sorted[i - 1])))
    throw bad('heads not sorted and unique');
  if (docId !== expect.docId)
    throw new FltError('BAD_SIGNATURE', `signed heads are for ${docId}, not ${expect.docId}`);
  if (expect.writeKey !== undefined && writeKey !== expect.writeKey)
    throw new FltError('BAD_SIGNATURE', `signed heads of ${docId} by another key than its writer`);
  const key = Buffer.from(writeKey, 'hex');
  if (docIdFor(key) !== docId)
    throw new FltError('BAD_SIGNATURE', `key ${shortId(writeKey)} does not own ${docId}`);
  if (!verify(Buffer.from(sig, 'hex'), message(docId, seq, sorted), key))
    throw new FltError('BAD_SIGNATURE', `signature over the heads of ${docId} does not verify`);
  return { docId: docId as DocumentId, seq, heads: sorted, writeKey, sig };
}

function bad(what: string): FltError {
  return new FltError('BAD_MESSAGE', `signed heads: ${what}`);
}

/** The newer of two verified records of one document (by seq); `a` when equal. */
export function newer(a: SignedHeads | undefined, b: SignedHeads | undefined) {
  if (!a) return b;
  if (!b) return a;
  return b.seq > a.seq ? b : a;
}

export interface TrustedView<T> {
  /** The document as of the verified heads; undefined when those changes are not here yet. */
  readonly doc: A.Doc<T> | undefined;
  /** Changes are present that no verified signature covers (not shown in `doc`). */
  readonly unverified: boolean;
}

/**
 * The trusted view of `doc` (ARCHITECTURE.md §5): the document at the verified heads, never
 * past them. Without a verified record nothing is trusted, and any content is unverified.
 */
export function trustedView<T>(doc: A.Doc<T>, signed: SignedHeads | undefined): TrustedView<T> {
  const current = A.getHeads(doc);
  if (!signed) return { doc: undefined, unverified: current.length > 0 };
  const heads = [...signed.heads];
  if (!A.hasHeads(doc, heads)) return { doc: undefined, unverified: current.length > 0 };
  const same = current.length === heads.length && current.every((h) => heads.includes(h));
  return { doc: same ? doc : A.view(doc, heads), unverified: !same };
}
