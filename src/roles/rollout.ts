// Deployments as the admin sees them (issue 11, design §1 targets, §6): resolving TARGET words to
// node ids, the seq each target is known to be at, and the views `admin status`, `admin
// deployments`, the fleet table's CONFIG column and `deploy --wait` compute from the replica.
// Pure functions over validated documents: the Admin gathers the trusted inputs.

import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import { pickEntry, type AgentEntry } from '../docs/root.js';
import type { SentDeployment, QueuedDeployment } from '../docs/outbox.js';
import {
  TERMINAL_STATES,
  type DeployCode,
  type DeploymentStatus,
  type DeployState,
  type FetchStatus,
  type StatusContent,
} from '../docs/status.js';
import type { AuditEntry } from '../trust/authority.js';
import type { DeployAction, SignedPart } from '../trust/deployment.js';

/** What `deploy` was asked to target. */
export interface TargetQuery {
  /** Node ids, unique node id prefixes, hostnames. */
  readonly words: readonly string[];
  readonly all: boolean;
  /** KEY=VALUE, ANDed. */
  readonly labels: readonly (readonly [string, string])[];
}

/**
 * The agents a deployment targets: each word (pickEntry), `all` (every agent not revoked nor
 * forked) and the agents carrying every label given (not revoked nor forked), united.
 * BAD_ARGUMENT when empty, when a word names a revoked agent, or when a target's record has no
 * status document (an agent of a flt before deployments: it could not report).
 */
