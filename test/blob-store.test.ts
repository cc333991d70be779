// BlobStore (stores/blob-store.ts): round trip, corruption on disk detected on read and by check()
// (truncated, zero-filled, flipped), quarantined and reported with a code; leftover temp files;
// a partial write killed with SIGKILL halfway resumes at its verified length; removal and sizes.

import { spawn } from 'node:child_process';
import {
  chmod,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore, chunkListOf, DEFAULT_CHUNK, type ChunkList } from '../stores/blob-store.js';
import { StoreError } from '../stores/errors.js';
import { blobBytes } from './helpers/blob-writer.js';

const WRITER = resolve(import.meta.dirname, '../dist/test/helpers/blob-writer.js');
const CHUNK = DEFAULT_CHUNK;

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'flt-blob-store-'));
  dirs.push(d);
  return d;
}
async function openStore(dir: string) {
  const lines: string[] = [];
  const store = await BlobStore.open(dir, { logger: (l) => lines.push(l) });
  return { store, lines };
}
function keyOf(list: ChunkList): string {
  return Buffer.from(list.sha256).toString('hex');
}
/** Writes `bytes` whole into the store; its key. */
async function put(store: BlobStore, bytes: Buffer): Promise<string> {
  const list = chunkListOf(bytes);
  const key = keyOf(list);
  const blob = await store.beginPut(key, list);
  for (let i = blob.next; i < blob.chunks; i++)
    expect(await blob.write(i, bytes.subarray(i * CHUNK, (i + 1) * CHUNK))).toBe(true);
  await blob.commit();
  return key;
}
async function readAll(store: BlobStore, key: string, from = 0): Promise<Buffer> {
  const reader = await store.openBlob(key);
  if (reader === undefined) throw new Error(`no blob ${key}`);
  const parts: Uint8Array[] = [];
  try {
    let expected = from;
    for await (const { index, bytes } of reader.read(from)) {
      expect(index).toBe(expected++);
      parts.push(bytes);
    }
  } finally {
    await reader.close();
  }
  return Buffer.concat(parts);
}

