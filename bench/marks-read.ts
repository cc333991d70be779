// How soon a restarted coordinator can answer its agents' facts and status documents without
// loading them (sync/stored-heads.ts): it reads one mark per document (Fleet.readMarks, 8 at a
// time). For N agents this writes 2N marks into a fresh FsStore, drops the page cache when it can
// (root), and reads them all back in a fresh store as the coordinator does at start: wall time and
// CPU time of the reads. The documents' own chunks are not written: the reads do not touch them.
//
//   node dist/bench/marks-read.js 5000

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAutomergeUrl, parseAutomergeUrl } from '@automerge/automerge-repo';
import { FsStore } from '../stores/fs-store.js';
import { StoredHeads } from '../sync/stored-heads.js';

/** Marks read at once, as Fleet.readMarks. */
const READERS = 8;

async function main(): Promise<void> {
  const agents = Number(process.argv[2] ?? 5000);
  if (!Number.isInteger(agents) || agents < 1) throw new Error('usage: marks-read.js AGENTS');
  const dir = await mkdtemp(join(tmpdir(), 'flt-marks-'));
  try {
    const docs = Array.from(
      { length: 2 * agents },
      () => parseAutomergeUrl(generateAutomergeUrl()).documentId,
    );
    const heads = ['ab'.repeat(32)];
    const writer = new StoredHeads(await FsStore.open(dir));
    for (const doc of docs) await writer.record(doc, heads);
    let cold = false;
    try {
      execFileSync('sync');
      execFileSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
      cold = true;
    } catch {
      // not root: the page cache stays warm, and the figure says so
    }
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const marks = new StoredHeads(await FsStore.open(dir));
    const todo = [...docs];
    const reader = async () => {
      for (let doc = todo.pop(); doc !== undefined; doc = todo.pop()) await marks.read(doc);
    };
    await Promise.all(Array.from({ length: READERS }, reader));
    const cpu = process.cpuUsage(cpu0);
    const known = docs.filter((d) => marks.peek(d) !== undefined).length;
    console.log(
      `${agents} agents: ${known} of ${docs.length} marks read in ` +
        `${((performance.now() - t0) / 1000).toFixed(2)} s (${cold ? 'cold' : 'warm'} page cache), ` +
        `CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
