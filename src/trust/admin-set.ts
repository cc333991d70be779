// The fleet's admins as an agent knows them (issue 11): from its own verification of the admins
// document (docs/admins.ts: the initial admins and every admin.add / admin.remove op, each
// admin-signed), never from the coordinator's word. The agent's deployer checks a deployment's
// signer here, the anchor (its configured admins) and the prefix it pinned before (a trail whose
// earlier ops changed is a rewrite). Pure: what was pinned is read and written by the caller.

import { createHash } from 'node:crypto';
import { FltError } from '../../sync/errors.js';
import { type NodeId, isNodeId, shortId } from '../../sync/ids.js';
import { decodeAdmins } from '../docs/admins.js';
import type { SignedOp } from './admin-ops.js';
import { Authority } from './authority.js';
import { exactRecord, isFleetId, isHexBytes } from './canonical.js';
import type { SignedPart } from './deployment.js';

/** What an agent pins of the admin trail it verified: fleet, beginning, and a prefix digest. */
export interface TrailPin {
  readonly fleet: string;
  readonly initialAdmins: readonly NodeId[];
  /** How many ops the pinned trail held. */
  readonly opsSeen: number;
  /** opsDigest of those ops. */
  readonly opsDigest: string;
}

/** The digest of an empty op list: the start of the chain. */
const CHAIN_START = createHash('sha256').update('flt/v1/admins-chain\0').digest('hex');

/**
 * A digest chain over the signatures of `ops` (each signature covers its whole op):
 * d0 = sha256("flt/v1/admins-chain\0"), d(i+1) = sha256(d(i) ":" sig(i)), hex.
 */
export function opsDigest(ops: readonly Pick<SignedOp, 'sig'>[]): string {
  let digest = CHAIN_START;
  for (const op of ops) digest = createHash('sha256').update(`${digest}:${op.sig}`).digest('hex');
  return digest;
}

/** The verified admin membership of one fleet, and its history (for "admin at time t"). */
export class AdminSet {
  private constructor(
    readonly fleet: string,
    readonly initialAdmins: readonly NodeId[],
    /** The admin.add / admin.remove ops, in trail order, each verified. */
    readonly ops: readonly SignedOp[],
    private readonly authority: Authority,
  ) {}

  /**
   * Verifies an admins document (or its plain copy) and builds the set: every op re-checked by
   * Authority.replay (signature, fleet, signer an admin at its position, rules).
   * @throws FltError UNTRUSTED_TRAIL (with the cause) when the document is malformed, holds an
   *   op other than admin.add / admin.remove, fails to replay, or (when `fleetId` is given) is
   *   another fleet's.
   */
  static fromDoc(value: unknown, fleetId?: string): AdminSet {
    return untrusted(() => {
      const doc = decodeAdmins(value);
      if (fleetId !== undefined && doc.fleet !== fleetId)
        throw new FltError('WRONG_FLEET', `for fleet ${doc.fleet}, not ${fleetId}`);
      return AdminSet.replay(doc.fleet, doc.initialAdmins, doc.ops);
    });
  }

  /** As fromDoc, from the decoded parts: throws Authority.replay's codes unchanged. */
  static replay(fleet: string, initialAdmins: readonly NodeId[], ops: readonly unknown[]) {
    const authority = Authority.replay(
      fleet,
      initialAdmins,
      ops.map((op) => ({ kind: 'op', op })),
    );
    const verified = authority.entries().map((e, i) => {
      if (e.kind !== 'op' || (e.op.body.op !== 'admin.add' && e.op.body.op !== 'admin.remove'))
        throw new FltError('BAD_MESSAGE', `admins op ${i}: not admin.add or admin.remove`);
      return e.op;
    });
    return new AdminSet(
      fleet,
      Object.freeze([...initialAdmins]),
      Object.freeze(verified),
      authority,
    );
  }

  /** How many ops the set was built from (compared with a desired part's `adminOps`). */
  get size(): number {
    return this.ops.length;
  }

  /** The admins now, sorted. */
  admins(): NodeId[] {
    return this.authority.admins();
  }

  /** Whether `node` is an admin after the whole trail. */
  isAdminNow(node: NodeId): boolean {
    return this.authority.role(node) === 'admin';
  }

