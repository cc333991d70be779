// kill -9 during saves (THREATS.md row 19): a writer process (test/helpers/store-writer.ts) saves
// chunks to an FsStore, a few at a time, and acknowledges each on stdout; we SIGKILL it after a random number of
// acknowledgments, then check every acknowledged chunk loads with its exact bytes, nothing loads
// wrong, and leftover temp files are reported and removed. SIGKILL keeps the page cache, so this
// tests the atomicity of temp-file + rename, not fsync (that needs power loss). The same with the
// chunk log (option `log`): a kill inside an append leaves a tail that open() cuts and reports.
// Replay a run with STORE_CRASH_SEED=<seed>.

import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { LOG_DIR } from '../stores/chunk-log.js';
import { FsStore } from '../stores/fs-store.js';
import {
  chunkData,
  chunkKey,
  prng,
  WRITER_CONCURRENCY,
  writerDoc,
} from './helpers/store-writer.js';

const WRITER = resolve(import.meta.dirname, '../dist/test/helpers/store-writer.js');
const SEED = Number(process.env.STORE_CRASH_SEED ?? randomInt(2 ** 31));
const ROUNDS = 20;
const MAX_ACKS = 30;
const ROUND_DEADLINE_MS = 30_000;

type Ack = { i: number; key: string[] };

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** Runs the writer until it acknowledged `target` saves, SIGKILLs it, returns every ack it printed. */
async function runAndKill(dir: string, seed: number, target: number, log: boolean): Promise<Ack[]> {
  const child = spawn(process.execPath, [WRITER, dir, String(seed), ...(log ? ['log'] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acks: Ack[] = [];
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    acks.push(JSON.parse(line) as Ack);
    if (acks.length === target) child.kill('SIGKILL');
  });
  const deadline = setTimeout(() => child.kill('SIGKILL'), ROUND_DEADLINE_MS);
  const [, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
    child.on('close', (code, sig) => res([code, sig])),
  );
  clearTimeout(deadline);
  if (acks.length < target || signal !== 'SIGKILL') {
    throw new Error(
      `writer stopped after ${acks.length}/${target} acks (signal ${signal}): ${stderr}`,
    );
  }
  return acks;
}

async function tempFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.tmp'))
    .map((e) => join(e.parentPath, e.name));
}

async function round(seed: number, target: number, log: boolean): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'flt-crash-'));
  dirs.push(dir);
  const acks = await runAndKill(dir, seed, target, log);
  expect(new Set(acks.map((a) => a.i)).size).toBe(acks.length);
  const temps = await tempFiles(dir);

  const lines: string[] = [];
  const store = await FsStore.open(dir, { logger: (l) => lines.push(l), log });
  for (const { i, key } of acks) {
    const loaded = await store.load(key);
    expect(loaded, `acknowledged chunk ${i} is missing`).toBeDefined();
    expect(Buffer.compare(loaded as Uint8Array, chunkData(seed, i)), `chunk ${i} bytes`).toBe(0);
  }
  // The writer numbers saves in order and runs WRITER_CONCURRENCY at once: what is on disk is the
  // acknowledged chunks plus some of the (at most WRITER_CONCURRENCY) in flight, never anything else.
  const loaded = await store.loadRange([writerDoc(seed)]);
  const started = acks.length + WRITER_CONCURRENCY;
  const byKey = new Map<string, Uint8Array>();
  for (let i = 0; i < started; i++) {
    const data = chunkData(seed, i);
    byKey.set(chunkKey(seed, data).join('/'), data);
  }
  for (const chunk of loaded) {
    const data = byKey.get(chunk.key.join('/'));
    expect(data, `unexpected chunk ${chunk.key.join('/')}`).toBeDefined();
    expect(Buffer.compare(chunk.data as Uint8Array, data as Uint8Array)).toBe(0);
  }
  expect(loaded.length).toBeGreaterThanOrEqual(acks.length);
  expect(loaded.length).toBeLessThanOrEqual(started);

  // A kill during an append leaves its tail (never acknowledged), cut and reported once.
  const problems = store.problems();
  const tails = problems.filter((p) => log && p.file.includes(`/${LOG_DIR}/`));
  expect(tails.length).toBeLessThanOrEqual(1);
  expect(tails.every((p) => p.code === 'STORE_LEFTOVER_TEMP')).toBe(true);
  expect(
    problems
      .filter((p) => !tails.includes(p))
      .map((p) => [p.code, p.file])
      .sort(),
  ).toEqual(temps.map((t) => ['STORE_LEFTOVER_TEMP', t]).sort());
  expect(lines).toHaveLength(temps.length + tails.length);
  expect(await tempFiles(dir)).toEqual([]);
  await store.close();
}

describe.each([
  ['a file per chunk', false],
  ['the chunk log', true],
])(`FsStore with %s survives SIGKILL during saves (STORE_CRASH_SEED=${SEED})`, (_, log) => {
  const rng = prng(SEED);
  for (let r = 0; r < ROUNDS; r++) {
    const seed = rng();
    const target = 1 + (rng() % MAX_ACKS);
    it(`round ${r}: kill after ${target} acknowledged saves (STORE_CRASH_SEED=${SEED})`, () =>
      round(seed, target, log));
  }
});
