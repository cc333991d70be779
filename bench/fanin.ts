// Group `fanin`: N agents with real iroh endpoints on 127.0.0.1 enroll with one coordinator and
// publish their facts, timed until the coordinator's fleet table has all of them. The
// coordinator is the real CLI in a child process (processes.ts) so that its memory can be read
// alone; the agents, and the admin that polls the fleet table, run in this process.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '../src/roles/admin.js';
import { Agent } from '../src/roles/agent.js';
import { sampleFacts } from './facts-sample.js';
import { benchConfig, benchLogger } from './fleet-config.js';
import { CoordinatorProcess } from './processes.js';
import { median, type BenchOptions, type GroupResult, type Measurement } from './stats.js';
import { closeAll, withDeadline } from './wait.js';

const SIZES = { full: 100, quick: 20 } as const;
/**
 * How long the whole fleet may take to appear; after that the run is reported as "> T s" with
 * how many agents had made it. Keeps a full `npm run bench` near 10 minutes.
 */
const DEADLINE_MS = { full: 120_000, quick: 60_000 } as const;
/** Between two polls of the admin's fleet table; the time resolution of the measurement. */
const POLL_MS = 100;
/** At most one progress line this often while waiting. */
const PROGRESS_MS = 10_000;
/** For the coordinator's ticket, and for every rpc of agents and admin (default 10 s). */
const START_TIMEOUT_MS = 30_000;
const RPC_TIMEOUT = '30s';

interface FanInSample {
  /** From the first Agent.start to the admin seeing N agents with a hostname (or the deadline). */
  readonly ms: number;
  /** Agents with a hostname in the fleet table at the end; N unless cut off. */
  readonly complete: number;
  readonly cutOff: boolean;
  /** From the first Agent.start until every Agent.start has resolved (endpoints bound). */
  readonly startedMs: number;
  /** The coordinator's VmRSS before the agents start and after the fleet is complete, KiB. */
  readonly coordBeforeKiB: number;
  readonly coordAfterKiB: number;
  /** CPU seconds the coordinator used over the same span. */
  readonly coordCpuS: number;
  /** CPU seconds this process (agents and admin) used over the same span. */
  readonly selfCpuS: number;
  /** This process (agents and admin): rss and heapUsed deltas over the same span, bytes. */
  readonly selfRssDelta: number;
  readonly selfHeapDelta: number;
  /** Documents open in each agent's Repo when the fleet is complete (mean). */
  readonly docsPerAgent: number;
  /** automerge-repo's unhandled whenReady() timeouts in this process (see countRepoTimeouts). */
  readonly repoTimeouts: number;
}

/** When the poll saw the whole fleet, or how far it got by the deadline. */
interface FleetSeen {
  readonly at: number;
  /** Agents with a hostname at the last successful poll. */
  readonly complete: number;
  readonly cutOff: boolean;
}

/**
 * Polls the admin's fleet table until it holds `n` agents with a hostname, or the deadline
 * passes. A poll that fails (an rpc or sync timeout under load) is reported and retried.
 */
