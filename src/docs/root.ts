// The root document: the coordinator's (key `flt/v1/doc/root`), one per fleet, written only by the
// coordinator (roles/fleet.ts). It lists the agents; documents come from other peers, so
// everything read is validated (bounded) before use.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { isNodeId, shortId, type NodeId } from '../../sync/ids.js';
import type { SummaryFacts } from '../facts/index.js';
import type { DerivePurpose } from '../identity/derive.js';
import { MAX_LABELS, isLabelKey, isLabelValue } from '../trust/admin-ops.js';
import { plainRecord } from '../trust/canonical.js';
import { DEPLOY_ACTIONS, MAX_STORE_PATH, type DeployAction } from '../trust/deployment.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';
import {
  DEPLOY_STATES,
  FAILURE_CODES,
  REFUSAL_CODES,
  FETCH_CODES,
  type DeployCode,
  type DeployState,
} from './status.js';

export const ROOT_KIND = 'flt/root';
/** The purpose its write key is derived for (identity/derive.ts). */
export const ROOT_KEY = 'flt/v1/doc/root' satisfies DerivePurpose;

/** What the fleet table shows of an agent, copied by the coordinator from its facts. */
export interface AgentSummary {
  hostname: string;
  os: string;
  nixosVersion: string | null;
  kernel: string;
  arch: string;
}

export interface AgentEntry {
  nodeId: NodeId;
  factsDocId: DocumentId;
  /** Hex ed25519 public key that writes the facts document. */
  factsWriteKey: string;
  enrolledAt: string;
  /** The last connect or disconnect the coordinator recorded (rate-limited; see README). */
  lastSeen: string;
  summary: AgentSummary | null;
  /**
   * The newest signed heads of the facts document the coordinator verified (src/trust), as
   * stored: readers other than the coordinator verify it again before trusting it. The summary
   * above was computed from the facts at these heads.
   */
  factsHeads: unknown;
  /**
   * Set when the coordinator saw two histories of the facts document that neither contains (or
   * two live instances of the agent replacing each other's connection): a cloned machine or a
   * restored copy of its state dir that kept running. The coordinator then takes no more of the
   * document's changes until an admin revokes the agent or resets it (README, "Forks").
   */
  forked?: ForkMark | null;
  // Deployments (issue 11): all optional, absent in records of agents enrolled before.
  /** The agent's status document (docs/status.ts) and its write key (hex). */
  statusDocId?: DocumentId;
  statusWriteKey?: string;
  /** Verified signed heads of the status document, as factsHeads. */
  statusHeads?: unknown;
  /** The agent's desired document (docs/desired.ts) and its write key (hex, coordinator's). */
  desiredDocId?: DocumentId;
  desiredWriteKey?: string;
  /** The agent's labels, mirrored from agent.label operations. */
  labels?: Record<string, string>;
  /**
   * Set while the trail says the agent is revoked (mirrored by the coordinator, as labels):
   * `deploy --all` and `--label` leave it out. Absent otherwise.
   */
  revoked?: true;
  /** Summary of the desired document's current part for this agent. */
  desired?: DesiredSummary | null;
  /** Summary of the status document's trusted view. */
  deploy?: DeploySummary | null;
}

/** What the coordinator placed for an agent (desired.current), in short. */
export interface DesiredSummary {
  id: string;
  seq: number;
  storePath: string;
  action: DeployAction;
}

/** An agent's deployment status in short, computed by the coordinator from its status doc. */
export interface DeploySummary {
  current: string | null;
  booted: string | null;
  rebootNeeded: boolean | null;
  last: { id: string; state: DeployState; code?: DeployCode } | null;
}

/** Why and when an agent was marked forked; kept until an admin decides. */
export interface ForkMark {
  at: string;
  reason: string;
}

/**
 * The coordinator's document. Each agent is one sealed record: the JSON of its entry (without
 * the node id, which is the key) as one ImmutableString. The coordinator is the only writer and
 * always rewrites a whole entry, so field-level merging would buy nothing, while a map of fields
 * costs an operation per field on every load: at 5,000 agents the record form loads ~7x faster
 * than a map of ImmutableStrings and ~30x faster than a map of text (README, "Documents").
 */
export interface RootDoc {
  kind: typeof ROOT_KIND;
  schema: number;
  coordinator: NodeId;
  agents: Record<string, A.ImmutableString>;
  /** The admins document (docs/admins.ts); absent before issue 11's coordinator. */
  adminsDocId?: A.ImmutableString;
  /**
   * The coordinator's artifact store in short (issue 12): the JSON of an ArtifactsSummary, one
   * sealed record rewritten whole (after pushes, at most once a minute, and after each GC).
   * Absent before issue 12's coordinator.
   */
  artifacts?: A.ImmutableString;
}

/** The coordinator's artifact store in short: rpc `artifacts.stats`, as the root document keeps it. */
export interface ArtifactsSummary {
  /** Store paths in the index. */
  paths: number;
  /** Complete blobs, and their bytes. */
  blobs: number;
  bytes: number;
  /** Bytes of partial uploads. */
  partialBytes: number;
  /** Files in the store's quarantine. */
  quarantined: number;
  /** When GC last ran (ISO), null: not since the coordinator started. */
  lastGc: string | null;
}

