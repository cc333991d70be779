// Group `deploy` (issue 11): N agents with real iroh endpoints, enrolled with one coordinator (the
// real CLI, its CPU read from /proc), each deploying with the `command` activator (`true`); an
// admin deploys one real Nix system (test/fixtures/systems.nix, built into a store of the bench
// run) to all of them, timed from the deploy call to every target's signed status saying
// `succeeded`. The agents and the admin run in fanin-child.ts; this process reads the numbers.
// Each agent's health check includes a liveness ping answered after its activation (sent at once
// when the check starts).

import { nixFixtures } from '../test/helpers/nix.js';
import type { FanInStep } from './fanin-protocol.js';
import { START_TIMEOUT_MS, withFanInFleet } from './fanin-fleet.js';
import { median, type BenchOptions, type GroupResult, type Measurement } from './stats.js';

const SIZES = { full: [10, 100], quick: [10] } as const;
/** For the fleet to enroll, and for the deployment to finish everywhere. */
const DEADLINE_MS = 120_000;

interface DeploySample {
  readonly n: number;
  readonly deployed: Extract<FanInStep, { step: 'deployed' }>;
  /** Coordinator CPU seconds (user + system) from the deploy command to all succeeded. */
  readonly coordCpuS: number;
  /** Its CPU seconds per second with the same fleet idle just before (heartbeats, pings). */
  readonly idleCpuPerS: number;
}

/** How long the idle coordinator's CPU is read before deploying. */
const IDLE_WINDOW_MS = 5_000;

async function deployOnce(
  n: number,
  store: string,
  system: string,
  progress: (line: string) => void,
): Promise<DeploySample> {
  const opts = { name: 'deploy', n, deadlineMs: DEADLINE_MS, childArgs: [store, system], progress };
  const { value } = await withFanInFleet(opts, async ({ coordinator, agents }) => {
    agents.send('go');
    const fleet = await agents.next('fleet', DEADLINE_MS + START_TIMEOUT_MS);
    if (fleet.cutOff) throw new Error(`only ${fleet.complete}/${n} agents enrolled in time`);
    const idle0 = await coordinator.cpuSeconds();
    await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS)); // a measuring window
    const cpu0 = await coordinator.cpuSeconds();
    const idleCpuPerS = (cpu0 - idle0) / (IDLE_WINDOW_MS / 1000);
    agents.send('deploy');
    const deployed = await agents.next('deployed', DEADLINE_MS + START_TIMEOUT_MS);
    const coordCpuS = (await coordinator.cpuSeconds()) - cpu0;
    progress(
      `  ${deployed.succeeded}/${deployed.targets} succeeded in ${(deployed.ms / 1000).toFixed(2)} s`,
    );
    return { n, deployed, coordCpuS, idleCpuPerS };
  });
  return value;
}

export async function runDeploy(opts: BenchOptions): Promise<GroupResult> {
  const fx = await nixFixtures();
  const sizes = opts.quick ? SIZES.quick : SIZES.full;
  const reps = opts.reps ?? 1;
  const measurements: Measurement[] = [];
  const perAgentMs = new Map<number, number>();
  for (const n of sizes) {
    const runs: DeploySample[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      opts.progress(`deploy to ${n} agents (${rep}/${reps})`);
      runs.push(await deployOnce(n, fx.store, fx.paths.a, opts.progress));
    }
    const row = (
      name: string,
      unit: Measurement['unit'],
      pick: (r: DeploySample) => number,
      note: string,
    ): Measurement => {
      const samples = runs.map(pick);
      const cut = runs.some((r) => r.deployed.succeeded < r.deployed.targets);
      return {
        group: 'deploy',
        name,
        stat: 'median',
        value: median(samples),
        unit,
        samples,
        note: cut ? `${note}; NOT all succeeded within ${DEADLINE_MS / 1000} s` : note,
        lowerBound: cut,
      };
    };
    const total = row(
      `${n} agents: deploy -> all succeeded`,
      's',
      (r) => r.deployed.ms / 1000,
      'admin deploy (sign, outbox, submit) until every signed status says succeeded',
    );
    measurements.push(
      total,
      row(
        `${n} agents: coordinator CPU per deployment delivered`,
        'ms',
        (r) => (r.coordCpuS * 1000) / r.n,
        'coordinator user + system over the same span / N (includes its heartbeats and pings)',
      ),
      row(
        `${n} agents: coordinator CPU per deployment, net of idle`,
        'ms',
        (r) => ((r.coordCpuS - r.idleCpuPerS * (r.deployed.ms / 1000)) * 1000) / r.n,
        `the same, less its CPU rate with the fleet idle (${IDLE_WINDOW_MS / 1000} s just before) x the span`,
      ),
    );
    perAgentMs.set(n, (total.value * 1000) / n);
  }
  const [small, large] = sizes.map((n) => perAgentMs.get(n));
  const ratios =
    small !== undefined && large !== undefined
      ? [
          {
            group: 'deploy',
            name: `time per agent, ${sizes[1]} agents / ${sizes[0]} agents`,
            value: large / small,
            better: 'lower' as const,
          },
        ]
      : [];
  return { measurements, ratios };
}
