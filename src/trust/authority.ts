// The authorization model of a fleet (ARCHITECTURE.md §6): who is an admin, which agents are
// approved or revoked, which enrollment tokens (tokens.ts) were issued and used. Every change is
// an admin-signed operation or a token enrollment, appended to an audit trail that anyone who
// knows the initial admins can replay offline (Authority.replay) to re-derive and re-check it all.
// The coordinator keeps the trail but cannot invent it: ops carry admin signatures, and enroll
// entries carry the admin-signed token they consumed.
// The operations themselves are in admin-ops.ts, the token format in tokens.ts.

import { FltError } from '../../sync/errors.js';
import { type NodeId, isNodeId, nodeIdBytes, shortId } from '../../sync/ids.js';
import { exactRecord, isFleetId, isHexBytes, isIsoTime, plainRecord } from './canonical.js';
import { assertAdmissibleKey } from '../../sync/ed25519.js';
import { TOKEN_ID_BYTES, parseToken } from './tokens.js';
import { verifyOp, type SignedOp } from './admin-ops.js';

const ENROLL_KEYS = ['kind', 'agent', 'tokenId', 'issuer', 'at', 'token'] as const;

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
    readonly fleetId: string,
    initialAdmins: readonly NodeId[],
  ) {
    if (!isFleetId(fleetId)) throw arg(`not a fleet id: ${JSON.stringify(fleetId).slice(0, 80)}`);
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
    fleetId: string,
    initialAdmins: readonly NodeId[],
    entries: readonly unknown[],
  ): Authority {
    const authority = new Authority(fleetId, initialAdmins);
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
   * Applies `op`; returns the entry to append to the trail. Throws, changing nothing, if `op`
   * cannot apply now: verifyOp's codes, then OP_REPLAYED (nonce or token id seen), NOT_ADMIN
   * (signer), BAD_KEY / SMALL_ORDER_KEY (node added or approved), BAD_ARGUMENT (an operation that
   * would change nothing, remove the last admin, or issue a token that expires before it is issued).
   */
  apply(op: SignedOp): AuditEntry {
    const verified = verifyOp(op, this.fleetId);
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
      const op = verifyOp(r.op, this.fleetId);
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
    if (payload.fleet !== this.fleetId)
      throw new FltError(
        'TOKEN_OTHER_FLEET',
        `token for fleet ${payload.fleet}, not ${this.fleetId}`,
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
