// sync/wasm-headroom.ts: room made in Automerge's memory is used by later documents, and the
// watcher turns a GC per grow of that memory into a GC per 32 MiB step. Each case runs in a fresh
// child process: wasm memory is per process and never shrinks.

import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as A from '@automerge/automerge';
import { describe, expect, it } from 'vitest';
import { HEADROOM_STEP_BYTES, heldZeroBytes, makeRoom } from '../sync/wasm-headroom.js';

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/headroom-child.js');
/** Lets the child read Automerge's wasm memory itself (grownBytes). */
const HOOK = pathToFileURL(
  resolve(import.meta.dirname, '../dist/test/helpers/wasm-memory-hook.js'),
);

interface Run {
  readonly gcs: number;
  readonly steps: number;
  readonly grownBytes: number;
  readonly docs: number;
  readonly arrayBuffers: number;
}

async function run(mode: 'watch' | 'none' | 'room' | 'creep', docs: number): Promise<Run> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', `--import=${HOOK.href}`, CHILD, mode, String(docs)],
    {
      timeout: 120_000,
    },
  );
  return JSON.parse(stdout) as Run;
}

describe('wasm headroom', () => {
  it('makeRoom leaves memory that later documents use without growing it', async () => {
    // 64 documents of 64 KiB: 4 MiB, and the copies made to build them.
    const [none, room] = await Promise.all([run('none', 64), run('room', 64)]);
    expect(none.grownBytes).toBeGreaterThan(4 * 2 ** 20);
    expect(room.grownBytes).toBeLessThan(2 ** 20); // Automerge's own memory (wasm-memory-hook)
    // The zeros it copied from are not kept as an array buffer: once read they are resident (16
    // MiB here; 32 MiB a step, kept for good before session 25).
    expect(room.arrayBuffers - none.arrayBuffers).toBeLessThan(4 * 2 ** 20);
  });

  it('steps no more while other memory creeps up and the last step found its room there', async () => {
    // 48 pages of 3 MiB in all: the first step grows Automerge's memory, the next finds that
    // room free and so allows none below half a step (4 MiB) above it. Before, every GC that saw
    // the memory above its high-water mark stepped: 79 steps of ~100 ms in a restart at 5,000.
    const creep = await run('creep', 48);
    expect(creep.steps).toBeGreaterThanOrEqual(1);
    expect(creep.steps).toBeLessThanOrEqual(2);
  });

  it('makeRoom refuses nothing and changes no document', () => {
    const doc = A.from({ n: 1 });
    makeRoom(1024);
    expect(A.toJS(doc)).toEqual({ n: 1 });
    expect(heldZeroBytes()).toBe(0); // the zeros' buffer is emptied after the step
  });

  it('with the watcher, 128 MiB of documents cost a fraction of the GCs and at most a step more memory', async () => {
    const docs = 2048; // 64 KiB each: past the 64 MiB from which every grow starts a GC
    const [none, watch] = await Promise.all([run('none', docs), run('watch', docs)]);
    expect(none.docs).toBe(docs);
    expect(watch.docs).toBe(docs);
    expect(none.steps).toBe(0);
    expect(watch.steps).toBeGreaterThan(0);
    expect(watch.gcs * 4).toBeLessThan(none.gcs);
    // Room made and not used yet is at most a step, and what grew page by page between two GCs.
    expect(watch.grownBytes).toBeLessThanOrEqual(none.grownBytes + 2 * HEADROOM_STEP_BYTES);
  });
});
