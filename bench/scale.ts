// Group `scale`: every figure of issue 13 against its target, `ok` or `MISS`, at sizes that can
// be set (SCALE_* environment variables, see README.md). It measures with the other groups' code:
// fan-in and coordinator memory (fanin.ts), crash and recovery (recover.ts), restart loading
// (restart.ts, restart-child.ts), online admin commands (cli.ts) and single-document sync
// (sync.ts, latency.ts). A figure that cannot be measured at the size asked for is printed as a
// MISS with what was reached and why; every run is bounded by a deadline.

import { EVICT_IDLE_MS } from '../sync/evict.js';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import { freeUdpPort } from '../test/helpers/peer-process.js';
import { timeRun } from './cli.js';
import { START_TIMEOUT_MS, withFanInFleet } from './fanin-fleet.js';
import { fanInSample, type FanInSample } from './fanin.js';
import { fixtureAgentId, fleetFixture, logFixture, manifestPath } from './fixtures.js';
import { runLatency } from './latency.js';
import type { FleetSyncKind, FleetSyncStep } from './fleet-sync-child.js';
import { CoordinatorProcess, FLT_BIN, StepProcess } from './processes.js';
import { crashAndRecover, type Restart } from './recover.js';
import { runChild } from './restart.js';
import {
  fmtNumber,
  percentile,
  type BenchOptions,
  type Figure,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';
import { runSync } from './sync.js';

/** This machine's cores, which the agents' processes and the coordinator share. */
const CORES = availableParallelism();
/** The sizes the issue names; a figure measured at another size says so. */
const ISSUE = { memory: [100, 1000], fanin: 1000, restart: 5000, fleetSync: 1000 } as const;
const DEFAULTS = {
  full: { memory: [100, 1000], fanin: 1000, restart: 5000, deadlineS: 180, syncN: 1000, syncS: 30 },
  quick: { memory: [20, 50], fanin: 50, restart: 1000, deadlineS: 60, syncN: 20, syncS: 10 },
} as const;
/** The issue's targets. */
const TARGET = {
  kibPerAgent: 256,
  allFactsS: 5,
  adminS: 1,
  faninRate: 50,
  recoverS: 10,
  syncRatio: 1.5,
  latencyRatio: 1,
} as const;
/** After a crash: how long the fleet may take to come back before the run is cut off. */
const RECOVER_DEADLINE_MS = { full: 60_000, quick: 30_000 } as const;
/** With the fleet online and at rest, both processes' CPU is read over this. */
const IDLE_WINDOW_MS = 10_000;
/**
 * Then the fleet rests this much longer before the crash: a fleet at rest, whose coordinator has
 * saved, marked and evicted its agents' idle documents (EVICT_IDLE_MS, sync/stored-heads.ts),
 * as a coordinator that crashes in production usually finds it.
 */
const REST_BEFORE_CRASH_MS = EVICT_IDLE_MS + 5_000 - IDLE_WINDOW_MS;
/** Restart loading of every facts document (restart-child.ts `flt`), killed after this. */
const LOAD_DEADLINE_MS = { full: 40_000, quick: 20_000 } as const;
/**
 * The fleet-sync workload: warm-up (documents created and first synced); after the writers stop,
 * the server's CPU is read once it holds every change made (asked every `heldPollMs`), or after
 * `drainMaxMs`.
 */
const FLEET_SYNC = {
  warmupS: 5,
  heldPollMs: 250,
  drainMaxMs: 120_000,
  connectMs: 120_000,
  /** For the writers to report the end; an overloaded writers process runs its timers late. */
  doneGraceMs: 120_000,
  keptUp: 0.9,
} as const;
const FLEET_SYNC_CHILD = fileURLToPath(new URL('./fleet-sync-child.js', import.meta.url));
/** One online admin command; past it the command is killed and reported as `> T s`. */
const ADMIN_DEADLINE_MS = 30_000;

export interface ScaleSizes {
  /** Fleets whose coordinator memory per agent is read (SCALE_MEMORY_SIZES). */
  readonly memory: readonly number[];
  /** The fleet timed for fan-in and crash recovery (SCALE_FANIN_N). */
  readonly fanin: number;
  /** Enrolled agents on disk for the restart and admin figures (SCALE_RESTART_N). */
  readonly restart: number;
  /** Deadline of each fan-in, in seconds (SCALE_DEADLINE_S). */
  readonly deadlineS: number;
  /** Writers (documents) of the fleet-sync workload (SCALE_SYNC_N), and its timed seconds (SCALE_SYNC_S). */
  readonly syncN: number;
  readonly syncS: number;
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name}: want a whole number >= 1, got ${text}`);
  return n;
}

/** The sizes of this run: the SCALE_* variables, else the defaults of the mode. */
export function scaleSizes(quick: boolean, env: NodeJS.ProcessEnv = process.env): ScaleSizes {
  const d = quick ? DEFAULTS.quick : DEFAULTS.full;
  const int = (name: string, fallback: number) => {
    const v = env[name];
    return v === undefined || v === '' ? fallback : positiveInt(name, v);
  };
  const list = env.SCALE_MEMORY_SIZES;
  const memory =
    list === undefined || list === ''
      ? d.memory
      : list.split(',').map((x) => positiveInt('SCALE_MEMORY_SIZES', x.trim()));
  return {
    memory,
    fanin: int('SCALE_FANIN_N', d.fanin),
    restart: int('SCALE_RESTART_N', d.restart),
    deadlineS: int('SCALE_DEADLINE_S', d.deadlineS),
    syncN: int('SCALE_SYNC_N', d.syncN),
    syncS: int('SCALE_SYNC_S', d.syncS),
  };
}

/** The first line of an error's message (and of its first inner error, for closeAll's). */
function firstLine(err: unknown): string {
  const line = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
  if (err instanceof AggregateError && err.errors.length > 0)
    return `${line(err)}: ${line(err.errors[0])}`;
  return line(err);
}

function judge(value: number, target: Target, complete = true): Figure['result'] {
  if (!complete) return 'MISS';
  return (target.op === '>=' ? value >= target.bound : value <= target.bound) ? 'ok' : 'MISS';
}

type Target = NonNullable<Figure['target']>;

/** `at N=50 (issue: 1,000)` when the size is not the issue's. */
function sizeNote(n: number, issue: number): string {
  return n === issue ? `N=${n}` : `N=${n} (issue: ${issue})`;
}

/** One fleet of N agents: fan-in, and for the fan-in size, a crash and recovery. */
interface FleetRun {
  readonly n: number;
  readonly fan?: FanInSample;
  /** The coordinator's VmRSS at rest: all online, idle past the eviction delay, before the crash. */
  readonly restKiB?: number;
  readonly restart?: Restart;
  /** CPU seconds of each process over IDLE_WINDOW_MS with the fleet online, before the crash. */
  readonly idle?: { readonly agentsCpuS: number; readonly coordCpuS: number };
  /** Why the recovery was not measured (the fleet did not form, or was not all online). */
  readonly noRecover?: string;
  /** The run failed (a process died, a step timed out): the first line of the error. */
  readonly error?: string;
}

async function fleetRun(
  n: number,
  recover: boolean,
  deadlineMs: number,
  recoverDeadlineMs: number,
  progress: (line: string) => void,
): Promise<FleetRun> {
  // A fixed port: for the recovery, the coordinator comes back on the same address.
  const bind = `127.0.0.1:${await freeUdpPort()}`;
  // Kept as it is measured, so that a failure to close afterwards loses none of it.
  let measured: FleetRun = { n, error: 'the fleet did not start' };
  try {
    await withFanInFleet({ name: 'scale', n, deadlineMs, bind, progress }, async (f) => {
      const fan = await fanInSample(f, n, deadlineMs, progress);
      measured = { n, fan };
      const { complete, cutOff } = fan.fleet;
      progress(`  ${complete}/${n} in the table after ${(fan.fleet.ms / 1000).toFixed(1)} s`);
      if (!recover) return;
      if (cutOff) {
        measured = { n, fan, noRecover: `fan-in reached ${complete}/${n}` };
        return;
      }
      f.agents.send('online');
      const online = await f.agents.next('online', deadlineMs + START_TIMEOUT_MS);
      if (online.cutOff) {
        measured = { n, fan, noRecover: `only ${online.complete}/${n} online before the crash` };
        return;
      }
      const cpu = () => Promise.all([f.agents.cpuSeconds(), f.coordinator.cpuSeconds()]);
      const [a0, c0] = await cpu();
      await sleep(IDLE_WINDOW_MS);
      const [a1, c1] = await cpu();
      const idle = { agentsCpuS: a1 - a0, coordCpuS: c1 - c0 };
      measured = { n, fan, idle };
      progress(
        `  idle ${IDLE_WINDOW_MS / 1000} s (at rest): agents process ${idle.agentsCpuS.toFixed(1)} CPU-s ` +
          `(${((idle.agentsCpuS / n / (IDLE_WINDOW_MS / 1000)) * 1000).toFixed(2)} ms per agent per s), ` +
          `coordinator ${idle.coordCpuS.toFixed(1)} CPU-s`,
      );
      await sleep(REST_BEFORE_CRASH_MS);
      const restKiB = (await f.coordinator.memory()).rssKiB;
      measured = { n, fan, idle, restKiB };
      progress(
        `  SIGKILL and restart of the coordinator with ${n} agents online, at rest for ${(IDLE_WINDOW_MS + REST_BEFORE_CRASH_MS) / 1000} s`,
      );
      measured = {
        n,
        fan,
        idle,
        restKiB,
        restart: await crashAndRecover(f, bind, recoverDeadlineMs, progress),
      };
    });
    return measured;
  } catch (err) {
    // The whole error (a child's stderr is in it) goes to the progress log; the table gets a line.
    progress(`  fleet of ${n} failed: ${err instanceof Error ? err.message : String(err)}`);
    const why = firstLine(err);
    // Measured, then failed to close (a process that had to be killed): the numbers stand.
    if (measured.fan) return { ...measured, noRecover: measured.noRecover ?? why };
    return { n, error: why };
  }
}

function memoryFigure(run: FleetRun, issueN: number): Figure {
  const figure = `1. coordinator RSS per agent, ${run.n} agents`;
  const target = { op: '<=', bound: TARGET.kibPerAgent } as const;
  const base = { figure, unit: 'KiB', target };
  const size = sizeNote(run.n, issueN);
  if (!run.fan) return { ...base, value: undefined, result: 'MISS', note: `${size}: ${run.error}` };
  const { fleet, coordAfterKiB, coordBeforeKiB } = run.fan;
  const value = (coordAfterKiB - coordBeforeKiB) / run.n;
  const mib = (k: number) => (k / 1024).toFixed(0);
  const span = `VmRSS ${mib(coordBeforeKiB)} -> ${mib(coordAfterKiB)} MiB`;
  // The fan-in's high-water mark; a restarted coordinator holding the same fleet is the steady state.
  const perAgent = (kib: number) => `${((kib - coordBeforeKiB) / run.n).toFixed(0)} KiB per agent`;
  const rest =
    run.restKiB === undefined
      ? ''
      : `; at rest ${(IDLE_WINDOW_MS + REST_BEFORE_CRASH_MS) / 1000} s later (documents evicted): ` +
        `VmRSS ${mib(run.restKiB)} MiB, ${perAgent(run.restKiB)}`;
  const back = run.restart;
  const after = back
    ? `; after SIGKILL + restart, ${back.recovered.complete} online: VmRSS ${mib(back.coordinatorRssKiB)} MiB, ` +
      perAgent(back.coordinatorRssKiB)
    : '';
  const note = fleet.cutOff
    ? `${size}: only ${fleet.complete}/${run.n} in the table at the deadline; ${span}${rest}${after}`
    : `${size}: (RSS with the fleet formed - before) / N; ${span}${rest}${after}`;
  return { ...base, value, result: judge(value, target, !fleet.cutOff), note };
}

function faninFigures(run: FleetRun, deadlineMs: number): Figure[] {
  const size = sizeNote(run.n, ISSUE.fanin);
  const rate = {
    figure: `3. fan-in, ${run.n} agents`,
    unit: 'agents/s',
    target: { op: '>=', bound: TARGET.faninRate },
  } as const;
  const back = {
    figure: `3. SIGKILL + restart -> all ${run.n} online`,
    unit: 's',
    target: { op: '<=', bound: TARGET.recoverS },
  } as const;
  if (!run.fan) {
    const note = `${size}: ${run.error}`;
    return [
      { ...rate, value: undefined, result: 'MISS', note },
      { ...back, value: undefined, result: 'MISS', note },
    ];
  }
  const { fleet, agentsCpuS, coordCpuS, coordMainCpuS } = run.fan;
  const value = fleet.complete / (fleet.ms / 1000);
  // Both processes share this machine's cores: the agents' CPU is the load generator's.
  const cpu =
    `; CPU-s agents process ${agentsCpuS.toFixed(0)} (${((agentsCpuS / run.n) * 1000).toFixed(0)} ms/agent), ` +
    `coordinator ${coordCpuS.toFixed(0)} (main thread ${coordMainCpuS.toFixed(0)}); ` +
    faninBounds(fleet.complete, agentsCpuS, coordCpuS, coordMainCpuS);
  const rateFigure: Figure = {
    ...rate,
    value,
    result: judge(value, rate.target, !fleet.cutOff),
    note:
      (fleet.cutOff
        ? `${size}: cut off at ${deadlineMs / 1000} s with ${fleet.complete}/${run.n} in the table (${fleet.failedPolls} failed polls)`
        : `${size}: ${(fleet.ms / 1000).toFixed(1)} s from go to the admin's table holding all`) +
      cpu,
  };
  if (!run.restart) {
    const why = run.noRecover ?? run.error ?? 'not run';
    return [rateFigure, { ...back, value: undefined, result: 'MISS', note: `${size}: ${why}` }];
  }
  const { recovered, restartMs, cpu: since } = run.restart;
  const s = recovered.ms / 1000;
  const idle = run.idle;
  const ready =
    `SIGKILL -> ready ${(restartMs / 1000).toFixed(2)} s; CPU from the kill on ` +
    `(${since.spanS.toFixed(1)} s): agents processes ${since.agentsS.toFixed(1)} s ` +
    `(${(since.agentsS / since.spanS).toFixed(2)} cores), coordinator ` +
    `${since.coordinatorS.toFixed(1)} s (main thread ${since.coordinatorMainS.toFixed(1)} s); ` +
    recoveryBounds(since) +
    (idle === undefined
      ? ''
      : `; idle before: ${((idle.agentsCpuS / run.n / (IDLE_WINDOW_MS / 1000)) * 1000).toFixed(2)} ms CPU per agent per s in the agents process, coordinator ${((idle.coordCpuS / (IDLE_WINDOW_MS / 1000)) * 100).toFixed(0)} % of a core`);
  return [
    rateFigure,
    {
      ...back,
      value: s,
      lowerBound: recovered.cutOff,
      result: judge(s, back.target, !recovered.cutOff),
      note: recovered.cutOff
        ? `${size}: cut off with ${recovered.complete}/${run.n} online; ${ready}`
        : `${size}: coordinator ready -> new admin sees all online; ${ready}`,
    },
  ];
}

