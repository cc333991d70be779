// Signed deployments (issue 11): what an admin signs to have machines activate a NixOS system,
// and how anyone (the coordinator, the agent at activation time) checks it. Whether the signer
// was an admin is the audit trail's business (authority.ts, admin-set.ts), as for admin ops.
//
// A deployment is 1..k parts, each one self-contained signed record naming at most
// MAX_PART_TARGETS targets, so an agent receives only its part: bounded size per agent whatever
// the fleet size. A part's signature covers UTF-8 "flt/v1/deployment" 0x00 canonicalJson(part
// without sig), by the signer's node key: its own domain, so that an admin operation's signature
// never passes as a deployment's, nor the reverse.

import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { FltError } from '../../sync/errors.js';
import { type NodeId, isNodeId, nodeIdBytes, shortId } from '../../sync/ids.js';
import { SIGNATURE_BYTES, assertAdmissibleKey, sign, verify } from '../../sync/ed25519.js';
import type { NodeKey } from '../identity/index.js';
import {
  canonicalJson,
  exactRecord,
  isFleetId,
  isHexBytes,
  isIsoTime,
  plainRecord,
  signedMessage,
} from './canonical.js';

/** What the target does with the system: switch-to-configuration's actions. */
export type DeployAction = 'switch' | 'boot' | 'test';
export const DEPLOY_ACTIONS: readonly DeployAction[] = ['switch', 'boot', 'test'];

/** Targets per part: 64 node ids and seqs are ~6 KB, what one agent's desired document holds. */
export const MAX_PART_TARGETS = 64;
/** Parts per deployment: 1024 x 64 = 65,536 targets, beyond any fleet flt is built for. */
export const MAX_PARTS = 1024;
/** Longest validity: a part signed for longer could be withheld and replayed much later. */
export const MAX_DEPLOY_VALIDITY_MS = 30 * 24 * 3_600_000;
/** Deployment ids are 16 random bytes (hex): the deployment's name and its nonce. */
export const DEPLOYMENT_ID_BYTES = 16;
/** Longest store path accepted: Nix's own limit on a name is 211; the store dir gets the rest. */
export const MAX_STORE_PATH = 1024;

const DOMAIN = 'flt/v1/deployment\0';
const UNSIGNED_KEYS = [
  'v',
  'fleet',
  'id',
  'part',
  'parts',
  'targets',
  'storePath',
  'action',
  'at',
  'expires',
  'signer',
] as const;
const PART_KEYS = [...UNSIGNED_KEYS, 'sig'] as const;
/**
 * The basename of a Nix store path (Nix's rule): 32 characters of Nix's base-32 alphabet (no e,
 * o, u, t), a dash, then a name that never starts with a dot.
 */
const STORE_NAME = /^[0-9abcdfghijklmnpqrsvwxyz]{32}-(?!\.)[+\-._?=0-9A-Za-z]{1,211}$/;
/** Printable ASCII without space: store dirs with spaces or control characters are refused. */
const PATH_CHARS = /^[\x21-\x7e]+$/;

/** One signed part of a deployment, as signed and stored; JSON-safe. */
export interface SignedPart {
  readonly v: 1;
  /** The fleet: its root document id, as in admin operations. */
  readonly fleet: string;
  /** 16 random bytes as hex: the deployment, shared by all its parts; also its nonce. */
  readonly id: string;
  /** 0 <= part < parts <= MAX_PARTS. */
  readonly part: number;
  readonly parts: number;
  /** 1 to MAX_PART_TARGETS node ids, each with its sequence number (a safe integer >= 1). */
  readonly targets: Readonly<Record<NodeId, number>>;
  /** Absolute, normalized path of the system closure in a Nix store (isStorePath). */
  readonly storePath: string;
  readonly action: DeployAction;
  /** ISO 8601 UTC; at < expires <= at + MAX_DEPLOY_VALIDITY_MS. */
  readonly at: string;
  readonly expires: string;
  readonly signer: NodeId;
  /** 64-byte ed25519 signature by the signer's node key, as hex. */
  readonly sig: string;
}

/** What `signDeployment` signs: resolved targets with their seqs (nextSeq), and the system. */
export interface DeploymentSpec {
  readonly targets: ReadonlyMap<NodeId, number>;
  readonly storePath: string;
  readonly action: DeployAction;
  /** Validity from the signing time, 1 ms .. MAX_DEPLOY_VALIDITY_MS. */
  readonly expiresInMs: number;
  /** The deployment id (hex, 16 bytes); fresh random when absent. */
  readonly id?: string;
}

