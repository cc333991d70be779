// The writer process of test/store-crash.test.ts: saves chunks to an FsStore in a loop (a few at
// a time) and prints each key once its save() resolved, so the test can SIGKILL it at any moment and then check that
// every acknowledged chunk survived. The chunk generator is exported so the test can regenerate
// the exact bytes.
//   argv: DIR SEED [log]  stdout: one JSON line {"i":N,"key":[...]} per acknowledged save

import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { FsStore } from '../../stores/fs-store.js';

/** Largest chunk the writer saves: big enough that a kill often lands inside a write. */
export const MAX_CHUNK = 256 * 1024;
/** The writer stops by itself after this many saves, in case nobody kills it. */
const MAX_SAVES = 1000;
/** Saves the writer keeps in flight. */
export const WRITER_CONCURRENCY = 4;

/** mulberry32: a small, fast, seeded 32-bit PRNG (not for cryptography). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The document id the writer uses for `seed`. */
export const writerDoc = (seed: number): string => `crash${seed}doc`;

/** Chunk number `index` of the writer with `seed`: 1 B to MAX_CHUNK of seeded random bytes. */
export function chunkData(seed: number, index: number): Uint8Array {
  const next = prng((seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
  const data = new Uint8Array(1 + (next() % MAX_CHUNK));
  for (let at = 0; at < data.length; at += 4) {
    const word = next();
    for (let b = 0; b < 4 && at + b < data.length; b++) data[at + b] = (word >>> (8 * b)) & 0xff;
  }
  return data;
}

/** The key automerge-repo would give an incremental chunk: its SHA-256 in hex. */
export function chunkKey(seed: number, data: Uint8Array): string[] {
  return [writerDoc(seed), 'incremental', createHash('sha256').update(data).digest('hex')];
}

async function main(dir: string, seed: number, log: boolean): Promise<void> {
  const store = await FsStore.open(dir, {
    logger: (line) => process.stderr.write(line + '\n'),
    log,
  });
  let next = 0;
  // Several saves in flight, so a kill sent on any acknowledgment finds others mid-write.
  const worker = async (): Promise<void> => {
    while (next < MAX_SAVES) {
      const i = next++;
      const data = chunkData(seed, i);
      const key = chunkKey(seed, data);
      await store.save(key, data);
      process.stdout.write(JSON.stringify({ i, key }) + '\n'); // synchronous on a pipe (Linux)
    }
  };
  await Promise.all(Array.from({ length: WRITER_CONCURRENCY }, worker));
  await store.close();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dir, seed, mode] = process.argv.slice(2);
  if (dir === undefined || seed === undefined)
    throw new Error('usage: store-writer DIR SEED [log]');
  await main(dir, Number(seed), mode === 'log');
}
