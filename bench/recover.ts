// Group `recover`: N agents online with one coordinator, which is then SIGKILLed and restarted
// on the same state dir and address, timed from the restarted coordinator being ready (its
// ticket printed) until a new admin sees all N agents online again. Agents notice the dead
// coordinator by their liveness pings (src/roles/liveness.ts) and redial. The processes are
// those of the fan-in group: the coordinator CLI (processes.ts) and the agents and admin in
// fanin-child.ts. Also reads the coordinator's CPU while N agents only ping it.

import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeUdpPort } from '../test/helpers/peer-process.js';
import { START_TIMEOUT_MS, withFanInFleet, type FanInFleet } from './fanin-fleet.js';
import type { FanInStep } from './fanin-protocol.js';
import { CoordinatorProcess } from './processes.js';
import { median, type BenchOptions, type GroupResult, type Measurement } from './stats.js';

const SIZES = { full: 100, quick: 20 } as const;
/** Restarts per run (each is one sample); `--reps` overrides. */
const RESTARTS = { full: 3, quick: 1 } as const;
/** The target: the whole fleet online within 5 s of the coordinator being ready again. */
const TARGET_S = 5;
/** For the fleet to form at first, and for it to come back after each restart. */
const DEADLINE_MS = 90_000;
/** The window over which the coordinator's CPU is read while the agents only ping it. */
const IDLE_WINDOW_MS = 10_000;

export interface Restart {
  /** SIGKILL -> the new coordinator printed its ticket. */
  readonly restartMs: number;
  /** Ready -> a new admin sees N agents online (as the child measured it from the command). */
  readonly recovered: Extract<FanInStep, { step: 'recovered' }>;
  /**
   * CPU seconds from the kill to the end of the recovery (or its cut-off), and that span: the
   * agents' processes (the load generator, on the same cores) and the new coordinator.
   */
  readonly cpu: {
    readonly agentsS: number;
    readonly coordinatorS: number;
    /** Of coordinatorS, its main thread's (mainThreadCpuSecondsOf). */
    readonly coordinatorMainS: number;
    readonly spanS: number;
  };
  /** VmRSS of the new coordinator at the end of the recovery: its memory with the fleet back. */
  readonly coordinatorRssKiB: number;
}

interface RecoverRun {
  readonly restarts: Restart[];
  /** Coordinator CPU seconds over IDLE_WINDOW_MS with N agents online and idle. */
  readonly idleCpuS: number;
}

/**
 * SIGKILLs the fleet's coordinator, starts it again on the same state dir and `bind`, and waits
 * until a new admin sees all agents online, or `deadlineMs`. The fleet must be online already.
 * Also used by the scale group (scale.ts).
 */
