// What only the chunk log promises (FsStore option `log`, stores/chunk-log.ts), beyond the
// conformance, acceptance and crash suites that run it too: one file for many chunks, a torn tail
// cut and reported at open, damage in an older segment reported and kept, removals that outlast a
// reopen, and a log whose size stays bounded while live data survives the cleaning.

import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOG_DIR } from '../stores/chunk-log.js';
import { FsStore } from '../stores/fs-store.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function open(dir?: string): Promise<{ store: FsStore; dir: string; lines: string[] }> {
  if (dir === undefined) dirs.push((dir = await mkdtemp(join(tmpdir(), 'flt-chunk-log-'))));
  const lines: string[] = [];
  const store = await FsStore.open(dir, { logger: (l) => lines.push(l), log: true });
  return { store, dir, lines };
}

/** A value of `size` bytes, different for each `n` (never all zeros). */
function value(n: number, size = 100): Uint8Array {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (n * 31 + i * 7 + 1) % 251;
  return data;
}

/** Deep equality of large arrays is slow in expect(): compare bytes. */
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(a, b) === 0;

const key = (doc: number, n: number) => [`doc${doc}`, 'snapshot', `s${n}`];

async function segments(dir: string): Promise<string[]> {
  return (await readdir(join(dir, LOG_DIR))).sort().map((n) => join(dir, LOG_DIR, n));
}