/**
 * What the CPU a fan-in of `n` used says about its rate, with the agents on this machine's cores
 * (CORES): the rate at which both sides' CPU would keep every core busy (no run here can beat it),
 * the load generator's alone (a coordinator that cost nothing), and the coordinator's own: its
 * main thread carried by one core, everything else by the others. The last is what a coordinator
 * with the cores to itself could absorb, the agents on their own machines.
 */
function faninBounds(n: number, agentsS: number, coordS: number, coordMainS: number): string {
  const rate = (cpuS: number) => ((n * CORES) / cpuS).toFixed(1);
  const own = Math.min(n / coordMainS, (n * CORES) / coordS);
  return (
    `CPU bounds on ${CORES} cores: both sides ${rate(agentsS + coordS)} agents/s, ` +
    `the agents alone ${rate(agentsS)}; the coordinator alone ${own.toFixed(1)} agents/s ` +
    `(${((coordMainS / n) * 1000).toFixed(1)} ms of main thread per agent)`
  );
}

/** The same for a recovery: the shortest it could be, CPU-bound, and the coordinator's part. */
function recoveryBounds(cpu: Restart['cpu']): string {
  const both = (cpu.agentsS + cpu.coordinatorS) / CORES;
  const own = Math.max(cpu.coordinatorMainS, cpu.coordinatorS / CORES);
  return (
    `CPU bounds on ${CORES} cores: both sides ${both.toFixed(1)} s from the kill, ` +
    `the coordinator alone ${own.toFixed(1)} s`
  );
}

