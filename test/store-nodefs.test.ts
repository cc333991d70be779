// A state dir is readable by other Automerge tools (issue 9, point 7): FsStore writes plain
// Automerge chunks in the layout of @automerge/automerge-repo-storage-nodefs, so a plain Repo with
// NodeFSStorageAdapter opens what FsStore wrote, FsStore opens what nodefs wrote, and nodefs still
// reads it after FsStore compacted it. State dirs of flt 0.1 (a header on every file) are migrated
// when FsStore opens them.

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { Repo, type AutomergeUrl, type StorageAdapterInterface } from '@automerge/automerge-repo';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { MemoryStore } from '../stores/memory-store.js';

type Doc = { items: number[]; pad: string };
/** Incompressible padding, so small changes stay incrementals (see test/fs-store.test.ts). */
const PAD = randomBytes(3000).toString('base64');
const ITEMS = 5;
const allItems = Array.from({ length: ITEMS }, (_, i) => i);

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'flt-store-nodefs-'));
  dirs.push(d);
  return d;
}

/** Opens an FsStore whose problem lines are collected (and must stay empty unless expected). */
async function openFs(dir: string) {
  const lines: string[] = [];
  const store = await FsStore.open(dir, { logger: (l) => lines.push(l) });
  return { store, lines };
}

/** A document saved as one snapshot plus ITEMS incrementals, by a Repo on `storage`. */
async function writeDoc(storage: StorageAdapterInterface): Promise<AutomergeUrl> {
  const repo = new Repo({ storage, network: [] });
  const handle = repo.create<Doc>({ items: [], pad: PAD });
  await repo.flush();
  for (let i = 0; i < ITEMS; i++) {
    handle.change((d) => void d.items.push(i));
    await repo.flush();
  }
  await repo.shutdown();
  return handle.url;
}

/** Opens the document with a fresh Repo, optionally changes it, and returns what it read. */
async function openDoc(
  storage: StorageAdapterInterface,
  url: AutomergeUrl,
  change?: (d: Doc) => void,
): Promise<Doc> {
  const repo = new Repo({ storage, network: [] });
  try {
    const handle = await repo.find<Doc>(url);
    if (change) {
      handle.change(change);
      await repo.flush();
    }
    return handle.doc();
  } finally {
    await repo.shutdown();
  }
}

const docId = (url: AutomergeUrl) => url.slice('automerge:'.length);
const docDir = (dir: string, url: AutomergeUrl) =>
  join(dir, docId(url).slice(0, 2), docId(url).slice(2));
/** The file names in `<doc>/<kind>/`, sorted; [] when the directory is missing. */
const names = (dir: string, url: AutomergeUrl, kind: string) =>
  readdir(join(docDir(dir, url), kind)).then(
    (n) => n.sort(),
    () => [],
  );

describe('FsStore and NodeFSStorageAdapter read each other', () => {
  it('a state dir written by FsStore opens with a plain Repo + NodeFSStorageAdapter, and with Automerge.load', async () => {
    const dir = await tempDir();
    const { store, lines } = await openFs(dir);
    const url = await writeDoc(store);
    await store.close();
    expect(await names(dir, url, 'snapshot')).toHaveLength(1);
    expect(await names(dir, url, 'incremental')).toHaveLength(ITEMS);

    const viaNodefs = await openDoc(new NodeFSStorageAdapter(dir), url);
    expect(viaNodefs.items).toEqual(allItems);
    expect(viaNodefs.pad).toBe(PAD);

    // The files are Automerge's own bytes: Automerge.load takes the snapshot, loadIncremental the rest.
    const [snapshot] = await names(dir, url, 'snapshot');
    let doc = A.load<Doc>(await readFile(join(docDir(dir, url), 'snapshot', snapshot as string)));
    for (const name of await names(dir, url, 'incremental'))
      doc = A.loadIncremental(doc, await readFile(join(docDir(dir, url), 'incremental', name)));
    expect([...doc.items]).toEqual(allItems);
    expect(lines).toEqual([]);
  });

  it('a dir written by nodefs opens with FsStore, and nodefs still reads it after FsStore compacted it', async () => {
    const dir = await tempDir();
    const url = await writeDoc(new NodeFSStorageAdapter(dir));
    const before = {
      snapshot: await names(dir, url, 'snapshot'),
      incremental: await names(dir, url, 'incremental'),
    };
    expect(before.incremental).toHaveLength(ITEMS);

    const { store, lines } = await openFs(dir);
    expect((await openDoc(store, url)).items).toEqual(allItems);
    // A big incompressible change makes the incrementals outweigh the snapshot: this save or the
    // next compacts (a new snapshot; the chunks it loaded deleted).
    const bigPad = randomBytes(15_000).toString('base64');
    await openDoc(store, url, (d) => void (d.pad = bigPad));
    await openDoc(store, url, (d) => void d.items.push(99));
    await store.close();
    const after = {
      snapshot: await names(dir, url, 'snapshot'),
      incremental: await names(dir, url, 'incremental'),
    };
    expect(after.snapshot).not.toEqual(before.snapshot);
    for (const name of before.incremental) expect(after.incremental).not.toContain(name);
    expect(lines).toEqual([]);

    const viaNodefs = await openDoc(new NodeFSStorageAdapter(dir), url);
    expect(viaNodefs.items).toEqual([...allItems, 99]);
    expect(viaNodefs.pad).toBe(bigPad);
  });
});

