// What Automerge's wasm memory growing page by page costs, side by side (sync/wasm-headroom.ts):
// N facts documents of the restart fixture loaded as automerge-repo loads them
// (`loadIncremental` on an empty document, one per turn of the event loop) and all kept, once
// without and once with the headroom watcher, each in a fresh process (wasm memory is per
// process and never shrinks). Wall and CPU time, GCs and their time, growth of Automerge's
// memory, RSS; ratios are without / with.
//
//   node dist/bench/wasm-headroom.js 1000,2000,5000

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { setImmediate } from 'node:timers/promises';
import * as A from '@automerge/automerge';
import { keepWasmHeadroom, wasmBytes } from '../sync/wasm-headroom.js';
import { fleetFixture } from './fixtures.js';
import { runScript } from './processes.js';

interface Result {
  readonly wallS: number;
  readonly cpuS: number;
  readonly gcs: number;
  readonly gcS: number;
  readonly steps: number;
  readonly grownMiB: number;
  readonly rssMiB: number;
}

const SELF = fileURLToPath(import.meta.url);
const DEADLINE_MS = 600_000;

/** The child: loads the first `n` facts documents of the fixture for `n`. */
async function child(mode: string, n: number): Promise<void> {
  const fx = await fleetFixture(n, () => undefined);
  const chunks = await Promise.all(
    fx.factsDocIds.map(async (id) => {
      const dir = join(fx.nodefsDir, id.slice(0, 2), id.slice(2), 'snapshot');
      const [name] = await readdir(dir);
      return new Uint8Array(await readFile(join(dir, name!)));
    }),
  );
  const stats = mode === 'watch' ? keepWasmHeadroom() : { steps: 0 };
  let gcs = 0;
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs++;
      gcMs += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const before = wasmBytes();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const docs: A.Doc<unknown>[] = [];
  for (const chunk of chunks) {
    docs.push(A.loadIncremental(A.init(), chunk));
    await setImmediate();
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await setImmediate(); // the last GC entries
  const result: Result = {
    wallS,
    cpuS: (cpu.user + cpu.system) / 1e6,
    gcs,
    gcS: gcMs / 1000,
    steps: stats.steps,
    grownMiB: (wasmBytes() - before) / 2 ** 20,
    rssMiB: process.memoryUsage().rss / 2 ** 20,
  };
  process.stdout.write(JSON.stringify({ ...result, docs: docs.length }) + '\n');
}

async function measure(mode: 'none' | 'watch', n: number): Promise<Result> {
  const run = await runScript(SELF, ['child', mode, String(n)], DEADLINE_MS, () => undefined);
  if (run.code !== 0 || run.timedOut) throw new Error(`${mode} ${n}: ${run.stderr || 'timed out'}`);
  return JSON.parse(run.stdout) as Result;
}

async function main(): Promise<void> {
  const [first, mode, count] = process.argv.slice(2);
  if (first === 'child') return child(mode ?? '', Number(count));
  const sizes = (first ?? '1000,2000').split(',').map(Number);
  for (const n of sizes) await fleetFixture(n, (line) => process.stderr.write(`${line}\n`));
  const row = (label: string, r: Result) =>
    `${label.padEnd(8)} ${r.wallS.toFixed(2).padStart(8)} ${r.cpuS.toFixed(2).padStart(8)} ` +
    `${String(r.gcs).padStart(6)} ${r.gcS.toFixed(2).padStart(7)} ${String(r.steps).padStart(6)} ` +
    `${r.grownMiB.toFixed(0).padStart(10)} ${r.rssMiB.toFixed(0).padStart(8)}`;
  console.log('N      mode       wall s    CPU s    GCs    GC s  steps  grown MiB  RSS MiB');
  for (const n of sizes) {
    const none = await measure('none', n);
    const watch = await measure('watch', n);
    console.log(`${String(n).padEnd(6)} ${row('without', none)}`);
    console.log(`${''.padEnd(6)} ${row('with', watch)}`);
    console.log(
      `${''.padEnd(6)} ratio without/with: wall ${(none.wallS / watch.wallS).toFixed(1)}x, ` +
        `CPU ${(none.cpuS / watch.cpuS).toFixed(1)}x, GCs ${(none.gcs / watch.gcs).toFixed(1)}x; ` +
        `RSS with/without ${(watch.rssMiB / none.rssMiB).toFixed(2)}x`,
    );
  }
}

await main();
