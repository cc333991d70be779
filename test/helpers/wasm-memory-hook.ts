// Preloaded (`--import`) into test/helpers/headroom-child.ts: records the memory of every wasm
// instance made in the process, so that the child reads Automerge's memory itself (the first
// instance with one) rather than the process's external memory, which other buffers also move
// (a fresh-clone run once saw 3 MB of them where Automerge had not grown).

interface Instance {
  readonly exports: Record<string, unknown>;
}
interface Memory {
  readonly buffer: { readonly byteLength: number };
}

const wasm = (
  globalThis as unknown as { WebAssembly: { Instance: new (...a: unknown[]) => Instance } }
).WebAssembly;
const memories: Memory[] = [];
wasm.Instance = new Proxy(wasm.Instance, {
  construct(target, args: unknown[]) {
    const instance: Instance = Reflect.construct(target, args);
    const memory = instance.exports.memory as Memory | undefined;
    if (memory?.buffer !== undefined) memories.push(memory);
    return instance;
  },
});

/** Bytes of the first wasm memory made since the hook ran (Automerge's, in the child). */
export function firstWasmMemoryBytes(): number | undefined {
  return memories[0]?.buffer.byteLength;
}

(globalThis as { firstWasmMemoryBytes?: typeof firstWasmMemoryBytes }).firstWasmMemoryBytes =
  firstWasmMemoryBytes;
