// THREATS row 6: a peer that claims another sender than its authenticated node id, in its hello
// or in a message, loses its connection (close code 3); the Repo never hears the claim, and the
// document it targets is unchanged. A raw client crafts the frames with sync/'s own codecs.

import { randomBytes } from 'node:crypto';
import * as A from '@automerge/automerge';
import { Repo, type DocHandle, type PeerId } from '@automerge/automerge-repo';
import { getPublicKeyAsync } from '@noble/ed25519';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeCbor, encodeCbor } from '../sync/codec.js';
import { FramedStream } from '../sync/framed-stream.js';
import { nodeIdFromBytes, type NodeId } from '../sync/ids.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS, ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { SYNC_VERSION } from '../sync/sync-wire.js';
import { CloseCode, type Connection, type Transport } from '../sync/transport.js';
import { waitFor } from './helpers/wait.js';

type Doc = { items: string[] };

const open: Transport[] = [];
let repo: Repo | undefined;
afterEach(async () => {
  await repo?.shutdown();
  repo = undefined;
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function bind(): Promise<IrohTransport> {
  const t = await IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });
  open.push(t);
  return t;
}

/** Another valid node id: a real key, just not the sender's. */
async function someoneElse(): Promise<NodeId> {
  return nodeIdFromBytes(await getPublicKeyAsync(randomBytes(32)));
}

/** A real Automerge sync message that, applied to `base`, appends `item` to its list. */
function syncMessageAdding(base: A.Doc<Doc>, item: string): Uint8Array {
  let ours = A.change(A.load<Doc>(A.save(base)), (d) => void d.items.push(item));
  let theirs = A.load<Doc>(A.save(base));
  let [s1, s2] = [A.initSyncState(), A.initSyncState()];
  let m: Uint8Array | null;
  // One exchange of heads, as a real peer does, so that the next message carries the change.
  [s1, m] = A.generateSyncMessage(ours, s1);
  [theirs, s2] = A.receiveSyncMessage(theirs, s2, m!);
  [, m] = A.generateSyncMessage(theirs, s2);
  [ours, s1] = A.receiveSyncMessage(ours, s1, m!);
  [, m] = A.generateSyncMessage(ours, s1);
  if (!m) throw new Error('no sync message carrying the change');
  // It really would change the document: apply it to a fresh replica.
  const [applied] = A.receiveSyncMessage(A.load<Doc>(A.save(base)), A.initSyncState(), m);
  expect(applied.items).toContain(item);
  return m;
}

describe('sender mismatch on flt/sync/0', () => {
  let server: IrohTransport;
  let adapter: SyncAdapter;
  let handle: DocHandle<Doc>;
  const events: { event: 'candidate' | 'disconnected'; peer: string }[] = [];

  beforeEach(async () => {
    events.length = 0;
    server = await bind();
    adapter = new SyncAdapter({ transport: server, handshakeTimeoutMs: 5000 });
    adapter.on('peer-candidate', ({ peerId }) => events.push({ event: 'candidate', peer: peerId }));
    adapter.on('peer-disconnected', ({ peerId }) =>
      events.push({ event: 'disconnected', peer: peerId }),
    );
    new Router(server).route(ALPN.sync, (c) => adapter.accept(c)).start();
    repo = new Repo({ network: [adapter], peerId: server.nodeId as string as PeerId });
    handle = repo.create<Doc>({ items: ['base'] });
  });

  /** A raw client session: its connection and a framed stream with `hello` already sent. */
  async function rawSession(claimedPeerId?: string) {
    const client = await bind();
    const conn: Connection = await client.connect(server.addr(), ALPN.sync, { timeoutMs: 5000 });
    const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.sync]);
    const hello = {
      v: SYNC_VERSION,
      type: 'hello',
      peerId: claimedPeerId ?? client.nodeId,
      meta: {},
    };
    await framed.writeFrame(encodeCbor(hello));
    return { client, conn, framed };
  }

  /** Sends a `sync` message for the server's document, claiming `senderId`. */
  async function sendSync(framed: FramedStream, senderId: string, data: Uint8Array) {
    const msg = {
      type: 'sync',
      senderId,
      targetId: server.nodeId,
      documentId: handle.documentId,
      data,
    };
    await framed.writeFrame(encodeCbor(msg));
  }

  it('a hello claiming another node id is refused before the Repo hears of the peer', async () => {
    const claimed = await someoneElse();
    const { client, conn, framed } = await rawSession(claimed);
    expect(await conn.closed).toMatchObject({ code: CloseCode.SENDER_MISMATCH, byPeer: true });
    // The server never answered with its own hello.
    await framed.readFrame().then(
      (frame) => expect(frame).toBeNull(),
      (err: unknown) => expect((err as { code?: string }).code).toBe('CONNECTION_LOST'),
    );
    // An honest peer is announced (so the listener works), the impostor never was.
    const honest = await rawSession();
    await waitFor('the honest peer is announced', () =>
      events.some((e) => e.event === 'candidate' && e.peer === honest.client.nodeId),
    );
    expect(events.map((e) => e.peer)).not.toContain(client.nodeId);
    expect(events.map((e) => e.peer)).not.toContain(claimed);
    expect(adapter.connectedPeers()).toEqual([honest.client.nodeId]);
  });

  it('a sync message claiming another sender closes the connection; the document is unchanged', async () => {
    const before = handle.doc();
    const evil = syncMessageAdding(before, 'evil');
    const good = syncMessageAdding(before, 'good');

    const { client, conn, framed } = await rawSession();
    const hello = decodeCbor((await framed.readFrame())!) as { type: string; peerId: string };
    expect(hello).toMatchObject({ type: 'hello', peerId: server.nodeId });
    await waitFor('the raw peer is announced', () =>
      events.some((e) => e.event === 'candidate' && e.peer === client.nodeId),
    );

    await sendSync(framed, await someoneElse(), evil);
    expect(await conn.closed).toMatchObject({ code: CloseCode.SENDER_MISMATCH, byPeer: true });
    await waitFor('the adapter reports the peer gone', () =>
      events.some((e) => e.event === 'disconnected' && e.peer === client.nodeId),
    );
    expect(adapter.connectedPeers()).toEqual([]);

    // Control: the same kind of message with the true sender is applied. Messages are handled
    // in order, so once "good" is in, "evil" would have been too had it been let through.
    const honest = await rawSession();
    await honest.framed.readFrame(); // its hello
    await waitFor('the honest peer is announced', () =>
      events.some((e) => e.event === 'candidate' && e.peer === honest.client.nodeId),
    );
    await sendSync(honest.framed, honest.client.nodeId, good);
    await waitFor('the honest change arrives', () => handle.doc().items.includes('good'));
    expect(handle.doc().items).toEqual(['base', 'good']);
  });
});
