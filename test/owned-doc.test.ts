// OwnedDoc (sync/owned-doc.ts), the one home of the single-writer document: one write key gives
// the id, the base, the signed heads (signed again only when the heads move, seq strictly
// increasing and above what we signed before) and the guard that refuses others' changes.

import * as A from '@automerge/automerge';
import { Repo, type DocumentId, type Message, type PeerId } from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { deriveKeyPair, generateNodeKey } from '../src/identity/index.js';
import {
  baseDocument,
  docIdFor,
  OwnedDoc,
  signHeads,
  verifySignedHeads,
} from '../sync/owned-doc.js';
import { thrownCode } from './helpers/errors.js';
import { MemoryStore } from '../stores/memory-store.js';

interface Doc {
  kind: string;
  n?: number;
}

const empty = new MemoryStore();
const writeKey = () => deriveKeyPair(generateNodeKey().secret, 'flt/v1/doc/facts');

/** A sync message carrying the changes from `from` to `to` for `docId`. */
function changes(docId: DocumentId, from: A.Doc<Doc>, to: A.Doc<Doc>): Message {
  const data = A.encodeSyncMessage({
    heads: A.getHeads(to),
    need: [],
    have: [],
    changes: A.getChanges(from, to),
  });
  return {
    type: 'sync',
    senderId: 'p' as PeerId,
    targetId: 'q' as PeerId,
    documentId: docId,
    data,
  };
}

describe('OwnedDoc', () => {
  it('derives its id from the write key and opens from the deterministic base', async () => {
    const key = writeKey();
    const owned = new OwnedDoc<Doc>(key);
    expect(owned.docId).toBe(docIdFor(key.publicKey));
    expect(owned.handle).toBeUndefined();
    expect(thrownCode(() => owned.signed())).toBe('INTERNAL');
    const handle = await owned.open(new Repo({}), empty, { kind: 'test' });
    expect(owned.handle).toBe(handle);
    const base = A.load<Doc>(baseDocument(owned.docId, { kind: 'test' }));
    expect(A.getHeads(handle.doc())).toEqual(A.getHeads(base));
  });

  it('signs again only when the heads move, with a strictly increasing seq', async () => {
    const owned = new OwnedDoc<Doc>(writeKey());
    const handle = await owned.open(new Repo({}), empty, { kind: 'test' });
    const first = owned.signed();
    expect(owned.signed()).toBe(first);
    expect(verifySignedHeads(first, { docId: owned.docId, writeKey: owned.writeKey })).toEqual(
      first,
    );
    handle.change((d) => void (d.n = 1));
    const second = owned.signed();
    expect(second.seq).toBeGreaterThan(first.seq);
    expect(second.heads).toEqual(A.getHeads(handle.doc()));
    expect(owned.signed()).toBe(second);
  });

  it('signs above every seq it verified as its own, and refuses another writer', async () => {
    const key = writeKey();
    const owned = new OwnedDoc<Doc>(key);
    const handle = await owned.open(new Repo({}), empty, { kind: 'test' });
    const future = Date.now() + 3_600_000;
    owned.verifyOwn(
      signHeads(owned.docId, future, A.getHeads(handle.doc()), key.secret, key.publicKey),
    );
    handle.change((d) => void (d.n = 2));
    expect(owned.signed().seq).toBe(future + 1);
    const other = writeKey();
    const forged = signHeads(owned.docId, 1, [], other.secret, other.publicKey);
    expect(thrownCode(() => owned.verifyOwn(forged))).toBe('BAD_SIGNATURE');
  });

  it('admits changes before it is open, refuses new ones after, and takes resends', async () => {
    const owned = new OwnedDoc<Doc>(writeKey());
    const base = A.load<Doc>(baseDocument(owned.docId, { kind: 'test' }));
    const theirs = A.change(A.clone(base), (d) => void (d.n = 9));
    const write = changes(owned.docId, base, theirs);
    expect(() => owned.admit('p', write)).not.toThrow(); // restoring: not open yet
    const handle = await owned.open(new Repo({}), empty, { kind: 'test' });
    expect(thrownCode(() => owned.admit('p', write))).toBe('UNAUTHORIZED_PEER');
    // Another document's changes are not this guard's business.
    expect(() => owned.admit('p', { ...write, documentId: 'other' as DocumentId })).not.toThrow();
    // A resend of what we hold changes nothing.
    handle.change((d) => void (d.n = 1));
    const resend = changes(owned.docId, base, handle.doc());
    expect(() => owned.admit('p', resend)).not.toThrow();
  });

  it('admits, while behind, exactly the history up to heads it signed', async () => {
    const key = writeKey();
    const owned = new OwnedDoc<Doc>(key);
    const base = A.load<Doc>(baseDocument(owned.docId, { kind: 'test' }));
    const later = A.change(A.clone(base), (d) => void (d.n = 5));
    const beyond = A.change(A.clone(later), (d) => void (d.n = 6));
    await owned.open(new Repo({}), empty, { kind: 'test' });
    owned.behind = owned.verifyOwn(
      signHeads(owned.docId, 7, A.getHeads(later), key.secret, key.publicKey),
    );
    expect(() => owned.admit('p', changes(owned.docId, base, later))).not.toThrow();
    expect(thrownCode(() => owned.admit('p', changes(owned.docId, base, beyond)))).toBe(
      'UNAUTHORIZED_PEER',
    );
  });
});
