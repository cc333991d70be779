// Sub-keys derived from the node secret with HKDF-SHA256 (RFC 5869): one per purpose, so the same
// node key always yields the same document write keys and author key (a reinstalled agent with
// its old node.key owns its old documents again). ed25519 math is in openssh.ts.

import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import { ed25519PublicKey } from './openssh.js';

/**
 * The HKDF info strings, one per purpose. They are part of the on-disk and on-wire identity:
 * changing or reusing one changes every derived key, so nodes would lose ownership of their
 * documents. Never edit an entry; add a new one (with a new version) instead.
 */
export const DERIVE_PURPOSES = [
  'flt/v1/doc/facts',
  'flt/v1/doc/status',
  'flt/v1/doc/root',
  'flt/v1/author',
  'flt/v1/doc/audit',
  'flt/v1/doc/desired',
  'flt/v1/doc/outbox',
  'flt/v1/doc/admins',
] as const;

export type DerivePurpose = (typeof DERIVE_PURPOSES)[number];

/** HKDF salt, fixed for the same reason as the info strings. */
const DERIVE_SALT = new TextEncoder().encode('flt/v1/derive');
const SEED_BYTES = 32;

/**
 * The 32-byte ed25519 seed for `purpose`, derived from the node's 32-byte secret.
 * Deterministic; different purposes give independent keys.
 */
export function deriveSeed(nodeSecret: Uint8Array, purpose: DerivePurpose): Uint8Array {
  return derive(nodeSecret, purpose, purpose);
}

/**
 * The 32-byte ed25519 seed for `purpose` on behalf of node `nodeId` (HKDF info
 * `purpose + "\0" + nodeId`): one key per (purpose, node) from a single secret, as the
 * coordinator writes one desired document per agent. Deterministic; distinct per node.
 */
export function deriveSeedFor(
  nodeSecret: Uint8Array,
  purpose: DerivePurpose,
  nodeId: NodeId,
): Uint8Array {
  if (!isNodeId(nodeId)) throw new TypeError(`not a node id: ${JSON.stringify(nodeId)}`);
  return derive(nodeSecret, purpose, `${purpose}\0${nodeId}`);
}

function derive(nodeSecret: Uint8Array, purpose: DerivePurpose, info: string): Uint8Array {
  // Both checks guard against callers outside the type system; a failure is a bug, not input.
  if (nodeSecret.length !== SEED_BYTES) {
    throw new RangeError(`node secret must be ${SEED_BYTES} bytes, got ${nodeSecret.length}`);
  }
  if (!(DERIVE_PURPOSES as readonly string[]).includes(purpose)) {
    throw new TypeError(`unknown derive purpose: ${JSON.stringify(purpose)}`);
  }
  return hkdf(sha256, nodeSecret, DERIVE_SALT, new TextEncoder().encode(info), SEED_BYTES);
}

/** An ed25519 key pair: the 32-byte seed and its public key. */
export interface KeyPair {
  readonly secret: Uint8Array;
  readonly publicKey: Uint8Array;
}

/** The ed25519 key pair for `purpose`: the derived seed and its public key. */
export function deriveKeyPair(nodeSecret: Uint8Array, purpose: DerivePurpose): KeyPair {
  const secret = deriveSeed(nodeSecret, purpose);
  return { secret, publicKey: ed25519PublicKey(secret) };
}

/** The ed25519 key pair for `purpose` on behalf of `nodeId` (deriveSeedFor). */
export function deriveKeyPairFor(
  nodeSecret: Uint8Array,
  purpose: DerivePurpose,
  nodeId: NodeId,
): KeyPair {
  const secret = deriveSeedFor(nodeSecret, purpose, nodeId);
  return { secret, publicKey: ed25519PublicKey(secret) };
}
