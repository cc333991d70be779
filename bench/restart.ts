// Group `restart`: how long a restarted coordinator takes to serve the fleet, against a plain
// automerge-repo Repo on NodeFSStorageAdapter loading the same documents. Both run on a cached
// fixture (fixtures.ts), each in a fresh child process (restart-child.ts) as a real restart is,
// so a run past its deadline can be killed and reported as "> T s".

import { fileURLToPath } from 'node:url';
import * as A from '@automerge/automerge';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { decodeAgent, encodeAgent, type RootDoc } from '../src/docs/types.js';
import { fleetFixture, manifestPath, type FleetFixture } from './fixtures.js';
import { runScript } from './processes.js';
import type { StepResult } from './restart-child.js';
import {
  median,
  type BenchOptions,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';

const SIZES = { full: [1000, 5000], quick: [200, 1000] } as const;
/** The target: a restarted coordinator serves 5,000 agents 20x faster than the baseline. */
const TARGET = { n: 5000, ratio: 20 } as const;
/**
 * Deadlines of the child runs, after which they are killed and reported as "> T s", so that a
 * full `npm run bench` stays near 10 minutes. REFERENCE.md measured 86 s for the baseline at
 * 5,000 small documents on this machine. The flt run's second step (every facts document) is
 * reported for honesty and gets less time; its first step, the fleet table, takes seconds. At
 * 5,000 that second step is far from done at any deadline we can afford, so it gets a short one.
 */
function deadlines(n: number, quick: boolean): { flt: number; baseline: number } {
  if (quick) return { flt: 30_000, baseline: 30_000 };
  return { flt: n > 1000 ? 40_000 : 75_000, baseline: 120_000 };
}
/** 0: every find() at once, as an application would write it (see README: bounding it is no help). */
const BASELINE_CONCURRENCY = 0;
/** Changes timed on the root document; each takes milliseconds. */
const CHANGES = 5;

const CHILD = fileURLToPath(new URL('./restart-child.js', import.meta.url));

/** The steps a child finished before it exited or was killed at its deadline. */
export interface ChildRun {
  readonly fleet?: Extract<StepResult, { step: 'fleet' }>;
  readonly all?: Extract<StepResult, { step: 'all' }>;
  readonly timedOut: boolean;
  readonly deadlineMs: number;
  /** The child's last progress line (`1250/5001 ready after 140.2 s`), if any. */
  readonly lastProgress: string | undefined;
}

/** One restart-child.ts run (`flt` or `baseline`); also used by the scale group (scale.ts). */
export async function runChild(
  args: readonly string[],
  deadlineMs: number,
  progress: (line: string) => void,
): Promise<ChildRun> {
  let lastProgress: string | undefined;
  const run = await runScript(CHILD, args, deadlineMs, (line) => {
    lastProgress = line;
    progress(`  ${args[0]}: ${line}`);
  });
  const steps = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as StepResult);
  const result: ChildRun = {
    fleet: steps.find((s) => s.step === 'fleet'),
    all: steps.find((s) => s.step === 'all'),
    timedOut: run.timedOut,
    deadlineMs,
    lastProgress,
  };
  if (!run.timedOut && (run.code !== 0 || !result.all))
    throw new Error(`restart-child ${args.join(' ')} exited with ${run.code}:\n${run.stderr}`);
  return result;
}

/**
 * Where the coordinator's start goes, with plain Automerge on the root snapshot: A.load, and
 * A.loadIncremental into an empty document as automerge-repo's StorageSubsystem loads; then one
 * change like Presence's lastSeen write. Run in this process, untimed by the children.
 */
async function rootCosts(fx: FleetFixture) {
  const chunks = await new NodeFSStorageAdapter(fx.nodefsDir).loadRange([fx.rootDocId]);
  const bytes = chunks.find((c) => c.key[1] === 'snapshot')?.data;
  if (!bytes) throw new Error('fixture has no root snapshot');
  const t0 = performance.now();
  A.load<RootDoc>(bytes);
  const loadMs = performance.now() - t0;
  const t1 = performance.now();
  let doc = A.loadIncremental(A.init<RootDoc>(), bytes);
  const incrementalMs = performance.now() - t1;
  const ids = Object.keys(doc.agents);
  const changeMs: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const id = ids[(i * 7919) % ids.length]!;
    const at = new Date().toISOString();
    const c0 = performance.now();
    const entry = decodeAgent(id, doc.agents[id])!;
    doc = A.change(doc, (d) => void (d.agents[id] = encodeAgent({ ...entry, lastSeen: at })));
    changeMs.push(performance.now() - c0);
  }
  return { loadMs, incrementalMs, changeMs };
}