/** Longest artifacts record accepted from a root document (one is ~120 bytes). */
export const MAX_ARTIFACTS_RECORD = 1024;

/** The record stored for `summary` in the root document. */
export function encodeArtifacts(summary: ArtifactsSummary): A.ImmutableString {
  const { paths, blobs, bytes, partialBytes, quarantined, lastGc } = summary;
  return new A.ImmutableString(
    JSON.stringify({ paths, blobs, bytes, partialBytes, quarantined, lastGc }),
  );
}

/**
 * The artifacts summary a root document holds, validated; undefined when it has none or a
 * malformed one (a reader then shows nothing rather than failing: it is only a figure).
 */
export function rootArtifacts(root: unknown): ArtifactsSummary | undefined {
  if (typeof root !== 'object' || root === null) return undefined;
  const text = scalarString((root as { artifacts?: unknown }).artifacts);
  if (text === undefined || text.length > MAX_ARTIFACTS_RECORD) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = plainRecord(v);
  if (r === undefined) return undefined;
  const count = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  const { paths, blobs, bytes, partialBytes, quarantined, lastGc } = r;
  if (!count(paths) || !count(blobs) || !count(bytes) || !count(partialBytes)) return undefined;
  if (!count(quarantined)) return undefined;
  if (lastGc !== null && !(str(lastGc, 40) && !Number.isNaN(Date.parse(lastGc)))) return undefined;
  return { paths, blobs, bytes, partialBytes, quarantined, lastGc };
}

/** The admins document id a root document names, if any. */
export function rootAdminsDocId(root: unknown): DocumentId | undefined {
  if (typeof root !== 'object' || root === null) return undefined;
  const id = scalarString((root as { adminsDocId?: unknown }).adminsDocId);
  return id !== undefined && id.length > 0 && id.length <= 64 ? (id as DocumentId) : undefined;
}

/**
 * Longest agent record accepted from a root document. A record is ~1.4 KB with every field of
 * issue 11, but MAX_LABELS labels of the longest key and value alone are ~6.4 KB: 16 KiB holds
 * the worst case (readers before issue 11 took 4096 and skip such a record).
 */
export const MAX_RECORD = 16 * 1024;

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function rootBase(coordinator: NodeId): RootDoc {
  return { kind: ROOT_KIND, schema: DOC_SCHEMA, coordinator, agents: {} };
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `root document: ${what}`);
}

const str = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;

/** The record stored for `entry` in the root document. */
export function encodeAgent(entry: AgentEntry): A.ImmutableString {
  // No fork mark is the usual case: left out, so that records stay as small as before.
  // Optional fields left undefined are dropped by JSON.stringify.
  const { nodeId: _, forked, ...record } = entry;
  return new A.ImmutableString(JSON.stringify(forked ? { ...record, forked } : record));
}

/** The agent `key` of a root document's agent map, validated; undefined when malformed. */
export function decodeAgent(key: string, value: unknown): AgentEntry | undefined {
  const text = scalarString(value);
  if (!isNodeId(key) || text === undefined || text.length > MAX_RECORD) return undefined;
  let a: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    a = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!str(a.factsDocId, 64) || !str(a.factsWriteKey, 64)) return undefined;
  if (!str(a.enrolledAt, 40) || !str(a.lastSeen, 40)) return undefined;
  return {
    nodeId: key,
    factsDocId: a.factsDocId as DocumentId,
    factsWriteKey: a.factsWriteKey,
    enrolledAt: a.enrolledAt,
    lastSeen: a.lastSeen,
    summary: summaryOf(a.summary),
    factsHeads: a.factsHeads ?? null,
    // Left out when absent, as encodeAgent leaves it out: a record round-trips unchanged.
    ...(a.forked ? { forked: forkOf(a.forked) } : {}),
    ...deployFieldsOf(a),
  };
}

/**
 * The optional deployment fields of a record, each kept only when valid (a malformed one is
 * dropped, the agent stays listed): records written before issue 11 have none of them.
 */
function deployFieldsOf(a: Record<string, unknown>): Partial<AgentEntry> {
  const out: Partial<AgentEntry> = {};
  if (str(a.statusDocId, 64) && a.statusDocId.length > 0)
    out.statusDocId = a.statusDocId as DocumentId;
  if (isHex32(a.statusWriteKey)) out.statusWriteKey = a.statusWriteKey;
  if (a.statusHeads !== undefined) out.statusHeads = a.statusHeads;
  if (str(a.desiredDocId, 64) && a.desiredDocId.length > 0)
    out.desiredDocId = a.desiredDocId as DocumentId;
  if (isHex32(a.desiredWriteKey)) out.desiredWriteKey = a.desiredWriteKey;
  const labels = labelsOf(a.labels);
  if (labels !== undefined) out.labels = labels;
  if (a.revoked === true) out.revoked = true;
  if (a.desired !== undefined) out.desired = desiredOf(a.desired);
  if (a.deploy !== undefined) out.deploy = deployOf(a.deploy);
  return out;
}

