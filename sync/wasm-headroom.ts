// Keeps free room in Automerge's wasm memory, so that it grows in a few large steps instead of
// one small step per allocation that does not fit (issue 13).
//
// Why. Automerge's allocator (dlmalloc inside the wasm module) grows the module's memory by the
// 64 KiB pages an allocation lacks, and V8 (Node 20) gives the grown memory a new array buffer,
// counted as new external memory the size of the *whole* memory until a GC: past 32 MiB (two of
// the young generation's semi-spaces) every array buffer allocated next starts a scavenge until
// that buffer is old, and past 64 MiB (V8's external-memory step) every grow starts a
// mark-compact of the whole JS heap. Loading many documents then costs a GC per few documents,
// and the GCs grow with the heap: quadratic. This was the slowdown past ~700 loaded documents (sync/evict.ts). Measured
// (`node dist/bench/wasm-headroom.js 2000,5000`: the restart fixture's facts documents loaded as
// automerge-repo loads them, all kept, one process each way): 5,000 took 39.0 s and 74 CPU-s
// without (698 GCs, 9.2 s of them on the main thread), 8.0 s and 10.8 CPU-s with (314, 1.3 s);
// 2,000: 10.0 and 3.2 s; RSS at the end 1.02x either way.
//
// How. `makeRoom(bytes)` has Automerge copy `bytes` zero bytes into its memory (a load of them,
// which fails: zeros are no document) and free them again: the allocator keeps the freed block
// and serves later allocations from it. `keepWasmHeadroom()` watches the process's GCs (of
// every kind); after one, if the external memory that is not array buffers (Automerge's memory,
// mostly) is past `fromBytes` and larger than ever seen, it makes `stepBytes` of room. So a process that
// holds few documents never pays for room, memory that grows pays one GC per step instead of
// one per few allocations, and room that is not used yet is about a step (RSS: the room is
// written once, so resident; a step made while the last one is partly used takes fresh memory,
// as dlmalloc serves a block that large only whole: test/wasm-headroom.test.ts allows two).

import * as A from '@automerge/automerge';
import { PerformanceObserver } from 'node:perf_hooks';
import { silentLogger, type Logger } from './log.js';

/** Room made at a time: 32 MiB (the resident memory not yet used is at most this). */
export const HEADROOM_STEP_BYTES = 32 * 2 ** 20;
/**
 * Below this, no room is made: from here every grow starts a mark-compact (see above). From 16 MiB,
 * before the scavenges too, the restart part's loads of 5,000 documents took 19.1 s instead of
 * 24.4 s, but three 1,000-agent fleets did worse than two at 64 MiB (fan-in 98.7-109.2 s against
 * 81.9-92.4 s; all back online 32.3-36.7 s after ready against 17.4-28.5 s; a restarted
 * coordinator's RSS up to 1,446 MiB against 535 MiB): not looked into further.
 */
export const HEADROOM_FROM_BYTES = 64 * 2 ** 20;

/**
 * The zeros makeRoom copies from, kept between steps but emptied after each: once read they are
 * resident, and a plain array kept for the next step held 32 MiB of RSS for as long as the
 * process ran (session 25: 32 KiB per agent at 1,000), while a new array per step was young
 * external memory that made every array buffer allocated after it start a scavenge (the
 * headroom test's GCs went from ~350 to up to 1,271). A resizable buffer is neither: V8 does not
 * count it as external memory, and resize(0) gives its pages back at once.
 */
let zeros: ArrayBuffer | undefined;

/**
 * Makes Automerge's allocator take `bytes` of wasm memory (one grow if it lacks them) and free
 * them for later allocations. Throws if a load of zeros ever stops failing.
 */
export function makeRoom(bytes: number): void {
  if (zeros === undefined || zeros.maxByteLength < bytes)
    zeros = new ArrayBuffer(0, { maxByteLength: bytes });
  zeros.resize(bytes);
  try {
    A.load(new Uint8Array(zeros, 0, bytes));
  } catch {
    return; // the copy was made and freed: what was asked for
  } finally {
    zeros.resize(0);
  }
  throw new Error('Automerge loaded a document from zeros: makeRoom cannot work');
}

/** Bytes of zeros makeRoom holds between steps: 0 (its buffer is emptied after each). */
export function heldZeroBytes(): number {
  return zeros?.byteLength ?? 0;
}

/** External memory that is not array buffers: wasm memories (Automerge's) and native add-ons. */
export function wasmBytes(): number {
  const { external, arrayBuffers } = process.memoryUsage();
  return external - arrayBuffers;
}

export interface HeadroomOptions {
  readonly stepBytes?: number;
  readonly fromBytes?: number;
  readonly log?: Logger;
}

/** What the watcher did (status, tests, bench). */
export interface HeadroomStats {
  readonly steps: number;
  readonly highBytes: number;
}

let watched: HeadroomStats | undefined;

/**
 * Starts the process-wide watcher described above (idempotent: later calls return the first's
 * statistics; options of later calls are ignored).
 */
export function keepWasmHeadroom(opts: HeadroomOptions = {}): HeadroomStats {
  if (watched) return watched;
  const step = opts.stepBytes ?? HEADROOM_STEP_BYTES;
  const from = opts.fromBytes ?? HEADROOM_FROM_BYTES;
  const log = opts.log ?? silentLogger;
  const stats = { steps: 0, highBytes: wasmBytes() };
  /**
   * No step below this: set after a step that found its room already there (the memory did not
   * grow), to half a step above. The external memory this watches is not Automerge's alone, and
   * a restarted coordinator whose root had been changed since its last compaction (so the root's
   * load and compaction left a large free block) saw it creep up by a few KiB per GC: 79 steps of
   * ~100 ms each, none of which grew anything, 9.1 s of a 12.8 s restart of 5,000 documents
   * against 4.1 s (issue 13, point 2's slow runs).
   */
  let quietBelow = 0;
  const onGc = () => {
    const now = wasmBytes();
    if (now <= stats.highBytes || now < from || now < quietBelow) {
      stats.highBytes = Math.max(stats.highBytes, now);
      return;
    }
    try {
      makeRoom(step);
      stats.steps++;
    } catch (err) {
      // Automerge changed under us: say so once and stop (nothing worse than before happens).
      log.warn('could not make room in Automerge memory; not trying again', { err: String(err) });
      observer.disconnect();
    }
    const after = wasmBytes();
    if (after - now < step / 2) quietBelow = now + step / 2;
    stats.highBytes = Math.max(now, after);
  };
  const observer = new PerformanceObserver(onGc);
  observer.observe({ entryTypes: ['gc'] });
  return (watched = stats);
}