async function untilFleet(
  admin: Admin,
  n: number,
  t0: number,
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<FleetSeen> {
  const deadline = t0 + deadlineMs;
  let complete = 0;
  let reportedAt = t0;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return { at: deadline, complete, cutOff: true };
    try {
      const view = await withDeadline(admin.fleet(), left, 'the fleet table');
      complete = view.agents.filter((a) => a.hostname !== null).length;
    } catch (err) {
      if (performance.now() >= deadline) return { at: deadline, complete, cutOff: true };
      progress(
        `  fleet poll failed, retrying: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const at = performance.now();
    if (complete === n) return { at, complete, cutOff: false };
    if (at - reportedAt >= PROGRESS_MS) {
      progress(
        `  ${complete}/${n} agents in the fleet table after ${((at - t0) / 1000).toFixed(0)} s`,
      );
      reportedAt = at;
    }
    await sleep(POLL_MS);
  }
}

/**
 * automerge-repo 2.5.6 leaves a rejection unhandled when a document a peer has is not ready here
 * within 60 s: CollectionSynchronizer calls `void docSynchronizer.beginSync(...)`, which awaits
 * `handle.whenReady()` without a catch, and Node would end the whole bench. Those rejections are
 * counted, not fatal. The listener stays for the life of the process because the 60 s timers
 * outlive the repos that set them; any other unhandled rejection is rethrown, as Node would.
 */
const repoTimeouts = { count: 0, installed: false };

function countRepoTimeouts(): void {
  if (repoTimeouts.installed) return;
  repoTimeouts.installed = true;
  process.on('unhandledRejection', (reason: unknown) => {
    const isRepoTimeout =
      reason instanceof Error &&
      reason.name === 'TimeoutError' &&
      reason.message.startsWith('withTimeout:');
    if (isRepoTimeout) repoTimeouts.count++;
    else
      process.nextTick(() => {
        throw reason;
      });
  });
}

/** Starts every agent at once; on any failure closes those that started, then throws. */
async function startAgents(root: string, ticket: string, n: number): Promise<Agent[]> {
  const configs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      benchConfig(join(root, `agent-${i}`), {
        coordinator: ticket, // default facts interval (60 s), as deployed agents run
        'rpc-timeout': RPC_TIMEOUT,
      }),
    ),
  );
  const log = benchLogger('bench-agent');
  const settled = await Promise.allSettled(
    configs.map((config, i) => Agent.start(config, log, () => Promise.resolve(sampleFacts(i)))),
  );
  const agents = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    await closeAgents(agents).catch(() => undefined); // the start failure is the one to report
    throw failed.reason;
  }
  return agents;
}

/** Closes agents in parallel (each close waits on its endpoint), reporting every failure. */
async function closeAgents(agents: readonly Agent[]): Promise<void> {
  const settled = await Promise.allSettled(agents.map((a) => a.close()));
  const errors: unknown[] = settled.flatMap((r) =>
    r.status === 'rejected' ? [r.reason as unknown] : [],
  );
  if (errors.length > 0)
    throw new AggregateError(errors, `${errors.length} agent(s) failed to close`);
}

async function fanInOnce(
  n: number,
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<FanInSample> {
  const root = await mkdtemp(join(tmpdir(), 'flt-bench-fanin-'));
  countRepoTimeouts();
  const timeoutsBefore = repoTimeouts.count;
  let coordinator: CoordinatorProcess | undefined;
  let admin: Admin | undefined;
  let agents: Agent[] = [];
  try {
    coordinator = await CoordinatorProcess.start(join(root, 'coordinator'), START_TIMEOUT_MS);
    const adminConfig = await benchConfig(join(root, 'admin'), {
      coordinator: coordinator.ticket,
      'rpc-timeout': RPC_TIMEOUT,
    });
    admin = await Admin.open(adminConfig, benchLogger('bench-admin'), false);
    await admin.fleet(); // connected and synced before the clock starts
    const coordBefore = await coordinator.memory();
    const coordCpuBefore = await coordinator.cpuSeconds();
    const selfBefore = process.memoryUsage();
    const selfCpuBefore = process.cpuUsage();
    progress(`  starting ${n} agents`);
    const t0 = performance.now();
    agents = await startAgents(root, coordinator.ticket, n);
    const startedMs = performance.now() - t0;
    const seen = await untilFleet(admin, n, t0, deadlineMs, progress);
    const coordAfter = await coordinator.memory();
    const coordCpuS = (await coordinator.cpuSeconds()) - coordCpuBefore;
    const selfAfter = process.memoryUsage();
    const selfCpu = process.cpuUsage(selfCpuBefore);
    const docs = agents.map((a) => Object.keys(a.node.repo!.handles).length);
    return {
      ms: seen.at - t0,
      complete: seen.complete,
      cutOff: seen.cutOff,
      startedMs,
      coordBeforeKiB: coordBefore.rssKiB,
      coordAfterKiB: coordAfter.rssKiB,
      coordCpuS,
      selfCpuS: (selfCpu.user + selfCpu.system) / 1e6,
      selfRssDelta: selfAfter.rss - selfBefore.rss,
      selfHeapDelta: selfAfter.heapUsed - selfBefore.heapUsed,
      docsPerAgent: docs.reduce((a, b) => a + b, 0) / docs.length,
      repoTimeouts: repoTimeouts.count - timeoutsBefore,
    };
  } finally {
    const started = agents;
    const c0 = performance.now();
    await closeAll([
      () => closeAgents(started),
      () => admin?.close(),
      () => coordinator?.stop(),
      () => rm(root, { recursive: true, force: true }),
    ]);
    progress(
      `  closed ${started.length} agents, admin, coordinator in ${((performance.now() - c0) / 1000).toFixed(1)} s`,
    );
  }
}

export async function runFanin(opts: BenchOptions): Promise<GroupResult> {
  const n = opts.quick ? SIZES.quick : SIZES.full;
  const deadlineMs = opts.quick ? DEADLINE_MS.quick : DEADLINE_MS.full;
  const reps = opts.reps ?? 1;
  const runs: FanInSample[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    opts.progress(`${n} agents -> 1 coordinator (${rep}/${reps})`);
    runs.push(await fanInOnce(n, deadlineMs, opts.progress));
  }
  const cut = runs.find((r) => r.cutOff);
  const row = (
    name: string,
    unit: Measurement['unit'],
    pick: (r: FanInSample) => number,
    note: string,
    lowerBound = false,
  ): Measurement => {
    const samples = runs.map(pick);
    const value = median(samples);
    return { group: 'fanin', name, stat: 'median', value, unit, samples, note, lowerBound };
  };
  const KiB = 1024;
  const end = cut ? 'at the deadline' : 'at completion';
  const measurements = [
    row(
      `${n} agents: fleet complete`,
      's',
      (r) => r.ms / 1000,
      cut
        ? `cut off at the ${deadlineMs / 1000} s deadline with ${cut.complete}/${n} in the table`
        : `first Agent.start -> admin sees ${n} hostnames (polled every ${POLL_MS} ms)`,
      cut !== undefined,
    ),
    row(
      `${n} agents: all started`,
      's',
      (r) => r.startedMs / 1000,
      'every Agent.start resolved (key, endpoint, store)',
    ),
    row(
      `${n} agents: fan-in rate`,
      'agents/s',
      (r) => r.complete / (r.ms / 1000),
      'agents in the table / time',
    ),
    row(
      'coordinator RSS per agent',
      'KiB',
      (r) => (r.coordAfterKiB - r.coordBeforeKiB) / n,
      `child process VmRSS (${end} - before agents) / N`,
    ),
    row(
      'coordinator RSS before agents',
      'MiB',
      (r) => r.coordBeforeKiB / KiB,
      'child process, idle',
    ),
    row(
      `coordinator RSS with ${n} agents`,
      'MiB',
      (r) => r.coordAfterKiB / KiB,
      `child process, ${end}`,
    ),
    row('coordinator CPU during fan-in', 's', (r) => r.coordCpuS, 'child process user + system'),
    row(
      'bench process CPU during fan-in',
      's',
      (r) => r.selfCpuS,
      `${n} agents + 1 admin, user + system (2 cores: can exceed wall time)`,
    ),
    row(
      'bench process RSS per agent',
      'KiB',
      (r) => r.selfRssDelta / KiB / n,
      `${n} agents + 1 admin in one process (not the coordinator)`,
    ),
    row(
      'bench process heapUsed per agent',
      'KiB',
      (r) => r.selfHeapDelta / KiB / n,
      'same span; no forced GC',
    ),
    row(
      'documents per agent repo',
      'docs',
      (r) => r.docsPerAgent,
      `handles open in each agent Repo ${end} (its own facts doc = 1)`,
    ),
    row(
      'automerge-repo whenReady timeouts',
      'count',
      (r) => r.repoTimeouts,
      'unhandled rejections in the bench process (each would end a real agent)',
    ),
  ];
  return { measurements, ratios: [] };
}
