// changesIn counts the Automerge changes in a sync message, not its chunks: an empty document's
// whole-document chunk (what a peer without the document answers a request with) is no write
// (issue 9.3: the coordinator dropped an admin's connection for it).

import * as A from '@automerge/automerge';
import type { DocumentId, Message, PeerId } from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { changesIn } from '../sync/changes.js';

/** The sync message `holder` sends to a peer that holds nothing and has just said so. */
function answerToEmptyPeer(holder: A.Doc<unknown>): Uint8Array {
  const [, hello] = A.generateSyncMessage(A.init(), A.initSyncState());
  const [doc, state] = A.receiveSyncMessage(holder, A.initSyncState(), hello!);
  const [, answer] = A.generateSyncMessage(doc, state);
  return answer!;
}

const message = (data: Uint8Array): Message => ({
  type: 'sync',
  senderId: 'a' as PeerId,
  targetId: 'b' as PeerId,
  documentId: 'doc' as DocumentId,
  data,
});

describe('changesIn', () => {
  it('counts no change in an empty document chunk', () => {
    const data = answerToEmptyPeer(A.init());
    const chunks = A.decodeSyncMessage(data).changes;
    expect(chunks).toHaveLength(1); // the chunk is there: counting chunks would say 1
    expect(changesIn(message(data))).toBe(0);
  });

  it('counts every change inside a whole-document chunk', () => {
    let doc = A.change(A.init<{ n?: number }>(), (d) => (d.n = 1));
    doc = A.change(doc, (d) => (d.n = 2));
    doc = A.change(doc, (d) => (d.n = 3));
    expect(changesIn(message(answerToEmptyPeer(doc)))).toBe(3);
  });

  it('counts change chunks one each', () => {
    const base = A.change(A.init<{ n?: number }>(), (d) => (d.n = 1));
    let next = A.change(base, (d) => (d.n = 2));
    next = A.change(next, (d) => (d.n = 3));
    const changes = A.getChanges(base, next);
    const data = A.encodeSyncMessage({ heads: A.getHeads(next), need: [], have: [], changes });
    expect(changesIn(message(data))).toBe(2);
  });

  it('refuses an undecodable message with BAD_MESSAGE', () => {
    expect(() => changesIn(message(new Uint8Array([1, 2, 3])))).toThrow(
      expect.objectContaining({ code: 'BAD_MESSAGE' }),
    );
  });
});
