// The `cli` group: how long the built `flt` takes as a whole process, next to bare `node -e 0`
// run the same way in the same run: `--version`, `--help`, and `admin agents --offline` on an
// admin's replica of an N-agent fleet (fixtures.ts, `replicaFixture`). Each variant is a fresh
// child process timed from spawn until it has exited and its output is read.

import { spawn } from 'node:child_process';
import { median, type BenchOptions, type GroupResult, type Measurement } from './stats.js';
import { replicaFixture } from './fixtures.js';
import { FLT_BIN } from './processes.js';

const GROUP = 'cli';
/** The targets: milliseconds over bare Node in the same run. */
const TARGET_OVER_NODE_MS = { start: 150, offline: 400 } as const;
/** One run of a variant that takes longer than this is a hang: the group fails. */
const RUN_DEADLINE_MS = 30_000;

interface Variant {
  readonly name: string;
  readonly args: readonly string[];
  /** The target over `node -e 0`, in ms (none for the baseline itself). */
  readonly targetMs?: number;
  /** Checks the run's output: a run that did not do the work must not count as fast. */
  readonly check: (stdout: string) => boolean;
}

/**
 * Wall time of `node ...args` from spawn to exit with its output read, and its stdout; killed
 * after `deadlineMs`. Also used by the scale group (scale.ts) for online admin commands.
 */
export function timeRun(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  deadlineMs = RUN_DEADLINE_MS,
): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (code === 0) resolve([ms, stdout]);
      else reject(new Error(`node ${args.join(' ')}: exit ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

export async function runCli(opts: BenchOptions): Promise<GroupResult> {
  const n = opts.quick ? 20 : 100;
  const reps = opts.reps ?? (opts.quick ? 5 : 15);
  const replica = await replicaFixture(n, opts.progress);
  // No FLT_* variable of the caller's may change what the CLI does (a config file, a log level).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^FLT_/.test(k)));
  const variants: Variant[] = [
    { name: 'node -e 0', args: ['-e', '0'], check: (out) => out === '' },
    {
      name: 'flt --version',
      args: [FLT_BIN, '--version'],
      targetMs: TARGET_OVER_NODE_MS.start,
      check: (out) => /^\d+\.\d+\.\d+/.test(out),
    },
    {
      name: 'flt --help',
      args: [FLT_BIN, '--help'],
      targetMs: TARGET_OVER_NODE_MS.start,
      check: (out) => /usage:/i.test(out),
    },
    {
      name: `flt admin agents --offline (${n} agents)`,
      args: [FLT_BIN, '--state-dir', replica.stateDir, 'admin', 'agents', '--offline'],
      targetMs: TARGET_OVER_NODE_MS.offline,
      check: (out) => out.startsWith(`${n} agents (offline`),
    },
  ];
  const samples = variants.map((): number[] => []);
  // One untimed run each (disk cache, Node's compile cache), then the variants take turns in
  // each repetition, starting one later every time, so drift on a shared machine hits all alike.
  for (const v of variants) {
    const [, out] = await timeRun(v.args, env);
    if (!v.check(out)) throw new Error(`${v.name}: unexpected output ${JSON.stringify(out)}`);
  }
  for (let rep = 0; rep < reps; rep++) {
    for (let k = 0; k < variants.length; k++) {
      const i = (rep + k) % variants.length;
      const [ms, out] = await timeRun(variants[i]!.args, env);
      if (!variants[i]!.check(out)) throw new Error(`${variants[i]!.name}: unexpected output`);
      samples[i]!.push(ms);
    }
    opts.progress(`repetition ${rep + 1}/${reps} done`);
  }
  const base = samples[0]!;
  const baseMs = median(base);
  const measurements: Measurement[] = [];
  const ratios: GroupResult['ratios'] = [];
  variants.forEach((v, i) => {
    const xs = samples[i]!;
    measurements.push({
      group: GROUP,
      name: v.name,
      stat: 'median',
      value: median(xs),
      unit: 'ms',
      samples: xs,
    });
    if (v.targetMs === undefined) return;
    // Paired: each repetition's run minus the same repetition's bare Node run.
    const over = xs.map((x, r) => x - base[r]!);
    measurements.push({
      group: GROUP,
      name: `${v.name} - node -e 0`,
      stat: 'median',
      value: median(over),
      unit: 'ms',
      samples: over,
      note: `target <= ${v.targetMs} ms`,
    });
    ratios.push({
      group: GROUP,
      name: `${v.name} / node -e 0`,
      value: median(xs) / baseMs,
      // The target is "within T ms of bare Node": as a ratio, (node + T) / node of this run.
      target: { op: '<=', bound: Number(((baseMs + v.targetMs) / baseMs).toFixed(2)) },
    });
  });
  return { measurements, ratios };
}