export function resolveTargets(entries: readonly AgentEntry[], q: TargetQuery): AgentEntry[] {
  const chosen = new Map<NodeId, AgentEntry>();
  for (const w of q.words) {
    const e = pickEntry(entries, w);
    if (e.revoked)
      throw new FltError('BAD_ARGUMENT', `${shortId(e.nodeId)} (${w}) is revoked: not a target`);
    chosen.set(e.nodeId, e);
  }
  const eligible = entries.filter((e) => !e.forked && !e.revoked);
  if (q.all) for (const e of eligible) chosen.set(e.nodeId, e);
  if (q.labels.length > 0)
    for (const e of eligible)
      if (q.labels.every(([k, v]) => e.labels?.[k] === v)) chosen.set(e.nodeId, e);
  if (chosen.size === 0) {
    const what = q.labels.map(([k, v]) => `${k}=${v}`).join(', ');
    throw new FltError(
      'BAD_ARGUMENT',
      q.labels.length > 0 ? `no agent carries ${what}` : 'no target: name agents, --all or --label',
    );
  }
  const old = [...chosen.values()].filter((e) => !e.statusDocId);
  if (old.length > 0)
    throw new FltError(
      'BAD_ARGUMENT',
      `${old.map((e) => shortId(e.nodeId)).join(', ')} run a flt without deployments (no status document); upgrade them first`,
    );
  return [...chosen.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
}

/**
 * The highest seq the replica shows for each agent: its desired summary, its status hwm and the
 * outbox's queued parts. assignSeqs signs above it.
 */
export function knownSeqs(
  entries: readonly AgentEntry[],
  statuses: ReadonlyMap<NodeId, StatusContent | null>,
  queued: readonly QueuedDeployment[],
): Map<NodeId, number> {
  const known = new Map<NodeId, number>();
  const raise = (t: NodeId, seq: number) => known.set(t, Math.max(known.get(t) ?? 0, seq));
  for (const e of entries) {
    raise(e.nodeId, e.desired?.seq ?? 0);
    raise(e.nodeId, statuses.get(e.nodeId)?.system?.hwm ?? 0);
  }
  for (const q of queued)
    for (const p of q.parts)
      for (const [t, seq] of Object.entries(p.targets)) raise(t as NodeId, seq);
  return known;
}

/** The fleet table's CONFIG state of one agent. */
export type ConfigState = 'ok' | 'pending' | 'FAILED' | 'ROLLED-BACK' | 'REFUSED';

export interface ConfigView {
  state: ConfigState;
  desired: string;
  current: string | null;
  rebootNeeded: boolean | null;
}

/** Terminal states that are not a success, as the CONFIG column says them. */
const BAD_STATES: Partial<Record<DeployState, ConfigState>> = {
  failed: 'FAILED',
  'rolled-back': 'ROLLED-BACK',
  refused: 'REFUSED',
};

/** CONFIG from the root record's summaries (the coordinator's, from the agent's signed status). */
export function configOf(e: AgentEntry): ConfigView | null {
  const desired = e.desired;
  if (!desired) return null;
  const deploy = e.deploy ?? null;
  const current = deploy?.current ?? null;
  const last = deploy?.last?.id === desired.id ? deploy.last : null;
  let state: ConfigState;
  const bad = last ? BAD_STATES[last.state] : undefined;
  if (bad) state = bad;
  else if (desired.action === 'boot') state = last?.state === 'succeeded' ? 'ok' : 'pending';
  else state = current === desired.storePath ? 'ok' : 'pending';
  return { state, desired: desired.storePath, current, rebootNeeded: deploy?.rebootNeeded ?? null };
}

/** The CONFIG cell: the state, `+reboot` when a reboot is needed, `-` when never deployed. */
export function configCell(c: ConfigView | null): string {
  if (!c) return '-';
  return c.rebootNeeded ? `${c.state} reboot` : c.state;
}

/** One agent in `admin status`. */
export interface AgentStatus {
  nodeId: NodeId;
  hostname: string | null;
  desired: { id: string; seq: number; storePath: string; action: DeployAction } | null;
  current: string | null;
  booted: string | null;
  profile: string | null;
  rebootNeeded: boolean | null;
  onDesired: boolean | null;
  /** The newest deployment record of the agent's status document. */
  last: Pick<
    DeploymentStatus,
    'id' | 'state' | 'code' | 'reason' | 'rollback' | 'fetch' | 'times'
  > | null;
  /** The status document's newest signed state is not held (yet): fields come from root. */
  statusUnavailable: boolean;
  /** With AGENT: every deployment record the agent keeps. */
  deployments?: DeploymentStatus[];
}

/** `admin status` of one agent, from its root record and its status document's trusted view. */
export function agentStatus(
  e: AgentEntry,
  status: StatusContent | null,
  detail = false,
): AgentStatus {
  const d = e.desired ?? null;
  const sys = status?.system ?? null;
  const current = sys ? sys.current : (e.deploy?.current ?? null);
  const booted = sys ? sys.booted : (e.deploy?.booted ?? null);
  const profile = sys?.profile ?? null;
  const rebootNeeded = sys ? sys.rebootNeeded : (e.deploy?.rebootNeeded ?? null);
  let onDesired: boolean | null = null;
  if (d) onDesired = d.action === 'boot' ? profile === d.storePath : current === d.storePath;
  const rec = status?.deployments[0];
  const last: AgentStatus['last'] = rec
    ? {
        id: rec.id,
        state: rec.state,
        times: rec.times,
        ...(rec.code !== undefined ? { code: rec.code } : {}),
        ...(rec.reason !== undefined ? { reason: rec.reason } : {}),
        ...(rec.rollback !== undefined ? { rollback: rec.rollback } : {}),
        ...fetchOf(rec),
      }
    : e.deploy?.last
      ? { ...e.deploy.last, times: {} }
      : null;
  return {
    nodeId: e.nodeId,
    hostname: e.summary?.hostname ?? null,
    desired: d ? { id: d.id, seq: d.seq, storePath: d.storePath, action: d.action } : null,
    current,
    booted,
    profile,
    rebootNeeded,
    onDesired,
    last,
    statusUnavailable: status === null,
    ...(detail ? { deployments: status?.deployments ?? [] } : {}),
  };
}

/** One deployment in `admin deployments`. */
export interface DeploymentView {
  id: string;
  at: string;
  signer: NodeId;
  storePath: string;
  action: DeployAction;
  targets: NodeId[];
  /** recorded: in the verified audit trail; queued: in the outbox; refused: by the coordinator. */
  where: 'recorded' | 'queued' | 'refused';
  /** Per agent state, from the status documents ('pending' when the agent has no record). */
  states: Record<string, number>;
  error?: { code: string; message: string };
}

/** Deployments, newest first: the verified trail's deploy entries, plus the outbox's. */
export function deploymentViews(
  trail: readonly AuditEntry[],
  statuses: ReadonlyMap<NodeId, StatusContent | null>,
  outbox: { queued: readonly QueuedDeployment[]; sent: readonly SentDeployment[] },
): DeploymentView[] {
  const byId = new Map<string, SignedPart[]>();
  for (const e of trail)
    if (e.kind === 'deploy') byId.set(e.part.id, [...(byId.get(e.part.id) ?? []), e.part]);
  const view = (parts: SignedPart[], where: DeploymentView['where']): DeploymentView => {
    const p = parts[0]!;
    const targets = parts.flatMap((x) => Object.keys(x.targets) as NodeId[]);
    const states: Record<string, number> = {};
    if (where === 'recorded')
      for (const t of targets) {
        const rec = statuses.get(t)?.deployments.find((r) => r.id === p.id);
        const s = rec?.state ?? 'pending';
        states[s] = (states[s] ?? 0) + 1;
      }
    return {
      id: p.id,
      at: p.at,
      signer: p.signer,
      storePath: p.storePath,
      action: p.action,
      targets,
      where,
      states,
    };
  };
  const out = [...byId.values()].map((parts) => view(parts, 'recorded'));
  for (const q of outbox.queued) if (!byId.has(q.id)) out.push(view(q.parts, 'queued'));
  const refused = new Map(outbox.sent.filter((s) => s.error).map((s) => [s.id, s]));
  for (const [id, s] of refused)
    if (!byId.has(id)) {
      const at = s.queuedAt;
      out.push({
        id,
        at,
        signer: '' as NodeId,
        storePath: s.storePath,
        action: s.action,
        targets: [],
        where: 'refused',
        states: {},
        error: s.error!,
      });
    }
  return out.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
}

/** Where one target of a deployment is, for `deploy --wait`. */
export interface TargetProgress {
  nodeId: NodeId;
  hostname: string | null;
  /** A status state, or: pending (no record yet), stale/unknown (the coordinator did not place it). */
  state: DeployState | 'pending' | 'stale' | 'unknown';
  code?: DeployCode;
  reason?: string;
  /** While `fetching`: the agent's last progress figures (written at most every 5 s). */
  fetch?: FetchStatus;
}

/** `{fetch}` of a record that is fetching and says how far (issue 12), else nothing. */
function fetchOf(rec: DeploymentStatus): { fetch?: FetchStatus } {
  return rec.state === 'fetching' && rec.fetch !== undefined ? { fetch: { ...rec.fetch } } : {};
}

/** Whether `p` will not change any more. */
export function isTerminal(p: TargetProgress): boolean {
  return (
    p.state === 'stale' || p.state === 'unknown' || TERMINAL_STATES.has(p.state as DeployState)
  );
}

/**
 * What `deploy --wait` compares to tell a change: the state, the code and, while fetching, the
 * figures (the agent writes them at most every 5 s, so each new one is a line).
 */
export function progressKey(p: TargetProgress): string {
  const f = p.fetch;
  return `${p.state} ${p.code ?? ''} ${f ? `${f.bytes}/${f.total} ${f.pathsDone}/${f.paths} ${f.rate}` : ''}`;
}

/** The progress of deployment `id` on one target, from its status document's trusted view. */
export function progressOf(
  id: string,
  e: AgentEntry,
  status: StatusContent | null,
): TargetProgress {
  const rec = status?.deployments.find((r) => r.id === id);
  const base = { nodeId: e.nodeId, hostname: e.summary?.hostname ?? null };
  if (!rec) return { ...base, state: 'pending' };
  return {
    ...base,
    state: rec.state,
    ...(rec.code !== undefined ? { code: rec.code } : {}),
    ...(rec.reason !== undefined ? { reason: rec.reason } : {}),
    ...fetchOf(rec),
  };
}
