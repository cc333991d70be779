// sync/repo-find-guard.ts: a find of a document that is being asked of peers (`requesting`) must not
// load it again from storage over changes it already holds. The race is made deterministic: a
// peer that never answers keeps the handle `requesting`, a gate holds the second storage read,
// a change is applied in memory meanwhile (as a peer's sync message would), and storage gets an
// older copy (as a throttled save of the first change would). The first case shows what
// automerge-repo 2.5.6 does on its own: the newer change is gone.

import * as A from '@automerge/automerge';
import {
  NetworkAdapter,
  Repo,
  generateAutomergeUrl,
  parseAutomergeUrl,
  type DocumentId,
  type Message,
  type PeerId,
  type StorageKey,
} from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { guardRepoFind } from '../sync/repo-find-guard.js';
import { MemoryStore } from '../stores/memory-store.js';

/** A peer that connects and never answers: documents asked of it stay `requesting`. */
class SilentPeer extends NetworkAdapter {
  isReady(): boolean {
    return true;
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
  connect(peerId: PeerId): void {
    this.peerId = peerId;
    queueMicrotask(() =>
      this.emit('peer-candidate', { peerId: 'silent' as PeerId, peerMetadata: {} }),
    );
  }
  send(_message: Message): void {}
  disconnect(): void {}
}

/** A MemoryStore whose range reads can be held at a gate; counts the reads of each document. */
class GatedStore extends MemoryStore {
  gate: Promise<void> | undefined;
  readonly reads = new Map<string, number>();
  override async loadRange(prefix: StorageKey) {
    this.reads.set(prefix[0]!, (this.reads.get(prefix[0]!) ?? 0) + 1);
    if (this.gate) await this.gate;
    return super.loadRange(prefix);
  }
}

type Counter = { n: number };

async function requestingDoc(guard: boolean) {
  const store = new GatedStore();
  const repo = new Repo({ storage: store, network: [new SilentPeer()], peerId: 'me' as PeerId });
  if (guard) guardRepoFind(repo);
  const docId: DocumentId = parseAutomergeUrl(generateAutomergeUrl()).documentId;
  const first = repo.find<Counter>(docId, { allowableStates: ['requesting'] });
  const handle = await first;
  expect(handle.state).toBe('requesting');
  return { store, repo, docId, handle };
}

/** A document after a peer's first change (saved), and after the one that follows it. */
function twoChanges() {
  const v1 = A.from<Counter>({ n: 1 });
  const saved = A.save(v1); // before the next change: Automerge documents share their state
  const v2 = A.change(A.clone(v1), (d) => {
    d.n = 2;
  });
  return { saved, v2 };
}

/**
 * While a second find's storage read is held: the document gets v2 in memory (a peer's sync),
 * storage gets v1 (a save of its first change). Then the read goes on. What the handle holds after.
 */
async function race(guard: boolean) {
  const { store, repo, docId, handle } = await requestingDoc(guard);
  const { saved, v2 } = twoChanges();
  let open!: () => void;
  store.gate = new Promise((resolve) => (open = resolve));
  const readsBefore = store.reads.get(docId) ?? 0;
  // What automerge-repo's synchronizer does for each sync message it receives.
  const second = repo.find<Counter>(docId, {
    allowableStates: ['ready', 'unavailable', 'requesting'],
  });
  handle.update(() => A.clone(v2));
  expect(handle.isReady()).toBe(true);
  await store.save([docId, 'snapshot', 'older'], saved);
  open();
  await second;
  // A load that started reads storage and then replaces the document: let it run to its end.
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  const reads = (store.reads.get(docId) ?? 0) - readsBefore;
  const result = { n: handle.doc().n, heads: A.getHeads(handle.doc()), v2: A.getHeads(v2), reads };
  await repo.shutdown();
  return result;
}

describe('guardRepoFind', () => {
  it('automerge-repo alone: a find of a requesting document loads it again and drops a newer change', async () => {
    const r = await race(false);
    expect(r.reads).toBeGreaterThan(0);
    expect(r.n).toBe(1);
    expect(r.heads).not.toEqual(r.v2);
  });

  it('guarded: the find answers with the handle, storage is not read again, the change stays', async () => {
    const r = await race(true);
    expect(r.reads).toBe(0);
    expect(r.n).toBe(2);
    expect(r.heads).toEqual(r.v2);
  });

  it('guarded: a find that needs a ready document waits for it and does not load again', async () => {
    const { store, repo, docId, handle } = await requestingDoc(true);
    const readsBefore = store.reads.get(docId) ?? 0;
    const waiting = repo.find<Counter>(docId);
    let settled = false;
    void waiting.then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    handle.update(() => A.clone(twoChanges().v2));
    const found = await waiting;
    expect(found).toBe(handle);
    expect(found.doc().n).toBe(2);
    expect((store.reads.get(docId) ?? 0) - readsBefore).toBe(0);
    await repo.shutdown();
  });

  it('guarded: a find waiting for a requesting document ends when its signal aborts', async () => {
    const { repo, docId, handle } = await requestingDoc(true);
    const stop = new AbortController();
    const waiting = repo.find<Counter>(docId, { signal: stop.signal });
    stop.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect(handle.state).toBe('requesting'); // still asked of peers: only the find gave up
    handle.update(() => A.from<Counter>({ n: 1 })); // (shutdown saves every handle)
    await repo.shutdown();
  });

  it('guarded: a find whose load another find began ends when its own signal aborts', async () => {
    const store = new GatedStore();
    const repo = new Repo({ storage: store, network: [new SilentPeer()], peerId: 'me' as PeerId });
    guardRepoFind(repo);
    const docId: DocumentId = parseAutomergeUrl(generateAutomergeUrl()).documentId;
    let open!: () => void;
    store.gate = new Promise((resolve) => (open = resolve));
    // automerge-repo keeps one load per document, watched by the first find's signal only.
    const first = repo.find<Counter>(docId, { allowableStates: ['requesting'] });
    const stop = new AbortController();
    const second = repo.find<Counter>(docId, { signal: stop.signal });
    stop.abort();
    await expect(second).rejects.toMatchObject({ name: 'AbortError' });
    open();
    const handle = await first;
    expect(handle.state).toBe('requesting');
    handle.update(() => A.from<Counter>({ n: 1 })); // (shutdown saves every handle)
    await repo.shutdown();
  });

  it('is installed once: a second call changes nothing', async () => {
    const repo = new Repo({ network: [], peerId: 'me' as PeerId });
    guardRepoFind(repo);
    const { find } = repo as { find: unknown };
    guardRepoFind(repo);
    expect((repo as { find: unknown }).find).toBe(find);
    await repo.shutdown();
  });
});
