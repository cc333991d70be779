// The Store contract (automerge-repo's StorageAdapterInterface plus close()), as one suite run
// against every implementation by test/stores.test.ts: MemoryStore, FsStore, and nodefs for
// comparison. Whatever flt builds on a Store may rely on exactly what is checked here.

import { Repo } from '@automerge/automerge-repo';
import type { Chunk, StorageAdapterInterface, StorageKey } from '@automerge/automerge-repo';
import { afterEach, expect, it } from 'vitest';
import { StoreError } from '../stores/errors.js';

/** A store under test; `close` is optional because nodefs has none. */
export interface StoreFixture {
  store: StorageAdapterInterface & { close?(): Promise<void> };
  cleanup: () => Promise<void>;
}

/** Options of storeConformance. */
export interface ConformanceOptions {
  /** Names of tests this implementation is known to fail (run as it.fails, so a fix shows up). */
  fails?: readonly string[];
}

/** The tests, by name, so a caller can list the ones an implementation fails. */
export const CASES = {
  missing: 'load of a missing key is undefined',
  roundTrip: 'save then load returns the same bytes, for sizes 1 B to 300 KB',
  copies: 'stored bytes are copies: mutating the saved input or a loaded result changes nothing',
  overwrite: 'save over an existing key replaces its value',
  remove: 'remove deletes a key; removing a missing key succeeds',
  rangeLengths: 'loadRange matches prefixes of every length, and returns the full keys',
  rangeWhole: 'prefixes match whole key elements: [docA] neither loads nor removes [docAB, ...]',
  rangeFullKey: 'loadRange of a complete key returns that one chunk',
  rangeEmpty: 'loadRange of the empty prefix returns every chunk with its full key',
  removeRange: 'removeRange removes exactly the keys with the prefix',
  concurrent: '1,000 concurrent saves are all visible afterwards',
  repo: 'a Repo finds a document, with all 50 changes, after a restart on the same store',
  close: 'close is idempotent, and later operations reject with STORE_CLOSED',
  badKey: 'a malformed key is a TypeError (a programming error), and stores nothing',
  badValue:
    'an empty or all-zero value is a TypeError (a crash leaves such files), and stores nothing',
} as const;

/** `n` bytes, never 0 (stores refuse values of zeros only: stores/keys.ts). */
const bytes = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => ((i * 31 + seed) % 255) + 1);
const sortChunks = (cs: Chunk[]) =>
  [...cs].sort((a, b) => (a.key.join('/') < b.key.join('/') ? -1 : 1));
const keysOf = (cs: Chunk[]) => sortChunks(cs).map((c) => c.key);

