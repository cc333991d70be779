// What only FsStore promises, beyond the conformance suite: the nodefs layout with plain values,
// integrity checks without a header of its own, quarantine of corrupt chunks (THREATS.md row 18),
// leftover temp files, the read-only check, and the nodefs data loss of REFERENCE.md reproduced
// next to FsStore's answer. Reading and writing with nodefs itself: test/store-nodefs.test.ts.

import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import * as A from '@automerge/automerge';
import {
  generateAutomergeUrl,
  parseAutomergeUrl,
  Repo,
  type AutomergeUrl,
  type StorageAdapterInterface,
} from '@automerge/automerge-repo';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreError } from '../stores/errors.js';
import { FsStore } from '../stores/fs-store.js';

type Doc = { items: number[]; pad: string };
/**
 * automerge-repo compacts on every save while the snapshot is under 1 KiB or outweighed by the
 * incrementals. Random (incompressible) padding keeps our few small changes as incrementals.
 */
const PAD = randomBytes(3000).toString('base64');
const INCREMENTALS = 6;

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'flt-fs-store-'));
  dirs.push(d);
  return d;
}
async function open(dir: string, readWorker = false) {
  const lines: string[] = [];
  const store = await FsStore.open(dir, { logger: (l) => lines.push(l), readWorker });
  return { store, lines };
}

/**
 * A document saved as one snapshot (items empty) plus INCREMENTALS one-item incrementals, named
 * as automerge-repo names them. Written here, not by a Repo: a Repo's throttled save can race its
 * own `flush()` and write one chunk more, and these tests count the chunks.
 */
async function writeDoc(
  storage: StorageAdapterInterface,
): Promise<{ url: AutomergeUrl; docDir: string }> {
  const url = generateAutomergeUrl();
  const id = parseAutomergeUrl(url).documentId;
  let doc = A.from<Doc>({ items: [], pad: PAD });
  await storage.save(
    [id, 'snapshot', sha256Hex(Buffer.from(A.getHeads(doc).join('')))],
    A.save(doc),
  );
  for (let i = 0; i < INCREMENTALS; i++) {
    const before = A.getHeads(doc);
    doc = A.change(doc, (d) => void d.items.push(i));
    const change = A.saveSince(doc, before);
    await storage.save([id, 'incremental', sha256Hex(change)], change);
  }
  return { url, docDir: join(id.slice(0, 2), id.slice(2)) };
}

async function readDoc(storage: StorageAdapterInterface, url: AutomergeUrl): Promise<Doc> {
  const repo = new Repo({ storage, network: [] });
  try {
    return (await repo.find<Doc>(url)).doc();
  } finally {
    await repo.shutdown();
  }
}

/** The incremental files of a document, oldest change first. */
async function incrementals(dir: string, docDir: string): Promise<string[]> {
  const inc = join(dir, docDir, 'incremental');
  const files = await Promise.all(
    (await readdir(inc)).map(async (name) => {
      const data = await readFile(join(inc, name));
      return { file: join(inc, name), seq: A.decodeChange(data).seq };
    }),
  );
  return files.sort((a, b) => a.seq - b.seq).map((f) => f.file);
}

/** Every file below `dir` with its bytes, to show something changed nothing. */
async function snapshotTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    out.set(path, entry.isFile() ? (await readFile(path)).toString('base64') : 'dir');
  }
  return out;
}

const sha256Hex = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** `chunk` (one Automerge change chunk) as a compressed chunk (type 2), as automerge writes one. */
function compress(chunk: Uint8Array): Uint8Array {
  const buf = Buffer.from(chunk);
  let at = 9;
  while ((buf[at] as number) & 0x80) at++;
  const body = deflateRawSync(buf.subarray(at + 1));
  const length: number[] = [];
  for (let n = body.length; ; ) {
    length.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n >>>= 7;
    if (n === 0) break;
  }
  return Buffer.concat([buf.subarray(0, 8), Uint8Array.of(2, ...length), body]);
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );
const allItems = Array.from({ length: INCREMENTALS }, (_, i) => i);

