// Branded identifiers, parsed once at the edge (CLI, config, wire) and trusted inside.

import { Point } from '@noble/ed25519';
import { FltError } from './errors.js';

/** An iroh endpoint id: the ed25519 public key of a node, 64 lowercase hex characters. */
export type NodeId = string & { readonly __brand: 'NodeId' };

const NODE_ID_RE = /^[0-9a-f]{64}$/;

export function isNodeId(value: unknown): value is NodeId {
  return typeof value === 'string' && NODE_ID_RE.test(value);
}

/**
 * Parses a node id typed by a person or read from the wire: 64 hex characters that encode an
 * ed25519 public key (RFC 8032: a canonical encoding of a curve point, not of small order).
 * About half of all 64-hex strings are not, `ff…ff` among them; the binding accepts some of those
 * and a dial then fails late with CONNECT_FAILED, so they are refused here, at the edge.
 * (sync/ed25519.ts holds the signature rules; the same checks here answer BAD_NODE_ID, the code
 * a mistyped node id gets.)
 */
export function parseNodeId(value: string): NodeId {
  const lower = value.trim().toLowerCase();
  if (!isNodeId(lower)) {
    throw new FltError(
      'BAD_NODE_ID',
      `not a node id (64 hex characters): ${JSON.stringify(value)}`,
    );
  }
  let point: Point;
  try {
    point = Point.fromHex(lower, false);
  } catch (err) {
    throw new FltError('BAD_NODE_ID', `${shortId(lower)}… is not an ed25519 public key`, {
      cause: err,
    });
  }
  if (point.isSmallOrder())
    throw new FltError('BAD_NODE_ID', `${shortId(lower)}… is a small-order point, no node's key`);
  return lower;
}

/**
 * A node id from a source that already proved it is a key (the peer a connection authenticated,
 * our own endpoint): its form is checked, the curve point is not decoded again on every
 * connection.
 */
export function authenticatedNodeId(value: string): NodeId {
  if (!isNodeId(value))
    throw new FltError('BAD_NODE_ID', `not a node id: ${JSON.stringify(value.slice(0, 80))}`);
  return value;
}

export function nodeIdFromBytes(bytes: Uint8Array): NodeId {
  if (bytes.length !== 32)
    throw new FltError('BAD_NODE_ID', `a node id has 32 bytes, got ${bytes.length}`);
  return Buffer.from(bytes).toString('hex') as NodeId;
}

export function nodeIdBytes(id: NodeId): Uint8Array {
  return new Uint8Array(Buffer.from(id, 'hex'));
}

/**
 * The short form people read in tables and logs (same length as iroh's fmtShort), of a node id or
 * of anything spelled like one (a peer id, a write key).
 */
export function shortId(id: string): string {
  return id.slice(0, 10);
}
