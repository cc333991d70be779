// sync/stored-heads.ts: a document's mark (the heads its store holds at least) survives in the
// store, a malformed one counts as none, and only a peer that says it holds exactly those heads,
// asks for nothing and sends nothing is answered; the answer leaves that peer with nothing more
// to send.

import * as A from '@automerge/automerge';
import {
  generateAutomergeUrl,
  parseAutomergeUrl,
  type DocumentId,
  type Message,
  type PeerId,
} from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { HEADS_KEY, StoredHeads } from '../sync/stored-heads.js';
import { MemoryStore } from '../stores/memory-store.js';

const newDocId = (): DocumentId => parseAutomergeUrl(generateAutomergeUrl()).documentId;

/** The first sync message a peer holding `doc` sends (as automerge-repo's does on connecting). */
function firstMessage(doc: A.Doc<unknown>, documentId: DocumentId): Message {
  const [, data] = A.generateSyncMessage(doc, A.initSyncState());
  return {
    type: 'sync',
    senderId: 'agent' as PeerId,
    targetId: 'coordinator' as PeerId,
    documentId,
    data: data!,
  };
}

describe('StoredHeads', () => {
  it('a recorded mark is read back by a new instance on the same store', async () => {
    const store = new MemoryStore();
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    await new StoredHeads(store).record(doc, heads);
    const again = new StoredHeads(store);
    expect(again.peek(doc)).toBeUndefined();
    expect(await again.read(doc)).toBe(heads.join(','));
    expect(again.peek(doc)).toBe(heads.join(','));
    expect(await again.read(newDocId())).toBeUndefined();
  });

  it('a mark known or stored already is not written again; one whose write failed is, next time', async () => {
    const store = new MemoryStore();
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    const save = store.save.bind(store);
    let saves = 0;
    let fail = true;
    store.save = async (key, data) => {
      saves++;
      if (fail) throw new Error('disk full');
      return save(key, data);
    };
    const marks = new StoredHeads(store);
    await expect(marks.record(doc, heads)).rejects.toThrow('disk full');
    expect(marks.peek(doc)).toBeUndefined(); // not written: not known
    fail = false;
    await marks.record(doc, heads);
    await marks.record(doc, heads);
    expect(saves).toBe(2);
    // Another instance (a coordinator started again) finds it in the store: no write either.
    const again = new StoredHeads(store);
    await again.record(doc, heads);
    expect(saves).toBe(2);
    expect(await again.read(doc)).toBe(heads.join(','));
  });

  it('a malformed mark counts as none, and heads that are not hashes are not recorded', async () => {
    const store = new MemoryStore();
    const doc = newDocId();
    await store.save([doc, HEADS_KEY], new TextEncoder().encode('not,heads'));
    expect(await new StoredHeads(store).read(doc)).toBeUndefined();
    const marks = new StoredHeads(store);
    await marks.record(doc, ['xyz']);
    await marks.record(doc, []);
    expect(marks.peek(doc)).toBeUndefined();
  });

  it('forget removes a mark from memory and the store, after a record asked before it', async () => {
    const store = new MemoryStore();
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    const marks = new StoredHeads(store);
    await marks.record(doc, heads);
    // A read of the store in flight, a record and a forget asked in one step: the forget wins.
    const again = new StoredHeads(store);
    const reading = again.read(doc);
    void again.record(doc, heads);
    const forgetting = again.forget(doc);
    expect(again.peek(doc)).toBeUndefined();
    await Promise.all([reading, forgetting]);
    expect(again.peek(doc)).toBeUndefined();
    expect(await again.read(doc)).toBeUndefined();
    expect(await store.load([doc, HEADS_KEY])).toBeUndefined();
    expect(await new StoredHeads(store).read(doc)).toBeUndefined();
  });

  it('answers a peer at exactly the marked heads, and the peer then has nothing to send', async () => {
    const marks = new StoredHeads(new MemoryStore());
    const documentId = newDocId();
    let agent = A.from({ n: 1 });
    await marks.record(documentId, A.getHeads(agent));
    const message = firstMessage(agent, documentId);
    const reply = marks.answer(message);
    expect(reply).toMatchObject({
      type: 'sync',
      senderId: 'coordinator',
      targetId: 'agent',
      documentId,
    });
    // The peer, with the sync state its first message left, takes the answer: nothing more to say.
    let state = A.initSyncState();
    [state] = A.generateSyncMessage(agent, state);
    [agent, state] = A.receiveSyncMessage(agent, state, (reply as { data: Uint8Array }).data);
    const [, next] = A.generateSyncMessage(agent, state);
    expect(next).toBeNull();
  });

  it('does not answer a peer with other heads, changes, needs, or an unmarked document', async () => {
    const marks = new StoredHeads(new MemoryStore());
    const documentId = newDocId();
    const v1 = A.from({ n: 1 });
    await marks.record(documentId, A.getHeads(v1));
    const v2 = A.change(A.clone(v1), (d) => void (d.n = 2));
    expect(marks.answer(firstMessage(v2, documentId))).toBeUndefined();
    expect(marks.answer(firstMessage(v1, newDocId()))).toBeUndefined();
    // A message that carries a change, and one that asks for one.
    const withChange = A.encodeSyncMessage({
      heads: A.getHeads(v1),
      need: [],
      have: [],
      changes: A.getAllChanges(v1),
    });
    const needing = A.encodeSyncMessage({
      heads: A.getHeads(v1),
      need: A.getHeads(v2),
      have: [],
      changes: [],
    });
    for (const data of [withChange, needing])
      expect(marks.answer({ ...firstMessage(v1, documentId), data })).toBeUndefined();
    // Not a sync message, and undecodable bytes: the usual path.
    const request = { ...firstMessage(v1, documentId), type: 'request' };
    expect(marks.answer(request)).toBeUndefined();
    const garbage = { ...firstMessage(v1, documentId), data: new Uint8Array([1, 2, 3]) };
    expect(marks.answer(garbage as Message)).toBeUndefined();
  });
});
