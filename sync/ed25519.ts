// The one ed25519 implementation and the one verification rule of flt (ARCHITECTURE.md §3):
// @noble/ed25519 with RFC 8032 verification (not ZIP-215: non-canonical encodings are refused),
// and public keys checked when first admitted: a small-order key (one of the eight torsion
// points, whose "signatures" verify for many messages) is never accepted as anyone's key.
//
// Speed (issue 13): signing and verifying go through node:crypto (OpenSSL) first, ~15x faster
// than pure JS (a coordinator verifies a signature per agent heartbeat and enrollment). The rule
// stays noble's, exactly:
// - OpenSSL signs deterministically (RFC 8032): the same bytes as noble.
// - A key is decoded once by noble (canonical, not small order) before OpenSSL sees it; a key
//   noble refuses verifies nothing.
// - OpenSSL checks the cofactorless equation ([S]B = R + [k]A, S < L, R compared byte for byte,
//   so R canonical): what it accepts, noble's cofactored equation accepts too. What it refuses
//   is asked of noble again, so that the few signatures valid only under the cofactored equation
//   (made on purpose by a key's holder) get noble's answer. Only invalid signatures pay twice.

import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import {
  createPrivateKey,
  createPublicKey,
  sign as sslSign,
  verify as sslVerify,
  type KeyObject,
} from 'node:crypto';
import { FltError } from './errors.js';

// @noble/ed25519 v3 needs a synchronous sha512 for its sync API.
ed.hashes.sha512 ??= sha512;

export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/**
 * Raw keys go to OpenSSL as JWK, not DER: the same key for ~13x less (OpenSSL 3's DER decoders
 * cost 0.32 ms for a public key and 0.45 ms for a private one, JWK 0.02-0.05 ms); an agent's
 * start and a fan-in's key admissions paid it for every key (issue 13). A private JWK needs an
 * `x`, which Node does not read (OpenSSL derives the public key from `d`, checked against noble
 * by the tests); should a Node ever refuse the empty one, the DER form is used instead.
 */
const PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
let privateJwk = true;

function privateKeyObject(secret: Uint8Array): KeyObject {
  if (privateJwk) {
    const d = Buffer.from(secret).toString('base64url');
    try {
      return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x: '' }, format: 'jwk' });
    } catch {
      privateJwk = false;
    }
  }
  return createPrivateKey({ key: Buffer.concat([PKCS8, secret]), format: 'der', type: 'pkcs8' });
}

/**
 * The public key of a 32-byte ed25519 secret (seed), through OpenSSL: the same bytes as noble's
 * getPublicKey (RFC 8032), without building noble's tables, which cost a short command (every
 * `flt admin` derives its keys) 50-100 ms.
 */
export function publicKeyOf(secret: Uint8Array): Uint8Array {
  if (secret.length !== 32) return ed.getPublicKey(secret); // noble's error for a bad seed
  const { x } = createPublicKey(privateKeyObject(secret)).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(x!, 'base64url'));
}

/**
 * Keys as OpenSSL objects (importing costs about as much as a verification), by hex; null: a
 * public key noble refuses. Bounded: the oldest goes when full (a coordinator's fleet of agents
 * each verified once a heartbeat stays in it up to this size).
 */
const KEYS_MAX = 16_384;
const publicKeys = new Map<string, KeyObject | null>();
const privateKeys = new Map<string, KeyObject>();

function remember<V>(map: Map<string, V>, key: string, value: V): V {
  if (map.size >= KEYS_MAX) map.delete(map.keys().next().value!);
  map.set(key, value);
  return value;
}

function publicKeyObject(publicKey: Uint8Array): KeyObject | null {
  const id = Buffer.from(publicKey).toString('hex');
  const known = publicKeys.get(id);
  if (known !== undefined) return known;
  let key: KeyObject | null = null;
  try {
    if (!ed.Point.fromBytes(publicKey, false).isSmallOrder())
      key = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
        format: 'jwk',
      });
  } catch {
    key = null;
  }
  return remember(publicKeys, id, key);
}

/** Signs `message` with a 32-byte ed25519 secret (seed). Deterministic (RFC 8032). */
export function sign(message: Uint8Array, secret: Uint8Array): Uint8Array {
  if (secret.length !== 32) return ed.sign(message, secret); // noble's error for a bad seed
  const id = Buffer.from(secret).toString('hex');
  const key = privateKeys.get(id) ?? remember(privateKeys, id, privateKeyObject(secret));
  return new Uint8Array(sslSign(null, message, key));
}

/**
 * Whether `signature` is `publicKey`'s RFC 8032 signature of `message`. Malformed input of any
 * kind (wrong lengths, a key that is not a curve point, a non-canonical S) is false, never a throw.
 */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false;
  try {
    const key = publicKeyObject(publicKey);
    if (key === null) return false;
    if (sslVerify(null, message, key, signature)) return true;
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * Refuses a public key that must never stand for a node or a document writer: not 32 bytes,
 * not a canonical encoding of a curve point (BAD_KEY), or of small order (SMALL_ORDER_KEY).
 * Run it wherever a key is first admitted: enrollment, adding an admin, a token's issuer.
 * A key the verification's cache holds as usable was admitted before and is not decoded again:
 * every agent enrolls again on each reconnect, and decoding a point in pure JS costs ~0.2 ms, so
 * a coordinator restarted with 1,000 agents spent 0.4 s of its first seconds on it (issue 13).
 * The keys admitted here are the ones signatures are later verified with.
 */
export function assertAdmissibleKey(publicKey: Uint8Array, what: string): void {
  if (publicKey.length !== PUBLIC_KEY_BYTES)
    throw new FltError('BAD_KEY', `${what}: a public key has 32 bytes, not ${publicKey.length}`);
  if (publicKeyObject(publicKey) !== null) return;
  // Refused (or not importable): decoded again, for the reason.
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(publicKey, false);
  } catch (err) {
    throw new FltError('BAD_KEY', `${what}: not an ed25519 public key`, { cause: err });
  }
  if (point.isSmallOrder())
    throw new FltError('SMALL_ORDER_KEY', `${what}: a small-order public key is never accepted`);
}
