// The fleet table as people read it: short node id, hostname, OS, NixOS version, last seen,
// online, and whether it runs its desired configuration (CONFIG). Times are shown relative to "now" ("12s ago") with the absolute time in --json.

import { shortId } from '../../sync/ids.js';
import type { AgentRow, FleetView } from '../roles/admin.js';
import { configCell } from '../roles/rollout.js';

export function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return '?';
  if (s < 90) return `${s}s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Said whenever a document has changes that no verified signature covers (they are not shown). */
export const UNVERIFIED_NOTE =
  'note: newer changes exist that no writer signature covers; they are not shown (unverified)';

/** Said when an agent signed newer facts than the coordinator holds yet (they are on the way). */
export const PENDING_NOTE =
  'note: the agent has newer changes that have not reached the coordinator yet; showing the newest verified state (pending)';

export function fleetTable(view: FleetView, now = Date.now()): string {
  const header = ['NODE', 'HOSTNAME', 'OS', 'NIXOS', 'LAST SEEN', 'ONLINE', 'CONFIG'];
  const rows = view.agents.map((a: AgentRow) => [
    shortId(a.nodeId),
    a.hostname ?? '-',
    a.os ?? '-',
    a.nixosVersion ?? '-',
    a.online ? 'now' : ago(a.lastSeen, now),
    a.online === null ? '?' : a.online ? 'yes' : 'no',
    configCell(a.config),
  ]);
  const title = view.offline
    ? `${view.agents.length} agents (offline: from the local replica as of ${view.asOf}, ${ago(view.asOf, now)})`
    : `${view.agents.length} agents (coordinator ${shortId(view.coordinator)})`;
  const notes = view.agents
    .filter((a) => a.forked)
    .map((a) => `\n${forkNote(a)}`)
    .join('');
  const note = view.unverified ? `\n${UNVERIFIED_NOTE}` : '';
  return `${title}\n${formatTable([header, ...rows])}${notes}${note}`;
}

/** The line the table and `admin facts` show under a forked agent. */
export function forkNote(a: AgentRow): string {
  return (
    `FORKED ${shortId(a.nodeId)} since ${a.forked?.at ?? '?'}: ${a.forked?.reason ?? ''}; ` +
    `its facts are refused until an admin decides: \`flt admin revoke ${a.nodeId}\``
  );
}

/** The JSON form of the table: one object per agent. */
export function fleetJson(view: FleetView) {
  return {
    asOf: view.asOf,
    offline: view.offline,
    coordinator: view.coordinator,
    agents: view.agents.map((a) => ({
      nodeId: a.nodeId,
      hostname: a.hostname,
      os: a.os,
      nixosVersion: a.nixosVersion,
      lastSeen: a.lastSeen,
      online: a.online,
      factsDocId: a.factsDocId,
      forked: a.forked,
      /** On its desired configuration? null: never deployed (rollout.ts configOf). */
      config: a.config,
    })),
  };
}