/** Registers the conformance tests for one implementation in the current describe block. */
export function storeConformance(
  name: string,
  make: () => Promise<StoreFixture>,
  options: ConformanceOptions = {},
): void {
  const fails = new Set<string>(options.fails ?? []);
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });
  const fresh = async () => {
    const f = await make();
    cleanups.push(f.cleanup);
    return f.store;
  };
  const test = (title: string, body: () => Promise<void>) =>
    (fails.has(title) ? it.fails : it)(`${name}: ${title}`, body);

  test(CASES.missing, async () => {
    const store = await fresh();
    expect(await store.load(['docA1', 'snapshot', 'x'])).toBeUndefined();
    expect(await store.load(['storage-adapter-id'])).toBeUndefined();
  });

  test(CASES.roundTrip, async () => {
    const store = await fresh();
    for (const n of [1, 1000, 300_000]) {
      await store.save(['docA1', 'incremental', `size${n}`], bytes(n));
      const loaded = await store.load(['docA1', 'incremental', `size${n}`]);
      expect(loaded).toBeInstanceOf(Uint8Array);
      expect(Buffer.compare(loaded ?? Buffer.alloc(0), bytes(n)), `size ${n}`).toBe(0); // fast for 300 KB
      expect(loaded?.length).toBe(n);
    }
    await store.save(['storage-adapter-id'], bytes(36));
    expect(await store.load(['storage-adapter-id'])).toEqual(bytes(36));
  });

  test(CASES.copies, async () => {
    const store = await fresh();
    const data = bytes(100);
    await store.save(['docA1', 'snapshot', 'h'], data);
    data.fill(0);
    const loaded = await store.load(['docA1', 'snapshot', 'h']);
    expect(loaded).toEqual(bytes(100));
    loaded?.fill(0);
    expect(await store.load(['docA1', 'snapshot', 'h'])).toEqual(bytes(100));
  });

  test(CASES.overwrite, async () => {
    const store = await fresh();
    await store.save(['docA1', 'sync-state', 'peer'], bytes(500, 1));
    await store.save(['docA1', 'sync-state', 'peer'], bytes(20, 2));
    expect(await store.load(['docA1', 'sync-state', 'peer'])).toEqual(bytes(20, 2));
  });

  test(CASES.remove, async () => {
    const store = await fresh();
    await store.save(['docA1', 'snapshot', 'h'], bytes(10));
    await store.remove(['docA1', 'snapshot', 'h']);
    expect(await store.load(['docA1', 'snapshot', 'h'])).toBeUndefined();
    await store.remove(['docA1', 'snapshot', 'h']);
    await store.remove(['nothing-here', 'snapshot', 'h']);
  });

  async function seedDocs(store: StoreFixture['store']): Promise<void> {
    const keys: StorageKey[] = [
      ['docA', 'snapshot', 's1'],
      ['docA', 'incremental', 'i1'],
      ['docA', 'incremental', 'i2'],
      ['docA', 'sync-state', 'peer1'],
      ['docB', 'snapshot', 's1'],
    ];
    for (const [i, key] of keys.entries()) await store.save(key, bytes(10 + i, i));
  }

  test(CASES.rangeLengths, async () => {
    const store = await fresh();
    await seedDocs(store);
    expect(keysOf(await store.loadRange(['docA']))).toEqual([
      ['docA', 'incremental', 'i1'],
      ['docA', 'incremental', 'i2'],
      ['docA', 'snapshot', 's1'],
      ['docA', 'sync-state', 'peer1'],
    ]);
    const incrementals = sortChunks(await store.loadRange(['docA', 'incremental']));
    expect(incrementals).toEqual([
      { key: ['docA', 'incremental', 'i1'], data: bytes(11, 1) },
      { key: ['docA', 'incremental', 'i2'], data: bytes(12, 2) },
    ]);
    expect(await store.loadRange(['docZ'])).toEqual([]);
    expect(await store.loadRange(['docA', 'nothing'])).toEqual([]);
  });

  test(CASES.rangeEmpty, async () => {
    const store = await fresh();
    await seedDocs(store);
    await store.save(['storage-adapter-id'], bytes(3));
    expect(keysOf(await store.loadRange([]))).toEqual([
      ['docA', 'incremental', 'i1'],
      ['docA', 'incremental', 'i2'],
      ['docA', 'snapshot', 's1'],
      ['docA', 'sync-state', 'peer1'],
      ['docB', 'snapshot', 's1'],
      ['storage-adapter-id'],
    ]);
  });

  test(CASES.rangeWhole, async () => {
    const store = await fresh();
    await seedDocs(store);
    await store.save(['docAB', 'incremental', 'i1'], bytes(7));
    const keys = keysOf(await store.loadRange(['docA']));
    expect(keys.some((k) => k[0] === 'docAB')).toBe(false);
    expect(await store.loadRange(['do'])).toEqual([]);
    expect(await store.loadRange(['doc'])).toEqual([]);
    await store.removeRange(['docA']);
    expect(await store.load(['docAB', 'incremental', 'i1'])).toEqual(bytes(7));
  });

  test(CASES.rangeFullKey, async () => {
    const store = await fresh();
    await seedDocs(store);
    expect(await store.loadRange(['docA', 'incremental', 'i2'])).toEqual([
      { key: ['docA', 'incremental', 'i2'], data: bytes(12, 2) },
    ]);
  });

  test(CASES.removeRange, async () => {
    const store = await fresh();
    await seedDocs(store);
    await store.removeRange(['docA', 'incremental']);
    expect(keysOf(await store.loadRange(['docA']))).toEqual([
      ['docA', 'snapshot', 's1'],
      ['docA', 'sync-state', 'peer1'],
    ]);
    await store.removeRange(['docA']);
    expect(await store.loadRange(['docA'])).toEqual([]);
    expect(await store.load(['docA', 'snapshot', 's1'])).toBeUndefined();
    expect(keysOf(await store.loadRange(['docB']))).toEqual([['docB', 'snapshot', 's1']]);
    await store.removeRange(['docA']); // nothing left: fine
  });

  test(CASES.concurrent, async () => {
    const store = await fresh();
    const N = 1000;
    const key = (i: number) => [`doc${i % 50}x`, 'incremental', `c${i}`];
    await Promise.all(
      Array.from({ length: N }, (_, i) => store.save(key(i), bytes(1 + (i % 97), i))),
    );
    for (let i = 0; i < N; i++) expect(await store.load(key(i))).toEqual(bytes(1 + (i % 97), i));
    let total = 0;
    for (let d = 0; d < 50; d++) total += (await store.loadRange([`doc${d}x`])).length;
    expect(total).toBe(N);
  });

  test(CASES.repo, async () => {
    const store = await fresh();
    const first = new Repo({ storage: store, network: [] });
    const handle = first.create<{ items: number[] }>({ items: [] });
    for (let i = 0; i < 50; i++) handle.change((d) => void d.items.push(i));
    await first.flush();
    await first.shutdown();
    const second = new Repo({ storage: store, network: [] });
    const found = await second.find<{ items: number[] }>(handle.url);
    expect(found.doc().items).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await second.shutdown();
  });

  test(CASES.badKey, async () => {
    const store = await fresh();
    const bad: StorageKey[] = [
      [],
      ['ab'],
      ['docA1', ''],
      ['docA1', 'a/b'],
      ['docA1', '..'],
      ['docA1', '.x'],
      ['doc\0A'],
    ];
    for (const key of bad) {
      await expect(store.save(key, bytes(1)), JSON.stringify(key)).rejects.toBeInstanceOf(
        TypeError,
      );
      await expect(store.load(key), JSON.stringify(key)).rejects.toBeInstanceOf(TypeError);
    }
    await expect(store.loadRange(['docA1', '..'])).rejects.toBeInstanceOf(TypeError);
    expect(await store.loadRange([])).toEqual([]);
  });

  test(CASES.badValue, async () => {
    const store = await fresh();
    const values: [StorageKey, Uint8Array][] = [
      [['docA1', 'sync-state', 'peer'], new Uint8Array(0)],
      [['docA1', 'snapshot', 'h'], new Uint8Array(4096)],
      [['storage-adapter-id'], Uint8Array.of(0)],
    ];
    for (const [key, data] of values) {
      await expect(store.save(key, data), JSON.stringify(key)).rejects.toBeInstanceOf(TypeError);
      expect(await store.load(key)).toBeUndefined();
    }
  });

  test(CASES.close, async () => {
    const store = await fresh();
    await store.save(['docA1', 'snapshot', 'h'], bytes(3));
    expect(typeof store.close).toBe('function');
    await Promise.all([store.close?.(), store.close?.()]);
    await store.close?.();
    for (const op of [
      () => store.load(['docA1', 'snapshot', 'h']),
      () => store.save(['docA1', 'snapshot', 'h'], bytes(1)),
      () => store.remove(['docA1', 'snapshot', 'h']),
      () => store.loadRange(['docA1']),
      () => store.removeRange(['docA1']),
    ]) {
      await expect(op()).rejects.toSatisfy(
        (e) => e instanceof StoreError && e.code === 'STORE_CLOSED',
      );
    }
  });
}
