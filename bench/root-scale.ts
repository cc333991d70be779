// The root document at fleet sizes this machine cannot run live (README, "Scale": "On paper").
// For each N it builds a root document as a coordinator that enrolled N agents holds it (two
// changes per agent: the enrollment, then the summary; random ids and keys, signed heads), then,
// in a fresh child process, loads the saved bytes and reads what that costs: bytes on disk, load
// time, memory after the load, and lastSeen writes with their incremental save (times are CPU
// time of the child: steadier than wall time on a shared machine). Each write costs more as the
// document grows, so building takes a while past 10,000 (the build prints its time).
//
//   node dist/bench/root-scale.js 1000,10000,30000

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as A from '@automerge/automerge';
import {
  encodeAgent,
  rootBase,
  summarize,
  type AgentEntry,
  type RootDoc,
} from '../src/docs/types.js';
import { nodeIdFromBytes, type NodeId } from '../sync/ids.js';
import { baseDocument, docIdFor, signHeads } from '../sync/owned-doc.js';
import { sampleFacts } from './facts-sample.js';

const hex = (n: number) => randomBytes(n).toString('hex');

/**
 * The root as one snapshot (`whole`), and as a coordinator's store holds it between compactions
 * (`chunked`: a snapshot at half the agents, then an incremental chunk per further tenth of them).
 */
function build(n: number): { whole: Uint8Array; chunked: Uint8Array } {
  const coordinator = nodeIdFromBytes(randomBytes(32));
  const rootId = docIdFor(randomBytes(32));
  let root = A.load<RootDoc>(baseDocument(rootId, rootBase(coordinator)));
  const at = new Date().toISOString();
  const signer = randomBytes(32);
  const chunks: Uint8Array[] = [];
  let saved: A.Heads | undefined;
  for (let i = 0; i < n; i++) {
    if (i === Math.floor(n / 2)) {
      chunks.push(A.save(root));
      saved = A.getHeads(root);
    } else if (saved !== undefined && i % Math.max(1, Math.floor(n / 10)) === 0) {
      chunks.push(A.saveSince(root, saved));
      saved = A.getHeads(root);
    }
    const writeKey = randomBytes(32);
    const factsDocId = docIdFor(writeKey);
    const nodeId: NodeId = nodeIdFromBytes(randomBytes(32));
    const entry: AgentEntry = {
      nodeId,
      factsDocId,
      factsWriteKey: Buffer.from(writeKey).toString('hex'),
      enrolledAt: at,
      lastSeen: at,
      summary: null,
      // The signature does not have to verify here, only to have its real size and randomness.
      factsHeads: signHeads(factsDocId, 1, [hex(32)], signer, writeKey),
    };
    root = A.change(root, (d) => void (d.agents[nodeId] = encodeAgent(entry)));
    const summary = summarize(sampleFacts(i, at));
    root = A.change(root, (d) => void (d.agents[nodeId] = encodeAgent({ ...entry, summary })));
  }
  if (saved !== undefined) chunks.push(A.saveSince(root, saved));
  return { whole: A.save(root), chunked: Buffer.concat(chunks) };
}

/** CPU milliseconds of `f` in this process: steadier than wall time on a shared machine. */
function cpuMs(f: () => void): number {
  const t = process.cpuUsage();
  f();
  const u = process.cpuUsage(t);
  return (u.user + u.system) / 1000;
}

/**
 * In the child: load the bytes, then lastSeen writes and their incremental save (CPU time); and
 * side by side, loads of one snapshot and of the chunked layout, both as automerge-repo loads
 * (`loadIncremental` into an empty document) and with `load` (sync/compact.ts: why the root is
 * kept compacted).
 */
