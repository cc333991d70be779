// sync/compact.ts: a document kept loaded is compacted into one snapshot that loads back with
// every change; a chunk written while the compaction runs stays; below the threshold nothing
// changes; a failure part way leaves a chunk too many, never one too few; the Compactor looks at
// start, logs failures instead of throwing, and stop() waits for a run under way. Real Repos on a
// real FsStore in a temp dir.

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { Repo, type DocHandle, type DocumentId, type StorageKey } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { compact, Compactor, snapshotName } from '../sync/compact.js';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

interface Doc {
  n: number;
  items: string[];
}

describe('compact', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());

  /** A loaded document stored as a snapshot and ten incremental chunks. */
  async function chunked(name: string) {
    const store = await FsStore.open(join(dir.path, name));
    const repo = new Repo({ storage: store, saveDebounceRate: 1 });
    // Large at first, then small changes: automerge-repo keeps them as incremental chunks.
    const items = Array.from({ length: 1_000 }, (_, i) => `initial item ${i}`);
    const handle = repo.create<Doc>({ n: 0, items });
    await repo.flush([handle.documentId]);
    for (let i = 1; i <= 10; i++) {
      handle.change((d) => {
        d.n = i;
        d.items.push(`item ${i}`);
      });
      await repo.flush([handle.documentId]);
    }
    await store.idle();
    return { store, repo, handle, doc: handle.documentId };
  }

  const kinds = async (store: FsStore, doc: DocumentId) =>
    (await store.keys([doc])).map((k) => k[1]).sort();

  /** What a fresh Repo on `store` loads of `doc`. */
  async function reload(store: FsStore, doc: DocumentId) {
    const repo = new Repo({ storage: store });
    const handle = await repo.find<Doc>(doc);
    const value = { heads: A.getHeads(handle.doc()), doc: handle.doc() };
    await repo.shutdown();
    return value;
  }

  it('writes one snapshot that loads back with every change, and removes the chunks', async () => {
    const { store, repo, handle, doc } = await chunked('one');
    expect(await kinds(store, doc)).toEqual([...Array<string>(10).fill('incremental'), 'snapshot']);
    expect(await compact(handle, store, 8)).toBe(true);
    const keys = await store.keys([doc]);
    expect(keys).toEqual([[doc, 'snapshot', snapshotName(A.getHeads(handle.doc()))]]);
    const heads = A.getHeads(handle.doc());
    const value = handle.doc();
    await repo.shutdown();
    expect(await reload(store, doc)).toEqual({ heads, doc: value });
  });

  it('compacts two snapshots into one, with every change', async () => {
    const { store, repo, handle, doc } = await chunked('two');
    // A second snapshot beside automerge-repo's, as its own compaction leaves ours.
    const heads = A.getHeads(handle.doc());
    await store.save([doc, 'snapshot', 'f'.repeat(64)], A.save(handle.doc()));
    const incrementals = (await store.keys([doc])).filter((k) => k[1] === 'incremental');
    for (const key of incrementals) await store.remove(key);
    expect(await kinds(store, doc)).toEqual(['snapshot', 'snapshot']);
    expect(await compact(handle, store, 1)).toBe(true);
    expect(await kinds(store, doc)).toEqual(['snapshot']);
    await repo.shutdown();
    expect((await reload(store, doc)).heads).toEqual(heads);
  });

  it('changes nothing below its threshold', async () => {
    const { store, repo, handle, doc } = await chunked('below');
    const before = await store.keys([doc]);
    expect(await compact(handle, store, 11)).toBe(false);
    expect(await store.keys([doc])).toEqual(before);
    await repo.shutdown();
  });

  it('keeps a chunk the Repo writes while it runs, and its change', async () => {
    const { store, repo, handle, doc } = await chunked('during');
    const save = store.save.bind(store);
    // Right before the snapshot is written (its listing done): a change, saved by the Repo.
    store.save = async (key: StorageKey, data: Uint8Array) => {
      if (key[1] === 'snapshot' && store.save !== save) {
        store.save = save;
        handle.change((d) => void (d.n = 99));
        await repo.flush([doc]);
      }
      return save(key, data);
    };
    expect(await compact(handle, store, 8)).toBe(true);
    store.save = save;
    await store.idle();
    expect((await kinds(store, doc)).filter((k) => k === 'incremental').length).toBe(1);
    const heads = A.getHeads(handle.doc());
    await repo.shutdown();
    const loaded = await reload(store, doc);
    expect(loaded.heads).toEqual(heads);
    expect(loaded.doc.n).toBe(99);
  });

  it('a failure part way leaves a chunk too many, never a change missing', async () => {
    const { store, repo, handle, doc } = await chunked('fails');
    const remove = store.remove.bind(store);
    let removed = 0;
    store.remove = async (key: StorageKey) => {
      if (removed++ === 3) throw new Error('EIO');
      return remove(key);
    };
    await expect(compact(handle, store, 8)).rejects.toThrow('EIO');
    store.remove = remove;
    const heads = A.getHeads(handle.doc());
    await repo.shutdown();
    expect((await kinds(store, doc)).length).toBeGreaterThan(1);
    expect((await reload(store, doc)).heads).toEqual(heads);
  });

  it('Compactor: looks at start, logs a failure and goes on, and stop waits for its run', async () => {
    const a = await chunked('compactor-a');
    const b = await chunked('compactor-b');
    const lines: string[] = [];
    const log = createLogger('warn', 'test', (line) => void lines.push(line));
    const save = a.store.save.bind(a.store);
    a.store.save = () => Promise.reject(new Error('disk full'));
    const both = { keys: (p: StorageKey) => (p[0] === a.doc ? a.store : b.store).keys(p) };
    const store = {
      ...both,
      save: (k: StorageKey, d: Uint8Array) => (k[0] === a.doc ? a.store : b.store).save(k, d),
      remove: (k: StorageKey) => (k[0] === a.doc ? a.store : b.store).remove(k),
    };
    const compactor = new Compactor({
      store,
      handles: () => [a.handle, b.handle],
      minIncrementals: 8,
      everyMs: 3_600_000,
      log,
    });
    compactor.start();
    await compactor.stop();
    // a failed (logged), b was compacted all the same.
    expect(lines.some((l) => l.includes('could not compact') && l.includes('disk full'))).toBe(
      true,
    );
    expect(await kinds(b.store, b.doc)).toEqual(['snapshot']);
    expect((await kinds(a.store, a.doc)).length).toBe(11);
    a.store.save = save;
    await a.repo.shutdown();
    await b.repo.shutdown();
  });
});

