// `npm run bench [-- --quick] [GROUP...]`: runs the benchmark groups (transport.ts, sync.ts,
// latency.ts, restart.ts, fanin.ts, recover.ts, cli.ts, deploy.ts, artifacts.ts, scale.ts) in one process, prints the environment, a table of measurements and the ratios
// against the targets, and writes it all to bench/results/latest.json (see README.md).

import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  fmtNumber,
  renderTable,
  verdict,
  type BenchOptions,
  type Figure,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';
import { runCli } from './cli.js';
import { runArtifacts } from './artifacts.js';
import { runDeploy } from './deploy.js';
import { runLatency } from './latency.js';
import { runRestart } from './restart.js';
import { runFanin } from './fanin.js';
import { runScale } from './scale.js';
import { runRecover } from './recover.js';
import { runSync } from './sync.js';
import { runTransport } from './transport.js';

const GROUPS = {
  transport: runTransport,
  sync: runSync,
  latency: runLatency,
  restart: runRestart,
  fanin: runFanin,
  recover: runRecover,
  cli: runCli,
  deploy: runDeploy,
  artifacts: runArtifacts,
  scale: runScale,
} as const satisfies Record<string, (opts: BenchOptions) => Promise<GroupResult>>;
type GroupName = keyof typeof GROUPS;
const isGroup = (s: string): s is GroupName => Object.hasOwn(GROUPS, s);

const USAGE = `usage: node dist/bench/run.js [--quick] [--reps N] [${Object.keys(GROUPS).join('|')}]...`;

interface Cli {
  readonly quick: boolean;
  readonly reps: number | undefined;
  readonly groups: readonly GroupName[];
}

function parseArgs(argv: readonly string[]): Cli {
  let quick = false;
  let reps: number | undefined;
  const groups: GroupName[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--reps') reps = Number(argv[++i]);
    else if (isGroup(arg)) groups.push(arg);
    else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
  }
  if (reps !== undefined && !(Number.isInteger(reps) && reps >= 1)) {
    throw new Error(`--reps needs a whole number >= 1\n${USAGE}`);
  }
  const all = Object.keys(GROUPS).filter(isGroup);
  // `scale` reruns sync and latency and takes long at full size: only when asked for.
  const byDefault = all.filter((g) => g !== 'scale');
  return { quick, reps, groups: groups.length > 0 ? groups : byDefault };
}

/** Installed version, read from node_modules (some exports maps hide package.json). */
function versionOf(pkg: string): string {
  try {
    const file = new URL(`../../node_modules/${pkg}/package.json`, import.meta.url);
    const json = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown };
    return typeof json.version === 'string' ? json.version : '?';
  } catch {
    return '?';
  }
}

function environment() {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    os: `${platform()} ${release()}`,
    memGiB: Math.round(totalmem() / 2 ** 30),
    /** 1-minute load average at the start: other work on the machine skews every number. */
    loadAvg1m: Number(loadavg()[0]!.toFixed(2)),
    packages: Object.fromEntries(
      [
        '@number0/iroh',
        '@automerge/automerge',
        '@automerge/automerge-repo',
        '@automerge/automerge-repo-network-websocket',
        '@automerge/automerge-repo-network-messagechannel',
        '@automerge/automerge-repo-storage-nodefs',
        'ws',
      ].map((p) => [p, versionOf(p)]),
    ),
  };
}

/** Percentile rows come from many rounds: show their range instead of every sample. */
function roundsSummary(xs: readonly number[]): string {
  return `${xs.length} rounds, ${fmtNumber(Math.min(...xs))}..${fmtNumber(Math.max(...xs))}`;
}

/** The samples column: every repetition, `1 run` for a single one, or a range of rounds. */
function samplesText(m: Measurement): string {
  if (m.stat !== 'median') return roundsSummary(m.samples);
  return m.samples.length === 1 ? '1 run' : m.samples.map(fmtNumber).join(' ');
}