/** A file as flt 0.1's FsStore wrote it: `FLTCHNK1 ‖ sha256(data) ‖ data`. */
function fltV1File(data: Uint8Array): Buffer {
  return Buffer.concat([
    Buffer.from('FLTCHNK1', 'latin1'),
    createHash('sha256').update(data).digest(),
    data,
  ]);
}

/** Writes every chunk of `store` below `dir` in flt 0.1's format, at nodefs' paths. */
async function writeFltV1Dir(dir: string, store: MemoryStore): Promise<void> {
  for (const { key, data } of await store.loadRange([])) {
    const [first = '', ...rest] = key;
    const path = join(dir, first.slice(0, 2), first.slice(2), ...rest);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, fltV1File(data as Uint8Array));
  }
}

/** Every file below `dir` outside dot directories, relative path to bytes. */
async function files(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const rel = join(e.parentPath, e.name).slice(dir.length + 1);
    if (e.isFile() && !rel.startsWith('.')) out.set(rel, await readFile(join(dir, rel)));
  }
  return out;
}

describe('FsStore migrates state dirs of flt 0.1', () => {
  it('rewrites every file plain on open, quarantines a damaged one, and nodefs then reads the dir', async () => {
    const memory = new MemoryStore();
    const url = await writeDoc(memory);
    const plain = new Map(
      (await memory.loadRange([])).map(({ key, data }) => {
        const [first = '', ...rest] = key;
        return [join(first.slice(0, 2), first.slice(2), ...rest), Buffer.from(data as Uint8Array)];
      }),
    );
    const dir = await tempDir();
    await writeFltV1Dir(dir, memory);
    // A damaged chunk of another document: its data no longer matches the header's hash.
    const damaged = fltV1File(A.save(A.from({ other: 1 })));
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 0x01;
    await mkdir(join(dir, 'ot', 'herDoc1', 'snapshot'), { recursive: true });
    await writeFile(join(dir, 'ot', 'herDoc1', 'snapshot', 's1'), damaged);
    const snapshotFile = join(
      docDir(dir, url),
      'snapshot',
      (await names(dir, url, 'snapshot'))[0]!,
    );
    expect(() => A.load(readFileSync(snapshotFile))).toThrow(/magic/i); // why nodefs cannot read it

    // `flt doctor` (FsStore.check) reads flt 0.1's files as they are: only the damaged one is wrong.
    expect((await FsStore.check(dir)).map((p) => [p.code, p.key])).toEqual([
      ['STORE_CORRUPT', ['otherDoc1', 'snapshot', 's1']],
    ]);

    const { store, lines } = await openFs(dir);
    // Before any read: every file is now the plain value, the damaged one moved aside.
    expect(await files(dir)).toEqual(plain);
    expect(store.problems()).toMatchObject([
      { code: 'STORE_CORRUPT', key: ['otherDoc1', 'snapshot', 's1'] },
    ]);
    expect(lines).toHaveLength(1);
    expect(await readdir(join(dir, '.quarantine'))).toHaveLength(1);
    expect((await openDoc(store, url)).items).toEqual(allItems);
    await store.close();

    expect((await openDoc(new NodeFSStorageAdapter(dir), url)).items).toEqual(allItems);
  });

  it('a file of flt 0.1 met after the migration (an older flt wrote it since) is rewritten when read', async () => {
    const dir = await tempDir();
    await (await openFs(dir)).store.close(); // migrated: the format file is written
    const data = A.save(A.from({ late: true }));
    const path = join(dir, 'la', 'teDoc1', 'snapshot', 's1');
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, fltV1File(data));

    const { store, lines } = await openFs(dir);
    expect(await readFile(path)).toEqual(fltV1File(data)); // no second walk on open
    expect(await store.load(['lateDoc1', 'snapshot', 's1'])).toEqual(data);
    expect((await readFile(path)).equals(data)).toBe(true);
    expect(lines).toEqual([]);
    await store.close();
  });
});
