// The one ed25519 implementation and the one verification rule of flt (ARCHITECTURE.md §3):
// @noble/ed25519 with RFC 8032 verification (not ZIP-215: non-canonical encodings are refused),
// and public keys checked when first admitted: a small-order key (one of the eight torsion
// points, whose "signatures" verify for many messages) is never accepted as anyone's key.

import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { FltError } from './errors.js';

// @noble/ed25519 v3 needs a synchronous sha512 for its sync API.
ed.hashes.sha512 ??= sha512;

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** The public key of a 32-byte ed25519 secret (seed). */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  return ed.getPublicKey(secret);
}

/** Signs `message` with a 32-byte ed25519 secret (seed). Deterministic (RFC 8032). */
export function sign(message: Uint8Array, secret: Uint8Array): Uint8Array {
  return ed.sign(message, secret);
}

/**
 * Whether `signature` is `publicKey`'s RFC 8032 signature of `message`. Malformed input of any
 * kind (wrong lengths, a key that is not a curve point, a non-canonical S) is false, never a throw.
 */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * Refuses a public key that must never stand for a node or a document writer: not 32 bytes,
 * not a canonical encoding of a curve point (BAD_KEY), or of small order (SMALL_ORDER_KEY).
 * Run it wherever a key is first admitted: enrollment, adding an admin, a token's issuer.
 */
export function assertAdmissibleKey(publicKey: Uint8Array, what: string): void {
  if (publicKey.length !== PUBLIC_KEY_BYTES)
    throw new FltError('BAD_KEY', `${what}: a public key has 32 bytes, not ${publicKey.length}`);
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(publicKey, false);
  } catch (err) {
    throw new FltError('BAD_KEY', `${what}: not an ed25519 public key`, { cause: err });
  }
  if (point.isSmallOrder())
    throw new FltError('SMALL_ORDER_KEY', `${what}: a small-order public key is never accepted`);
}
