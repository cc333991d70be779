// sync/owned-doc.ts: a document stored as several snapshots (one of sync/compact.ts's beside one
// automerge-repo wrote, or a compaction a crash cut short) is rewritten as one snapshot before a
// Repo loads it, with every change; contentChunks gives the largest snapshot first; a document
// stored as one snapshot is left as it is. Real FsStore in a temp dir.

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveKeyPair, generateNodeKey } from '../src/identity/index.js';
import { FsStore } from '../stores/fs-store.js';
import { MemoryStore } from '../stores/memory-store.js';
import { snapshotName } from '../sync/compact.js';
import { baseDocument, consolidate, contentChunks, OwnedDoc } from '../sync/owned-doc.js';
import { tempDir } from './helpers/flt.js';

interface Doc {
  kind: string;
  items?: string[];
}

/** `doc` after `n` more items. */
const grown = (doc: A.Doc<Doc>, n: number) =>
  A.change(doc, (d) => {
    d.items ??= [];
    for (let i = 0; i < n; i++) d.items.push(`item ${d.items.length}`);
  });

/**
 * An owned document in `store` as two snapshots (an older, smaller one and a newer one) and an
 * incremental chunk after them, as a crash between a compaction's two steps leaves it.
 */
async function twoSnapshots(store: FsStore | MemoryStore) {
  const owned = new OwnedDoc<Doc>(deriveKeyPair(generateNodeKey().secret, 'flt/v1/doc/facts'));
  const doc = owned.docId;
  const older = grown(A.load<Doc>(baseDocument(doc, { kind: 'test' })), 200);
  // Clones: a document changed is outdated (its save would be the newer one's).
  const newer = grown(A.clone(older), 300);
  const latest = grown(A.clone(newer), 1);
  for (const d of [older, newer])
    await store.save([doc, 'snapshot', snapshotName(A.getHeads(d))], A.save(d));
  await store.save([doc, 'incremental', 'after'], A.saveSince(latest, A.getHeads(newer)));
  return { owned, doc, heads: A.getHeads(latest) };
}

/** The keys `store` holds below `prefix`, joined with '/'. */
const keysOf = async (store: FsStore | MemoryStore, prefix: string) =>
  (await store.loadRange([prefix])).map((c) => c.key.join('/')).sort();
const kinds = async (store: FsStore | MemoryStore, doc: DocumentId) =>
  (await store.loadRange([doc])).map((c) => c.key[1]).sort();

describe('several snapshots of one document', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());

  it('are one snapshot once the owned document is opened, with every change', async () => {
    const store = await FsStore.open(join(dir.path, 'open'));
    const { owned, doc, heads } = await twoSnapshots(store);
    expect(await kinds(store, doc)).toEqual(['incremental', 'snapshot', 'snapshot']);
    const repo = new Repo({ storage: store });
    const handle = await owned.load(repo, store);
    expect(A.getHeads(handle!.doc()).sort()).toEqual([...heads].sort());
    await repo.shutdown();
    await store.idle();
    expect(await kinds(store, doc)).toEqual(['snapshot']);
    // A fresh Repo on the rewritten store has every change.
    const again = new Repo({ storage: store });
    expect(A.hasHeads((await again.find<Doc>(doc)).doc(), heads)).toBe(true);
    await again.shutdown();
  });

  it('come largest first from contentChunks', async () => {
    const store = new MemoryStore();
    const { doc } = await twoSnapshots(store);
    const { snapshots, incrementals } = await contentChunks(store, doc);
    const sizes = snapshots.map((c) => c.data!.length);
    expect(sizes.length).toBe(2);
    expect(sizes[0]).toBeGreaterThan(sizes[1]!);
    expect(incrementals.length).toBe(1);
  });

  it('are the only case rewritten: one snapshot and its incremental chunks stay as they are', async () => {
    const single = new MemoryStore();
    const one = A.save(grown(A.init<Doc>(), 3));
    await single.save(['doc', 'snapshot', 'only'], one);
    await single.save(['doc', 'incremental', 'x'], one);
    expect(await consolidate(single, 'doc')).toBe(false);
    expect(await keysOf(single, 'doc')).toEqual(['doc/incremental/x', 'doc/snapshot/only']);
  });
});
