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
import { MAX_LABELS, verifyOp, type SignedOp } from './admin-ops.js';
import { type SignedPart, partDigest, verifyPart } from './deployment.js';

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
    }
  /** One part of a signed deployment (deployment.ts), recorded when the coordinator took it. */
  | { readonly kind: 'deploy'; readonly part: SignedPart };

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
  private readonly labelsOf = new Map<NodeId, Readonly<Record<string, string>>>();
  /** Recorded deployment parts: `${id}/${part}` -> digest and trail index. */
  private readonly deployed = new Map<string, { digest: string; index: number }>();
  /** What every part of a deployment id must share with its first recorded part. */
  private readonly deployments = new Map<string, string>();
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

  /** The labels of `node` (agent.label operations), keys sorted; {} when none. */
  labels(node: NodeId): Readonly<Record<string, string>> {
    return this.labelsOf.get(node) ?? {};
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

  /**
   * Records one deployment part (deployment.ts) taken from anywhere, at `now`. Idempotent: the
   * same part again (same digest) appends nothing and answers the index it was recorded at
   * (`fresh` false), so an admin's outbox may resubmit. Refuses, changing nothing: verifyPart's
   * codes, NOT_ADMIN (the signer is not an admin now), DEPLOYMENT_EXPIRED (expires < now),
   * OP_REPLAYED (the same id and part number with other content, or a part that does not agree
   * with the deployment's other parts on store path, action, times, signer or part count).
   */
  recordDeploy(
    value: unknown,
    now = new Date(),
  ): { entry: AuditEntry; index: number; fresh: boolean } {
    const { part, recorded } = this.checkDeploy(value, now);
    if (recorded !== undefined)
      return { entry: this.trail[recorded]!, index: recorded, fresh: false };
    const index = this.trail.length;
    return { entry: this.commitDeploy(part), index, fresh: true };
  }

  /**
   * recordDeploy's checks without recording anything: the part verified, and `recorded` the
   * index it is recorded at when the trail holds it already (the same digest: accepted whoever
   * signed it and whenever it expires, so a resubmission after the signer's removal still
   * answers). Otherwise the rules and codes of recordDeploy, against the trail as it is now.
   */
  checkDeploy(value: unknown, now = new Date()): { part: SignedPart; recorded?: number } {
    if (Number.isNaN(now.getTime())) throw arg('bad date');
    const part = verifyPart(value, this.fleetId);
    const seen = this.deployed.get(`${part.id}/${part.part}`);
    if (seen?.digest === partDigest(part)) return { part, recorded: seen.index };
    this.deployRules(part);
    if (Date.parse(part.expires) < now.getTime())
      throw new FltError('DEPLOYMENT_EXPIRED', `deployment expired at ${part.expires}`);
    return { part };
  }

  private replayEntry(value: unknown): void {
    const kind = plainRecord(value)?.kind;
    if (kind === 'deploy') {
      // Expiry is not re-checked (the coordinator judged it), and a part recorded twice is
      // refused: an honest gate never appends the same part again.
      const r = exactRecord(value, ['kind', 'part']);
      if (r === undefined) throw bad('audit entry: not a deploy entry with exactly kind, part');
      const part = verifyPart(r.part, this.fleetId);
      this.deployRules(part);
      this.commitDeploy(part);
      return;
    }
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
      throw bad(`audit entry: not an op, deploy or enroll entry (${ENROLL_KEYS.join(', ')})`);
    const { agent, tokenId, issuer, at, token } = r;
    if (!isNodeId(agent) || !isNodeId(issuer) || !isHexBytes(tokenId, TOKEN_ID_BYTES))
      throw bad('enroll entry: bad agent, issuer or token id');
    if (!isIsoTime(at) || typeof token !== 'string') throw bad('enroll entry: bad time or token');
    const entry = this.enrollment(token, agent, at, false);
    if (entry.tokenId !== tokenId || entry.issuer !== issuer)
      throw bad('enroll entry: token id or issuer differs from its token');
    this.commitEnroll(entry);
  }

  private deployRules(part: SignedPart): void {
    const what = `deployment ${part.id.slice(0, 8)} part ${part.part}`;
    if (this.deployed.has(`${part.id}/${part.part}`))
      throw new FltError('OP_REPLAYED', `${what}: already recorded with other content`);
    const shared = deploymentShape(part);
    const first = this.deployments.get(part.id);
    if (first !== undefined && first !== shared)
      throw new FltError('OP_REPLAYED', `${what}: differs from the deployment's other parts`);
    if (!this.current.has(part.signer))
      throw new FltError('NOT_ADMIN', `${what}: ${shortId(part.signer)} is not an admin`);
  }

  private commitDeploy(part: SignedPart): AuditEntry {
    const key = `${part.id}/${part.part}`;
    this.deployed.set(key, { digest: partDigest(part), index: this.trail.length });
    this.deployments.set(part.id, deploymentShape(part));
    return this.append({ kind: 'deploy', part });
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
      case 'agent.label': {
        if (this.status.get(body.node) !== 'approved')
          throw arg(`${shortId(body.node)} is not an approved agent`);
        const before = this.labels(body.node);
        const after = applyLabels(before, body.labels);
        if (Object.keys(after).length > MAX_LABELS)
          throw arg(`an agent has at most ${MAX_LABELS} labels`);
        if (JSON.stringify(after) === JSON.stringify(before))
          throw arg(`agent.label changes nothing on ${shortId(body.node)}`);
        return;
      }
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
      case 'agent.label':
        this.labelsOf.set(body.node, applyLabels(this.labels(body.node), body.labels));
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

/** `labels` with `changes` applied (null removes), keys sorted, frozen. */
function applyLabels(
  labels: Readonly<Record<string, string>>,
  changes: Readonly<Record<string, string | null>>,
): Readonly<Record<string, string>> {
  const merged: Record<string, string> = { ...labels };
  for (const [key, value] of Object.entries(changes))
    if (value === null) delete merged[key];
    else merged[key] = value;
  const sorted = Object.keys(merged).sort();
  return Object.freeze(Object.fromEntries(sorted.map((k) => [k, merged[k]!])));
}

/** What all parts of one deployment share (everything but part number, targets, signature). */
function deploymentShape(p: SignedPart): string {
  return JSON.stringify([p.parts, p.storePath, p.action, p.at, p.expires, p.signer]);
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