/**
 * Whether `value` could be a Nix store path: absolute, normalized (no `.`/`..`, no doubled or
 * trailing slash), printable ASCII, at most MAX_STORE_PATH characters, below a directory (the
 * store), with a basename of a 32-character hash, a dash and a name. Which store dir is right
 * is the agent's check (its configured store); this is the syntax every signer must meet.
 */
export function isStorePath(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > MAX_STORE_PATH) return false;
  if (!PATH_CHARS.test(value) || !value.startsWith('/')) return false;
  if (posix.normalize(value) !== value || value.endsWith('/')) return false;
  const dir = posix.dirname(value);
  return dir !== '/' && STORE_NAME.test(posix.basename(value));
}

/**
 * Signs a deployment for `fleetId` as `key` at `now`: the targets sorted by node id and split
 * into parts of at most MAX_PART_TARGETS, all sharing one id, `at` and `expires`.
 * @throws FltError BAD_ARGUMENT for a spec verifyPart would refuse (no target, too many, a bad
 *   seq, store path, action or validity).
 */
export function signDeployment(
  spec: DeploymentSpec,
  fleetId: string,
  key: NodeKey,
  now = new Date(),
): SignedPart[] {
  const fail = (what: string) => new FltError('BAD_ARGUMENT', `deployment: ${what}`);
  const targets = [...spec.targets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (targets.length === 0) throw fail('no target');
  const parts = Math.ceil(targets.length / MAX_PART_TARGETS);
  if (parts > MAX_PARTS) throw fail(`more than ${MAX_PARTS * MAX_PART_TARGETS} targets`);
  const { expiresInMs } = spec;
  if (!Number.isSafeInteger(expiresInMs) || expiresInMs < 1 || expiresInMs > MAX_DEPLOY_VALIDITY_MS)
    throw fail(`expiry must be 1 ms to ${MAX_DEPLOY_VALIDITY_MS / 86_400_000} days`);
  if (Number.isNaN(now.getTime())) throw fail('bad date');
  const common = {
    v: 1,
    fleet: fleetId,
    id: spec.id ?? randomBytes(DEPLOYMENT_ID_BYTES).toString('hex'),
    parts,
    storePath: spec.storePath,
    action: spec.action,
    at: now.toISOString(),
    expires: new Date(now.getTime() + expiresInMs).toISOString(),
    signer: key.nodeId,
  };
  const out: SignedPart[] = [];
  for (let part = 0; part < parts; part++) {
    const slice = targets.slice(part * MAX_PART_TARGETS, (part + 1) * MAX_PART_TARGETS);
    const unsigned = parseUnsigned(
      { ...common, part, targets: Object.fromEntries(slice) },
      'BAD_ARGUMENT',
    );
    const sig = Buffer.from(sign(signedMessage(DOMAIN, unsigned), key.secret)).toString('hex');
    out.push(Object.freeze({ ...unsigned, sig }));
  }
  return out;
}

/**
 * Checks one part taken from anywhere and returns it typed (a fresh, frozen copy). Refuses, in
 * this order: BAD_DEPLOYMENT (malformed in any field but the signature), BAD_SIGNATURE (missing,
 * malformed or wrong; also a signer key that is degenerate), WRONG_FLEET (when `fleetId` is given
 * and differs). Says nothing of whether the signer was an admin, nor of expiry at a given time.
 */
export function verifyPart(value: unknown, fleetId?: string): SignedPart {
  const record = plainRecord(value);
  if (record === undefined) throw bad('not a record');
  const { sig, ...rest } = record;
  const part = parseUnsigned(rest, 'BAD_DEPLOYMENT');
  const what = `deployment ${part.id.slice(0, 8)} by ${shortId(part.signer)}`;
  if (!isHexBytes(sig, SIGNATURE_BYTES))
    throw new FltError('BAD_SIGNATURE', `${what}: missing or malformed signature`);
  const key = nodeIdBytes(part.signer);
  if (!verify(Buffer.from(sig, 'hex'), signedMessage(DOMAIN, part), key))
    throw new FltError('BAD_SIGNATURE', `${what}: bad signature`);
  try {
    assertAdmissibleKey(key, `signer of ${what}`);
  } catch (err) {
    throw new FltError('BAD_SIGNATURE', `${what}: degenerate signer key`, { cause: err });
  }
  if (fleetId !== undefined && part.fleet !== fleetId)
    throw new FltError('WRONG_FLEET', `${what} is for fleet ${part.fleet}, not ${fleetId}`);
  return Object.freeze({ ...part, sig });
}

/** sha256 (hex) of the part's canonical JSON, signature included: one part, one digest. */
export function partDigest(part: SignedPart): string {
  return createHash('sha256').update(canonicalJson(part)).digest('hex');
}

/**
 * The sequence number for one target (design: per target, chosen by the signing admin, offline
 * too): above the admin's own counter `lastSeq`, above the highest seq `known` its replica shows
 * for the target, and at least the millisecond clock `now`, so that an admin with an empty
 * replica still lands above older deployments.
 */
export function nextSeq(lastSeq: number, known = 0, now = Date.now()): number {
  for (const n of [lastSeq, known, now])
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`nextSeq: bad input ${n}`);
  return Math.max(now, lastSeq + 1, known + 1);
}