const s = (ms: number) => ms / 1000;

function row(
  name: string,
  unit: Measurement['unit'],
  samples: number[],
  note: string,
  lowerBound = false,
): Measurement {
  const value = median(samples);
  return { group: 'restart', name, stat: 'median', value, unit, samples, note, lowerBound };
}

/**
 * Seconds of each run of a step; a run cut off before the step counts as its deadline, and the
 * note then says how far it got.
 */
function seconds(runs: readonly ChildRun[], step: 'fleet' | 'all', done: string) {
  const cut = runs.find((r) => !r[step]);
  const reached = cut?.lastProgress ? `, >= ${cut.lastProgress.replace(/ after .*/, '')}` : '';
  return {
    samples: runs.map((r) => s(r[step]?.ms ?? r.deadlineMs)),
    cutOff: cut !== undefined,
    note: cut ? `cut off at the ${s(cut.deadlineMs)} s deadline${reached}` : done,
  };
}

async function measureSize(n: number, opts: BenchOptions): Promise<GroupResult> {
  const fx = await fleetFixture(n, opts.progress);
  const manifest = manifestPath(n);
  const flt: ChildRun[] = [];
  const base: ChildRun[] = [];
  const reps = opts.reps ?? 1;
  const deadline = deadlines(n, opts.quick);
  for (let rep = 1; rep <= reps; rep++) {
    opts.progress(`N = ${n}: flt coordinator restart (${rep}/${reps})`);
    flt.push(await runChild(['flt', manifest], deadline.flt, opts.progress));
    opts.progress(`N = ${n}: baseline, nodefs Repo finds ${n + 1} documents (${rep}/${reps})`);
    const args = ['baseline', manifest, String(BASELINE_CONCURRENCY)];
    base.push(await runChild(args, deadline.baseline, opts.progress));
  }
  if (flt.some((r) => !r.fleet))
    throw new Error(`the coordinator did not serve ${n} agents in time`);
  const root = await rootCosts(fx);
  const fleetS = seconds(flt, 'fleet', 'Coordinator.start + fleet.agents(): root document only');
  const fleet = row(`flt: fleet table served, N=${n}`, 's', fleetS.samples, fleetS.note);
  const all = seconds(
    flt,
    'all',
    `same start, then all ${n} facts docs opened as for a push (plain, FsStore)`,
  );
  const allRow = row(
    `flt: + all facts docs loaded, N=${n}`,
    's',
    all.samples,
    all.note,
    all.cutOff,
  );
  const b = seconds(base, 'all', 'plain Repo, every find() at once');
  const baseRow = row(`baseline: nodefs Repo, N+1 docs, N=${n}`, 's', b.samples, b.note, b.cutOff);
  const kib = Math.round(fx.rootBytes / 1024);
  const measurements = [
    fleet,
    allRow,
    baseRow,
    row(`root doc A.load, N=${n}`, 'ms', [root.loadMs], `plain Automerge, ${kib} KiB snapshot`),
    row(
      `root doc A.loadIncremental, N=${n}`,
      'ms',
      [root.incrementalMs],
      'into A.init(), as automerge-repo loads',
    ),
    row(
      `root doc: one change, N=${n}`,
      'ms',
      root.changeMs,
      'A.change rewriting one agent record (a lastSeen)',
    ),
    row(
      `fleet.agent(id) lookup, N=${n}`,
      'ms',
      flt.map((r) => r.fleet!.lookupMs),
      'a Map lookup (Fleet keeps decoded entries); each rpc does 1-3',
    ),
  ];
  const target =
    !opts.quick && n === TARGET.n
      ? { target: { op: '>=' as const, bound: TARGET.ratio } }
      : { better: 'higher' as const };
  const ratios: Ratio[] = [
    {
      group: 'restart',
      name: `baseline / flt fleet table, N=${n}`,
      value: baseRow.value / fleet.value,
      lowerBound: b.cutOff,
      ...target,
    },
  ];
  // With the flt run cut off, this ratio is bounded from above or not at all: left out.
  if (!all.cutOff)
    ratios.push({
      group: 'restart',
      name: `baseline / flt + all facts, N=${n}`,
      value: baseRow.value / allRow.value,
      lowerBound: b.cutOff,
      better: 'higher',
    });
  return { measurements, ratios };
}

export async function runRestart(opts: BenchOptions): Promise<GroupResult> {
  const measurements: Measurement[] = [];
  const ratios: Ratio[] = [];
  for (const n of opts.quick ? SIZES.quick : SIZES.full) {
    const r = await measureSize(n, opts);
    measurements.push(...r.measurements);
    ratios.push(...r.ratios);
  }
  return { measurements, ratios };
}
