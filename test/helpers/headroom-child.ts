// Holds DOCS Automerge documents of 64 KiB each, made one per turn of the event loop, and prints
// what that cost: `{"gcs":N,"steps":N,"grownBytes":N,"docs":N,"arrayBuffers":N}`
// (sync/wasm-headroom.ts), where grownBytes is how much Automerge's memory grew while they were
// made (its wasm memory when test/helpers/wasm-memory-hook.js is preloaded, else the external
// memory that is not array buffers, as the watcher reads it) and arrayBuffers the bytes of array
// buffers still held at the end.
//
//   node --expose-gc dist/test/helpers/headroom-child.js none|watch|room|creep DOCS
// none: nothing else; watch: with keepWasmHeadroom(); room: makeRoom(16 MiB) first; creep: no
// documents, but the watcher (8 MiB steps, from 0) sees other wasm memory grow by 64 KiB DOCS
// times, a GC after each (what it watches is not Automerge's memory alone).

import * as A from '@automerge/automerge';
import { PerformanceObserver } from 'node:perf_hooks';
import { setImmediate } from 'node:timers/promises';
import { keepWasmHeadroom, makeRoom, wasmBytes } from '../../sync/wasm-headroom.js';

const [mode, count = '0'] = process.argv.slice(2);
const stats =
  mode === 'watch'
    ? keepWasmHeadroom()
    : mode === 'creep'
      ? keepWasmHeadroom({ stepBytes: 8 * 2 ** 20, fromBytes: 0 })
      : { steps: 0 };
if (mode === 'room') makeRoom(16 * 2 ** 20);
// V8 counts a grown wasm memory as new external memory the size of the whole memory until its
// next GC (sync/wasm-headroom.ts): each reading follows a full GC (the parent passes --expose-gc),
// or it depends on when the last one ran (once 4.6 MiB "grown" with the room unused). With the
// parent's `--import` of wasm-memory-hook.js, Automerge's memory itself is read instead.
const automergeBytes = (globalThis as { firstWasmMemoryBytes?: () => number | undefined })
  .firstWasmMemoryBytes;
const settled = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return automergeBytes?.() ?? wasmBytes();
};
const before = settled();
let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({
  entryTypes: ['gc'],
});
const docs: A.Doc<{ b: Uint8Array }>[] = [];
if (mode === 'creep') {
  // Not in the project's TypeScript lib (no DOM): the one constructor used.
  const { Memory } = (
    globalThis as unknown as {
      WebAssembly: {
        Memory: new (d: { initial: number; maximum: number }) => { grow(pages: number): number };
      };
    }
  ).WebAssembly;
  const other = new Memory({ initial: 1, maximum: 1 + Number(count) });
  for (let i = 0; i < Number(count); i++) {
    other.grow(1);
    settled();
    await setImmediate(); // the watcher hears of the GC in a later turn
  }
}
for (let i = 0; mode !== 'creep' && i < Number(count); i++) {
  docs.push(A.from({ b: new Uint8Array(64 * 1024).fill(i & 0xff) }));
  await setImmediate();
}
await setImmediate();
// The reading's own GC is not in `gcs`: the observer is told of it in a later turn.
const grownBytes = settled() - before;
process.stdout.write(
  JSON.stringify({
    gcs,
    steps: stats.steps,
    grownBytes,
    docs: docs.length,
    arrayBuffers: process.memoryUsage().arrayBuffers,
  }) + '\n',
);