  /**
   * Whether `node` was an admin at `at`: the initial admins, then, in trail order, only the
   * ops signed at or before `at` (so an admin added later, or removed before, was not).
   */
  isAdminAt(node: NodeId, at: string | Date): boolean {
    const time = typeof at === 'string' ? Date.parse(at) : at.getTime();
    if (Number.isNaN(time)) return false;
    const admins = new Set(this.initialAdmins);
    for (const op of this.ops) {
      if (Date.parse(op.at) > time) continue;
      if (op.body.op === 'admin.add') admins.add(op.body.node);
      else if (op.body.op === 'admin.remove') admins.delete(op.body.node);
    }
    return admins.has(node);
  }

  /**
   * Refuses a part whose signer is not an admin now, or was not one when it signed (`part.at`):
   * SIGNER_NOT_ADMIN. Removed admins, admins added after signing and non-admin keys (the
   * coordinator's, an agent's) all end here.
   */
  checkSigner(part: Pick<SignedPart, 'signer' | 'at' | 'id'>): void {
    const who = `${shortId(part.signer)} (deployment ${part.id.slice(0, 8)})`;
    if (!this.isAdminNow(part.signer))
      throw new FltError('SIGNER_NOT_ADMIN', `${who} is not an admin of this fleet`);
    if (!this.isAdminAt(part.signer, part.at))
      throw new FltError('SIGNER_NOT_ADMIN', `${who} was not an admin at ${part.at}`);
  }

  /** What to pin after accepting this set. */
  pin(): TrailPin {
    return {
      fleet: this.fleet,
      initialAdmins: [...this.initialAdmins],
      opsSeen: this.ops.length,
      opsDigest: opsDigest(this.ops),
    };
  }
}

/**
 * The anchor check: when the agent is configured with admins, the trail must begin with exactly
 * them (as sets). No configured admins: nothing to check (trust on first use, then the pin).
 * @throws FltError UNTRUSTED_TRAIL
 */
export function checkAnchor(set: AdminSet, configured: readonly NodeId[]): void {
  if (configured.length === 0) return;
  if (!sameSet(set.initialAdmins, configured))
    throw new FltError(
      'UNTRUSTED_TRAIL',
      `the admin trail begins with ${list(set.initialAdmins)}, not the configured ${list(configured)}`,
    );
}

/**
 * The prefix check against what the agent pinned before: same fleet and initial admins, at
 * least `opsSeen` ops, and the first `opsSeen` of them hashing to `opsDigest` (an op inserted
 * before, or removed from, the pinned prefix is a rewrite).
 * @throws FltError UNTRUSTED_TRAIL
 */
export function checkPin(set: AdminSet, pin: TrailPin): void {
  const fail = (why: string) => new FltError('UNTRUSTED_TRAIL', `admin trail: ${why}`);
  if (set.fleet !== pin.fleet) throw fail(`fleet ${set.fleet}, pinned ${pin.fleet}`);
  if (!sameSet(set.initialAdmins, pin.initialAdmins))
    throw fail(`begins with ${list(set.initialAdmins)}, pinned ${list(pin.initialAdmins)}`);
  if (set.size < pin.opsSeen) throw fail(`${set.size} ops, fewer than the ${pin.opsSeen} pinned`);
  if (opsDigest(set.ops.slice(0, pin.opsSeen)) !== pin.opsDigest)
    throw fail(`its first ${pin.opsSeen} ops differ from the pinned ones (rewritten)`);
}

/**
 * A pin read back from where the agent kept it (e.g. JSON in a file), validated.
 * @throws FltError STORE_CORRUPT when it is not a pin.
 */
export function decodePin(value: unknown): TrailPin {
  const r = exactRecord(value, ['fleet', 'initialAdmins', 'opsSeen', 'opsDigest']);
  const admins = r?.initialAdmins;
  if (
    r === undefined ||
    !isFleetId(r.fleet) ||
    !Array.isArray(admins) ||
    admins.length === 0 ||
    admins.length > 10_000 ||
    !admins.every(isNodeId) ||
    !Number.isSafeInteger(r.opsSeen) ||
    (r.opsSeen as number) < 0 ||
    !isHexBytes(r.opsDigest, 32)
  )
    throw new FltError('STORE_CORRUPT', 'pinned admin trail: not a valid pin');
  return {
    fleet: r.fleet,
    initialAdmins: [...admins],
    opsSeen: r.opsSeen as number,
    opsDigest: r.opsDigest,
  };
}

function untrusted<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof FltError)) throw err;
    throw new FltError('UNTRUSTED_TRAIL', `admin trail: ${err.message}`, { cause: err });
  }
}

function sameSet(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((n) => y.has(n));
}

function list(nodes: readonly NodeId[]): string {
  return `[${nodes.map(shortId).join(', ')}]`;
}