/**
 * Restart loading of every facts document, in a fresh process: on the cached fixture (`files`:
 * as a coordinator upgraded from before the chunk log holds them) or on a copy with every
 * document in the chunk log (`log`: as this version's coordinator keeps them).
 */
async function loadFigure(
  n: number,
  deadlineMs: number,
  opts: BenchOptions,
  layout: 'files' | 'log',
): Promise<Figure> {
  const base = {
    figure: `2. restart, ${n} agents: every facts doc loaded${layout === 'log' ? ', chunk log' : ''}`,
    unit: 's',
    target: { op: '<=', bound: TARGET.allFactsS },
  } as const;
  const size = sizeNote(n, ISSUE.restart);
  const from = layout === 'log' ? 'documents in the chunk log' : 'documents in files';
  try {
    // logFixture makes (or finds) the fleet fixture first.
    if (layout === 'files') await fleetFixture(n, opts.progress);
    const manifest = layout === 'log' ? await logFixture(n, opts.progress) : manifestPath(n);
    const run = await runChild(['flt', manifest], deadlineMs, opts.progress);
    const table = run.fleet ? `fleet table in ${(run.fleet.ms / 1000).toFixed(2)} s` : 'no table';
    if (run.all) {
      const s = run.all.ms / 1000;
      const note = `${size}, ${from}: Coordinator.start -> every facts doc open (plain, as for a push); ${table}`;
      return { ...base, value: s, result: judge(s, base.target), note };
    }
    const reached = run.lastProgress ? `, reached ${run.lastProgress}` : '';
    const note = `${size}, ${from}: cut off at ${deadlineMs / 1000} s${reached}; ${table}`;
    return { ...base, value: deadlineMs / 1000, lowerBound: true, result: 'MISS', note };
  } catch (err) {
    return { ...base, value: undefined, result: 'MISS', note: `${size}: ${firstLine(err)}` };
  }
}