describe('FsStore on disk', () => {
  it('lays files out like nodefs, as the plain values, with no temp file left', async () => {
    const dir = await tempDir();
    const { store } = await open(dir);
    const snapshot = A.save(A.from({ a: 1 }));
    await store.save(['3kLabcd', 'snapshot', 'h1'], snapshot);
    await store.save(['storage-adapter-id'], Uint8Array.of(4));
    const file = await readFile(join(dir, '3k', 'Labcd', 'snapshot', 'h1'));
    expect(file.equals(snapshot)).toBe(true);
    expect([...(await readFile(join(dir, 'st', 'orage-adapter-id')))]).toEqual([4]);
    expect((await readdir(join(dir, '3k', 'Labcd', 'snapshot'))).length).toBe(1);
    expect(await readFile(join(dir, '.flt-store-format'), 'latin1')).toBe('2\n');
    await store.close();
  });

  it('a save that cannot reach the disk fails with STORE_IO and leaves other data alone', async () => {
    const dir = await tempDir();
    const { store } = await open(dir);
    await store.save(['abc'], Uint8Array.of(1)); // the file 'ab/c' blocks the directory 'ab/c/'
    const err: unknown = await store.save(['abc', 'x'], Uint8Array.of(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('STORE_IO');
    expect(await store.load(['abc'])).toEqual(Uint8Array.of(1));
  });

  it('close waits for a save in flight, then refuses more', async () => {
    const dir = await tempDir();
    const { store } = await open(dir);
    const saving = store.save(['docA1', 'snapshot', 'h'], new Uint8Array(100_000).fill(7));
    await store.close();
    await saving;
    expect((await readFile(join(dir, 'do', 'cA1', 'snapshot', 'h'))).length).toBe(100_000);
    await expect(store.load(['docA1', 'snapshot', 'h'])).rejects.toMatchObject({
      code: 'STORE_CLOSED',
    });
  });
});

describe('FsStore.settled(document)', () => {
  it("waits for that document's operations and any-key ones, not another document's", async () => {
    const dir = await tempDir();
    // A load of docB that cannot end until someone writes the FIFO it reads.
    await mkdir(join(dir, 'do', 'cB1', 'snapshot'), { recursive: true });
    const fifo = join(dir, 'do', 'cB1', 'snapshot', 'h');
    execFileSync('mkfifo', [fifo]);
    const { store } = await open(dir);
    let bDone = false;
    const loadingB = store.load(['docB1', 'snapshot', 'h']).finally(() => (bDone = true));
    let aSaved = false;
    const savingA = store
      .save(['docA1', 'snapshot', 'h'], A.save(A.from({ a: 1 })))
      .then(() => (aSaved = true));
    await store.settled('docA1');
    expect(aSaved).toBe(true);
    expect(bDone).toBe(false);
    // Without a document, everything running now is waited for (released by writing the FIFO).
    let allSettled = false;
    const all = store.settled().then(() => (allSettled = true));
    await new Promise((r) => setImmediate(r));
    expect(allSettled).toBe(false);
    await writeFile(fifo, A.save(A.from({ b: 2 })));
    await all;
    expect(bDone).toBe(true);
    await Promise.allSettled([loadingB, savingA]);
    await store.close();
  });
});

describe('FsStore queues', () => {
  it('a listing does not wait behind saves: they queue apart', async () => {
    const dir = await tempDir();
    // One operation of each kind at a time: a shared queue would run the listing last.
    const store = await FsStore.open(dir, { maxConcurrency: 1 });
    const bytes = A.save(A.from({ a: 1 }));
    await store.save(['listed', 'snapshot', 'h'], bytes);
    let saved = 0;
    const saves = Array.from({ length: 20 }, (_, i) =>
      store.save([`doc${i}x`, 'snapshot', 'h'], bytes).then(() => saved++),
    );
    expect(await store.holds(['listed'])).toBe(true);
    expect(saved).toBeLessThan(20); // answered while saves were still queued
    await Promise.all(saves);
    expect(saved).toBe(20);
    await store.close();
  });
});

describe('FsStore priority and settled', () => {
  it('saves a prioritized document ahead of queued saves of others', async () => {
    const dir = await tempDir();
    const store = await FsStore.open(dir, { maxConcurrency: 1 });
    store.prioritize('root');
    const bytes = A.save(A.from({ a: 1 }));
    const order: string[] = [];
    const saves = Array.from({ length: 20 }, (_, i) =>
      store.save([`doc${i}x`, 'snapshot', 'h'], bytes).then(() => order.push(`doc${i}x`)),
    );
    const root = store.save(['root', 'snapshot', 'h'], bytes).then(() => order.push('root'));
    await Promise.all([...saves, root]);
    // One slot: the first save holds it; the root goes next, not after the other nineteen.
    expect(order.indexOf('root')).toBeLessThanOrEqual(1);
    expect(await store.load(['root', 'snapshot', 'h'])).toEqual(bytes);
    await store.close();
  });

  it('removes and loads a prioritized document ahead of queued reads of others', async () => {
    const dir = await tempDir();
    const store = await FsStore.open(dir, { maxConcurrency: 1 });
    const bytes = A.save(A.from({ a: 1 }));
    for (let i = 0; i < 20; i++) await store.save([`doc${i}x`, 'snapshot', 'h'], bytes);
    await store.save(['root', 'snapshot', 'h'], bytes);
    await store.save(['root', 'incremental', 'old'], bytes);
    store.prioritize('root');
    const order: string[] = [];
    const loads = Array.from({ length: 20 }, (_, i) =>
      store.load([`doc${i}x`, 'snapshot', 'h']).then(() => order.push(`doc${i}x`)),
    );
    const removed = store.remove(['root', 'incremental', 'old']).then(() => order.push('rm'));
    const loaded = store.load(['root', 'snapshot', 'h']).then(() => order.push('root'));
    await Promise.all([...loads, removed, loaded]);
    expect(order.indexOf('rm')).toBeLessThanOrEqual(2);
    expect(order.indexOf('root')).toBeLessThanOrEqual(2);
    expect(await store.load(['root', 'incremental', 'old'])).toBeUndefined();
    await store.close();
  });

  it("settled(doc) waits for that document's saves only", async () => {
    const dir = await tempDir();
    const store = await FsStore.open(dir, { maxConcurrency: 1 });
    store.prioritize('mine');
    const bytes = A.save(A.from({ a: 1 }));
    let othersDone = 0;
    const others = Array.from({ length: 20 }, (_, i) =>
      store.save([`other${i}x`, 'snapshot', 'h'], bytes).then(() => othersDone++),
    );
    let mineDone = false;
    void store.save(['mine', 'snapshot', 'h'], bytes).then(() => (mineDone = true));
    await store.settled('mine');
    expect(mineDone).toBe(true);
    expect(othersDone).toBeLessThan(20);
    await store.settled();
    expect(othersDone).toBe(20);
    await Promise.all(others);
    expect(store.busy).toBe(false);
    await store.close();
  });
});

describe('FsStore index of documents (option index)', () => {
  /** Blocks every libuv thread and read slot: loads of FIFOs nobody writes yet. */
  async function blockReads(dir: string, n: number): Promise<{ release: () => Promise<void> }> {
    const fifos = Array.from({ length: n }, (_, i) =>
      join(dir, 'bl', 'ocked', 'snapshot', `h${i}`),
    );
    await mkdir(dirname(fifos[0]!), { recursive: true });
    for (const f of fifos) execFileSync('mkfifo', [f]);
    return {
      release: async () => {
        await Promise.all(fifos.map((f) => writeFile(f, A.save(A.from({ x: 1 })))));
      },
    };
  }

  it('answers for a document it never held without touching the disk', async () => {
    const dir = await tempDir();
    // As many FIFOs as read slots, fewer than libuv's 4 threads: one is left to write them.
    const blocker = await blockReads(dir, 3);
    const store = await FsStore.open(dir, { maxConcurrency: 3, index: true });
    await store.save(['kept1', 'snapshot', 'h'], A.save(A.from({ a: 1 })));
    await store.settled();
    const stuck = Array.from({ length: 3 }, (_, i) => store.load(['blocked', 'snapshot', `h${i}`]));
    // Every read slot now waits on a FIFO: only an answer from memory comes back.
    const answered = await Promise.race([
      Promise.all([
        store.holds(['never1']),
        store.loadRange(['never1', 'snapshot']),
        store.load(['never1', 'snapshot', 'h']),
      ]),
      new Promise<'blocked'>((r) => setTimeout(() => r('blocked'), 5000).unref()),
    ]);
    expect(answered).toEqual([false, [], undefined]);
    let keptAnswered = false;
    const kept = store.holds(['kept1']).then((held) => ((keptAnswered = true), held));
    await new Promise((r) => setImmediate(r));
    expect(keptAnswered).toBe(false); // a document it holds is still read from the disk
    await blocker.release();
    expect(await kept).toBe(true);
    await Promise.all(stuck);
    await store.close();
  });

  it('names what earlier runs and this one saved, also a document removed and saved again', async () => {
    const dir = await tempDir();
    const bytes = A.save(A.from({ a: 1 }));
    const first = await FsStore.open(dir, { index: true });
    await first.save(['before1', 'snapshot', 'h'], bytes);
    await first.save(['single-key'], bytes);
    await first.close();
    const store = await FsStore.open(dir, { index: true });
    expect(await store.holds(['before1'])).toBe(true);
    expect(await store.load(['single-key'])).toEqual(bytes);
    expect(await store.holds(['later1'])).toBe(false);
    await store.save(['later1', 'incremental', 'h'], bytes);
    expect(await store.loadRange(['later1'])).toHaveLength(1);
    await store.removeRange(['later1']);
    expect(await store.holds(['later1'])).toBe(false);
    await store.save(['later1', 'snapshot', 'h2'], bytes);
    expect(await store.holds(['later1'])).toBe(true);
    await store.close();
  });
});

// Also with the read worker: loadRange's bytes then come from another thread, checked here.
describe.each([false, true])(
  'FsStore integrity (THREATS.md row 18), readWorker %s',
  (readWorker) => {
    it('quarantines a truncated and a zero-length chunk; the rest of the document loads', async () => {
      const dir = await tempDir();
      const written = await open(dir, readWorker);
      const { url, docDir } = await writeDoc(written.store);
      const files = await incrementals(dir, docDir);
      expect(files).toHaveLength(INCREMENTALS);
      const [truncated, emptied] = files.slice(-2) as [string, string];
      await truncate(truncated, (await stat(truncated)).size - 5);
      await truncate(emptied, 0);
      const cut = await readFile(truncated);

      const { store, lines } = await open(dir, readWorker);
      expect((await readDoc(store, url)).items).toEqual(allItems.slice(0, -2));
      const problems = store.problems();
      expect(problems.map((p) => [p.code, p.file]).sort()).toEqual(
        [
          ['STORE_CORRUPT', truncated],
          ['STORE_CORRUPT', emptied],
        ].sort(),
      );
      expect(
        lines.filter((l) => l.startsWith('STORE_CORRUPT ') && l.includes('moved to')),
      ).toHaveLength(2);
      for (const p of problems) {
        expect(p.quarantinedTo).toContain(join(dir, '.quarantine'));
        expect(await exists(p.file)).toBe(false);
      }
      const moved = problems.find((p) => p.file === truncated)?.quarantinedTo ?? '';
      expect((await readFile(moved)).equals(cut)).toBe(true);
      expect(await store.loadRange([url.slice('automerge:'.length), 'incremental'])).toHaveLength(
        INCREMENTALS - 2,
      );

      // Compaction by automerge-repo must leave the quarantine alone. A big incompressible change
      // makes the incrementals outweigh the snapshot, so this save or the next one compacts, and
      // compaction deletes the chunks it loaded.
      const repo = new Repo({ storage: store, network: [] });
      const handle = await repo.find<Doc>(url);
      handle.change((d) => void (d.pad = randomBytes(15_000).toString('base64')));
      await repo.flush();
      handle.change((d) => void d.items.push(100));
      await repo.flush();
      await repo.shutdown();
      for (const intact of files.slice(0, -2)) expect(await exists(intact)).toBe(false);
      expect((await readFile(moved)).equals(cut)).toBe(true);
      expect(await readdir(join(dir, '.quarantine'))).toHaveLength(2);

      // Removing the document, or everything, still leaves the quarantine alone.
      await store.removeRange([url.slice('automerge:'.length)]);
      expect(await exists(join(dir, docDir))).toBe(false);
      await store.removeRange([]);
      expect((await readdir(dir)).sort()).toEqual(['.flt-store-format', '.quarantine']);
      expect(await readdir(join(dir, '.quarantine'))).toHaveLength(2);
    });

    it('catches a flipped byte anywhere in an Automerge chunk, by its checksum or its name', async () => {
      const dir = await tempDir();
      // Files are put behind the store's back: into a document its index (made at open) names.
      await mkdir(join(dir, 'do', 'cA1'), { recursive: true });
      const { store } = await open(dir, readWorker);
      const put = async (key: string[], bytes: Uint8Array) => {
        const path = join(dir, 'do', 'cA1', ...key.slice(1));
        await mkdir(join(path, '..'), { recursive: true });
        await writeFile(path, bytes);
      };
      const snapshot = A.save(A.from({ text: PAD }));
      const change = A.getLastLocalChange(A.change(A.from({ a: 1 }), (d) => void (d.a = 2)))!;
      const compressed = compress(change);
      const cases: [string[], Uint8Array][] = [
        [['docA1', 'snapshot', sha256Hex(Uint8Array.of(1))], snapshot],
        [['docA1', 'snapshot', 'any-name'], snapshot],
        [['docA1', 'incremental', sha256Hex(change)], change],
        [['docA1', 'incremental', 'any-name'], change],
        [['docA1', 'incremental', 'compressed'], compressed],
      ];
      let corrupt = 0;
      for (const [key, intact] of cases) {
        await put(key, intact);
        expect(await store.load(key), `${key[2]} intact`).toEqual(new Uint8Array(intact));
        // Bytes 0-3 magic, 4-7 checksum, 8 type, 9- length then body; and the last byte.
        const spots = [1, 5, 8, 9, 40, intact.length - 1];
        // A flipped magic leaves bytes that no longer claim to be Automerge: only a hash name tells.
        if (!/^[0-9a-f]{64}$/.test(key[2] as string)) spots.shift();
        for (const at of spots) {
          const flipped = Buffer.from(intact);
          flipped[at] = (flipped[at] as number) ^ 0x01;
          await put(key, flipped);
          expect(await store.load(key), `${key[2]} with byte ${at} flipped`).toBeUndefined();
          corrupt++;
        }
      }
      expect(store.problems().map((p) => p.code)).toEqual(Array(corrupt).fill('STORE_CORRUPT'));
    });

    it('catches a truncated or zero-filled snapshot by its Automerge framing', async () => {
      const dir = await tempDir();
      await mkdir(join(dir, 'do', 'cA1'), { recursive: true }); // as above: a document it names
      const { store } = await open(dir, readWorker);
      const snapshot = A.save(A.from({ text: PAD }));
      const write = (name: string, bytes: Uint8Array) =>
        mkdir(join(dir, 'do', 'cA1', 'snapshot'), { recursive: true }).then(() =>
          writeFile(join(dir, 'do', 'cA1', 'snapshot', name), bytes),
        );
      await write('whole', snapshot);
      await write('cut', snapshot.subarray(0, snapshot.length - 1));
      await write('zeros', new Uint8Array(snapshot.length));
      await write('empty', new Uint8Array(0));
      expect(await store.load(['docA1', 'snapshot', 'whole'])).toEqual(snapshot);
      expect((await store.loadRange(['docA1'])).map((c) => c.key[2])).toEqual(['whole']);
      expect(
        store
          .problems()
          .map((p) => [p.code, p.key?.[2]])
          .sort(),
      ).toEqual([
        ['STORE_CORRUPT', 'cut'],
        ['STORE_CORRUPT', 'empty'],
        ['STORE_CORRUPT', 'zeros'],
      ]);
    });

    it('save refuses, with a TypeError and no file, a value that would not load back', async () => {
      const dir = await tempDir();
      const { store } = await open(dir, readWorker);
      const change = A.saveIncremental(A.from({ a: 1 }));
      const damaged = Buffer.from(change);
      damaged[20] = (damaged[20] as number) ^ 0x01;
      const refused: [string[], Uint8Array][] = [
        [['docA1', 'incremental', sha256Hex(Uint8Array.of(1))], change], // not its hash
        [['docA1', 'snapshot', sha256Hex(Uint8Array.of(1))], Uint8Array.of(1, 2, 3)], // not Automerge
        [['docA1', 'snapshot', 'h'], damaged], // bad checksum
        [
          ['docA1', 'sync-state', 'p'],
          Buffer.concat([Buffer.from('FLTCHNK1'), Buffer.alloc(40, 1)]),
        ],
      ];
      for (const [key, data] of refused) {
        await expect(store.save(key, data), key.join('/')).rejects.toBeInstanceOf(TypeError);
      }
      expect(await exists(join(dir, 'do'))).toBe(false);
    });

    it('reports a leftover temp file as STORE_LEFTOVER_TEMP, removes it, and never loads it', async () => {
      const dir = await tempDir();
      const { store: first } = await open(dir, readWorker);
      await first.save(['docA1', 'incremental', 'i1'], Uint8Array.of(1));
      const temp = join(dir, 'do', 'cA1', 'incremental', '.i2.0badf00d.tmp');
      await writeFile(temp, await readFile(join(dir, 'do', 'cA1', 'incremental', 'i1')));
      const { store, lines } = await open(dir, readWorker);
      expect((await store.loadRange(['docA1'])).map((c) => c.key)).toEqual([
        ['docA1', 'incremental', 'i1'],
      ]);
      expect(store.problems()).toMatchObject([{ code: 'STORE_LEFTOVER_TEMP', file: temp }]);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^STORE_LEFTOVER_TEMP /);
      expect(await exists(temp)).toBe(false);
    });

    it('FsStore.check reports corrupt chunks and temp files without changing any file', async () => {
      const dir = await tempDir();
      const { store } = await open(dir, readWorker);
      const { docDir } = await writeDoc(store);
      const [victim] = await incrementals(dir, docDir);
      await truncate(victim as string, 10);
      const temp = join(dir, docDir, 'snapshot', '.x.12345678.tmp');
      await writeFile(temp, 'partial');
      const before = await snapshotTree(dir);
      const problems = await FsStore.check(dir);
      expect(await snapshotTree(dir)).toEqual(before);
      expect(problems.map((p) => [p.code, p.file])).toEqual([
        ['STORE_LEFTOVER_TEMP', temp],
        ['STORE_CORRUPT', victim],
      ]);
      expect(problems[1]?.quarantinedTo).toBeUndefined();
    });
  },
);

describe('REFERENCE.md: nodefs silently loses changes where FsStore reports them', () => {
  it('one truncated incremental file written by nodefs', async () => {
    const dir = await tempDir();
    const { url, docDir } = await writeDoc(new NodeFSStorageAdapter(dir));
    const lastChange = (await incrementals(dir, docDir)).at(-1) as string;
    await truncate(lastChange, (await stat(lastChange)).size - 3);
    // FsStore gets its own copy: a nodefs Repo may compact on load and delete the intact files.
    const copy = await tempDir();
    await cp(dir, copy, { recursive: true });

    // nodefs: no error, no report, and every incremental change is gone (not just the cut one).
    const viaNodefs = await readDoc(new NodeFSStorageAdapter(dir), url);
    expect(viaNodefs.items).toEqual([]);

    // FsStore on the same bytes: the damage is reported and the cut file kept in quarantine.
    const { store, lines } = await open(copy);
    expect((await readDoc(store, url)).items).toEqual(allItems.slice(0, -1));
    expect(store.problems()).toMatchObject([
      {
        code: 'STORE_CORRUPT',
        key: [url.slice('automerge:'.length), 'incremental', expect.any(String)],
      },
    ]);
    expect(lines[0]).toMatch(/^STORE_CORRUPT .*moved to .*\.quarantine/);
  });
});