export async function crashAndRecover(
  f: FanInFleet,
  bind: string,
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<Restart> {
  const agents0 = await f.agents.cpuSeconds();
  await f.coordinator.kill();
  const killed = performance.now();
  const stateDir = join(f.root, 'coordinator');
  f.coordinator = await CoordinatorProcess.start(stateDir, START_TIMEOUT_MS, f.adminId, bind);
  const restartMs = performance.now() - killed;
  f.agents.send(`recover ${deadlineMs}`);
  const recovered = await f.agents.next('recovered', deadlineMs + START_TIMEOUT_MS);
  const [agents1, coordinatorS, coordinatorMainS, memory] = await Promise.all([
    f.agents.cpuSeconds(),
    f.coordinator.cpuSeconds(),
    f.coordinator.mainThreadCpuSeconds(),
    f.coordinator.memory(),
  ]);
  const cpu = {
    agentsS: agents1 - agents0,
    coordinatorS,
    coordinatorMainS,
    spanS: (performance.now() - killed) / 1000,
  };
  progress(
    `  ${recovered.complete} online ${(recovered.ms / 1000).toFixed(1)} s after ready` +
      (recovered.cutOff ? ' (cut off)' : '') +
      ` (${recovered.polls} polls of the fleet table)` +
      `; CPU since the kill (${cpu.spanS.toFixed(1)} s): agents processes ` +
      `${cpu.agentsS.toFixed(1)} s, coordinator ${cpu.coordinatorS.toFixed(1)} s`,
  );
  return { restartMs, recovered, cpu, coordinatorRssKiB: memory.rssKiB };
}

async function recoverRun(
  n: number,
  restarts: number,
  progress: (line: string) => void,
): Promise<RecoverRun> {
  // A fixed port: the coordinator is restarted on the same address.
  const bind = `127.0.0.1:${await freeUdpPort()}`;
  const opts = { name: 'recover', n, deadlineMs: DEADLINE_MS, bind, progress };
  const { value } = await withFanInFleet(opts, async (f) => {
    const { agents } = f;
    progress(`  starting ${n} agents`);
    agents.send('go');
    const fleet = await agents.next('fleet', DEADLINE_MS + START_TIMEOUT_MS);
    if (fleet.cutOff) throw new Error(`only ${fleet.complete}/${n} agents joined in time`);
    agents.send('online');
    const online = await agents.next('online', DEADLINE_MS + START_TIMEOUT_MS);
    if (online.cutOff) throw new Error(`only ${online.complete}/${n} agents online in time`);

    progress(`  coordinator CPU over ${IDLE_WINDOW_MS / 1000} s with ${n} agents pinging`);
    const cpu0 = await f.coordinator.cpuSeconds();
    await sleep(IDLE_WINDOW_MS);
    const idleCpuS = (await f.coordinator.cpuSeconds()) - cpu0;

    const done: Restart[] = [];
    for (let i = 1; i <= restarts; i++) {
      progress(`  SIGKILL and restart of the coordinator (${i}/${restarts})`);
      done.push(await crashAndRecover(f, bind, DEADLINE_MS, progress));
    }
    return { restarts: done, idleCpuS };
  });
  return value;
}

export async function runRecover(opts: BenchOptions): Promise<GroupResult> {
  const n = opts.quick ? SIZES.quick : SIZES.full;
  const restarts = opts.reps ?? (opts.quick ? RESTARTS.quick : RESTARTS.full);
  opts.progress(`${n} agents, coordinator SIGKILLed and restarted ${restarts} time(s)`);
  const run = await recoverRun(n, restarts, opts.progress);
  const row = (
    name: string,
    unit: Measurement['unit'],
    samples: number[],
    note: string,
    lowerBound = false,
  ): Measurement => ({
    group: 'recover',
    name,
    stat: 'median',
    value: median(samples),
    unit,
    samples,
    note,
    lowerBound,
  });
  const cut = run.restarts.find((r) => r.recovered.cutOff);
  const back = row(
    `${n} agents: coordinator ready -> all online`,
    's',
    run.restarts.map((r) => r.recovered.ms / 1000),
    cut
      ? `cut off at ${DEADLINE_MS / 1000} s with ${cut.recovered.complete}/${n} online`
      : 'new admin polls every 100 ms; includes opening that admin',
    cut !== undefined,
  );
  const cpuPerS = run.idleCpuS / (IDLE_WINDOW_MS / 1000);
  return {
    measurements: [
      back,
      row(
        'coordinator SIGKILL -> ready again',
        's',
        run.restarts.map((r) => r.restartMs / 1000),
        'process start, root document load, endpoint bound, ticket printed',
      ),
      row(
        `coordinator CPU, ${n} agents idle`,
        '% core',
        [cpuPerS * 100],
        `user + system over ${IDLE_WINDOW_MS / 1000} s: agents at rest (QUIC's keep-alives, a ping only on a quiet connection)`,
      ),
      row(
        'coordinator CPU per agent per second at rest',
        'ms',
        [(cpuPerS / n) * 1000],
        'the line above / agents (includes the idle process own cost)',
      ),
    ],
    ratios: [
      {
        group: 'recover',
        name: `ready -> all ${n} online / ${TARGET_S} s`,
        value: back.value / TARGET_S,
        lowerBound: cut !== undefined,
        target: { op: '<=', bound: 1 },
      },
    ],
  };
}
