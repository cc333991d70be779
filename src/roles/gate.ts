// The coordinator's gate (ARCHITECTURE.md §6): who may do what, decided from the audit trail.
// The trail is a document the coordinator writes (key `flt/v1/doc/audit`): the initial admins
// from its configuration, then every admin-signed operation and every token enrollment, in the
// order applied. At start the trail is replayed, re-verifying every signature, so the rights in
// force are exactly those the trail proves; an admin can replay the same trail to check them.
// Next to it the gate keeps the admins document (docs/admins.ts, key `flt/v1/doc/admins`): the
// initial admins and every admin.add / admin.remove op, written in the same step as the trail,
// for agents to check deployment signers themselves (the trail is too big to send to each).

import * as A from '@automerge/automerge';
import type { DocHandle, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { OwnedDoc } from '../../sync/owned-doc.js';
import { ALPN } from '../../sync/protocols.js';
import type { Store } from '../../stores/store.js';
import {
  ADMINS_KEY,
  AUDIT_KEY,
  adminsBase,
  appendAdminOp,
  auditBase,
  writeAdminsStart,
  type AdminsDoc,
  type AuditDoc,
} from '../docs/types.js';
import { deriveKeyPair, type NodeKey } from '../identity/index.js';
import { verifyOp, type SignedOp } from '../trust/admin-ops.js';
import type { SignedPart } from '../trust/deployment.js';
import { Authority, type AuditEntry, type Role } from '../trust/authority.js';

/** What each role may open, before any of its bytes are read. */
const OPEN_TO: Record<Role, ReadonlySet<string>> = {
  admin: new Set([ALPN.rpc, ALPN.sync, ALPN.echo, ALPN.blobs]),
  agent: new Set([ALPN.rpc, ALPN.sync, ALPN.echo, ALPN.blobs]),
  // Only to enroll (the rpc server refuses every other method from it).
  unknown: new Set([ALPN.rpc]),
  revoked: new Set(),
};

export class Gate {
  private constructor(
    /** Undefined while no admin was ever configured: everyone is unknown, nothing applies. */
    private readonly authority: Authority | undefined,
    readonly audit: DocHandle<AuditDoc>,
    /** The admins document: begun once the trail is (initial admins), then kept in step. */
    readonly adminsDoc: DocHandle<AdminsDoc>,
    private readonly log: Logger,
  ) {}

  /**
   * Opens (or starts) the trail and replays it. `admins` are the configured initial admins; they
   * count only when the trail begins: afterwards admins change by signed operations alone.
   */
  static async open(opts: {
    repo: Repo;
    store: Store;
    key: NodeKey;
    fleetId: string;
    admins: readonly NodeId[];
    log: Logger;
  }): Promise<Gate> {
    const owned = new OwnedDoc<AuditDoc>(deriveKeyPair(opts.key.secret, AUDIT_KEY));
    const audit = await owned.open(opts.repo, opts.store, auditBase(opts.key.nodeId));
    const adminsOwned = new OwnedDoc<AdminsDoc>(deriveKeyPair(opts.key.secret, ADMINS_KEY));
    const admins = await adminsOwned.open(opts.repo, opts.store, adminsBase(opts.key.nodeId));
    let initial = initialAdmins(audit.doc());
    if (initial === undefined && opts.admins.length > 0) {
      initial = [...opts.admins];
      const text = JSON.stringify(initial);
      audit.change((d) => void (d.initialAdmins = new A.ImmutableString(text)));
    }
    if (initial === undefined) {
      opts.log.warn('no admin configured: nobody can enroll agents; start with --admin NODE_ID');
      return new Gate(undefined, audit, admins, opts.log);
    }
    const begun = initial;
    if (opts.admins.some((a) => !begun.includes(a)))
      opts.log.warn('--admin counts only when the fleet begins; use `flt admin admins add`');
    const entries = audit.doc().entries.map((e) => JSON.parse(e.val) as unknown);
    const authority = Authority.replay(opts.fleetId, initial, entries);
    catchUpAdmins(admins, opts.fleetId, initial, authority.entries(), opts.log);
    return new Gate(authority, audit, admins, opts.log);
  }

  role(peer: NodeId): Role {
    return this.authority?.role(peer) ?? 'unknown';
  }

  /** The router's check: may `peer` open `alpn` at all? */
  allows(peer: NodeId, alpn: string): boolean {
    return OPEN_TO[this.role(peer)].has(alpn);
  }

  /** How many entries the trail holds. */
  get size(): number {
    return this.audit.doc().entries.length;
  }

  /**
   * Applies one admin-signed operation (verified here) and appends it to the trail. `revoked` is
   * the node it revoked, if any: the caller closes its connections.
   */
  apply(value: unknown): { entry: AuditEntry; revoked: NodeId | undefined } {
    const authority = this.require();
    const entry = authority.apply(verifyOp(value, authority.fleetId));
    this.append(entry);
    // In the same step as the trail (one turn of the event loop: nothing is sent in between).
    if (entry.kind === 'op' && isMembership(entry.op))
      this.adminsDoc.change((d) => appendAdminOp(d, entry.op));
    let revoked: NodeId | undefined;
    if (entry.kind === 'op') {
      const { body } = entry.op;
      const lost = body.op === 'agent.revoke' || body.op === 'admin.remove';
      if (lost && this.role(body.node) === 'revoked') revoked = body.node;
    }
    return { entry, revoked };
  }

  /** Enrolls `agent` with a one-time token (TOKEN_* codes when refused). */
  enroll(token: string, agent: NodeId): AuditEntry {
    const entry = this.require().useToken(token, agent);
    this.append(entry);
    return entry;
  }

  /**
   * Records one deployment part (Authority.recordDeploy: verified, signer an admin now, not
   * expired) and appends it to the trail when fresh; the same part again appends nothing and
   * answers the index it was recorded at.
   */
  recordDeploy(
    value: unknown,
    now = new Date(),
  ): { part: SignedPart; index: number; fresh: boolean } {
    const { entry, index, fresh } = this.require().recordDeploy(value, now);
    if (fresh) this.append(entry);
    if (entry.kind !== 'deploy') throw new FltError('INTERNAL', 'a deploy entry expected');
    return { part: entry.part, index, fresh };
  }

  /** Authority.checkDeploy: whether the part would be recorded (or is), changing nothing. */
  checkDeploy(value: unknown, now = new Date()): { part: SignedPart; recorded?: number } {
    return this.require().checkDeploy(value, now);
  }

  admins(): NodeId[] {
    return this.authority?.admins() ?? [];
  }

  /** The labels of `node` as the trail sets them (agent.label ops); {} when none. */
  labels(node: NodeId): Readonly<Record<string, string>> {
    return this.authority?.labels(node) ?? {};
  }

  /** How many ops the admins document holds: placed deployments carry it (desired.ts). */
  get adminOps(): number {
    return this.adminsDoc.doc().ops.length;
  }

  private require(): Authority {
    if (this.authority) return this.authority;
    throw new FltError(
      'NOT_ADMIN',
      'this fleet has no admin yet: restart the coordinator with --admin',
    );
  }

  /** The trail as stored: the initial admins and every entry, for admins to replay. */
  trail(): { initialAdmins: NodeId[]; entries: unknown[] } {
    const doc = this.audit.doc();
    return {
      initialAdmins: initialAdmins(doc) ?? [],
      entries: doc.entries.map((e) => JSON.parse(e.val) as unknown),
    };
  }

  /**
   * One page of the trail: the entries from index `from`, at most `limit`, ending once their
   * JSON passes `maxBytes` (the first always included), and `total`, the trail's length.
   */
  trailPage(
    from: number,
    limit: number,
    maxBytes: number,
  ): { initialAdmins: NodeId[]; entries: unknown[]; total: number } {
    const doc = this.audit.doc();
    const entries: unknown[] = [];
    let bytes = 0;
    for (let i = from; i < doc.entries.length && entries.length < limit; i++) {
      const text = doc.entries[i]!.val;
      if (entries.length > 0 && bytes + text.length > maxBytes) break;
      bytes += text.length;
      entries.push(JSON.parse(text) as unknown);
    }
    return { initialAdmins: initialAdmins(doc) ?? [], entries, total: doc.entries.length };
  }

  private append(entry: AuditEntry): void {
    const text = JSON.stringify(entry);
    this.audit.change((d) => void d.entries.push(new A.ImmutableString(text)));
    this.log.info('audit', { entry: entry.kind === 'op' ? entry.op.body.op : entry.kind });
  }
}

const isMembership = (op: SignedOp) => op.body.op === 'admin.add' || op.body.op === 'admin.remove';

/**
 * Brings the admins document in step with the replayed trail: begins it (a fleet begun before
 * the admins document existed, or a crash between the two writes) and appends the membership ops
 * it lacks. Its ops must be a prefix of the trail's; otherwise it is left as it is, and agents
 * refuse it (UNTRUSTED_TRAIL) until an operator looks.
 */
function catchUpAdmins(
  admins: DocHandle<AdminsDoc>,
  fleet: string,
  initial: readonly NodeId[],
  entries: readonly AuditEntry[],
  log: Logger,
): void {
  const ops = entries.flatMap((e) => (e.kind === 'op' && isMembership(e.op) ? [e.op] : []));
  const doc = admins.doc();
  const held = doc.ops.map((o) => o.val);
  const begun = doc.initialAdmins !== undefined;
  if (doc.initialAdmins !== undefined && doc.initialAdmins.val !== JSON.stringify(initial)) {
    log.error('the admins document names other initial admins than the audit trail; left as is');
    return;
  }
  if (held.some((text, i) => ops[i] === undefined || text !== JSON.stringify(ops[i]))) {
    log.error('the admins document is not a prefix of the audit trail; left as is');
    return;
  }
  if (begun && held.length === ops.length) return;
  admins.change((d) => {
    if (!begun) writeAdminsStart(d, fleet, initial);
    for (const op of ops.slice(held.length)) appendAdminOp(d, op);
  });
}

function initialAdmins(doc: AuditDoc): NodeId[] | undefined {
  return doc.initialAdmins ? (JSON.parse(doc.initialAdmins.val) as NodeId[]) : undefined;
}
