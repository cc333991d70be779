// The shapes of flt's documents and what readers accept from them. Documents come from other
// peers, so everything read is validated (bounded) before use; writers use these types.

import type { DocumentId } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import type { Facts } from '../facts/index.js';

export const DOC_SCHEMA = 1;

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
}

export interface RootDoc {
  kind: 'flt/root';
  schema: number;
  coordinator: NodeId;
  agents: Record<string, AgentEntry>;
}

export interface FactsDoc {
  kind: 'flt/facts';
  schema: number;
  owner: NodeId;
  /** The stable facts, updated field by field; absent until the first collection. */
  facts?: Omit<Facts, 'collectedAt'>;
  /** When the facts last changed (not when they were last checked: that would grow history). */
  changedAt?: string;
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `root document: ${what}`);
}

const str = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;

/** The agents of a root document, validated; malformed entries are skipped, not trusted. */
export function agentsOf(root: unknown): AgentEntry[] {
  if (typeof root !== 'object' || root === null) bad('not a map');
  const agents = (root as { agents?: unknown }).agents;
  if (typeof agents !== 'object' || agents === null) return [];
  const out: AgentEntry[] = [];
  for (const [key, e] of Object.entries(agents as Record<string, unknown>)) {
    if (typeof e !== 'object' || e === null) continue;
    const a = e as Record<string, unknown>;
    if (!isNodeId(key) || a.nodeId !== key || !str(a.factsDocId, 64) || !str(a.factsWriteKey, 64))
      continue;
    if (!str(a.enrolledAt, 40) || !str(a.lastSeen, 40)) continue;
    out.push({
      nodeId: key,
      factsDocId: a.factsDocId as DocumentId,
      factsWriteKey: a.factsWriteKey,
      enrolledAt: a.enrolledAt,
      lastSeen: a.lastSeen,
      summary: summaryOf(a.summary),
    });
  }
  return out.sort(
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