/**
 * Seqs for every target (nextSeq each, with `known(t)`) and the admin's new counter: the
 * highest seq given, to store as `lastSeq` before the parts leave the admin.
 */
export function assignSeqs(
  targets: Iterable<NodeId>,
  lastSeq: number,
  known: (target: NodeId) => number = () => 0,
  now = Date.now(),
): { seqs: Map<NodeId, number>; lastSeq: number } {
  const seqs = new Map<NodeId, number>();
  let last = lastSeq;
  for (const t of targets) {
    const seq = nextSeq(lastSeq, known(t), now);
    seqs.set(t, seq);
    last = Math.max(last, seq);
  }
  return { seqs, lastSeq: last };
}

function parseUnsigned(
  value: unknown,
  code: 'BAD_DEPLOYMENT' | 'BAD_ARGUMENT',
): Omit<SignedPart, 'sig'> {
  const fail = (what: string) => new FltError(code, `deployment: ${what}`);
  const r = exactRecord(value, UNSIGNED_KEYS);
  if (r === undefined) throw fail(`not a record with exactly ${PART_KEYS.join(', ')}`);
  if (r.v !== 1) throw fail('unsupported version');
  if (!isFleetId(r.fleet)) throw fail('bad fleet');
  if (!isHexBytes(r.id, DEPLOYMENT_ID_BYTES)) throw fail('bad id');
  const { part, parts } = r;
  if (!Number.isSafeInteger(parts) || (parts as number) < 1 || (parts as number) > MAX_PARTS)
    throw fail('bad part count');
  if (!Number.isSafeInteger(part) || (part as number) < 0 || (part as number) >= (parts as number))
    throw fail('bad part number');
  const targets = parseTargets(r.targets);
  if (targets === undefined) throw fail(`targets must be 1 to ${MAX_PART_TARGETS} node id -> seq`);
  if (!isStorePath(r.storePath)) throw fail('bad store path');
  if (!DEPLOY_ACTIONS.includes(r.action as DeployAction)) throw fail('bad action');
  if (!isIsoTime(r.at) || !isIsoTime(r.expires)) throw fail('bad time');
  const validity = Date.parse(r.expires) - Date.parse(r.at);
  if (validity <= 0 || validity > MAX_DEPLOY_VALIDITY_MS)
    throw fail('expires must be after at, by at most 30 days');
  if (!isNodeId(r.signer)) throw fail('bad signer');
  return {
    v: 1,
    fleet: r.fleet,
    id: r.id,
    part: part as number,
    parts: parts as number,
    targets,
    storePath: r.storePath,
    action: r.action as DeployAction,
    at: r.at,
    expires: r.expires,
    signer: r.signer,
  };
}

function parseTargets(value: unknown): Readonly<Record<NodeId, number>> | undefined {
  const r = plainRecord(value);
  if (r === undefined) return undefined;
  const keys = Object.keys(r);
  if (keys.length === 0 || keys.length > MAX_PART_TARGETS) return undefined;
  const out: Record<NodeId, number> = {};
  for (const key of keys.sort()) {
    const seq = r[key];
    if (!isNodeId(key) || !Number.isSafeInteger(seq) || (seq as number) < 1) return undefined;
    out[key] = seq as number;
  }
  return Object.freeze(out);
}

function bad(what: string): FltError {
  return new FltError('BAD_DEPLOYMENT', `deployment: ${what}`);
}
