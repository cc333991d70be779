// The authorization model of a fleet (ARCHITECTURE.md §6): who is an admin, which agents are
// approved or revoked, which enrollment tokens (tokens.ts) were issued and used. Every change is
// an admin-signed operation or a token enrollment, appended to an audit trail that anyone who
// knows the initial admins can replay offline (Authority.replay) to re-derive and re-check it all.
// The coordinator keeps the trail but cannot invent it: ops carry admin signatures, and enroll
// entries carry the admin-signed token they consumed.
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
import { SIGNATURE_BYTES, assertAdmissibleKey, sign, verify } from './ed25519.js';
import { TOKEN_ID_BYTES, type TokenPayload, newTokenId, parseToken, signToken } from './tokens.js';

const OP_DOMAIN = 'flt/v1/admin-op\0';
/** 16 random bytes: two operations never share a nonce by chance. */
const NONCE_BYTES = 16;
const UNSIGNED_KEYS = ['v', 'fleet', 'body', 'at', 'nonce', 'signer'] as const;
const OP_KEYS = [...UNSIGNED_KEYS, 'sig'] as const;
const ENROLL_KEYS = ['kind', 'agent', 'tokenId', 'issuer', 'at', 'token'] as const;

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

/** One line of the audit trail; JSON-safe. */
export type AuditEntry =
  | { readonly kind: 'op'; readonly op: SignedOp }
  | {
      readonly kind: 'enroll';
      readonly agent: NodeId;
      readonly tokenId: string;
      readonly issuer: NodeId;
      /** When the coordinator accepted the token. */
      readonly at: string;
      /** The whole token, so that its signature can be checked again on replay. */
      readonly token: string;
    };

export type Role = 'admin' | 'agent' | 'revoked' | 'unknown';
export type AgentStatus = 'approved' | 'revoked';

/**
 * Signs `body` for `fleet` as `key`, at `now`, with a fresh random nonce.
 * @throws FltError BAD_ARGUMENT when the fleet or body is not one that verifyOp would accept.
 */
