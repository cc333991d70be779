// `flt agent`, `flt admin agents` and `flt admin facts AGENT`. The roles are imported by the
// runner that uses them: an offline read never loads the agent (or iroh, see roles/admin.ts).

import type { Invocation } from '../invocation.js';
import { withAdmin } from './with-admin.js';
import { PENDING_NOTE, UNVERIFIED_NOTE, fleetJson, fleetTable, forkNote } from '../table.js';
import { untilSignal } from './coordinator.js';

export async function runAgent({ config, log }: Invocation): Promise<void> {
  const stopped = untilSignal();
  const { Agent } = await import('../../roles/agent.js');
  const agent = await Agent.start(config, log);
  log.info('agent running', { node: agent.node.key.nodeId, facts: agent.factsDocId });
  try {
    const signal = await Promise.race([stopped, agent.failed]);
    log.info(`${signal}: shutting down`);
  } finally {
    await agent.close();
  }
  log.info('agent stopped');
}

export async function runAgents(inv: Invocation): Promise<void> {
  const { config, log, out } = inv;
  const view = await withAdmin(inv, (a) => a.fleet(), { reads: true });
  if (config.json) {
    out.json(fleetJson(view).agents); // an array, as documented: the note goes to stderr
    if (view.unverified) log.warn(UNVERIFIED_NOTE);
  } else out.line(fleetTable(view));
}

export async function runFacts(inv: Invocation): Promise<void> {
  const { args, config, out } = inv;
  const query = args[0] ?? '';
  const r = await withAdmin(inv, (a) => a.facts(query), { reads: true });
  const body = {
    nodeId: r.agent.nodeId,
    asOf: r.asOf,
    online: r.agent.online,
    lastSeen: r.agent.lastSeen,
    facts: r.facts,
    volatile: r.volatile,
    /** The facts document has changes its writer did not sign; `facts` leaves them out. */
    unverified: r.unverified,
    /** The agent signed newer facts than the coordinator holds yet; `facts` is the newest it has. */
    pending: r.pending,
    /** Set when the coordinator marked the agent forked; `facts` are as of before the fork. */
    forked: r.agent.forked,
  };
  if (config.json) return out.json(body);
  if (inv.opts.offline) out.line(`# offline: from the local replica as of ${r.asOf}`);
  out.line(JSON.stringify(body, null, 2));
  if (r.unverified) out.line(UNVERIFIED_NOTE);
  if (r.pending) out.line(PENDING_NOTE);
  if (r.agent.forked) out.line(forkNote(r.agent));
}
