// How soon a restarted coordinator knows every mark (sync/stored-heads.ts), side by side: marks
// as one file each in the FsStore (flt before issue 13's journal: read 8 at a time at start) and
// as one journal (stores/journal.ts: read whole at open). For N agents it writes 2N marks each
// way (writes asked all at once: the journal group-commits them, the store saves file by file),
// drops the page cache when it can (root), and reads them back, once on an idle event loop and
// once on one kept busy (BUSY_MS of work per turn, as under a reconnect storm, where each of a
// read's several turns waits for the others). Wall and CPU time; the ratio is file/journal.
//
//   node dist/bench/marks-read.js 5000

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generateAutomergeUrl,
  parseAutomergeUrl,
  type DocumentId,
} from '@automerge/automerge-repo';
import { FsStore } from '../stores/fs-store.js';
import { Journal } from '../stores/journal.js';

/** Marks read at once by the file layout, as Fleet.readMarks did. */
const READERS = 8;
/** Work per event-loop turn in the busy runs. */
const BUSY_MS = 20;
const KEY = 'flt-heads';

interface Layout {
  write(docs: readonly DocumentId[], mark: string): Promise<void>;
  /** Reads every mark back in a fresh instance; how many it found. */
  read(docs: readonly DocumentId[]): Promise<number>;
}

const files = (dir: string): Layout => ({
  async write(docs, mark) {
    const store = await FsStore.open(dir);
    const bytes = new TextEncoder().encode(mark);
    await Promise.all(docs.map((doc) => store.save([doc, KEY], bytes)));
    await store.idle();
  },
  async read(docs) {
    const store = await FsStore.open(dir);
    const todo = [...docs];
    let found = 0;
    const reader = async () => {
      for (let doc = todo.pop(); doc !== undefined; doc = todo.pop())
        if ((await store.load([doc, KEY])) !== undefined) found++;
    };
    await Promise.all(Array.from({ length: READERS }, reader));
    return found;
  },
});

const journal = (file: string): Layout => ({
  async write(docs, mark) {
    const j = await Journal.open(file);
    await Promise.all(docs.map((doc) => j.set(doc, mark)));
    await j.close();
  },
  async read(docs) {
    const j = await Journal.open(file);
    const found = docs.filter((doc) => j.get(doc) !== undefined).length;
    await j.close();
    return found;
  },
});

function dropCaches(): boolean {
  try {
    execFileSync('sync');
    execFileSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
    return true;
  } catch {
    return false; // not root: the page cache stays warm, and the figure says so
  }
}

/** Keeps the event loop busy (BUSY_MS per turn) until the returned stop is called. */
function busyLoop(): () => void {
  let on = true;
  const turn = () => {
    if (!on) return;
    const end = performance.now() + BUSY_MS;
    while (performance.now() < end);
    setImmediate(turn);
  };
  setImmediate(turn);
  return () => void (on = false);
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; wall: number; cpu: number }> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const value = await fn();
  const cpu = process.cpuUsage(cpu0);
  return { value, wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
}

async function main(): Promise<void> {
  const agents = Number(process.argv[2] ?? 5000);
  if (!Number.isInteger(agents) || agents < 1) throw new Error('usage: marks-read.js AGENTS');
  const dir = await mkdtemp(join(tmpdir(), 'flt-marks-'));
  try {
    const docs = Array.from(
      { length: 2 * agents },
      () => parseAutomergeUrl(generateAutomergeUrl()).documentId,
    );
    const mark = 'ab'.repeat(32);
    const layouts = { file: files(join(dir, 'store')), journal: journal(join(dir, 'journal')) };
    const rows: string[] = [];
    const result: Record<string, number> = {};
    for (const [name, layout] of Object.entries(layouts)) {
      const w = await timed(() => layout.write(docs, mark));
      rows.push(`${name}: wrote ${docs.length} marks in ${w.wall.toFixed(2)} s`);
      result[`${name} write`] = w.wall;
      for (const busy of [false, true]) {
        const cold = dropCaches();
        const stop = busy ? busyLoop() : () => undefined;
        const r = await timed(() => layout.read(docs)).finally(stop);
        const what = `${name} read, ${busy ? `busy loop (${BUSY_MS} ms turns)` : 'idle loop'}`;
        result[`${name} read ${busy ? 'busy' : 'idle'}`] = r.wall;
        rows.push(
          `${what}: ${r.value} of ${docs.length} in ${r.wall.toFixed(2)} s ` +
            `(${cold ? 'cold' : 'warm'} page cache), CPU ${r.cpu.toFixed(2)} s`,
        );
      }
    }
    for (const row of rows) console.log(row);
    const ratio = (a: string, b: string) => ((result[a] ?? NaN) / (result[b] ?? NaN)).toFixed(1);
    console.log(
      `${agents} agents, file/journal: write ${ratio('file write', 'journal write')}x, ` +
        `read idle ${ratio('file read idle', 'journal read idle')}x, ` +
        `read busy ${ratio('file read busy', 'journal read busy')}x`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
