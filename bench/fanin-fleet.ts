// The set-up the fleet groups share (fanin.ts, recover.ts, deploy.ts): a temp root, the fleet's
// admin key, a coordinator (the real CLI), and fanin-child.ts with N agents, ready for `go`.
// After the group's body: the child is asked to close (its `closed` step, or nothing after the
// grace), then stopped, the coordinator stopped and the root removed, whatever happened.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import type { FanInStep } from './fanin-protocol.js';
import { CoordinatorProcess, StepProcess } from './processes.js';
import { closeAll } from './wait.js';

/** For the coordinator's ticket and the agents process to be ready (and margin on its steps). */
export const START_TIMEOUT_MS = 30_000;
/**
 * A graceful close of the agents and the admin, after which their process is killed. Closing 100
 * agents flushes every document each one holds, with fsync; in one process on 2 cores that took
 * 208 s once.
 */
export const CLOSE_GRACE_MS = 30_000;

/** More time for the agents' child to be ready, per agent (see withFanInFleet). */
const READY_PER_AGENT_MS = 100;

const CHILD = fileURLToPath(new URL('./fanin-child.js', import.meta.url));

export interface FanInFleet {
  readonly root: string;
  /** The fleet's initial admin (the child's admin), for a coordinator restarted by the body. */
  readonly adminId: string;
  /** The running coordinator; a body that restarts it puts the new one here. */
  coordinator: CoordinatorProcess;
  readonly agents: StepProcess<FanInStep>;
}

export interface FanInFleetOptions {
  /** Temp dir prefix: `flt-bench-<name>-`. */
  readonly name: string;
  readonly n: number;
  readonly deadlineMs: number;
  /** The coordinator's socket (default 127.0.0.1:0). */
  readonly bind?: string;
  /** More arguments for fanin-child.ts (the deploy group: NIX_STORE SYSTEM_PATH). */
  readonly childArgs?: readonly string[];
  readonly progress: (line: string) => void;
}

/** Runs `body` on a fresh fleet; resolves with its value and the child's `closed` step, if any. */
export async function withFanInFleet<T>(
  opts: FanInFleetOptions,
  body: (fleet: FanInFleet) => Promise<T>,
): Promise<{ value: T; closed: Extract<FanInStep, { step: 'closed' }> | undefined }> {
  const root = await mkdtemp(join(tmpdir(), `flt-bench-${opts.name}-`));
  let coordinator: CoordinatorProcess | undefined;
  let fleet: FanInFleet | undefined;
  try {
    const adminId = (await loadOrCreateNodeKey(join(root, 'admin'))).key.nodeId;
    coordinator = await CoordinatorProcess.start(
      join(root, 'coordinator'),
      START_TIMEOUT_MS,
      adminId,
      opts.bind,
    );
    const args = [root, coordinator.ticket, String(opts.n), String(opts.deadlineMs)];
    const agents = StepProcess.start<FanInStep>(CHILD, [...args, ...(opts.childArgs ?? [])], (l) =>
      opts.progress(`  ${l}`),
    );
    fleet = { root, adminId, coordinator, agents };
    // Before `ready` the child issues N tokens (each a signed admin operation) and starts its
    // agent hosts: on a loaded machine 1,000 tokens took more than START_TIMEOUT_MS.
    await agents.next('ready', START_TIMEOUT_MS + opts.n * READY_PER_AGENT_MS);
    const value = await body(fleet);
    agents.send('close');
    const closed = await agents.next('closed', CLOSE_GRACE_MS).catch(() => undefined);
    return { value, closed };
  } finally {
    const [c, a] = [fleet?.coordinator ?? coordinator, fleet?.agents];
    await closeAll([
      async () => void (await a?.end(5_000)), // at once after `closed`; else killed
      () => c?.stop(),
      () => rm(root, { recursive: true, force: true }),
    ]);
  }
}