describe('BlobStore', () => {
  it('round trip: put, has, read from any chunk, sizes, reopen, remove', async () => {
    const dir = await tempDir();
    const { store, lines } = await openStore(dir);
    const big = blobBytes('big', 3 * CHUNK + 1234);
    const small = blobBytes('small', 100);
    const kb = await put(store, big);
    const ks = await put(store, small);
    expect(await store.has(kb)).toBe(true);
    expect((await readAll(store, kb)).equals(big)).toBe(true);
    expect((await readAll(store, kb, 2)).equals(big.subarray(2 * CHUNK))).toBe(true);
    expect((await readAll(store, ks)).equals(small)).toBe(true);
    expect((await stat(store.dataPath(kb))).mode & 0o777).toBe(0o444);
    expect(await store.stats()).toEqual({
      blobs: 2,
      bytes: big.length + small.length,
      partialBytes: 0,
      quarantined: 0,
    });
    // A second put of a blob held is complete at once.
    const again = await store.beginPut(kb, chunkListOf(big));
    expect(again.complete).toBe(true);
    await again.commit();

    const reopened = (await openStore(dir)).store;
    expect((await reopened.stats()).bytes).toBe(big.length + small.length);
    expect(await reopened.remove(kb)).toBe(true);
    expect(await reopened.remove(kb)).toBe(false);
    expect(await reopened.has(kb)).toBe(false);
    expect(await reopened.openBlob(kb)).toBeUndefined();
    expect(await reopened.stats()).toMatchObject({ blobs: 1, bytes: small.length });
    expect(await BlobStore.check(dir)).toEqual([]);
    expect(lines).toEqual([]);
  });

  it('refuses a chunk that does not match its hash, and a list whose SHA-256 is not the key', async () => {
    const { store } = await openStore(await tempDir());
    const bytes = blobBytes('x', 2 * CHUNK);
    const list = chunkListOf(bytes);
    await expect(store.beginPut('a'.repeat(64), list)).rejects.toThrow(TypeError);
    const blob = await store.beginPut(keyOf(list), list);
    const bad = Buffer.from(bytes.subarray(0, CHUNK));
    bad[7]! ^= 1;
    expect(await blob.write(0, bad)).toBe(false);
    expect(await blob.write(0, bytes.subarray(0, CHUNK - 1))).toBe(false);
    expect(blob.next).toBe(0);
    await expect(blob.write(1, bytes.subarray(CHUNK))).rejects.toThrow(RangeError);
    await expect(blob.commit()).rejects.toThrow(RangeError);
    await expect(store.beginPut(keyOf(list), list)).rejects.toMatchObject({ code: 'STORE_IO' });
    await blob.close();
    expect(await store.partialChunks(keyOf(list))).toBe(0);
  });

  it('a coherent list of wrong bytes fails the whole SHA-256 at commit and leaves nothing', async () => {
    const { store } = await openStore(await tempDir());
    const real = blobBytes('real', CHUNK + 10);
    const fake = blobBytes('fake', CHUNK + 10);
    const fakeList = chunkListOf(fake);
    // The real blob's SHA-256 with the fake bytes' chunk list.
    const lying: ChunkList = { ...fakeList, sha256: chunkListOf(real).sha256 };
    const key = keyOf(lying);
    const blob = await store.beginPut(key, lying);
    expect(await blob.write(0, fake.subarray(0, CHUNK))).toBe(true);
    expect(await blob.write(1, fake.subarray(CHUNK))).toBe(true);
    await expect(blob.commit()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await store.has(key)).toBe(false);
    expect(await store.partialChunks(key)).toBe(0);
    expect((await store.stats()).partialBytes).toBe(0);
  });

  for (const damage of ['truncated', 'zero-filled', 'flipped'] as const) {
    it(`a ${damage} blob is found by check(), then quarantined and reported on read`, async () => {
      const dir = await tempDir();
      const { store, lines } = await openStore(dir);
      const bytes = blobBytes(damage, 4 * CHUNK);
      const other = blobBytes('other', CHUNK);
      const key = await put(store, bytes);
      const otherKey = await put(store, other);
      const file = store.dataPath(key);
      await chmod(file, 0o644);
      if (damage === 'truncated') await truncate(file, 3 * CHUNK + 5);
      else {
        const h = await open(file, 'r+');
        const at = 2 * CHUNK + 17;
        await h.write(
          damage === 'zero-filled' ? Buffer.alloc(4096) : Buffer.from([bytes[at]! ^ 0x40]),
          0,
          undefined,
          at,
        );
        await h.close();
      }

      const problems = await BlobStore.check(dir);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatchObject({ code: 'STORE_CORRUPT', key: [key], file });
      expect(problems[0]!.quarantinedTo).toBeUndefined();
      expect(await store.has(key)).toBe(true); // check() changed nothing

      let error: unknown;
      const got: number[] = [];
      try {
        const reader = await store.openBlob(key);
        for await (const { index } of reader!.read()) got.push(index);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(StoreError);
      expect((error as StoreError).code).toBe('STORE_CORRUPT');
      // Nothing past the damage was handed out.
      expect(got).toEqual(damage === 'truncated' ? [] : [0, 1]);
      expect(await store.has(key)).toBe(false);
      const reported = store.problems();
      expect(reported).toHaveLength(1);
      expect(reported[0]).toMatchObject({ code: 'STORE_CORRUPT', key: [key], file });
      const quarantined = await readdir(join(dir, '.quarantine'));
      expect(quarantined.sort()).toEqual([
        expect.stringMatching(`-${key}.blob$`),
        expect.stringMatching(`-${key}.chunks$`),
      ]);
      expect(reported[0]!.quarantinedTo).toBe(
        join(dir, '.quarantine', quarantined.find((n) => n.endsWith('.blob'))!),
      );
      expect(lines).toEqual([expect.stringMatching(`^STORE_CORRUPT ${file}: .*moved to`)]);
      expect(await store.stats()).toMatchObject({ blobs: 1, bytes: other.length, quarantined: 2 });
      // The other blob is untouched, and check() is clean once the bad one is aside.
      expect((await readAll(store, otherKey)).equals(other)).toBe(true);
      expect(await BlobStore.check(dir)).toEqual([]);
      // A re-put of the same blob works again.
      expect(await put(store, bytes)).toBe(key);
      expect((await readAll(store, key)).equals(bytes)).toBe(true);
    });
  }

  it('a corrupt chunk list is found by check() and quarantines the blob on open', async () => {
    const dir = await tempDir();
    const { store } = await openStore(dir);
    const key = await put(store, blobBytes('list', 2 * CHUNK));
    const listFile = store.dataPath(key).replace(/\.blob$/, '.chunks');
    const raw = await readFile(listFile);
    raw[raw.length - 40]! ^= 1;
    await chmod(listFile, 0o644);
    await writeFile(listFile, raw);
    expect(await BlobStore.check(dir)).toEqual([
      expect.objectContaining({
        code: 'STORE_CORRUPT',
        key: [key],
        detail: 'its chunk list fails its checksum',
      }),
    ]);
    await expect(store.openBlob(key)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await store.has(key)).toBe(false);
  });

  it('check() reports BLOB_MISSING for an expected key without a blob', async () => {
    const dir = await tempDir();
    const { store } = await openStore(dir);
    const key = await put(store, blobBytes('here', 10));
    const gone = 'b'.repeat(64);
    expect(await BlobStore.check(dir, { expect: [key, gone] })).toEqual([
      expect.objectContaining({ code: 'BLOB_MISSING', key: [gone] }),
    ]);
  });

  it('leftover temp files are reported by check() and removed and reported by open()', async () => {
    const dir = await tempDir();
    const { store } = await openStore(dir);
    const key = await put(store, blobBytes('t', 10));
    const temps = [
      join(dir, 'partial', `.${key}.chunks.0badf00d.tmp`),
      join(dir, 'blobs', key.slice(0, 2), `.${key}.chunks.12345678.tmp`),
    ];
    for (const t of temps) await writeFile(t, 'half');
    const problems = await BlobStore.check(dir);
    expect(problems.map((p) => [p.code, p.file]).sort()).toEqual(
      temps.map((t) => ['STORE_LEFTOVER_TEMP', t]).sort(),
    );
    const { store: again, lines } = await openStore(dir);
    expect(again.problems().map((p) => p.code)).toEqual([
      'STORE_LEFTOVER_TEMP',
      'STORE_LEFTOVER_TEMP',
    ]);
    expect(lines.every((l) => l.startsWith('STORE_LEFTOVER_TEMP') && l.endsWith('removed'))).toBe(
      true,
    );
    expect(await BlobStore.check(dir)).toEqual([]);
    expect(await again.has(key)).toBe(true);
  });

  it('a partial with a torn, zero-filled or flipped tail resumes at its last good chunk', async () => {
    const dir = await tempDir();
    const { store } = await openStore(dir);
    const bytes = blobBytes('tail', 6 * CHUNK + 99);
    const list = chunkListOf(bytes);
    const key = keyOf(list);
    const first = await store.beginPut(key, list);
    for (let i = 0; i < 4; i++) await first.write(i, bytes.subarray(i * CHUNK, (i + 1) * CHUNK));
    await first.close();
    const file = join(dir, 'partial', `${key}.blob`);
    // A torn write of chunk 4 (half of it), then chunk 3 zero-filled at its end.
    await writeFile(file, bytes.subarray(4 * CHUNK, 4 * CHUNK + CHUNK / 2), { flag: 'a' });
    expect(await store.partialChunks(key)).toBe(4);
    const h = await open(file, 'r+');
    await h.write(Buffer.alloc(100), 0, 100, 4 * CHUNK - 100);
    await h.close();
    expect(await store.partialChunks(key)).toBe(3);
    expect((await store.stats()).partialBytes).toBe(4 * CHUNK + CHUNK / 2);
    const resumed = await store.beginPut(key, list);
    expect(resumed.next).toBe(3);
    expect((await stat(file)).size).toBe(3 * CHUNK); // the bad tail is cut
    for (let i = resumed.next; i < resumed.chunks; i++)
      expect(await resumed.write(i, bytes.subarray(i * CHUNK, (i + 1) * CHUNK))).toBe(true);
    await resumed.commit();
    expect((await readAll(store, key)).equals(bytes)).toBe(true);
    expect((await store.stats()).partialBytes).toBe(0);
  });

  it('a partial write killed with SIGKILL halfway continues at its verified length', async () => {
    const dir = await tempDir();
    const size = 40 * CHUNK + 7;
    const chunks = Math.ceil(size / CHUNK);
    const child = spawn(process.execPath, [WRITER, dir, 'killed', String(size)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((done) =>
      child.on('exit', (code, signal) => done(signal ?? code)),
    );
    // Lets the writer go on chunk by chunk; once it acknowledged half, lets it start the next
    // write and kills it at once, so the kill lands around that write.
    let acked = 0;
    const half = new Promise<void>((done) => {
      let buffered = '';
      child.stdout.on('data', (d: Buffer) => {
        buffered += d.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const l of lines) acked = Math.max(acked, Number(l));
        if (lines.length === 0) return;
        child.stdin.write('go\n');
        if (acked >= chunks / 2) {
          child.kill('SIGKILL');
          done();
        }
      });
    });
    const outcome = await Promise.race([half.then(() => exited), exited]);
    expect(outcome, stderr).toBe('SIGKILL');
    expect(acked).toBeLessThan(chunks);

    const bytes = blobBytes('killed', size);
    const list = chunkListOf(bytes);
    const key = keyOf(list);
    const { store } = await openStore(dir);
    const verified = await store.partialChunks(key);
    expect(verified).toBeGreaterThanOrEqual(acked);
    expect(verified).toBeLessThanOrEqual(acked + 1);
    const resumed = await store.beginPut(key, list);
    expect(resumed.next).toBe(verified);
    let written = 0;
    for (let i = resumed.next; i < resumed.chunks; i++, written++)
      expect(await resumed.write(i, bytes.subarray(i * CHUNK, (i + 1) * CHUNK))).toBe(true);
    expect(written).toBe(chunks - verified);
    await resumed.commit();
    expect((await readAll(store, key)).equals(bytes)).toBe(true);
    expect(await BlobStore.check(dir)).toEqual([]);
  });
});