const isHex32 = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);

function labelsOf(v: unknown): Record<string, string> | undefined {
  const r = plainRecord(v);
  if (r === undefined || Object.keys(r).length > MAX_LABELS) return undefined;
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(r)) {
    if (!isLabelKey(k) || !isLabelValue(value)) return undefined;
    out[k] = value;
  }
  return out;
}

function desiredOf(v: unknown): DesiredSummary | null {
  const d = plainRecord(v);
  if (d === undefined || !str(d.id, 64) || !str(d.storePath, MAX_STORE_PATH)) return null;
  if (!Number.isSafeInteger(d.seq) || !DEPLOY_ACTIONS.includes(d.action as DeployAction))
    return null;
  return {
    id: d.id,
    seq: d.seq as number,
    storePath: d.storePath,
    action: d.action as DeployAction,
  };
}

function deployOf(v: unknown): DeploySummary | null {
  const d = plainRecord(v);
  if (d === undefined) return null;
  const path = (p: unknown) => (str(p, MAX_STORE_PATH) ? p : null);
  const rebootNeeded = typeof d.rebootNeeded === 'boolean' ? d.rebootNeeded : null;
  const l = plainRecord(d.last);
  let last: DeploySummary['last'] = null;
  if (l !== undefined && str(l.id, 64) && DEPLOY_STATES.includes(l.state as DeployState)) {
    last = { id: l.id, state: l.state as DeployState };
    const codes: readonly string[] = [...REFUSAL_CODES, ...FAILURE_CODES, ...FETCH_CODES];
    if (typeof l.code === 'string' && codes.includes(l.code)) last.code = l.code as DeployCode;
  }
  return { current: path(d.current), booted: path(d.booted), rebootNeeded, last };
}

function forkOf(v: unknown): ForkMark | null {
  if (typeof v !== 'object' || v === null) return null;
  const f = v as Record<string, unknown>;
  // A mark whose fields are malformed still marks the agent: being forked is what matters.
  return { at: str(f.at, 40) ? f.at : '', reason: str(f.reason, 300) ? f.reason : 'forked' };
}

/** The agents of a root document, validated and sorted; malformed entries are skipped. */
export function agentsOf(root: unknown): AgentEntry[] {
  if (typeof root !== 'object' || root === null) bad('not a map');
  const agents = (root as { agents?: unknown }).agents;
  if (typeof agents !== 'object' || agents === null) return [];
  const out: AgentEntry[] = [];
  for (const [key, value] of Object.entries(agents as Record<string, unknown>)) {
    const entry = decodeAgent(key, value);
    if (entry) out.push(entry);
  }
  return sortAgents(out);
}

/**
 * Finds one agent entry by node id, unique node id prefix, or hostname (case-insensitive):
 * NOT_FOUND, or BAD_ARGUMENT naming the candidates when several match.
 */
export function pickEntry(entries: readonly AgentEntry[], query: string): AgentEntry {
  const q = query.trim().toLowerCase();
  const byId = q.length > 0 ? entries.filter((a) => a.nodeId.startsWith(q)) : [];
  const matches =
    byId.length > 0 ? byId : entries.filter((a) => a.summary?.hostname.toLowerCase() === q);
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0)
    throw new FltError('NOT_FOUND', `no agent matches ${JSON.stringify(query)}`);
  const ids = matches.map((a) => `${shortId(a.nodeId)} (${a.summary?.hostname ?? '?'})`);
  throw new FltError(
    'BAD_ARGUMENT',
    `${JSON.stringify(query)} matches ${matches.length} agents: ${ids.join(', ')}; give more of the node id`,
  );
}

/** Fleet table order: by hostname, then node id. */
export function sortAgents(agents: AgentEntry[]): AgentEntry[] {
  return agents.sort(
    (x, y) =>
      (x.summary?.hostname ?? '').localeCompare(y.summary?.hostname ?? '') ||
      x.nodeId.localeCompare(y.nodeId),
  );
}

function summaryOf(v: unknown): AgentSummary | null {
  if (typeof v !== 'object' || v === null) return null;
  const s = v as Record<string, unknown>;
  if (!str(s.hostname, 255) || !str(s.os, 255) || !str(s.kernel, 255) || !str(s.arch, 64))
    return null;
  const nixosVersion = str(s.nixosVersion, 255) ? s.nixosVersion : null;
  return { hostname: s.hostname, os: s.os, nixosVersion, kernel: s.kernel, arch: s.arch };
}

/** The fleet table's view of a facts document. */
export function summarize(facts: SummaryFacts): AgentSummary {
  return {
    hostname: facts.hostname,
    os: facts.os.prettyName || facts.os.name,
    nixosVersion: facts.nixos?.version ?? null,
    kernel: facts.kernel.release,
    arch: facts.arch,
  };
}