/**
 * The coordinator CLI restarted on a copy of the N-agent fixture, with a fresh initial admin;
 * then, right after its ticket, `flt admin facts` of one agent (the admin has no replica yet: it
 * asks for the one agent, fleet.agent), `flt admin agents` twice (the first fetches and loads the
 * whole root, the second reads the replica it left); then the coordinator is killed and started
 * again, and `flt admin facts` asked again right after its ticket (the admin has the replica its
 * earlier commands left, as an operator's has). Each a whole CLI process (online: connect, fetch,
 * answer).
 */
async function adminFigures(n: number, opts: BenchOptions): Promise<Figure[]> {
  const adminFigure = (figure: string) =>
    ({ figure, unit: 's', target: { op: '<=', bound: TARGET.adminS } }) as const;
  const facts = adminFigure(`2. admin facts right after restart, ${n} agents`);
  const coldFacts = adminFigure(`2. admin facts right after restart, fresh admin, ${n} agents`);
  const agents = adminFigure(`3. admin agents, ${n} agents`);
  const coldAgents = adminFigure(`3. admin agents, fresh admin, ${n} agents`);
  const size = sizeNote(n, ISSUE.restart);
  const root = await mkdtemp(join(tmpdir(), 'flt-bench-scale-admin-'));
  let coordinator: CoordinatorProcess | undefined;
  try {
    const fx = await fleetFixture(n, opts.progress);
    const stateDir = join(root, 'coordinator');
    await cp(fx.stateDir, stateDir, { recursive: true });
    const adminDir = join(root, 'admin');
    const adminId = (await loadOrCreateNodeKey(adminDir)).key.nodeId;
    opts.progress(`coordinator restarted on a copy of the ${n}-agent fixture`);
    const t0 = performance.now();
    coordinator = await CoordinatorProcess.start(stateDir, START_TIMEOUT_MS, adminId);
    const readyS = (performance.now() - t0) / 1000;
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^FLT_/.test(k)));
    const cli = [FLT_BIN, '--state-dir', adminDir, '--relay', 'disabled', '--discovery', 'none'];
    cli.push('--coordinator', coordinator.ticket, 'admin');
    const timed = async (
      spec: ReturnType<typeof adminFigure>,
      args: string[],
      check: (out: string) => boolean,
      what: string,
    ): Promise<Figure> => {
      const t = performance.now();
      try {
        const [ms, out] = await timeRun([...cli, ...args], env, ADMIN_DEADLINE_MS);
        if (!check(out)) throw new Error(`unexpected output ${JSON.stringify(out.slice(0, 80))}`);
        const s = ms / 1000;
        return { ...spec, value: s, result: judge(s, spec.target), note: `${size}: ${what}` };
      } catch (err) {
        const ms = performance.now() - t;
        if (ms >= ADMIN_DEADLINE_MS) {
          const note = `${size}: killed at the ${ADMIN_DEADLINE_MS / 1000} s deadline`;
          return { ...spec, value: ms / 1000, lowerBound: true, result: 'MISS', note };
        }
        return { ...spec, value: undefined, result: 'MISS', note: `${size}: ${firstLine(err)}` };
      }
    };
    const agent = fixtureAgentId(n - 1);
    const hasFacts = (out: string) => out.trim().length > 0;
    const coldFigure = await timed(
      coldFacts,
      ['facts', agent],
      hasFacts,
      `whole CLI process, no replica yet (the one agent's record by fleet.agent, its facts document by doc.fetch), started at the coordinator's ticket (ready ${readyS.toFixed(2)} s after spawn)`,
    );
    const table = (out: string) => out.startsWith(`${n} agents`);
    const coldAgentsFigure = await timed(
      coldAgents,
      ['agents'],
      table,
      'whole CLI process, online, no root in the replica yet (fetch and load the root, presence, table)',
    );
    const agentsFigure = await timed(
      agents,
      ['agents'],
      table,
      'whole CLI process, online (connect, the root as the replica holds it, presence, table)',
    );
    await coordinator.kill();
    const t1 = performance.now();
    coordinator = await CoordinatorProcess.start(stateDir, START_TIMEOUT_MS, adminId);
    const againS = (performance.now() - t1) / 1000;
    cli[cli.indexOf('--coordinator') + 1] = coordinator.ticket;
    const factsFigure = await timed(
      facts,
      ['facts', agent],
      hasFacts,
      `whole CLI process (fleet.agent, then the facts document), the admin's replica from before the restart (SIGKILL), started at the coordinator's ticket (ready ${againS.toFixed(2)} s after spawn)`,
    );
    return [factsFigure, coldFigure, agentsFigure, coldAgentsFigure];
  } catch (err) {
    const note = `${size}: ${firstLine(err)}`;
    return [
      { ...facts, value: undefined, result: 'MISS', note },
      { ...coldFacts, value: undefined, result: 'MISS', note },
      { ...agents, value: undefined, result: 'MISS', note },
      { ...coldAgents, value: undefined, result: 'MISS', note },
    ];
  } finally {
    await coordinator?.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Waits until `server` holds all `made` changes (at most FLEET_SYNC.drainMaxMs): whether it did. A
 * server that falls behind absorbs the backlog before its CPU is read, so that the CPU per change
 * counts every change it took in and the work that took them (a fixed 3 s drain read the
 * WebSocket server's CPU with thousands of changes part-way through it: 1.79-2.88 s per 1,000
 * in runs of the same hour).
 */
async function absorbed(server: StepProcess<FleetSyncStep>, made: number): Promise<boolean> {
  const deadline = performance.now() + FLEET_SYNC.drainMaxMs;
  for (let left = FLEET_SYNC.drainMaxMs; left > 0; left = deadline - performance.now()) {
    server.send('held');
    // No answer by the deadline: not drained (the run's figures still stand).
    const held = await server.next('held', left).catch(() => undefined);
    if (held === undefined) return false;
    if (held.changes >= made) return true;
    await sleep(FLEET_SYNC.heldPollMs);
  }
  return false;
}

/** One side of the fleet-sync workload: the server's CPU and the delays it recorded. */
interface FleetSyncRun {
  readonly kind: FleetSyncKind;
  /** Server CPU seconds from the end of the warm-up until it held every change (`drained`). */
  readonly cpuS: number;
  /** Changes made by the writers over the whole run (warm-up included). */
  readonly made: number;
  /** Whether the server held all of them within FLEET_SYNC.drainMaxMs. */
  readonly drained: boolean;
  /** Change -> server delays, ms, one per arrival in the timed window (its newest change's). */
  readonly delays: number[];
  /** Changes that arrived by the time `cpuS` was read (the changes it paid for). */
  readonly byUntil: number;
  readonly docs: number;
  /** CPU seconds of the writers process over the same window, and its event-loop delay p99. */
  readonly writersCpuS: number;
  readonly lagMs: number;
  /** Writers that connected in time (the others take no part). */
  readonly connected: number;
}

async function fleetSyncRun(
  kind: FleetSyncKind,
  n: number,
  seconds: number,
  progress: (line: string) => void,
): Promise<FleetSyncRun> {
  const dir = await mkdtemp(join(tmpdir(), `flt-bench-fleet-sync-${kind}-`));
  const say = (l: string) => progress(`  ${kind}: ${l}`);
  const server = StepProcess.start<FleetSyncStep>(FLEET_SYNC_CHILD, ['server', kind, dir], say);
  let writers: StepProcess<FleetSyncStep> | undefined;
  try {
    const { addr } = await server.next('ready', START_TIMEOUT_MS);
    writers = StepProcess.start<FleetSyncStep>(
      FLEET_SYNC_CHILD,
      ['writers', kind, addr, String(n)],
      say,
    );
    const connected = (await writers.next('ready', FLEET_SYNC.connectMs)).writers ?? 0;
    say(
      `${connected}/${n} writers connected; ${FLEET_SYNC.warmupS} s warm-up, then ${seconds} s timed`,
    );
    writers.send(`go ${FLEET_SYNC.warmupS + seconds}`);
    await sleep(FLEET_SYNC.warmupS * 1000);
    const since = performance.timeOrigin + performance.now();
    const [cpu0, wcpu0] = await Promise.all([server.cpuSeconds(), writers.cpuSeconds()]);
    const done = await writers
      .next('done', seconds * 1000 + FLEET_SYNC.doneGraceMs)
      .catch((err: unknown) => {
        // How far it got, for the MISS line.
        throw new Error(`${connected}/${n} writers connected, then ${firstLine(err)}`);
      });
    const writersCpuS = (await writers.cpuSeconds()) - wcpu0;
    const drained = await absorbed(server, done.changes);
    const cpuS = (await server.cpuSeconds()) - cpu0;
    // The changes that arrived by the time the CPU was read; an overloaded server (the
    // WebSocket one at 1,000 writers) reads the command late, so it gets the writers' grace.
    server.send(`report ${since} ${performance.timeOrigin + performance.now()}`);
    const report = await server.next('report', FLEET_SYNC.doneGraceMs);
    const { delays, byUntil, docs } = report;
    const lagMs = done.loopDelayP99Ms;
    const made = done.changes;
    return { kind, connected, cpuS, byUntil, made, drained, delays, docs, writersCpuS, lagMs };
  } finally {
    // Both exit when their stdin closes; killed after a short grace otherwise.
    await Promise.all([writers?.end(2_000), server.end(2_000)]);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Point 4: flt's sync stack against automerge-repo's WebSocket server, same workload, one run. */
async function fleetSyncFigures(
  n: number,
  seconds: number,
  opts: BenchOptions,
): Promise<{ figures: Figure[]; measurements: Measurement[] }> {
  const cpu = {
    figure: `4. fleet sync, ${n} docs x 1 change/s: server CPU per change, flt / WS`,
    unit: 'x',
    target: { op: '<=', bound: 0.5 },
  } as const;
  const p99 = {
    figure: `4. fleet sync, ${n} docs: change -> server p99, flt / WS`,
    unit: 'x',
    target: { op: '<=', bound: 1 },
  } as const;
  const size = sizeNote(n, ISSUE.fleetSync);
  // Each side on its own: one that fails leaves the other's numbers in the measurement rows.
  const runs: FleetSyncRun[] = [];
  const failed: string[] = [];
  const kinds = (process.env.FLEET_SYNC_KINDS ?? 'push,websocket').split(',') as FleetSyncKind[];
  for (const kind of kinds) {
    opts.progress(`fleet sync over ${kind}: ${n} writers, one change a second each`);
    try {
      runs.push(await fleetSyncRun(kind, n, seconds, opts.progress));
    } catch (err) {
      failed.push(`${kind}: ${firstLine(err)}`);
    }
  }
  const perK = (r: FleetSyncRun) => (r.cpuS / Math.max(1, r.byUntil)) * 1000;
  const pct = (r: FleetSyncRun, p: number) => (r.delays.length ? percentile(r.delays, p) : NaN);
  const measurements: Measurement[] = runs.flatMap((r) => {
    const label = {
      push: 'flt push (iroh, FsStore)',
      iroh: 'flt with automerge sync (iroh, FsStore)',
      websocket: 'websocket (nodefs)',
    }[r.kind];
    const common = { group: 'scale', note: `${size}, ${seconds} s timed` } as const;
    const arrived =
      `${r.connected} writers; ${r.byUntil} changes arrived in the window (${r.delays.length} arrivals timed by the report), ${r.made} made in all (${r.connected * (seconds + FLEET_SYNC.warmupS)} due), ` +
      (r.drained
        ? 'all held when its CPU was read; '
        : `not all held ${FLEET_SYNC.drainMaxMs / 1000} s after the writers' end (CPU read then); `) +
      `${r.docs} docs at the server; writers process ${fmtNumber(r.writersCpuS)} s CPU, event-loop delay p99 ${fmtNumber(r.lagMs)} ms`;
    return [
      {
        ...common,
        name: `fleet sync ${label}: server CPU per 1,000 changes`,
        stat: 'median' as const,
        value: perK(r),
        unit: 's' as const,
        samples: [perK(r)],
        note: arrived,
      },
      ...(['p50', 'p99'] as const).map((stat) => ({
        ...common,
        name: `fleet sync ${label}: change -> server`,
        stat,
        value: pct(r, stat === 'p50' ? 50 : 99),
        unit: 'ms' as const,
        samples: r.delays.length ? r.delays : [NaN],
      })),
    ];
  });
  // The workload holds only if the writers kept up (one process for all of them; on a loaded
  // machine they fall behind) and every document reached the server.
  const problems = runs.flatMap((r) => [
    ...(r.connected < n ? [`${r.kind}: ${r.connected}/${n} writers connected in time`] : []),
    ...(r.made < FLEET_SYNC.keptUp * r.connected * (seconds + FLEET_SYNC.warmupS)
      ? [
          `${r.kind} writers fell behind (${r.made} of ${r.connected * (seconds + FLEET_SYNC.warmupS)} changes made)`,
        ]
      : []),
    ...(r.docs < n || r.delays.length === 0
      ? [`${r.kind} server holds ${r.docs}/${n} docs, ${r.delays.length} changes timed`]
      : []),
  ]);
  const ok = problems.length === 0;
  const why = ok ? '' : `; MISS as measured: ${problems.join('; ')}`;
  // flt: how its coordinator takes agents' documents (push); the iroh row is for comparison.
  const [flt, ws] = [runs.find((r) => r.kind === 'push'), runs.find((r) => r.kind === 'websocket')];
  if (!flt || !ws) {
    const note = `${size}: not measured: ${failed.join('; ')}`;
    return {
      figures: [
        { ...cpu, value: undefined, result: 'MISS', note },
        { ...p99, value: undefined, result: 'MISS', note },
      ],
      measurements,
    };
  }
  const cpuRatio = perK(flt) / perK(ws);
  const p99Ratio = pct(flt, 99) / pct(ws, 99);
  const fmt = (x: number) => fmtNumber(x);
  return {
    figures: [
      {
        ...cpu,
        value: cpuRatio,
        result: judge(cpuRatio, cpu.target, ok),
        note: `${size}: ${fmt(perK(flt))} s vs ${fmt(perK(ws))} s of server CPU per 1,000 changes${why}`,
      },
      {
        ...p99,
        value: p99Ratio,
        result: judge(p99Ratio, p99.target, ok),
        note: `${size}: p50 ${fmt(pct(flt, 50))} vs ${fmt(pct(ws, 50))} ms, p99 ${fmt(pct(flt, 99))} vs ${fmt(pct(ws, 99))} ms${why}`,
      },
    ],
    measurements,
  };
}

/** Point 5 from the sync and latency groups' own runs (their sizes follow --quick). */
async function singleDocFigures(
  opts: BenchOptions,
): Promise<{ figures: Figure[]; measurements: Measurement[] }> {
  const figures: Figure[] = [];
  const measurements: Measurement[] = [];
  const pick = (ratios: readonly Ratio[], name: string) => ratios.find((r) => r.name === name);
  const add = (r: Ratio | undefined, figure: string, target: Target, note: string): void => {
    if (!r) {
      figures.push({
        figure,
        value: undefined,
        unit: 'x',
        target,
        result: 'MISS',
        note: 'no ratio',
      });
      return;
    }
    figures.push({
      figure,
      value: r.value,
      unit: 'x',
      target,
      result: judge(r.value, target),
      note,
    });
  };
  const sync = { op: '>=', bound: TARGET.syncRatio } as const;
  const lat = { op: '<=', bound: TARGET.latencyRatio } as const;
  for (const [name, run] of [
    ['sync', runSync],
    ['latency', runLatency],
  ] as const) {
    opts.progress(`single-document ${name} (the ${name} group)`);
    try {
      const r = await run(opts);
      measurements.push(...r.measurements);
      // Judged on push, flt's path for a single-writer document; the note gives `iroh`
      // (automerge-repo's sync protocol over flt's transport) for comparison.
      const x = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(2)}x`);
      const iroh = (ratio: string) =>
        `iroh (automerge-repo's sync) / WS ${x(pick(r.ratios, ratio)?.value)}`;
      // The most push could reach in the synchronous loop: A's loop alone (B cannot have a change
      // before A made it). Paced, A's loop also runs the sync work, so it is no ceiling there.
      const ceiling = (pace: string) => {
        if (pace !== 'one synchronous loop') return '';
        const find = (n: string) => r.measurements.find((m) => m.name === n)?.value;
        const loop = find(`push, ${pace}: A's loop alone`);
        const ws = find(`websocket, ${pace}`);
        return `; push's ceiling (A's loop alone) / WS ${x(loop !== undefined && ws !== undefined ? loop / ws : undefined)}`;
      };
      if (name === 'sync') {
        for (const pace of ['one synchronous loop', 'one change per await']) {
          const ratio = pick(r.ratios, `push / websocket changes/s, ${pace}`);
          const note = `medians of the sync group${ceiling(pace)}; ${iroh(`iroh / websocket changes/s, ${pace}`)}`;
          add(ratio, `5. sync push / WS changes/s, ${pace}`, sync, note);
        }
      } else {
        for (const mode of ['back-to-back', 'after 120 ms idle']) {
          const ratio = pick(r.ratios, `push / websocket p50, ${mode}`);
          const note = `p50s of the latency group; ${iroh(`iroh / websocket p50, ${mode}`)}`;
          add(ratio, `5. latency p50 push / WS, ${mode}`, lat, note);
        }
      }
    } catch (err) {
      const note = `the ${name} group failed: ${firstLine(err)}`;
      figures.push({
        figure: `5. ${name}`,
        value: undefined,
        unit: 'x',
        target: name === 'sync' ? sync : lat,
        result: 'MISS',
        note,
      });
    }
  }
  return { figures, measurements };
}

const PARTS = ['restart', 'fleets', 'fleet-sync', 'single'] as const;
type Part = (typeof PARTS)[number];

/** SCALE_PARTS: the parts to run (default all); a part left out is printed as not run. */
function scaleParts(env: NodeJS.ProcessEnv = process.env): Set<Part> {
  const text = env.SCALE_PARTS;
  if (text === undefined || text === '') return new Set(PARTS);
  const parts = text.split(',').map((p) => p.trim());
  const bad = parts.find((p) => !(PARTS as readonly string[]).includes(p));
  if (bad !== undefined) throw new Error(`SCALE_PARTS: unknown part ${bad} (${PARTS.join(', ')})`);
  return new Set(parts as Part[]);
}

/** A part left out by SCALE_PARTS: one MISS line, so nothing is left out silently. */
function notRun(part: Part, figure: string): Figure {
  const note = `not run: SCALE_PARTS does not name ${part}`;
  return { figure, value: undefined, unit: '', result: 'MISS', note };
}

export async function runScale(opts: BenchOptions): Promise<GroupResult> {
  const sizes = scaleSizes(opts.quick);
  const parts = scaleParts();
  const mode = opts.quick ? 'quick' : 'full';
  opts.progress(
    `sizes: memory ${sizes.memory.join(', ')}, fan-in ${sizes.fanin}, restart ${sizes.restart}, fan-in deadline ${sizes.deadlineS} s, fleet sync ${sizes.syncN} writers for ${sizes.syncS} s; parts: ${[...parts].join(', ')}`,
  );
  const figures: Figure[] = [];
  const measurements: Measurement[] = [];
  if (parts.has('fleets')) {
    // Points 1 and 3: one fleet per size; the fan-in size also crashes and recovers.
    const fleetSizes = [...new Set([...sizes.memory, sizes.fanin])].sort((a, b) => a - b);
    const runs = new Map<number, FleetRun>();
    const deadlineMs = sizes.deadlineS * 1000;
    for (const n of fleetSizes) {
      const recover = n === sizes.fanin;
      opts.progress(`fleet of ${n} agents${recover ? ', then a coordinator crash' : ''}`);
      runs.set(n, await fleetRun(n, recover, deadlineMs, RECOVER_DEADLINE_MS[mode], opts.progress));
    }
    // Each memory size against the issue's size of that value, else the one in the same place
    // (quick: 20 -> 100, 50 -> 1,000).
    const issueMemory = (n: number, i: number): number =>
      (ISSUE.memory as readonly number[]).includes(n)
        ? n
        : ISSUE.memory[Math.min(i, ISSUE.memory.length - 1)]!;
    sizes.memory.forEach((n, i) => figures.push(memoryFigure(runs.get(n)!, issueMemory(n, i))));
    figures.push(...faninFigures(runs.get(sizes.fanin)!, deadlineMs));
  } else figures.push(notRun('fleets', '1. memory per agent; 3. fan-in and crash recovery'));
  if (parts.has('restart')) {
    // Point 2, and point 3's `admin agents`: on the cached fixture of N enrolled agents.
    opts.progress(`restart with ${sizes.restart} agents on disk`);
    figures.push(await loadFigure(sizes.restart, LOAD_DEADLINE_MS[mode], opts, 'files'));
    figures.push(await loadFigure(sizes.restart, LOAD_DEADLINE_MS[mode], opts, 'log'));
    figures.push(...(await adminFigures(sizes.restart, opts)));
  } else figures.push(notRun('restart', '2. restart loading, admin facts; 3. admin agents'));
  if (parts.has('fleet-sync')) {
    const fleetSync = await fleetSyncFigures(sizes.syncN, sizes.syncS, opts);
    figures.push(...fleetSync.figures);
    measurements.push(...fleetSync.measurements);
  } else figures.push(notRun('fleet-sync', '4. fleet sync against the WebSocket server'));
  if (parts.has('single')) {
    const single = await singleDocFigures(opts);
    figures.push(...single.figures);
    measurements.push(...single.measurements);
  } else figures.push(notRun('single', '5. single-document sync and latency'));
  // In the issue's order: by the number each figure starts with (a stable sort).
  figures.sort((a, b) => parseInt(a.figure) - parseInt(b.figure));
  return { measurements, ratios: [], figures };
}
