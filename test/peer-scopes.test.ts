// sync/peer-scopes.ts: peers that sync only named documents are kept out of automerge-repo's
// per-peer loops (issue 13: the share policy was asked about every peer on every message, and
// about every document on every connection). What a scoped peer gets is what the share policy
// gave it before: its documents, kept in sync both ways, including one named or set up after it
// connected; nothing else. And the policy is no longer asked about the scoped peers at all.

import { Repo, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { MessageChannelNetworkAdapter } from '@automerge/automerge-repo-network-messagechannel';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { Eviction } from '../sync/evict.js';
import { scopePeers } from '../sync/peer-scopes.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

type Doc = { n: number };
const repos: Repo[] = [];
afterEach(async () => {
  await Promise.allSettled(repos.splice(0).map((r) => r.shutdown()));
});

/** A hub Repo with `scopes` installed, whose share policy counts how often it is asked. */
function hub(scopeOf: (peer: PeerId) => readonly DocumentId[] | undefined) {
  let asked = 0;
  const allowed = (peer: PeerId, doc?: DocumentId) => {
    asked++;
    return Promise.resolve(doc !== undefined && (scopeOf(peer)?.includes(doc) ?? true));
  };
  const repo = new Repo({
    network: [],
    peerId: 'hub' as PeerId,
    shareConfig: { announce: allowed, access: allowed },
  });
  scopePeers(repo, { scopeOf });
  repos.push(repo);
  return { repo, asked: () => asked };
}

/** A peer Repo joined to `hubRepo` over a MessageChannel (it asks the hub for what it lacks). */
async function peer(hubRepo: Repo, name: string): Promise<Repo> {
  const { port1, port2 } = new MessageChannel();
  const repo = new Repo({
    network: [new MessageChannelNetworkAdapter(port1)],
    peerId: name as PeerId,
    shareConfig: { announce: () => Promise.resolve(true), access: () => Promise.resolve(true) },
  });
  hubRepo.networkSubsystem.addNetworkAdapter(new MessageChannelNetworkAdapter(port2));
  repos.push(repo);
  await waitFor(`${name} connected`, () => repo.peers.length > 0);
  return repo;
}

describe('scoped peers', () => {
  it('get their documents both ways, one set up after they connected included, and nothing else', async () => {
    const scopes = new Map<string, DocumentId[]>();
    const h = hub((p) => scopes.get(p));
    const mine = h.repo.create<Doc>({ n: 1 });
    const other = h.repo.create<Doc>({ n: 2 });
    scopes.set('a', [mine.documentId]);
    const a = await peer(h.repo, 'a');
    const seen = await a.find<Doc>(mine.url);
    expect(seen.doc().n).toBe(1);

    // A change at the hub reaches the scoped peer (it is in the document's sync), and back.
    mine.change((d) => void (d.n = 10));
    await waitFor('the hub change at a', () => seen.doc().n === 10);
    seen.change((d) => void (d.n = 11));
    await waitFor('a change at the hub', () => mine.doc().n === 11);

    // A document named in its scope later, set up at the hub after it connected: announced.
    const late = h.repo.create<Doc>({ n: 3 });
    scopes.set('a', [mine.documentId, late.documentId]);
    void h.repo.shareConfigChanged();
    const lateThere = await a.find<Doc>(late.url);
    expect(lateThere.doc().n).toBe(3);

    // A document outside its scope is unavailable to it.
    await expect(a.find<Doc>(other.url)).rejects.toThrow(/unavailable/);
  });

  it('a message from one of 40 connected scoped peers asks the share policy nothing about the others', async () => {
    const scopes = new Map<string, DocumentId[]>();
    const h = hub((p) => scopes.get(p) ?? []);
    const docs = Array.from({ length: 40 }, (_, i) => h.repo.create<Doc>({ n: i }));
    const handles = await Promise.all(
      docs.map(async (d, i) => {
        scopes.set(`p${i}`, [d.documentId]);
        return (await peer(h.repo, `p${i}`)).find<Doc>(d.url);
      }),
    );
    await waitFor('every peer synced', () => handles.every((x, i) => x.doc().n === i));
    const before = h.asked();
    handles[7]!.change((d) => void (d.n = 700));
    await waitFor('the change at the hub', () => docs[7]!.doc().n === 700);
    // Without scopes: announce + access for each of the 40 peers on each message (162 measured).
    expect(h.asked() - before).toBeLessThan(10);
  });

  it("a peer without a scope takes automerge-repo's own path (the share policy decides)", async () => {
    const h = hub(() => undefined);
    const doc = h.repo.create<Doc>({ n: 5 });
    const admin = await peer(h.repo, 'admin');
    expect((await admin.find<Doc>(doc.url)).doc().n).toBe(5);
  });

  it('a document evicted from the hub: the old synchronizer ends its sync, the reloaded one syncs again', async () => {
    const dir = await tempDir();
    try {
      const store = await FsStore.open(dir.path);
      const repo = new Repo({ network: [], storage: store, peerId: 'hub' as PeerId });
      const handle = repo.create<Doc>({ n: 1 });
      const doc = handle.documentId;
      scopePeers(repo, { scopeOf: () => [doc] });
      repos.push(repo);
      const a = await peer(repo, 'a');
      const theirs = await a.find<Doc>(handle.url);
      expect(theirs.doc().n).toBe(1);
      type DocSync = { hasPeer(p: PeerId): boolean };
      const sync = (
        repo as unknown as { synchronizer: { docSynchronizers: Record<string, DocSync> } }
      ).synchronizer;
      const old = sync.docSynchronizers[doc]!;
      await waitFor('the hub syncing with a', () => old.hasPeer('a' as PeerId));
      const eviction = new Eviction({ repo, store, evictable: (d) => d === doc, idleMs: 60_000 });
      try {
        // Refused while messages about it still flow (the first sync): tried until quiet.
        await waitFor('the document evicted', () => eviction.evict(doc));
        expect(repo.handles[doc]).toBeUndefined();
        expect(old.hasPeer('a' as PeerId)).toBe(false);
        // a's change brings it back (automerge-repo finds it in storage for the message)...
        theirs.change((d) => void (d.n = 5));
        await waitFor('the hub reloading it with the change', () => {
          const h = repo.handles[doc];
          return h?.isReady() === true && h.doc().n === 5;
        });
        // ...and the new synchronizer syncs with a both ways.
        repo.handles[doc]!.change((d: Doc) => void (d.n = 6));
        await waitFor('a seeing the hub change', () => theirs.doc().n === 6);
      } finally {
        await eviction.stop();
        // Saved now, so that a throttled save still to come writes nothing into a removed dir.
        await repo.flush(repo.handles[doc]?.isReady() ? [doc] : []);
        await store.idle();
      }
    } finally {
      await dir.remove();
    }
  });
});
