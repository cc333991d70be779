// The admin's root view cache (src/roles/root-view.ts): the root's verified state kept beside the
// replica, read instead of loading the root while the replica's root is exactly what it was read
// from, and brought forward by the coordinator's changes when they are plain sets and deletes in
// a linear chain. Unit cases on a real FsStore, then a fleet (real iroh endpoints on 127.0.0.1)
// whose reads-only and offline admins must show every change to the root, cache or not.

import * as A from '@automerge/automerge';
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import {
  advance,
  contentOf,
  readRootView,
  saveRootView,
  viewOf,
  type RootView,
} from '../src/roles/root-view.js';
import { FsStore } from '../stores/fs-store.js';
import { tempDir } from './helpers/flt.js';
import { localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');
const DOC = 'root1';

type Root = { kind: string; agents: Record<string, A.ImmutableString | undefined> };

const record = (i: number, v = 0) => new A.ImmutableString(JSON.stringify({ i, v }));

function rootWith(n: number): A.Doc<Root> {
  let d = A.from<Root>({ kind: 'flt/root', agents: {} });
  for (let i = 0; i < n; i++)
    d = A.change(d, (x) => {
      x.agents[`agent${i}`] = record(i);
    });
  return d;
}

const viewAt = (d: A.Doc<unknown>): RootView => viewOf(d, A.getHeads(d))!;

describe('root view cache', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let store: FsStore;

  beforeAll(async () => {
    dir = await tempDir();
    store = await FsStore.open(join(dir.path, 'repo'));
  });

  afterAll(async () => {
    await store.close();
    await dir.remove();
  });

  it('reads back the view it kept while the root is stored as it was, and misses once it is not', async () => {
    const doc = rootWith(3);
    await store.save([DOC, 'snapshot', 'a'], A.save(doc));
    await saveRootView(dir.path, store, DOC, viewAt(doc));

    const view = await readRootView(dir.path, store, DOC);
    expect(view?.heads).toEqual(A.getHeads(doc));
    expect(contentOf(view!)).toEqual({
      kind: 'flt/root',
      agents: { agent0: '{"i":0,"v":0}', agent1: '{"i":1,"v":0}', agent2: '{"i":2,"v":0}' },
    });
    expect(await readRootView(dir.path, store, 'another')).toBeUndefined();

    // One more change stored: the replica's root is no longer what the view was read from.
    const next = rootWith(4);
    await store.save([DOC, 'incremental', 'b'], A.saveSince(next, A.getHeads(doc)));
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
    await store.remove([DOC, 'incremental', 'b']);
    expect(await readRootView(dir.path, store, DOC)).toBeDefined();

    // Damaged, or well formed by another writer in another shape: a miss, never an error.
    const file = join(dir.path, 'root-view.json');
    const [header, body] = (await readFile(file, 'utf8')).split('\n') as [string, string];
    const rewrite = (text: string, sum = true) => {
      const h = JSON.parse(header) as Record<string, unknown>;
      if (sum) h.sum = createHash('sha256').update(text).digest('hex');
      return writeFile(file, `${JSON.stringify(h)}\n${text}`);
    };
    await rewrite(body.replace('"i\\":1', '"i\\":7'), false);
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
    const agents = (view: string) => (JSON.parse(view) as RootView).maps._root!.agents![1];
    await rewrite(
      body.replace(
        `"${agents(body)}":{`,
        `"${agents(body)}":{"loop":[{"map":"${agents(body)}"},"1@a"],`,
      ),
    );
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
    await rewrite(body.replace('"heads":[', '"heads":[7,'));
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
    await rewrite(body);
    expect(await readRootView(dir.path, store, DOC)).toBeDefined();
    await writeFile(file, '{"v":1,"docId":"root1","heads":');
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
  });

  it('keeps only a verified view of plain maps without conflicts', () => {
    const doc = rootWith(2);
    expect(viewOf(doc, A.getHeads(rootWith(1)))).toBeUndefined(); // not at the signed heads
    const withBytes = A.from<Record<string, unknown>>({ bytes: new Uint8Array([1, 2]) });
    expect(viewOf(withBytes, A.getHeads(withBytes))).toBeUndefined();
    const withCounter = A.from<Record<string, unknown>>({ n: new A.Counter(1) });
    expect(viewOf(withCounter, A.getHeads(withCounter))).toBeUndefined();
    const a = A.change(A.clone(doc), (x) => void (x.kind = 'a'));
    const b = A.change(A.clone(doc), (x) => void (x.kind = 'b'));
    const conflict = A.merge(a, b);
    expect(viewOf(conflict, A.getHeads(conflict))).toBeUndefined();
  });

  it("advances by the coordinator's changes to what the document shows", () => {
    const doc = rootWith(3);
    let next = A.change(A.clone(doc), (x) => {
      x.agents.agent1 = record(1, 1);
      delete x.agents.agent2;
      x.agents.agent9 = record(9);
    });
    next = A.change(next, (x) => void (x.agents.agent1 = record(1, 2)));
    const moved = advance(viewAt(doc), A.saveSince(next, A.getHeads(doc)), A.getHeads(next));
    expect(moved).toBeDefined();
    expect(moved!.view).toEqual(viewAt(next));
    expect(contentOf(moved!.view)).toEqual({
      kind: 'flt/root',
      agents: { agent0: '{"i":0,"v":0}', agent1: '{"i":1,"v":2}', agent9: '{"i":9,"v":0}' },
    });
    expect([...moved!.passed]).toContain(A.getHeads(next)[0]);

    // The view it began from is left as it was.
    expect(viewAt(doc)).toEqual(viewOf(doc, A.getHeads(doc)));
  });

  it('refuses what it cannot apply exactly (the caller loads the document then)', () => {
    const doc = rootWith(2);
    const view = viewAt(doc);
    const since = (d: A.Doc<unknown>) => A.saveSince(d, A.getHeads(doc));
    const refused = (d: A.Doc<unknown>) => advance(view, since(d), A.getHeads(d));
    const changed = (f: (x: Record<string, unknown>) => void) => A.change(A.clone(doc), f);

    // A change from another history (concurrent with the view's heads).
    const other = A.change(rootWith(2), (x) => void (x.agents.agent0 = record(0, 1)));
    expect(advance(view, A.saveSince(other, []), A.getHeads(other))).toBeUndefined();
    // A new object, a counter, a list.
    expect(refused(changed((x) => void (x.m = { a: 1 })))).toBeUndefined();
    expect(refused(changed((x) => void (x.c = new A.Counter(1))))).toBeUndefined();
    // Two writers at once (merged: the second change does not follow the first).
    const a = A.change(A.clone(doc), (x) => void (x.agents.agent0 = record(0, 1)));
    const b = A.change(A.clone(doc), (x) => void (x.agents.agent1 = record(1, 1)));
    expect(refused(A.merge(a, b))).toBeUndefined();
    // Heads other than the chain's end, and bytes that are not changes.
    const one = A.change(A.clone(doc), (x) => void (x.agents.agent0 = record(0, 1)));
    expect(advance(view, since(one), A.getHeads(doc))).toBeUndefined();
    expect(advance(view, A.save(one), A.getHeads(one))).toBeUndefined();
    const garbage = since(one).slice();
    garbage[garbage.length - 1]! ^= 0xff;
    expect(advance(view, garbage, A.getHeads(one))).toBeUndefined();
    expect(advance(view, garbage.subarray(0, 20), A.getHeads(one))).toBeUndefined();
  });
});