describe('FsStore chunk log (option log)', () => {
  it('keeps many documents in one file, none in the nodefs layout, and reads them after a reopen', async () => {
    const { store, dir } = await open();
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.save(key(i, 0), value(i))));
    expect(await segments(dir)).toHaveLength(1);
    expect((await readdir(dir)).filter((n) => !n.startsWith('.'))).toEqual([]);
    await store.close();

    const again = await open(dir);
    for (let i = 0; i < 200; i++) expect(await again.store.load(key(i, 0))).toEqual(value(i));
    expect(await again.store.loadRange(['doc7'])).toEqual([{ key: key(7, 0), data: value(7) }]);
    expect(await again.store.holds(['doc199'])).toBe(true);
    expect(await again.store.holds(['doc200'])).toBe(false);
    // Appends after reads of the same segment (one descriptor, opened for both).
    await again.store.save(key(200, 0), value(200));
    expect(await again.store.load(key(200, 0))).toEqual(value(200));
    expect(again.lines).toEqual([]);
    await again.store.close();
  });

  it('cuts a torn tail at open, reports it, and appends after it', async () => {
    const { store, dir } = await open();
    await store.save(key(1, 0), value(1));
    await store.save(key(2, 0), value(2));
    await store.close();
    const [segment] = await segments(dir);
    const size = (await stat(segment!)).size;
    // What a kill inside an append leaves: a record's start, its length saying more than is there.
    await appendFile(segment!, Buffer.from([0, 0, 1, 0, 1, 0, 3]));

    const again = await open(dir);
    expect(again.store.problems().map((p) => [p.code, p.file])).toEqual([
      ['STORE_LEFTOVER_TEMP', segment],
    ]);
    expect((await stat(segment!)).size).toBe(size);
    await again.store.save(key(3, 0), value(3));
    await again.store.close();

    const third = await open(dir);
    for (const n of [1, 2, 3]) expect(await third.store.load(key(n, 0))).toEqual(value(n));
    expect(third.lines).toEqual([]);
    await third.store.close();
  });

  it('keeps removals and range removals across a reopen', async () => {
    const { store, dir } = await open();
    for (let n = 0; n < 3; n++) await store.save(key(1, n), value(n));
    await store.save(key(2, 0), value(9));
    await store.remove(key(1, 1));
    await store.removeRange(['doc2']);
    await store.close();

    const again = await open(dir);
    expect((await again.store.loadRange(['doc1'])).map((c) => c.key)).toEqual([
      key(1, 0),
      key(1, 2),
    ]);
    expect(await again.store.loadRange(['doc2'])).toEqual([]);
    expect(await again.store.keys([])).toEqual([key(1, 0), key(1, 2)]);
    await again.store.close();
  });

  it('reads files saved without the log, and a key saved again reads from the log', async () => {
    const { dir } = await open();
    const plain = await FsStore.open(dir, { logger: () => {} });
    await plain.save(key(1, 0), value(1));
    await plain.save(key(1, 1), value(2));
    await plain.close();

    const { store } = await open(dir);
    await store.save(key(1, 1), value(3));
    expect(await store.load(key(1, 0))).toEqual(value(1));
    expect(await store.loadRange(['doc1'])).toEqual([
      { key: key(1, 0), data: value(1) },
      { key: key(1, 1), data: value(3) },
    ]);
    await store.remove(key(1, 0));
    expect(await store.load(key(1, 0))).toBeUndefined();
    await store.close();
  });

  it('stays bounded while chunks come and go, and keeps the live ones through the cleaning', async () => {
    const { store, dir } = await open();
    const big = 512 * 1024;
    await store.save(key(0, 0), value(0, big)); // lives through every cleaning
    for (let n = 1; n <= 120; n++) {
      await store.save(key(1, n), value(n, big));
      if (n > 1) await store.remove(key(1, n - 1));
    }
    const sizes = await Promise.all((await segments(dir)).map(async (f) => (await stat(f)).size));
    const total = sizes.reduce((a, b) => a + b, 0);
    // 60 MiB written, 1 MiB live: at most twice the live bytes, the slack (16 MiB) and the
    // segment being written (8 MiB) and one record.
    expect(total).toBeLessThan(2 * 1024 * 1024 + 16 * 1024 * 1024 + 9 * 1024 * 1024);
    await store.close();

    const again = await open(dir);
    expect(await again.store.keys([])).toEqual([key(0, 0), key(1, 120)]);
    expect(same(await again.store.load(key(0, 0)), value(0, big))).toBe(true);
    expect(same(await again.store.load(key(1, 120)), value(120, big))).toBe(true);
    expect(again.lines).toEqual([]);
    await again.store.close();
  });

  it('reports damage in an older segment, keeps it, and reads what precedes it', async () => {
    const { store, dir } = await open();
    const big = 1024 * 1024;
    for (let n = 0; n < 10; n++) await store.save(key(1, n), value(n, big)); // two segments
    await store.close();
    const files = await segments(dir);
    expect(files.length).toBeGreaterThan(1);
    const first = files[0]!;
    const bytes = await readFile(first);
    const at = bytes.length - 100; // inside the first segment's last record
    bytes[at] = bytes[at]! ^ 0xff;
    await writeFile(first, bytes);

    const report = await FsStore.check(dir);
    expect(report.map((p) => [p.code, p.file])).toEqual([['STORE_CORRUPT', first]]);
    const again = await open(dir);
    expect(again.store.problems().map((p) => [p.code, p.file])).toEqual([['STORE_CORRUPT', first]]);
    expect(same(await again.store.load(key(1, 0)), value(0, big))).toBe(true);
    expect(same(await again.store.load(key(1, 9)), value(9, big))).toBe(true);
    await again.store.close();
    expect(same(await readFile(first), bytes)).toBe(true); // kept as it was
  });

  it('tells a flipped bit in the newest segment from a torn tail: reported, skipped, the rest read', async () => {
    const { store, dir } = await open();
    for (let n = 0; n < 3; n++) await store.save(key(n, 0), value(n)); // one append each
    await store.close();
    const [segment] = await segments(dir);
    const bytes = await readFile(segment!);
    bytes[20] = bytes[20]! ^ 0xff; // inside the first record's key or value
    await writeFile(segment!, bytes);

    expect((await FsStore.check(dir)).map((p) => [p.code, p.file])).toEqual([
      ['STORE_CORRUPT', segment],
    ]);
    const again = await open(dir);
    expect(again.store.problems().map((p) => [p.code, p.file])).toEqual([
      ['STORE_CORRUPT', segment],
    ]);
    expect(await again.store.load(key(0, 0))).toBeUndefined();
    expect(await again.store.load(key(1, 0))).toEqual(value(1));
    expect(await again.store.load(key(2, 0))).toEqual(value(2));
    // Appends go to a new segment; the damaged one stays as it was.
    await again.store.save(key(3, 0), value(3));
    expect(await segments(dir)).toHaveLength(2);
    await again.store.close();
    expect(same(await readFile(segment!), bytes)).toBe(true);
  });

  it('refuses operations after close', async () => {
    const { store } = await open();
    await store.close();
    await store.close();
    await expect(store.save(key(1, 0), value(1))).rejects.toMatchObject({ code: 'STORE_CLOSED' });
  });
});