function measure(file: string): void {
  const bytes = new Uint8Array(readFileSync(file));
  const chunked = new Uint8Array(readFileSync(`${file}.chunked`));
  const loads: Record<string, number> = {};
  A.load(A.save(A.from({ warm: 1 }))); // the wasm module's first use is not what is measured
  const median3 = (f: () => void) => [cpuMs(f), cpuMs(f), cpuMs(f)].sort((a, b) => a - b)[1]!;
  for (const [layout, b] of [
    ['whole', bytes],
    ['chunked', chunked],
  ] as const) {
    loads[`${layout} load`] = median3(() => void A.load(b));
    loads[`${layout} loadIncremental`] = median3(() => void A.loadIncremental(A.init(), b));
  }
  const before = process.memoryUsage();
  let root = A.init<RootDoc>();
  const loadMs = cpuMs(() => void (root = A.load<RootDoc>(bytes)));
  const agents = Object.keys(root.agents).length;
  globalThis.gc?.();
  const after = process.memoryUsage();
  // lastSeen updates, the coordinator's most frequent write to the root: the first change after
  // a load, then the median of 20 more on other agents.
  const heads = A.getHeads(root);
  const ids = Object.keys(root.agents).slice(0, 21);
  const times: number[] = [];
  for (const id of ids) {
    const record = String(root.agents[id]).replace(
      /"lastSeen":"[^"]*"/,
      `"lastSeen":"${new Date().toISOString()}"`,
    );
    const write = () =>
      void (root = A.change(root, (d) => void (d.agents[id] = new A.ImmutableString(record))));
    times.push(cpuMs(write));
  }
  const firstChangeMs = times[0]!;
  const changeMs = times.slice(1).sort((a, b) => a - b)[10]!;
  let delta: Uint8Array = new Uint8Array();
  const saveMs = cpuMs(() => void (delta = A.saveSince(root, heads)));
  const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  console.log(
    JSON.stringify({
      agents,
      loadMs: Math.round(loadMs),
      firstChangeMs: Math.round(firstChangeMs * 10) / 10,
      changeMs: Math.round(changeMs * 10) / 10,
      saveMs: Math.round(saveMs * 10) / 10,
      incrementalBytes: delta.length,
      rssMiB: mib(after.rss - before.rss),
      heapMiB: mib(after.heapUsed - before.heapUsed),
      arrayBuffersMiB: mib(after.arrayBuffers - before.arrayBuffers),
      loads: Object.fromEntries(Object.entries(loads).map(([k, v]) => [k, Math.round(v)])),
    }),
  );
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return measure(process.argv[3]!);
  const sizes = (process.argv[2] ?? '1000,10000').split(',').map(Number);
  const dir = await mkdtemp(join(tmpdir(), 'flt-root-scale-'));
  try {
    for (const n of sizes) {
      const t0 = performance.now();
      const { whole: saved, chunked } = build(n);
      const file = join(dir, `root-${n}`);
      await writeFile(file, saved);
      await writeFile(`${file}.chunked`, chunked);
      const built = Math.round((performance.now() - t0) / 1000);
      const out = execFileSync(
        process.execPath,
        ['--expose-gc', fileURLToPath(import.meta.url), '--child', file],
        { encoding: 'utf8' },
      );
      const r = JSON.parse(out) as Record<string, number> & { loads: Record<string, number> };
      const size = (await readFile(file)).length;
      console.log(
        `N=${n}: ${size} bytes saved (${Math.round(size / n)} per agent, built in ${built} s); ` +
          `load ${r.loadMs} ms CPU; after load RSS +${r.rssMiB} MiB (heap ${r.heapMiB}, array buffers ` +
          `${r.arrayBuffersMiB}); first change ${r.firstChangeMs} ms CPU, then ${r.changeMs} ms ` +
          `each (median of 20); their incremental save ${r.saveMs} ms (${r.incrementalBytes} bytes)`,
      );
      const l = r.loads;
      const ratio = (a = NaN, b = NaN) => (a / b).toFixed(2);
      console.log(
        `  loads, ms CPU (median of 3): one snapshot: loadIncremental ${l['whole loadIncremental']}, load ` +
          `${l['whole load']} (${ratio(l['whole loadIncremental'], l['whole load'])}x); chunked ` +
          `(${chunked.length} bytes): loadIncremental ${l['chunked loadIncremental']}, load ` +
          `${l['chunked load']} (${ratio(l['chunked loadIncremental'], l['chunked load'])}x)`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
