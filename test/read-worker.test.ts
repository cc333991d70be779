// stores/read-worker.ts: whole directories read in a worker thread, as FsStore's loadRange uses
// them (the conformance and integrity suites run FsStore through it too). Here: what a read
// answers for a tree, a file and nothing; that many reads at once each get their own answer; that
// an error fails its own request only; and that FsStore still reads after close of the worker.

import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { ReadWorker, TreeReadError } from '../stores/read-worker.js';

const dirs: string[] = [];
const workers: ReadWorker[] = [];
afterEach(async () => {
  for (const w of workers.splice(0)) await w.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'flt-read-worker-'));
  dirs.push(d);
  return d;
}
function worker(lines: string[] = []): ReadWorker {
  const w = new ReadWorker((l) => lines.push(l));
  workers.push(w);
  return w;
}

describe('ReadWorker', () => {
  it('reads a tree as walk() lists it: files sorted with their bytes, temp files named, dot entries skipped', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'ab', 'cdef', 'snapshot'), { recursive: true });
    await mkdir(join(root, 'ab', 'cdef', 'incremental'), { recursive: true });
    await mkdir(join(root, 'ab', 'cdef', '.quarantine'), { recursive: true });
    await writeFile(join(root, 'ab', 'cdef', 'snapshot', 's1'), 'snap');
    await writeFile(join(root, 'ab', 'cdef', 'incremental', 'i2'), 'two');
    await writeFile(join(root, 'ab', 'cdef', 'incremental', 'i1'), 'one');
    await writeFile(join(root, 'ab', 'cdef', 'incremental', '.i3.0a0b0c0d.tmp'), 'torn');
    await writeFile(join(root, 'ab', 'cdef', '.quarantine', 'old'), 'bad');

    const tree = await worker().read(root, ['ab', 'cdef']);
    expect(tree && 'files' in tree).toBe(true);
    if (!tree || !('files' in tree)) return;
    expect(tree.files.map((f) => f.segments.join('/'))).toEqual([
      'ab/cdef/incremental/i1',
      'ab/cdef/incremental/i2',
      'ab/cdef/snapshot/s1',
    ]);
    expect(tree.files.map((f) => new TextDecoder().decode(f.data))).toEqual(['one', 'two', 'snap']);
    expect(tree.files.every((f) => f.data.constructor === Uint8Array)).toBe(true);
    expect(tree.temps).toEqual([join(root, 'ab', 'cdef', 'incremental', '.i3.0a0b0c0d.tmp')]);
  });

  it('answers nothing for a missing path and the bytes for a file', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'ab'), { recursive: true });
    await writeFile(join(root, 'ab', 'cd'), 'whole');
    const w = worker();
    expect(await w.read(root, ['zz', 'top'])).toBeUndefined();
    const file = await w.read(root, ['ab', 'cd']);
    expect(file && 'file' in file && new TextDecoder().decode(file.file)).toBe('whole');
  });

  it('gives each of many reads at once its own answer', async () => {
    const root = await tempDir();
    const n = 150; // several batches, more than the window
    for (let i = 0; i < n; i++) {
      await mkdir(join(root, 'd' + i, 'x'), { recursive: true });
      await writeFile(join(root, 'd' + i, 'x', 'v'), `value ${i}`);
    }
    const w = worker();
    const trees = await Promise.all(Array.from({ length: n }, (_, i) => w.read(root, ['d' + i])));
    const values = trees.map((t) =>
      t && 'files' in t ? new TextDecoder().decode(t.files[0]!.data) : undefined,
    );
    expect(values).toEqual(Array.from({ length: n }, (_, i) => `value ${i}`));
  });

  it('fails a request that meets an I/O error with its code, and answers the others', async () => {
    const root = await tempDir();
    await symlink(join(root, 'loop'), join(root, 'loop')); // ELOOP on every read
    await mkdir(join(root, 'ok', 'x'), { recursive: true });
    await writeFile(join(root, 'ok', 'x', 'v'), 'fine');
    const lines: string[] = [];
    const w = worker(lines);
    const [bad, good] = await Promise.allSettled([w.read(root, ['loop']), w.read(root, ['ok'])]);
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as TreeReadError;
    expect(err).toBeInstanceOf(TreeReadError);
    expect(err.code).toBe('ELOOP');
    expect(good.status === 'fulfilled' && good.value && 'files' in good.value).toBe(true);
    expect(w.broken).toBe(false);
    expect(lines).toEqual([]);
  });

  it('a worker that dies fails the reads pending, says so once, and turns broken', async () => {
    const lines: string[] = [];
    const w = new ReadWorker((l) => lines.push(l), 'process.exit(3)');
    workers.push(w);
    const root = await tempDir();
    const reads = await Promise.allSettled([w.read(root, ['a']), w.read(root, ['b'])]);
    expect(reads.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(w.broken).toBe(true);
    expect(lines).toHaveLength(1);
    await expect(w.read(root, ['c'])).rejects.toBeInstanceOf(TreeReadError);
  });

  it('refuses reads after close, and close is idempotent', async () => {
    const w = worker();
    await w.close();
    await w.close();
    await expect(w.read(await tempDir(), ['a'])).rejects.toBeInstanceOf(TreeReadError);
  });
});

describe('FsStore through the read worker', () => {
  it('loadRange of a document with a bad path gives STORE_IO; the store goes on', async () => {
    const dir = await tempDir();
    const store = await FsStore.open(dir, { logger: () => {}, readWorker: true });
    const data = A.save(A.from({ a: 1 }));
    await store.save(['docOK', 'snapshot', 'h'], data);
    await mkdir(join(dir, 'lo'), { recursive: true });
    await symlink(join(dir, 'lo', 'opX'), join(dir, 'lo', 'opX'));
    await expect(store.loadRange(['loopX'])).rejects.toMatchObject({ code: 'STORE_IO' });
    expect(await store.loadRange(['docOK'])).toEqual([{ key: ['docOK', 'snapshot', 'h'], data }]);
    await store.close();
  });
});
