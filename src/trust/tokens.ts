// One-time enrollment tokens (ARCHITECTURE.md §6): a short text an admin signs and hands to a new
// node, which presents it to the coordinator to enroll as an agent. This module owns the text
// form only. What makes a token count (issued in the audit trail, issuer still an admin, not
// expired, used once) is decided by Authority.useToken in authority.ts.
//
// Text form: "flt-enroll-1." base64url(canonicalJson(payload)) "." base64url(64-byte signature),
// the signature by the issuer's node key over UTF-8 "flt/v1/enroll-token" 0x00 canonicalJson(payload).

import { randomBytes } from 'node:crypto';
import { FltError } from '../../sync/errors.js';
import { type NodeId, isNodeId, nodeIdBytes } from '../../sync/ids.js';
import type { NodeKey } from '../identity/index.js';
import {
  canonicalJson,
  exactRecord,
  isFleetId,
  isHexBytes,
  isIsoTime,
  signedMessage,
} from './canonical.js';
import { TOKEN_ID_BYTES, signOp, type SignedOp } from './admin-ops.js';
import { SIGNATURE_BYTES, sign, verify } from '../../sync/ed25519.js';

export const TOKEN_PREFIX = 'flt-enroll-1.';
/**
 * A token with the longest fleet id (MAX_FLEET_LENGTH) is about 610 characters; 1024 leaves room
 * for JSON escapes and bounds the work done on untrusted text before anything is decoded.
 */
export const MAX_TOKEN_LENGTH = 1024;
export { TOKEN_ID_BYTES };

const DOMAIN = 'flt/v1/enroll-token\0';
const PAYLOAD_KEYS = ['v', 'fleet', 'coordinator', 'id', 'expires', 'issuer'] as const;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** What a token says; JSON-safe. */
export interface TokenPayload {
  readonly v: 1;
  /** The fleet (coordinator's root document id) the token enrolls into. */
  readonly fleet: string;
  /** The coordinator to dial with it. */
  readonly coordinator: NodeId;
  /** TOKEN_ID_BYTES random bytes as hex; the same id as the `token.issue` operation's. */
  readonly id: string;
  /** When it stops enrolling (ISO 8601, UTC, as `Date#toISOString` writes it). */
  readonly expires: string;
  /** The admin who signed it. */
  readonly issuer: NodeId;
}

/** A token that is well formed; whether it counts is Authority.useToken's decision. */
export interface ParsedToken {
  readonly payload: TokenPayload;
  /** The signature is the payload issuer's over the payload (says nothing of who the issuer is). */
  readonly signatureValid: boolean;
}

/** A fresh random token id. */
export function newTokenId(): string {
  return randomBytes(TOKEN_ID_BYTES).toString('hex');
}

/**
 * The text form of `payload`, signed with `key`.
 * @throws FltError BAD_ARGUMENT when `key` is not the payload's issuer or the payload is invalid.
 */
export function signToken(payload: TokenPayload, key: NodeKey): string {
  const checked = checkPayload(payload, 'BAD_ARGUMENT');
  if (checked.issuer !== key.nodeId)
    throw new FltError('BAD_ARGUMENT', 'a token is signed by its issuer, not another key');
  const json = Buffer.from(canonicalJson(checked)).toString('base64url');
  const sig = Buffer.from(sign(signedMessage(DOMAIN, checked), key.secret)).toString('base64url');
  return `${TOKEN_PREFIX}${json}.${sig}`;
}

/**
 * Parses a token taken from anyone and checks its signature against the issuer it names.
 * Refuses (BAD_MESSAGE) anything but the one text form: too long, wrong prefix, non-canonical
 * base64url or JSON, missing, extra or malformed fields. Never throws for a bad signature.
 */
export function parseToken(text: unknown): ParsedToken {
  if (typeof text !== 'string') throw bad('not a string');
  if (text.length > MAX_TOKEN_LENGTH) throw bad(`longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!text.startsWith(TOKEN_PREFIX)) throw bad(`does not start with ${TOKEN_PREFIX}`);
  const parts = text.slice(TOKEN_PREFIX.length).split('.');
  if (parts.length !== 2) throw bad('not two dot-separated parts after the prefix');
  const json = base64url(parts[0] ?? '');
  const sig = base64url(parts[1] ?? '');
  if (sig.length !== SIGNATURE_BYTES) throw bad(`a signature has ${SIGNATURE_BYTES} bytes`);
  const payload = checkPayload(parseJson(json), 'BAD_MESSAGE');
  if (canonicalJson(payload) !== json.toString('utf8')) throw bad('payload not canonical JSON');
  const message = signedMessage(DOMAIN, payload);
  return { payload, signatureValid: verify(sig, message, nodeIdBytes(payload.issuer)) };
}

/** Strict base64url: no padding, no other alphabet, and the one encoding of its bytes. */
function base64url(part: string): Buffer {
  if (!BASE64URL.test(part)) throw bad('not base64url');
  const bytes = Buffer.from(part, 'base64url');
  if (bytes.toString('base64url') !== part) throw bad('not canonical base64url');
  return bytes;
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw bad('payload is not UTF-8 JSON', err);
  }
}

function checkPayload(value: unknown, code: 'BAD_MESSAGE' | 'BAD_ARGUMENT'): TokenPayload {
  const p = exactRecord(value, PAYLOAD_KEYS);
  const fail = (what: string) => new FltError(code, `enrollment token: ${what}`);
  if (p === undefined) throw fail(`not a payload with exactly ${PAYLOAD_KEYS.join(', ')}`);
  const { v, fleet, coordinator, id, expires, issuer } = p;
  if (v !== 1) throw fail('unsupported version');
  if (!isFleetId(fleet)) throw fail('bad fleet');
  if (!isNodeId(coordinator)) throw fail('bad coordinator');
  if (!isHexBytes(id, TOKEN_ID_BYTES)) throw fail('bad id');
  if (!isIsoTime(expires)) throw fail('bad expiry');
  if (!isNodeId(issuer)) throw fail('bad issuer');
  return Object.freeze({ v, fleet, coordinator, id, expires, issuer });
}

function bad(what: string, cause?: unknown): FltError {
  return new FltError('BAD_MESSAGE', `enrollment token: ${what}`, { cause });
}

/**
 * Issues a one-time enrollment token for `opts.fleetId`, valid for `expiresInMs` from `now`, and
 * the `token.issue` operation (same id and expiry) that the coordinator must apply before the
 * token enrolls anyone.
 * @throws FltError BAD_ARGUMENT for a bad fleet, coordinator or lifetime.
 */
export function issueToken(
  opts: { fleetId: string; coordinator: NodeId; expiresInMs: number; now?: Date },
  key: NodeKey,
): { token: string; payload: TokenPayload; op: SignedOp } {
  const now = opts.now ?? new Date();
  const expires = new Date(now.getTime() + opts.expiresInMs);
  if (!Number.isSafeInteger(opts.expiresInMs) || opts.expiresInMs <= 0 || Number.isNaN(+expires))
    throw new FltError(
      'BAD_ARGUMENT',
      'a token lifetime is a positive whole number of ms, and a valid date',
    );
  const payload: TokenPayload = {
    v: 1,
    fleet: opts.fleetId,
    coordinator: opts.coordinator,
    id: newTokenId(),
    expires: expires.toISOString(),
    issuer: key.nodeId,
  };
  const token = signToken(payload, key);
  const op = signOp(
    { op: 'token.issue', tokenId: payload.id, expires: payload.expires },
    opts.fleetId,
    key,
    now,
  );
  return { token, payload, op };
}
