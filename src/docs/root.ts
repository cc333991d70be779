// The root document: the coordinator's (key `flt/v1/doc/root`), one per fleet, written only by the
// coordinator (roles/fleet.ts). It lists the agents; documents come from other peers, so
// everything read is validated (bounded) before use.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import type { Facts } from '../facts/index.js';
import type { DerivePurpose } from '../identity/derive.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

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
}

/** Longest agent record accepted from a root document. */
const MAX_RECORD = 4096;

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
  };
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
export function summarize(facts: Omit<Facts, 'collectedAt'>): AgentSummary {
  return {
    hostname: facts.hostname,
    os: facts.os.prettyName || facts.os.name,
    nixosVersion: facts.nixos?.version ?? null,
    kernel: facts.kernel.release,
    arch: facts.arch,
  };
}