export function signOp(body: OpBody, fleet: string, key: NodeKey, now = new Date()): SignedOp {
  const unsigned = {
    v: 1,
    fleet,
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
export function verifyOp(value: unknown, fleet: string): SignedOp {
  const record = exactRecord(value, OP_KEYS);
  if (record === undefined)
    throw bad(`admin operation: not a record with exactly ${OP_KEYS.join(', ')}`);
  const { sig, ...rest } = record;
  if (!isHexBytes(sig, SIGNATURE_BYTES)) throw bad('admin operation: bad sig');
  const op = parseUnsigned(rest, 'BAD_MESSAGE');
  if (op.fleet !== fleet)
    throw new FltError('WRONG_FLEET', `admin operation for fleet ${op.fleet}, not ${fleet}`);
  const key = nodeIdBytes(op.signer);
  if (!verify(Buffer.from(sig, 'hex'), signedMessage(OP_DOMAIN, op), key))
    throw new FltError('BAD_SIGNATURE', `${op.body.op} by ${shortId(op.signer)}: bad signature`);
  assertAdmissibleKey(key, `signer of ${op.body.op}`);
  return Object.freeze({ ...op, sig });
}

/**
 * Issues a one-time enrollment token for `opts.fleet`, valid for `expiresInMs` from `now`, and
 * the `token.issue` operation (same id and expiry) that the coordinator must apply before the
 * token enrolls anyone. Lives here rather than in tokens.ts because it signs an operation.
 * @throws FltError BAD_ARGUMENT for a bad fleet, coordinator or lifetime.
 */
export function issueToken(
  opts: { fleet: string; coordinator: NodeId; expiresInMs: number; now?: Date },
  key: NodeKey,
): { token: string; payload: TokenPayload; op: SignedOp } {
  const now = opts.now ?? new Date();
  const expires = new Date(now.getTime() + opts.expiresInMs);
  if (!Number.isSafeInteger(opts.expiresInMs) || opts.expiresInMs <= 0 || Number.isNaN(+expires))
    throw arg('a token lifetime is a positive whole number of ms, and a valid date');
  const payload: TokenPayload = {
    v: 1,
    fleet: opts.fleet,
    coordinator: opts.coordinator,
    id: newTokenId(),
    expires: expires.toISOString(),
    issuer: key.nodeId,
  };
  const token = signToken(payload, key);
  const op = signOp(
    { op: 'token.issue', tokenId: payload.id, expires: payload.expires },
    opts.fleet,
    key,
    now,
  );
  return { token, payload, op };
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

/**
 * The authorization state of one fleet, built only by applying admin operations and token
 * enrollments in trail order. Every method that refuses leaves the state as it was.
 */
export class Authority {
  private readonly current = new Set<NodeId>();
  /** Everyone who was an admin at some point of the trail: who could have issued a token. */
  private readonly everAdmins = new Set<NodeId>();
  /** Removed admins not re-added or re-approved since. */
  private readonly removed = new Set<NodeId>();
  private readonly status = new Map<NodeId, AgentStatus>();
  private readonly nonces = new Set<string>();
  private readonly issued = new Map<string, { issuer: NodeId; expires: string }>();
  private readonly used = new Set<string>();
  private readonly trail: AuditEntry[] = [];

  /** @throws FltError BAD_ARGUMENT (bad fleet, no admin), BAD_KEY, SMALL_ORDER_KEY. */
  constructor(
    readonly fleet: string,
    initialAdmins: readonly NodeId[],
  ) {
    if (!isFleetId(fleet)) throw arg(`not a fleet id: ${JSON.stringify(fleet).slice(0, 80)}`);
    if (initialAdmins.length === 0) throw arg('a fleet needs at least one initial admin');
    for (const admin of initialAdmins) {
      admissible(admin, 'initial admin');
      this.current.add(admin);
      this.everAdmins.add(admin);
    }
  }

  /**
   * Rebuilds the state from an audit trail taken from anywhere (typically a replica of the
   * coordinator's), re-verifying every signature and rule; how an admin checks it offline.
   * Token expiry is not re-checked: the coordinator judged it when the token was used.
   * @throws FltError with the failing entry's code and its index in the message.
   */
  static replay(
    fleet: string,
    initialAdmins: readonly NodeId[],
    entries: readonly unknown[],
  ): Authority {
    const authority = new Authority(fleet, initialAdmins);
    entries.forEach((entry, i) => {
      try {
        authority.replayEntry(entry);
      } catch (err) {
        if (!(err instanceof FltError)) throw err;
        throw new FltError(err.code, `audit entry ${i}: ${err.message}`, { cause: err });
      }
    });
    return authority;
  }

  /** What `node` may do now. An admin who is also an approved agent is 'admin'. */
  role(node: NodeId): Role {
    if (this.current.has(node)) return 'admin';
    if (this.removed.has(node)) return 'revoked';
    const status = this.status.get(node);
    return status === 'approved' ? 'agent' : (status ?? 'unknown');
  }

  /** The current admins, sorted. */
  admins(): NodeId[] {
    return [...this.current].sort();
  }

  /** Every node an agent operation or enrollment named, with its status, sorted by node. */
  agents(): { node: NodeId; status: AgentStatus }[] {
    return [...this.status]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([node, status]) => ({ node, status }));
  }

  /** The trail applied so far, in order (entries are frozen). */
  entries(): readonly AuditEntry[] {
    return [...this.trail];
  }

  /**
   * Throws, changing nothing, if `op` cannot apply now: verifyOp's codes, then OP_REPLAYED (nonce
   * or token id seen), NOT_ADMIN (signer), BAD_KEY / SMALL_ORDER_KEY (node added or approved),
   * BAD_ARGUMENT (an operation that would change nothing, remove the last admin, or issue a token
   * that expires before it is issued).
   */
  check(op: SignedOp): void {
    this.rules(verifyOp(op, this.fleet));
  }

  /** check() then applies `op`; returns the entry to append to the trail. */
  apply(op: SignedOp): AuditEntry {
    const verified = verifyOp(op, this.fleet);
    this.rules(verified);
    return this.commitOp(verified);
  }

  /**
   * Enrolls `agent` with a one-time token at `now`; returns the entry to append to the trail.
   * Refuses, changing nothing, in this order: BAD_MESSAGE (malformed), TOKEN_OTHER_FLEET,
   * TOKEN_FORGED (bad signature, or the issuer never was an admin), TOKEN_FORGED (never issued
   * in this trail, or its issuer is no longer an admin), TOKEN_EXPIRED, TOKEN_REUSED; then for the
   * agent: BAD_KEY / SMALL_ORDER_KEY, REVOKED (only an admin's agent.approve undoes a revocation,
   * never a token), BAD_ARGUMENT (already an admin or agent). Before all of them, BAD_ARGUMENT
   * when `agent` is not a node id or `now` is not a date between years 0 and 9999.
   */
  useToken(token: string, agent: NodeId, now = new Date()): AuditEntry {
    if (Number.isNaN(now.getTime()) || !isIsoTime(now.toISOString())) throw arg('bad date');
    if (!isNodeId(agent)) throw arg('the agent is not a node id');
    const entry = this.enrollment(token, agent, now.toISOString(), true);
    return this.commitEnroll(entry);
  }

  private replayEntry(value: unknown): void {
    const kind = plainRecord(value)?.kind;
    if (kind === 'op') {
      const r = exactRecord(value, ['kind', 'op']);
      if (r === undefined) throw bad('audit entry: not an op entry with exactly kind, op');
      const op = verifyOp(r.op, this.fleet);
      this.rules(op);
      this.commitOp(op);
      return;
    }
    const r = kind === 'enroll' ? exactRecord(value, ENROLL_KEYS) : undefined;
    if (r === undefined)
      throw bad(`audit entry: neither an op nor an enroll entry (${ENROLL_KEYS.join(', ')})`);
    const { agent, tokenId, issuer, at, token } = r;
    if (!isNodeId(agent) || !isNodeId(issuer) || !isHexBytes(tokenId, TOKEN_ID_BYTES))
      throw bad('enroll entry: bad agent, issuer or token id');
    if (!isIsoTime(at) || typeof token !== 'string') throw bad('enroll entry: bad time or token');
    const entry = this.enrollment(token, agent, at, false);
    if (entry.tokenId !== tokenId || entry.issuer !== issuer)
      throw bad('enroll entry: token id or issuer differs from its token');
    this.commitEnroll(entry);
  }

  private rules(op: SignedOp): void {
    const { body } = op;
    if (this.nonces.has(op.nonce)) throw new FltError('OP_REPLAYED', `${body.op}: already applied`);
    if (!this.current.has(op.signer))
      throw new FltError('NOT_ADMIN', `${body.op}: ${shortId(op.signer)} is not an admin`);
    switch (body.op) {
      case 'admin.add':
        admissible(body.node, 'admin.add');
        if (this.current.has(body.node)) throw arg(`${shortId(body.node)} is already an admin`);
        return;
      case 'admin.remove':
        if (!this.current.has(body.node)) throw arg(`${shortId(body.node)} is not an admin`);
        if (this.current.size === 1) throw arg('cannot remove the last admin');
        return;
      case 'agent.approve':
        admissible(body.node, 'agent.approve');
        if (this.status.get(body.node) === 'approved')
          throw arg(`${shortId(body.node)} is already approved`);
        return;
      case 'agent.revoke':
        if (this.status.get(body.node) === 'revoked')
          throw arg(`${shortId(body.node)} is already revoked`);
        return;
      case 'token.issue':
        if (Date.parse(body.expires) <= Date.parse(op.at))
          throw arg('token.issue: expires must be after the operation time');
        if (this.issued.has(body.tokenId))
          throw new FltError('OP_REPLAYED', 'token.issue: token id already issued');
        return;
    }
  }

  private commitOp(op: SignedOp): AuditEntry {
    const { body } = op;
    this.nonces.add(op.nonce);
    switch (body.op) {
      case 'admin.add':
        this.current.add(body.node);
        this.everAdmins.add(body.node);
        this.removed.delete(body.node);
        break;
      case 'admin.remove':
        // A removed admin keeps no standing, not even as an agent, until an admin restores it.
        this.current.delete(body.node);
        this.removed.add(body.node);
        if (this.status.get(body.node) === 'approved') this.status.set(body.node, 'revoked');
        break;
      case 'agent.approve':
        this.status.set(body.node, 'approved');
        this.removed.delete(body.node);
        break;
      case 'agent.revoke':
        this.status.set(body.node, 'revoked');
        break;
      case 'token.issue':
        this.issued.set(body.tokenId, { issuer: op.signer, expires: body.expires });
        break;
    }
    return this.append({ kind: 'op', op });
  }

  /** The enroll entry for `agent` using `token` at `at`, or the reason it cannot be. */
  private enrollment(token: string, agent: NodeId, at: string, checkExpiry: boolean) {
    const { payload, signatureValid } = parseToken(token);
    // The fleet first: a token of another fleet (whoever signed it) is named as such.
    if (payload.fleet !== this.fleet)
      throw new FltError(
        'TOKEN_OTHER_FLEET',
        `token for fleet ${payload.fleet}, not ${this.fleet}`,
      );
    if (!signatureValid || !this.everAdmins.has(payload.issuer))
      throw forged('not signed by an admin of this fleet');
    const issued = this.issued.get(payload.id);
    if (issued === undefined) throw forged('never issued (no token.issue in the audit trail)');
    if (issued.issuer !== payload.issuer || issued.expires !== payload.expires)
      throw forged('differs from its token.issue operation');
    if (!this.current.has(payload.issuer)) throw forged('its issuer is no longer an admin');
    if (checkExpiry && Date.parse(at) > Date.parse(payload.expires))
      throw new FltError('TOKEN_EXPIRED', `token expired at ${payload.expires}`);
    if (this.used.has(payload.id)) throw new FltError('TOKEN_REUSED', 'token already used');
    admissible(agent, 'enrolling agent');
    const role = this.role(agent);
    if (role === 'revoked') throw new FltError('REVOKED', `${shortId(agent)} is revoked`);
    if (role !== 'unknown') throw arg(`${shortId(agent)} is already an ${role}`);
    return {
      kind: 'enroll',
      agent,
      tokenId: payload.id,
      issuer: payload.issuer,
      at,
      token,
    } as const;
  }

  private commitEnroll(entry: Extract<AuditEntry, { kind: 'enroll' }>): AuditEntry {
    this.used.add(entry.tokenId);
    this.status.set(entry.agent, 'approved');
    return this.append(entry);
  }

  private append(entry: AuditEntry): AuditEntry {
    const frozen = Object.freeze(entry);
    this.trail.push(frozen);
    return frozen;
  }
}

function admissible(node: NodeId, what: string): void {
  if (!isNodeId(node)) throw arg(`${what}: not a node id`);
  assertAdmissibleKey(nodeIdBytes(node), `${what} ${shortId(node)}`);
}

function arg(message: string): FltError {
  return new FltError('BAD_ARGUMENT', message);
}

function bad(message: string): FltError {
  return new FltError('BAD_MESSAGE', message);
}

function forged(why: string): FltError {
  return new FltError('TOKEN_FORGED', `enrollment token ${why}`);
}
