// Group `fanin`: N agents with real iroh endpoints on 127.0.0.1 enroll with one coordinator and
// publish their facts, timed until the fleet table has all of them. Three processes, so that
// each one's memory and CPU can be read alone from /proc: the coordinator is the real CLI
// (processes.ts), the N agents and the admin that polls the fleet table run in fanin-child.ts,
// and this process only drives them and reads the numbers.

import { POLL_MS, type FanInStep } from './fanin-protocol.js';
import {
  CLOSE_GRACE_MS,
  START_TIMEOUT_MS,
  withFanInFleet,
  type FanInFleet,
} from './fanin-fleet.js';
import { median, type BenchOptions, type GroupResult, type Measurement } from './stats.js';

const SIZES = { full: 100, quick: 20 } as const;
/**
 * How long the whole fleet may take to appear; after that the run is reported as "> T s" with
 * how many agents had made it. Keeps a full `npm run bench` near 10 minutes.
 */
const DEADLINE_MS = { full: 90_000, quick: 60_000 } as const;
export interface FanInSample {
  readonly fleet: Extract<FanInStep, { step: 'fleet' }>;
  /** From `go` until every Agent.start had resolved (key, endpoint, store). */
  readonly startedMs: number;
  /** VmRSS of the coordinator and of the agents process, before `go` and at the fleet step. */
  readonly coordBeforeKiB: number;
  readonly coordAfterKiB: number;
  readonly agentsBeforeKiB: number;
  readonly agentsAfterKiB: number;
  /** CPU seconds (user + system) each used over the same span. */
  readonly coordCpuS: number;
  readonly agentsCpuS: number;
  /** Of coordCpuS, its main thread's: the serial part, which one core at most can carry. */
  readonly coordMainCpuS: number;
}

/**
 * On a fleet from withFanInFleet, ready for `go`: starts the N agents and waits until the admin's
 * table has them all or the deadline passed, reading both processes' memory and CPU around it.
 * Also used by the scale group (scale.ts), which goes on with the same fleet.
 */
export async function fanInSample(
  { coordinator: c, agents: a }: FanInFleet,
  n: number,
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<FanInSample> {
  const sample = () =>
    Promise.all([
      c.memory(),
      c.cpuSeconds(),
      a.memory(),
      a.cpuSeconds(),
      c.mainThreadCpuSeconds(),
    ] as const);
  const [coordBefore, coordCpu0, agentsBefore, agentsCpu0, coordMain0] = await sample();
  progress(`  starting ${n} agents`);
  a.send('go');
  const started = await a.next('started', deadlineMs + START_TIMEOUT_MS);
  const fleet = await a.next('fleet', deadlineMs + START_TIMEOUT_MS);
  const [coordAfter, coordCpu1, agentsAfter, agentsCpu1, coordMain1] = await sample();
  return {
    fleet,
    startedMs: started.ms,
    coordBeforeKiB: coordBefore.rssKiB,
    coordAfterKiB: coordAfter.rssKiB,
    agentsBeforeKiB: agentsBefore.rssKiB,
    agentsAfterKiB: agentsAfter.rssKiB,
    coordCpuS: coordCpu1 - coordCpu0,
    agentsCpuS: agentsCpu1 - agentsCpu0,
    coordMainCpuS: coordMain1 - coordMain0,
  };
}

async function fanInOnce(
  n: number,
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<FanInSample> {
  const opts = { name: 'fanin', n, deadlineMs, progress };
  const { value, closed } = await withFanInFleet(opts, (f) =>
    fanInSample(f, n, deadlineMs, progress),
  );
  progress(
    closed
      ? `  closed ${n} agents and the admin in ${(closed.ms / 1000).toFixed(1)} s`
      : `  agents did not close within ${CLOSE_GRACE_MS / 1000} s: their process is killed`,
  );
  return value;
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
  const cut = runs.find((r) => r.fleet.cutOff);
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
      (r) => r.fleet.ms / 1000,
      cut
        ? `cut off at the ${deadlineMs / 1000} s deadline: ${cut.fleet.complete}/${n} in the table, ${cut.fleet.polls} polls answered, ${cut.fleet.failedPolls} failed`
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
      (r) => r.fleet.complete / (r.fleet.ms / 1000),
      'agents in the table / time',
    ),
    row(
      'coordinator RSS per agent',
      'KiB',
      (r) => (r.coordAfterKiB - r.coordBeforeKiB) / n,
      `coordinator process VmRSS (${end} - before agents) / N`,
    ),
    row(
      'coordinator RSS before agents',
      'MiB',
      (r) => r.coordBeforeKiB / KiB,
      'idle, root document open',
    ),
    row(`coordinator RSS with ${n} agents`, 'MiB', (r) => r.coordAfterKiB / KiB, end),
    row('coordinator CPU during fan-in', 's', (r) => r.coordCpuS, 'user + system, same span'),
    row(
      "coordinator main thread's CPU during fan-in",
      's',
      (r) => r.coordMainCpuS,
      'of the above: its JavaScript, which one core at most can carry',
    ),
    row(
      'agents process CPU during fan-in',
      's',
      (r) => r.agentsCpuS,
      `${n} agents + 1 admin, user + system (2 cores: can exceed wall time)`,
    ),
    row(
      'agents process RSS per agent',
      'KiB',
      (r) => (r.agentsAfterKiB - r.agentsBeforeKiB) / n,
      `VmRSS (${end} - before agents) / N`,
    ),
    row(
      'agents process heapUsed per agent',
      'KiB',
      (r) => r.fleet.heapDelta / KiB / n,
      'same span; no forced GC',
    ),
    row(
      'documents per agent repo',
      'docs',
      (r) => r.fleet.docsPerAgent,
      `handles open in each agent Repo ${end} (facts, status, desired, admins: 4)`,
    ),
    row(
      'automerge-repo unhandled timeouts',
      'count',
      (r) => r.fleet.repoTimeouts,
      'in the agents process (each would end a real agent or admin)',
    ),
  ];
  return { measurements, ratios: [] };
}
