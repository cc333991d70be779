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
  | { readonly op: 'token.issue'; readonly tokenId: string; readonly expires: string }
  | {
      readonly op: 'agent.label';
      readonly node: NodeId;
      /** Labels to set, or to remove (null); 1 to MAX_LABELS of them, keys sorted. */
      readonly labels: Readonly<Record<string, string | null>>;
    };

/**
 * At most this many labels per agent (and per agent.label operation): enough to describe a
 * machine's roles, and it bounds the agent's root record (~32 x 200 bytes).
 */
export const MAX_LABELS = 32;
/** Longest label value: printable ASCII, so that what an admin types is what it matches. */
export const MAX_LABEL_VALUE = 128;
const LABEL_KEY = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
const LABEL_VALUE = /^[\x20-\x7e]+$/;

/** Whether `value` is a label key: 1 to 63 of [a-z0-9._/-], starting with a letter or digit. */
export function isLabelKey(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 63 && LABEL_KEY.test(value);
}

/** Whether `value` is a label value: 1 to MAX_LABEL_VALUE printable ASCII characters. */
export function isLabelValue(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_LABEL_VALUE && LABEL_VALUE.test(value);
}

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
    case 'agent.label': {
      const r = exactRecord(value, ['op', 'node', 'labels']);
      const labels = r && parseLabelChanges(r.labels);
      return r && isNodeId(r.node) && labels
        ? Object.freeze({ op, node: r.node, labels })
        : undefined;
    }
    default:
      return undefined;
  }
}

/** 1 to MAX_LABELS label changes (key -> value, or null to remove), as a frozen sorted copy. */
function parseLabelChanges(value: unknown): Readonly<Record<string, string | null>> | undefined {
  const r = plainRecord(value);
  if (r === undefined) return undefined;
  const keys = Object.keys(r);
  if (keys.length === 0 || keys.length > MAX_LABELS) return undefined;
  const out: Record<string, string | null> = {};
  for (const key of keys.sort()) {
    const v = r[key];
    if (!isLabelKey(key) || (v !== null && !isLabelValue(v))) return undefined;
    out[key] = v;
  }
  return Object.freeze(out);
}

function bad(message: string): FltError {
  return new FltError('BAD_MESSAGE', message);
}
