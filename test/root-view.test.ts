// The admin's root view cache (src/roles/root-view.ts): the root's trusted view kept beside the
// replica, read instead of loading the root only while the replica's root is exactly what it was
// read from. Unit cases on a real FsStore, then a fleet (real iroh endpoints on 127.0.0.1) whose
// reads-only and offline admins must show every change to the root, cache or not.

import * as A from '@automerge/automerge';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { trustedView } from '../sync/owned-doc.js';
import { collectFacts } from '../src/facts/index.js';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import { keepRootView, readRootView } from '../src/roles/root-view.js';
import { FsStore } from '../stores/fs-store.js';
import { tempDir } from './helpers/flt.js';
import { localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');
const DOC = 'root1';

type Root = { kind: string; agents: Record<string, A.ImmutableString> };

function rootWith(n: number): A.Doc<Root> {
  let d = A.from<Root>({ kind: 'flt/root', agents: {} });
  for (let i = 0; i < n; i++)
    d = A.change(d, (x) => {
      x.agents[`agent${i}`] = new A.ImmutableString(JSON.stringify({ i }));
    });
  return d;
}

/** The signed heads a view is read at: the document's own heads here. */
const signedAt = (d: A.Doc<unknown>) => ({ heads: A.getHeads(d) }) as never;

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
    await keepRootView(dir.path, store, DOC, doc, A.getHeads(doc), trustedView(doc, signedAt(doc)));

    const view = await readRootView(dir.path, store, DOC);
    expect(view?.content).toEqual({
      kind: 'flt/root',
      agents: { agent0: '{"i":0}', agent1: '{"i":1}', agent2: '{"i":2}' },
    });
    expect(view?.heads).toEqual(A.getHeads(doc));
    expect(view?.unverified).toBe(false);
    expect(await readRootView(dir.path, store, 'another')).toBeUndefined();

    // One more change stored: the replica's root is no longer what the view was read from.
    const next = rootWith(4);
    await store.save([DOC, 'incremental', 'b'], A.saveSince(next, A.getHeads(doc)));
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
    await store.remove([DOC, 'incremental', 'b']);
    expect(await readRootView(dir.path, store, DOC)).toBeDefined();
  });

  it('a view read at older signed heads says so; a damaged file is a miss', async () => {
    const older = rootWith(1);
    const doc = rootWith(2);
    await store.remove([DOC, 'snapshot', 'a']);
    const merged = A.merge(A.clone(older), doc);
    await store.save([DOC, 'snapshot', 'c'], A.save(merged));
    await keepRootView(
      dir.path,
      store,
      DOC,
      merged,
      A.getHeads(older),
      trustedView(merged, signedAt(older)),
    );
    const view = await readRootView(dir.path, store, DOC);
    expect(view?.unverified).toBe(true);
    expect(view?.signed).toEqual(A.getHeads(older));
    expect(Object.keys(view?.content.agents as object)).toEqual(['agent0']);

    await writeFile(join(dir.path, 'root-view.json'), '{"v":1,"docId":"root1","heads":');
    expect(await readRootView(dir.path, store, DOC)).toBeUndefined();
  });

  it('keeps nothing of a document JSON cannot carry', async () => {
    const sub = await tempDir();
    try {
      const doc = A.from<Record<string, unknown>>({ bytes: new Uint8Array([1, 2]) });
      await keepRootView(
        sub.path,
        store,
        DOC,
        doc,
        A.getHeads(doc),
        trustedView(doc, signedAt(doc)),
      );
      await expect(stat(join(sub.path, 'root-view.json'))).rejects.toThrow();
    } finally {
      await sub.remove();
    }
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

  const readOnline = async () => {
    const a = await Admin.open(reader, log, false, { reads: true });
    try {
      return await a.fleet();
    } finally {
      await a.close();
    }
  };

  it('is used while the root stands still and never hides a change to it', async () => {
    // Nothing moved between two reads: the second reads the view, not writing it again (a
    // write replaces the file). The agent's own updates may move the root meanwhile: then the
    // pair is tried again (a bounded number of times).
    const rootHeads = () => A.getHeads(fleet.coordinator.fleet.root.doc()).join();
    let kept: Awaited<ReturnType<typeof stat>> | undefined;
    for (let i = 0; i < 5 && kept === undefined; i++) {
      expect(hostnames(await readOnline())).toEqual(['h0']);
      const before = { heads: rootHeads(), file: await stat(file()) };
      expect(hostnames(await readOnline())).toEqual(['h0']);
      if (rootHeads() !== before.heads) continue;
      expect((await stat(file())).ino).toBe(before.file.ino);
      kept = before.file;
    }
    expect(kept).toBeDefined();

    // The root moves (a second agent): the next read shows it and keeps the new view.
    const facts = await collectFacts();
    await fleet.addAgent('a1', () => Promise.resolve({ ...facts, hostname: 'h1' }));
    await waitFor('the second agent in the coordinator’s table', async () => {
      const v = await fleet.admin.fleet();
      return v.agents.some((a) => a.hostname === 'h1');
    });
    await waitFor('the reads-only admin shows both agents', async () => {
      return hostnames(await readOnline()).join() === 'h0,h1';
    });
    const rewritten = await stat(file());
    expect(rewritten.ino).not.toBe(kept!.ino);

    // Offline, the view the online read kept is the replica's: read as it is.
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
