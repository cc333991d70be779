// Admin operations (ARCHITECTURE.md §6): what an admin signs, and how anyone checks it. Whether
// the signer had the right to sign it is the audit trail's business (authority.ts).
//
// An operation's signature covers UTF-8 "flt/v1/admin-op" 0x00 canonicalJson({v, fleet, body, at,
// nonce, signer}), by the signer's node key (its node id is its ed25519 public key).

import { randomBytes } from 'node:crypto';
import { FltError } from '../../sync/errors.js';
import { type NodeId, isNodeId, nodeIdBytes, shortId } from '../../sync/ids.js';
import type { NodeKey } from '../identity/index.js';
import {
  exactRecord,
  isFleetId,
  isHexBytes,
  isIsoTime,
  plainRecord,
  signedMessage,
} from './canonical.js';
import { SIGNATURE_BYTES, assertAdmissibleKey, sign, verify } from '../../sync/ed25519.js';

/** Token ids are 16 random bytes: unguessable, and never repeated by chance. */
export const TOKEN_ID_BYTES = 16;
const OP_DOMAIN = 'flt/v1/admin-op\0';
/** 16 random bytes: two operations never share a nonce by chance. */
const NONCE_BYTES = 16;
const UNSIGNED_KEYS = ['v', 'fleet', 'body', 'at', 'nonce', 'signer'] as const;
const OP_KEYS = [...UNSIGNED_KEYS, 'sig'] as const;
/** What an admin operation does. */
export type OpBody =
  | {
      readonly op: 'admin.add' | 'admin.remove' | 'agent.approve' | 'agent.revoke';
      readonly node: NodeId;
    }
  | { readonly op: 'token.issue'; readonly tokenId: string; readonly expires: string };

/** An admin operation as signed and stored; JSON-safe (hex strings, ISO 8601 UTC times). */
export interface SignedOp {
  readonly v: 1;
  readonly fleet: string;
  readonly body: OpBody;
  readonly at: string;
  /** 16 random bytes as hex; an operation applies once. */
  readonly nonce: string;
  readonly signer: NodeId;
  /** 64-byte ed25519 signature as hex. */
  readonly sig: string;
}

/**
 * Signs `body` for the fleet `fleetId` as `key`, at `now`, with a fresh random nonce.
 * @throws FltError BAD_ARGUMENT when the fleet or body is not one that verifyOp would accept.
 */
export function signOp(body: OpBody, fleetId: string, key: NodeKey, now = new Date()): SignedOp {
  const unsigned = {
    v: 1,
    fleet: fleetId,
    body,
    at: now.toISOString(),
    nonce: randomBytes(NONCE_BYTES).toString('hex'),
    signer: key.nodeId,
  };
  const checked = parseUnsigned(unsigned, 'BAD_ARGUMENT');
  const sig = Buffer.from(sign(signedMessage(OP_DOMAIN, checked), key.secret)).toString('hex');
  return Object.freeze({ ...checked, sig });
}

/**
 * Checks an admin operation taken from anywhere and returns it typed (a fresh, frozen copy).
 * Says nothing of whether the signer may sign it: that is Authority's call.
 * @throws FltError BAD_MESSAGE when malformed, WRONG_FLEET, BAD_SIGNATURE, and BAD_KEY or
 *   SMALL_ORDER_KEY for a signature that verifies only because the signer's key is degenerate.
 */
export function verifyOp(value: unknown, fleetId: string): SignedOp {
  const record = exactRecord(value, OP_KEYS);
  if (record === undefined)
    throw bad(`admin operation: not a record with exactly ${OP_KEYS.join(', ')}`);
  const { sig, ...rest } = record;
  if (!isHexBytes(sig, SIGNATURE_BYTES)) throw bad('admin operation: bad sig');
  const op = parseUnsigned(rest, 'BAD_MESSAGE');
  if (op.fleet !== fleetId)
    throw new FltError('WRONG_FLEET', `admin operation for fleet ${op.fleet}, not ${fleetId}`);
  const key = nodeIdBytes(op.signer);
  if (!verify(Buffer.from(sig, 'hex'), signedMessage(OP_DOMAIN, op), key))
    throw new FltError('BAD_SIGNATURE', `${op.body.op} by ${shortId(op.signer)}: bad signature`);
  assertAdmissibleKey(key, `signer of ${op.body.op}`);
  return Object.freeze({ ...op, sig });
}

function parseUnsigned(
  value: unknown,
  code: 'BAD_MESSAGE' | 'BAD_ARGUMENT',
): Omit<SignedOp, 'sig'> {
  const fail = (what: string) => new FltError(code, `admin operation: ${what}`);
  const r = exactRecord(value, UNSIGNED_KEYS);
  if (r === undefined) throw fail(`not a record with exactly ${UNSIGNED_KEYS.join(', ')}`);
  if (r.v !== 1) throw fail('unsupported version');
  if (!isFleetId(r.fleet)) throw fail('bad fleet');
  const body = parseBody(r.body);
  if (body === undefined) throw fail('bad body');
  if (!isIsoTime(r.at)) throw fail('bad time');
  if (!isHexBytes(r.nonce, NONCE_BYTES)) throw fail('bad nonce');
  if (!isNodeId(r.signer)) throw fail('bad signer');
  return { v: 1, fleet: r.fleet, body, at: r.at, nonce: r.nonce, signer: r.signer };
}

function parseBody(value: unknown): OpBody | undefined {
  const op = plainRecord(value)?.op;
  switch (op) {
    case 'admin.add':
    case 'admin.remove':
    case 'agent.approve':
    case 'agent.revoke': {
      const r = exactRecord(value, ['op', 'node']);
      return r && isNodeId(r.node) ? Object.freeze({ op, node: r.node }) : undefined;
    }
    case 'token.issue': {
      const r = exactRecord(value, ['op', 'tokenId', 'expires']);
      if (!r || !isHexBytes(r.tokenId, TOKEN_ID_BYTES) || !isIsoTime(r.expires)) return undefined;
      return Object.freeze({ op, tokenId: r.tokenId, expires: r.expires });
    }
    default:
      return undefined;
  }
}

function bad(message: string): FltError {
  return new FltError('BAD_MESSAGE', message);
}
