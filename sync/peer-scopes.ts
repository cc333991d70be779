// Peers that may only ever sync a few named documents, kept out of automerge-repo's per-peer loops.
//
// automerge-repo 2.5.6's CollectionSynchronizer asks the share policy about every connected peer
// on every sync message it receives (to begin syncing the document with peers that do not sync it
// yet), and about every document when a peer connects; a peer that leaves ends sync on every
// document. With N peers that each bring a few documents, that is O(N) promise chains per message
// and O(N x documents) per connection: a coordinator forming a fleet of 500 peers spent more time
// in these loops than in anything else, blocked its event loop for seconds at a time, and at 1,000
// peers never formed the fleet (issue 13, bench group `scale`).
//
// A scoped peer is one whose documents are known by name (`scopeOf`): it is not handed to the
// CollectionSynchronizer at all. This module begins and ends its sync with exactly its documents,
// on the synchronizer's public per-document synchronizers, when it connects, when a document of
// its scope is set up (again, after an eviction: sync/evict.ts), when it sends a message about
// one, and when the share policy is said to have changed; it leaves, or the document is removed. Its messages still go through the synchronizer as before (the share
// policy's `access` check, the document's lookup), and answers to it are sent as before. Peers
// without a scope (undefined) take automerge-repo's own path unchanged.
//
// It replaces five methods on the Repo's synchronizer instance (the Repo calls them through that
// property): an internal of automerge-repo, pinned, checked at install time by `scopePeers` and
// by the tests that sync through it.

import type { DocHandle, DocumentId, PeerId, Repo } from '@automerge/automerge-repo';
import { FltError } from './errors.js';

export interface PeerScopes {
  /**
   * The documents `peer` may sync (all of them announced to it), or undefined: not scoped, the
   * share policy decides for every document. Asked when it connects, on each message it sends,
   * and on `repo.shareConfigChanged()`; it must be cheap.
   */
  scopeOf(peer: PeerId): readonly DocumentId[] | undefined;
}

/** What scopePeers needs of a per-document synchronizer (public in automerge-repo). */
interface DocSync {
  hasPeer(peer: PeerId): boolean;
  beginSync(peers: PeerId[]): Promise<void>;
  endSync(peer: PeerId): void;
}

/** The synchronizer's methods that scopePeers replaces, and the table it reads. */
interface CollectionSync {
  docSynchronizers: Record<DocumentId, DocSync | undefined>;
  addPeer(peer: PeerId): void;
  removePeer(peer: PeerId): void;
  addDocument(handle: DocHandle<unknown>): void;
  receiveMessage(message: { senderId: PeerId; documentId?: DocumentId }): Promise<void>;
  removeDocument(doc: DocumentId): void;
  reevaluateDocumentShare(): Promise<void>;
}

/** Installs `scopes` on `repo`'s synchronizer. Call once, before any peer connects. */
export function scopePeers(repo: Repo, scopes: PeerScopes): void {
  const sync = (repo as unknown as { synchronizer?: CollectionSync }).synchronizer;
  const methods = [
    'addPeer',
    'removePeer',
    'addDocument',
    'receiveMessage',
    'removeDocument',
  ] as const;
  if (
    sync === undefined ||
    typeof sync.docSynchronizers !== 'object' ||
    !methods.every((m) => typeof sync[m] === 'function') ||
    typeof sync.reevaluateDocumentShare !== 'function'
  )
    throw new FltError('INTERNAL', 'automerge-repo changed: its synchronizer is not as expected');

  /** Connected scoped peers and the documents they sync now. */
  const peers = new Map<PeerId, Set<DocumentId>>();
  /** The other way round: a document's connected scoped peers. */
  const byDoc = new Map<DocumentId, Set<PeerId>>();

  const begin = (doc: DocumentId, peer: PeerId) => {
    const ds = sync.docSynchronizers[doc];
    if (ds !== undefined && !ds.hasPeer(peer)) void ds.beginSync([peer]);
  };
  /** Sets `peer`'s documents to `scope`: begins the new ones, ends the ones it lost. */
  const rescope = (peer: PeerId, scope: readonly DocumentId[]) => {
    const now = peers.get(peer) ?? new Set<DocumentId>();
    peers.set(peer, now);
    const next = new Set(scope);
    for (const doc of now)
      if (!next.has(doc)) {
        now.delete(doc);
        byDoc.get(doc)?.delete(peer);
        sync.docSynchronizers[doc]?.endSync(peer);
      }
    for (const doc of next) {
      if (now.has(doc)) continue;
      now.add(doc);
      let set = byDoc.get(doc);
      if (set === undefined) byDoc.set(doc, (set = new Set()));
      set.add(peer);
      begin(doc, peer);
    }
  };

  const addPeer = sync.addPeer.bind(sync);
  /** Forgets a scoped peer: its sync of each of its documents ends. */
  const unscope = (peer: PeerId, docs: Set<DocumentId>) => {
    peers.delete(peer);
    for (const doc of docs) {
      byDoc.get(doc)?.delete(peer);
      if (byDoc.get(doc)?.size === 0) byDoc.delete(doc);
      sync.docSynchronizers[doc]?.endSync(peer);
    }
  };
  /** Asks for a connected scoped peer's scope again; one that lost it takes the usual path. */
  const refresh = (peer: PeerId) => {
    const scope = scopes.scopeOf(peer);
    if (scope !== undefined) return rescope(peer, scope);
    unscope(peer, peers.get(peer)!);
    addPeer(peer);
  };

  sync.addPeer = (peer) => {
    const scope = scopes.scopeOf(peer);
    if (scope === undefined) return addPeer(peer);
    rescope(peer, scope);
  };
  const removePeer = sync.removePeer.bind(sync);
  sync.removePeer = (peer) => {
    const docs = peers.get(peer);
    if (docs === undefined) return removePeer(peer);
    unscope(peer, docs);
  };
  const addDocument = sync.addDocument.bind(sync);
  sync.addDocument = (handle) => {
    addDocument(handle);
    for (const peer of byDoc.get(handle.documentId) ?? []) begin(handle.documentId, peer);
  };
  const removeDocument = sync.removeDocument.bind(sync);
  // A document leaving the Repo (sync/evict.ts): automerge-repo ends sync only with the peers it
  // knows, so its scoped peers' sync ends here, before the synchronizer goes. They keep it in
  // their scope: addDocument begins it again once the document is set up again (loaded for a
  // message of theirs, or by anyone else).
  sync.removeDocument = (doc) => {
    for (const peer of byDoc.get(doc) ?? []) sync.docSynchronizers[doc]?.endSync(peer);
    removeDocument(doc);
  };
  const receiveMessage = sync.receiveMessage.bind(sync);
  sync.receiveMessage = async (message) => {
    await receiveMessage(message);
    const { senderId: peer, documentId: doc } = message;
    if (!peers.has(peer) || doc === undefined) return;
    // Its scope may have grown since it connected (a document named at a later enrollment), and
    // a document set up by this very message had no synchronizer to begin with before.
    refresh(peer);
    if (peers.get(peer)?.has(doc) === true) begin(doc, peer);
  };
  const reevaluate = sync.reevaluateDocumentShare.bind(sync);
  sync.reevaluateDocumentShare = async () => {
    for (const peer of [...peers.keys()]) refresh(peer);
    await reevaluate();
  };
}
