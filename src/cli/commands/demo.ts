// `flt demo [--once]`: a whole fleet on loopback in one process: a coordinator, two agents
// (each with its own state dir and key) and an admin view that prints the fleet table, then a
// new table whenever it changes, until Ctrl-C. `--once` exits 0 as soon as both agents are in.
// Everything lives in `<state-dir>/demo`, printed on start; a second run reuses it.

import { join } from 'node:path';
import { sleep } from '../../../sync/backoff.js';
import { FltError } from '../../../sync/errors.js';
import { createLogger } from '../../../sync/log.js';
import { Admin, type FleetView } from '../../roles/admin.js';
import { Agent } from '../../roles/agent.js';
import { Coordinator } from '../../roles/coordinator.js';
import { loadOrCreateNodeKey } from '../../identity/index.js';
import type { Invocation } from '../invocation.js';
import type { Output } from '../output.js';
import { fleetJson, fleetTable } from '../table.js';
import { untilSignal } from './coordinator.js';

/** How often the admin view refreshes, and how long `--once` waits for both agents. */
const REFRESH_MS = 2000;
const ONCE_DEADLINE_MS = 60_000;

export async function runDemo({ opts, config, log, out }: Invocation): Promise<void> {
  const dir = join(config.stateDir, 'demo');
  log.info(`demo state in ${dir}`);
  out.line(`flt demo: coordinator, 2 agents and an admin on 127.0.0.1; state in ${dir}`);
  const stopped = new AbortController();
  if (!opts.once) void untilSignal().then(() => stopped.abort());
  const local = {
    ...config,
    relay: 'disabled' as const,
    discovery: 'none' as const,
    bind: undefined,
  };
  const quiet = (name: string) =>
    createLogger(config.logLevel === 'debug' ? 'debug' : 'warn', name);
  const nodes: { close(): Promise<void> }[] = [];
  try {
    // The bootstrap a real fleet goes through: the admin's key is the coordinator's initial
    // admin; agent1 enrolls with a one-time token, agent2 is approved by node id beforehand.
    const adminId = (await loadOrCreateNodeKey(join(dir, 'admin'))).key.nodeId;
    const agent2Id = (await loadOrCreateNodeKey(join(dir, 'agent2'))).key.nodeId;
    const coordinator = await Coordinator.start(
      {
        ...local,
        stateDir: join(dir, 'coordinator'),
        bind: { host: '127.0.0.1', port: 0 },
        admins: [adminId],
      },
      quiet('coordinator'),
    );
    nodes.push(coordinator);
    const joinFleet = {
      ...local,
      coordinator: coordinator.ticket,
      factsIntervalMs: Math.min(config.factsIntervalMs, 10_000),
    };
    const admin = await Admin.open(
      { ...joinFleet, stateDir: join(dir, 'admin') },
      quiet('admin'),
      false,
    );
    nodes.push(admin);
    const { token } = await admin.enrollToken(10 * 60_000);
    await admin.submit({ op: 'agent.approve', node: agent2Id }).catch((err: unknown) => {
      if (!(err instanceof FltError && err.code === 'BAD_ARGUMENT')) throw err; // approved before
    });
    for (const [name, enrollToken] of [
      ['agent1', token],
      ['agent2', undefined],
    ] as const)
      nodes.push(
        await Agent.start({ ...joinFleet, enrollToken, stateDir: join(dir, name) }, quiet(name)),
      );
    await watch(admin, out, config.json, opts.once === true, stopped.signal);
  } finally {
    for (const n of nodes.reverse())
      await n.close().catch((err: unknown) => log.warn(`demo shutdown: ${String(err)}`));
  }
}

/** Prints the table whenever it changes; with `once`, returns when both agents are listed. */
async function watch(
  admin: Admin,
  out: Output,
  json: boolean,
  once: boolean,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + ONCE_DEADLINE_MS;
  let shown = '';
  while (!signal.aborted) {
    const view = await admin.fleet();
    const key = JSON.stringify(view.agents.map((a) => [a.nodeId, a.hostname, a.os, a.online]));
    if (key !== shown) {
      shown = key;
      if (json) out.json(fleetJson(view).agents);
      else out.line(`\n${new Date().toISOString()}\n${fleetTable(view)}`);
    }
    if (once && complete(view)) return;
    if (once && Date.now() > deadline)
      throw new FltError(
        'TIMEOUT',
        `the agents did not all appear within ${ONCE_DEADLINE_MS / 1000} s`,
      );
    await sleep(REFRESH_MS, signal);
  }
}

function complete(view: FleetView): boolean {
  return (
    view.agents.length >= 2 && view.agents.every((a) => a.hostname !== null && a.online === true)
  );
}