/** The scale group's figures: each against its target, `ok` or `MISS`. */
function printFigures(figures: readonly Figure[]) {
  const rows = figures.map((f) => [
    f.figure,
    f.value === undefined
      ? 'not measured'
      : `${f.lowerBound ? '> ' : ''}${fmtNumber(f.value)} ${f.unit}`,
    f.target ? `${f.target.op} ${fmtNumber(f.target.bound)} ${f.unit}` : '-',
    f.result,
    f.note,
  ]);
  console.log(renderTable(['figure', 'value', 'target', 'result', 'note'], rows));
}

function printReport(
  env: ReturnType<typeof environment>,
  cli: Cli,
  ms: Measurement[],
  ratios: Ratio[],
  figures: Figure[],
) {
  const mode = cli.quick ? 'QUICK (smoke check, small sizes)' : 'full';
  const reps = cli.reps === undefined ? 'default reps' : `${cli.reps} reps`;
  console.log(`flt benchmarks, ${mode}, ${reps}, groups: ${cli.groups.join(', ')}`);
  console.log(`date ${env.date}  node ${env.node}  ${env.os}`);
  console.log(
    `cpu ${env.cpu} x${env.cores}  memory ${env.memGiB} GiB  load average (1 min) ${env.loadAvg1m} at start, ${loadavg()[0]!.toFixed(2)} at end`,
  );
  console.log(
    Object.entries(env.packages)
      .map(([k, v]) => `${k}@${v}`)
      .join('  '),
  );
  console.log('');
  const rows = ms.map((m) => [
    m.group,
    m.name,
    m.stat,
    `${m.lowerBound ? '> ' : ''}${fmtNumber(m.value)}`,
    m.unit,
    samplesText(m),
    m.note ?? '',
  ]);
  // The scale group run alone with only some parts may have figures and no measurements.
  if (rows.length > 0)
    console.log(
      renderTable(['group', 'measurement', 'stat', 'value', 'unit', 'samples', 'note'], rows),
    );
  if (figures.length > 0) {
    console.log('');
    printFigures(figures);
  }
  if (ratios.length === 0) return;
  console.log('');
  const ratioRows = ratios.map((r) => [
    r.group,
    r.name,
    `${r.lowerBound ? '> ' : ''}${r.value.toFixed(2)}x`,
    r.target ? `${r.target.op} ${r.target.bound}` : `(${r.better ?? 'lower'} is better)`,
    verdict(r),
  ]);
  console.log(renderTable(['group', 'ratio', 'value', 'target', 'result'], ratioRows));
}

async function main(): Promise<number> {
  let cli: Cli;
  try {
    cli = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 2;
  }
  const env = environment();
  const opts: BenchOptions = {
    quick: cli.quick,
    reps: cli.reps,
    progress: (l) => console.error(`  ${l}`),
  };
  const measurements: Measurement[] = [];
  const ratios: Ratio[] = [];
  const figures: Figure[] = [];
  const failures: { group: GroupName; error: string }[] = [];
  for (const group of cli.groups) {
    console.error(`[${group}]`);
    try {
      const r = await GROUPS[group](opts);
      measurements.push(...r.measurements);
      ratios.push(...r.ratios);
      figures.push(...(r.figures ?? []));
    } catch (err) {
      // One broken group must not hide the others' numbers; the exit code still says it failed.
      const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
      failures.push({ group, error });
      console.error(`[${group}] FAILED: ${error}`);
    }
  }
  printReport(env, cli, measurements, ratios, figures);
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  await mkdir(dir, { recursive: true });
  const file = `${dir}latest.json`;
  const json = {
    env,
    quick: cli.quick,
    reps: cli.reps,
    groups: cli.groups,
    measurements,
    ratios,
    figures,
    failures,
  };
  await writeFile(file, JSON.stringify(json, null, 2) + '\n');
  console.log(`\nresults: ${file}`);
  if (figures.length > 0) {
    // The scale summary alone, for comparing runs: the figures and the environment they ran in.
    const scale = `${dir}scale.json`;
    const summary = { env, quick: cli.quick, figures };
    await writeFile(scale, JSON.stringify(summary, null, 2) + '\n');
    console.log(`scale summary: ${scale}`);
  }
  for (const f of failures) console.log(`FAILED group ${f.group} (see stderr)`);
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = await main();