describe("a coordinator's kept documents", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet | undefined;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => {
    await fleet?.close();
    await dir?.remove();
  });

  it('are in one snapshot after a compaction run, and a restart loads them whole', async () => {
    const log = createLogger('warn', 'test');
    fleet = await testFleet(dir.path, log);
    const facts = await collectFacts();
    const agents = [];
    for (const name of ['a', 'b', 'c']) {
      const agent = await fleet.addAgent(name, () => Promise.resolve(facts));
      await agent.enrolled;
      agents.push(agent);
    }
    const { coordinator } = fleet;
    const store = coordinator.node.store!;
    const root = coordinator.fleet.root;
    await waitFor('three agents in the root', () => Object.keys(root.doc().agents).length === 3);
    // The agents leave first: a change after the run could make automerge-repo write a snapshot
    // of its own beside ours (its own compaction; the next run removes it, sync/compact.ts), and
    // the fresh-clone check once caught one there.
    await Promise.all(agents.map((a) => a.close()));
    const docs: DocHandle<unknown>[] = [root, coordinator.gate.audit, coordinator.gate.adminsDoc];
    const ids = docs.map((d) => d.documentId);
    await coordinator.node.repo!.flush(ids);
    await store.idle();
    const before = docs.map((d) => A.getHeads(d.doc()));
    // A run begun after the flush (the first call may join the run begun at start).
    await coordinator.compactor.run();
    await coordinator.compactor.run();
    // Chunks saved after the run (the admin's session) may follow the snapshot; the snapshot is
    // one, and holds everything saved before the run.
    for (const [i, doc] of ids.entries()) {
      const snapshots = (await store.keys([doc])).filter((k) => k[1] === 'snapshot');
      expect(snapshots.length).toBe(1);
      const bytes = await store.load(snapshots[0]!);
      expect(A.hasHeads(A.load(bytes!), before[i]!)).toBe(true);
    }
    const heads = A.getHeads(root.doc());
    await fleet.close();
    fleet = undefined;
    // What the store holds is the whole root: a fresh Repo loads it with every change it had.
    const again = await FsStore.open(join(dir.path, 'coordinator', 'repo'));
    expect(await holdsHeads(again, root.documentId, heads)).toBe(true);
  });
});

/** Whether a fresh Repo on `store` loads `doc` with every change up to `heads`. */
async function holdsHeads(store: FsStore, doc: DocumentId, heads: A.Heads): Promise<boolean> {
  const repo = new Repo({ storage: store });
  const handle = await repo.find(doc);
  const holds = A.hasHeads(handle.doc(), heads);
  await repo.shutdown();
  return holds;
}
