// sync/stored-heads.ts: a document's mark (the heads its store holds at least) survives in the
// node's marks (stores/journal.ts), a malformed one counts as none, and only a peer that says it holds exactly those heads,
// asks for nothing and sends nothing is answered; the answer leaves that peer with nothing more
// to send.

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import {
  generateAutomergeUrl,
  parseAutomergeUrl,
  type DocumentId,
  type Message,
  type PeerId,
} from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MarkStore, StoredHeads } from '../sync/stored-heads.js';
import { Journal, readJournal } from '../stores/journal.js';
import { tempDir } from './helpers/flt.js';

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

/** Marks in memory (the answer's tests): what a Journal is, without its file. */
class MemoryMarks implements MarkStore {
  readonly map = new Map<string, string>();
  sets = 0;
  get(key: string) {
    return this.map.get(key);
  }
  set(key: string, value: string | undefined) {
    this.sets++;
    if (value === undefined) this.map.delete(key);
    else this.map.set(key, value);
    return Promise.resolve();
  }
}

describe('StoredHeads', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());
  const open = (name: string) =>
    Journal.open(join(dir.path, name), { accept: StoredHeads.accepts });

  it('a recorded mark is known at once to a new instance on the reopened journal', async () => {
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    const journal = await open('reopen');
    await new StoredHeads(journal).record(doc, heads);
    await journal.close();
    const reopened = await open('reopen');
    const again = new StoredHeads(reopened);
    expect(again.peek(doc)).toBe(heads.join(','));
    expect(again.peek(newDocId())).toBeUndefined();
    await reopened.close();
  });

  it('a mark known already is not written again', async () => {
    const store = new MemoryMarks();
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    const marks = new StoredHeads(store);
    await marks.record(doc, heads);
    await marks.record(doc, heads);
    expect(store.sets).toBe(1);
    // Another instance (a coordinator started again) on the same marks: no write either.
    await new StoredHeads(store).record(doc, heads);
    expect(store.sets).toBe(1);
  });

  it('a malformed mark counts as none, and heads that are not hashes are not recorded', async () => {
    const doc = newDocId();
    const other = newDocId();
    const [h1, h2] = [A.getHeads(A.from({ n: 1 }))[0]!, A.getHeads(A.from({ n: 2 }))[0]!].sort();
    const journal = await Journal.open(join(dir.path, 'malformed'));
    await journal.set(doc, 'not,heads');
    await journal.set(other, `${h2},${h1}`); // unsorted: not a mark this code writes
    await journal.close();
    const reopened = await open('malformed');
    const marks = new StoredHeads(reopened);
    expect([marks.peek(doc), marks.peek(other)]).toEqual([undefined, undefined]);
    await marks.record(doc, ['xyz']);
    await marks.record(doc, []);
    expect(marks.peek(doc)).toBeUndefined();
    await marks.record(other, [h2!, h1!]);
    expect(marks.peek(other)).toBe(`${h1},${h2}`);
    await reopened.close();
  });

  it('forget removes a mark at once, and durably once it resolves, after a record asked before it', async () => {
    const doc = newDocId();
    const heads = A.getHeads(A.from({ n: 1 }));
    const journal = await open('forget');
    const marks = new StoredHeads(journal);
    await marks.record(doc, heads);
    // A record and a forget asked in one step: the forget wins, in memory and on disk.
    const recording = marks.record(doc, A.getHeads(A.from({ n: 2 })));
    const forgetting = marks.forget(doc);
    expect(marks.peek(doc)).toBeUndefined();
    await Promise.all([recording, forgetting]);
    expect((await readJournal(journal.file))?.entries.has(doc)).toBe(false);
    await journal.close();
    const reopened = await open('forget');
    expect(new StoredHeads(reopened).peek(doc)).toBeUndefined();
    await reopened.close();
  });

  it('answers a peer at exactly the marked heads, and the peer then has nothing to send', async () => {
    const marks = new StoredHeads(new MemoryMarks());
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
    const marks = new StoredHeads(new MemoryMarks());
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