describe('root view cache in a fleet', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let reader: Awaited<ReturnType<typeof localConfig>>;
  const file = () => join(reader.stateDir, 'root-view.json');
  const hostnames = (v: { agents: { hostname: string | null }[] }) =>
    v.agents.map((a) => a.hostname).sort();

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    const facts = await collectFacts();
    await fleet.addAgent('a0', () => Promise.resolve({ ...facts, hostname: 'h0' }));
    await waitFor('the agent with facts in the fleet table', async () => {
      const v = await fleet.admin.fleet();
      return v.agents.some((a) => a.hostname === 'h0');
    });
    reader = await localConfig(`${dir.path}/reader`, { coordinator: fleet.coordinator.ticket });
    const id = (await loadOrCreateNodeKey(reader.stateDir)).key.nodeId;
    await fleet.admin.submit({ op: 'admin.add', node: id });
  });

  afterAll(async () => {
    await fleet?.close();
    await dir.remove();
  });

  /** A reads-only admin's fleet(), with the debug lines it logged. */
  const readOnline = async () => {
    const lines: string[] = [];
    const a = await Admin.open(
      reader,
      createLogger('debug', 'admin', (l) => lines.push(l)),
      false,
      {
        reads: true,
      },
    );
    try {
      return { view: await a.fleet(), lines };
    } finally {
      await a.close();
    }
  };

  it('is used while the root stands still, brought forward when it moves, never stale', async () => {
    // Nothing moved between two reads: the second reads the view, not writing it again (a
    // write replaces the file). The agent's own updates may move the root meanwhile: then the
    // pair is tried again (a bounded number of times).
    const rootHeads = () => A.getHeads(fleet.coordinator.fleet.root.doc()).join();
    let kept: Awaited<ReturnType<typeof stat>> | undefined;
    for (let i = 0; i < 5 && kept === undefined; i++) {
      expect(hostnames((await readOnline()).view)).toEqual(['h0']);
      const before = { heads: rootHeads(), file: await stat(file()) };
      expect(hostnames((await readOnline()).view)).toEqual(['h0']);
      if (rootHeads() !== before.heads) continue;
      expect((await stat(file())).ino).toBe(before.file.ino);
      kept = before.file;
    }
    expect(kept).toBeDefined();

    // The root moves (a second agent): the next read shows it, the view advanced by the
    // coordinator's changes (not loaded again), and kept.
    const facts = await collectFacts();
    await fleet.addAgent('a1', () => Promise.resolve({ ...facts, hostname: 'h1' }));
    await waitFor('the second agent in the coordinator’s table', async () => {
      const v = await fleet.admin.fleet();
      return v.agents.some((a) => a.hostname === 'h1');
    });
    let advanced = false;
    await waitFor('the reads-only admin shows both agents', async () => {
      const { view, lines } = await readOnline();
      advanced ||= lines.some((l) => l.includes('root view advanced'));
      return hostnames(view).join() === 'h0,h1';
    });
    expect(advanced).toBe(true);
    const rewritten = await stat(file());
    expect(rewritten.ino).not.toBe(kept!.ino);

    // Offline, the view the online read kept is the replica's: read as it is, and the same as
    // the document (the full admin's synced view).
    const offline = await Admin.open(reader, log, true);
    try {
      const view = await offline.fleet();
      expect(view.offline).toBe(true);
      expect(hostnames(view)).toEqual(['h0', 'h1']);
    } finally {
      await offline.close();
    }
    expect((await stat(file())).ino).toBe(rewritten.ino);
  });
});
