// Push (sync/push.ts): a single-writer document reaches its holder without automerge-repo's sync
// protocol, over real iroh endpoints on 127.0.0.1 and real stores. What a holder answered is
// durable; a holder that restarts is sent only what it lacks; bad pushes cost their connection.

import * as A from '@automerge/automerge';
import { concatBytes } from '@noble/hashes/utils.js';
import { Repo, type DocHandle, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeCbor } from '../sync/codec.js';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS, ALPN, MAX_FRAME } from '../sync/protocols.js';
import { PushReceiver, PushRoutes, PushSender, type PushVerdict } from '../sync/push.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { FramedStream } from '../sync/framed-stream.js';
import { CloseCode } from '../sync/transport.js';
import { FsStore } from '../stores/fs-store.js';
import { isStored } from '../sync/owned-doc.js';
import { PlainDocs } from '../sync/plain-docs.js';
import { waitFor } from './helpers/wait.js';

type Doc = { items: string[] };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flt-push-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const bind = (secretKey: Uint8Array = randomBytes(32)) =>
  IrohTransport.bind({
    secretKey,
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

/** Whether holders take pushes into plain documents (sync/plain-docs.ts) or Repo handles. */
let plainMode = false;

/**
 * The holder: a Repo on a store in `dir`, taking pushes that `authorize` allows, into the Repo's
 * handles or, in plain mode, into plain documents (a coordinator's set-up).
 */
async function holder(
  dir: string,
  key: Uint8Array,
  authorize: (peer: NodeId, doc: DocumentId) => PushVerdict = () => 'accept',
  /** Save and fsync before each answer; false: the Repo saves on its own, as a coordinator. */
  durable = true,
) {
  const transport = await bind(key);
  const store = await FsStore.open(dir);
  const routes = new PushRoutes();
  const adapter = new SyncAdapter({ transport, push: routes });
  // A pushed document is never offered back to its writer through automerge-repo.
  const writers = new Map<DocumentId, NodeId>();
  const offered = (peer: PeerId, doc?: DocumentId) =>
    Promise.resolve(doc === undefined || writers.get(doc) !== (peer as string));
  const repo = new Repo({
    network: [adapter],
    storage: store,
    peerId: transport.nodeId as string as PeerId,
    shareConfig: { announce: offered, access: offered },
  });
  const plain = plainMode ? new PlainDocs({ store }) : undefined;
  plain?.handOver(repo);
  routes.receiver = new PushReceiver({
    repo,
    ...(plain && { plain }),
    link: adapter,
    authorize: (peer, doc) => {
      const verdict = authorize(peer, doc);
      writers.set(doc, peer);
      return verdict;
    },
    stored: async (doc) => (await store.loadRange([doc])).length > 0,
    ...(durable && {
      durable: async (doc: DocumentId) => {
        await repo.flush([doc]);
        await store.settled(doc);
      },
    }),
  });
  const closed: number[] = [];
  new Router(transport)
    .route(ALPN.sync, async (c) => {
      void c.closed.then((info) => closed.push(info.code ?? -1));
      await adapter.accept(c);
    })
    .start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await plain?.close();
    await repo.shutdown();
    await transport.close();
    await store.close();
  };
  cleanups.push(stop);
  /** The holder's copy of `doc`, wherever it holds it. */
  const held = (doc: DocumentId): A.Doc<Doc> | undefined => {
    const handle = repo.handles[doc] as DocHandle<Doc> | undefined;
    return plain?.get<Doc>(doc) ?? (handle?.isReady() ? handle.doc() : undefined);
  };
  return { transport, repo, routes, adapter, store, closed, stop, held };
}

/** A writer of one document, pushing it to `to` (never sharing it through automerge-repo). */
async function writer(
  to: IrohTransport | { nodeId: NodeId; addr: () => ReturnType<IrohTransport['addr']> },
) {
  const dir = await tempDir();
  const transport = await bind();
  const store = await FsStore.open(dir);
  const routes = new PushRoutes();
  const adapter = new SyncAdapter({
    transport,
    dial: [to.addr()],
    push: routes,
    backoff: { initialMs: 50, maxMs: 300 },
  });
  const pushed = new Set<DocumentId>();
  const repo = new Repo({
    network: [adapter],
    storage: store,
    peerId: transport.nodeId as string as PeerId,
    shareConfig: {
      announce: (_peer, doc) => Promise.resolve(doc === undefined || !pushed.has(doc)),
      access: (_peer, doc) => Promise.resolve(doc === undefined || !pushed.has(doc)),
    },
  });
  const sender = new PushSender({
    link: adapter,
    peer: to.nodeId,
    durable: async (doc) => {
      await repo.flush([doc]);
      await store.settled(doc);
    },
  });
  routes.sender = sender;
  const handle = repo.create<Doc>({ items: [] });
  pushed.add(handle.documentId);
  sender.track(handle);
  cleanups.push(async () => {
    await repo.shutdown();
    await transport.close();
    await store.close();
  });
  return { transport, repo, sender, handle, adapter };
}

const items = (h: DocHandle<Doc>) => [...h.doc().items];

function heldItems(
  h: { held: (doc: DocumentId) => A.Doc<Doc> | undefined },
  doc: DocumentId,
): string[] | undefined {
  const value = h.held(doc);
  return value === undefined ? undefined : [...value.items];
}

describe.each([
  ['into Repo handles', false],
  ['into plain documents', true],
])('push (sync/push.ts), %s', (_name, plainDocs) => {
  beforeAll(() => void (plainMode = plainDocs));

  it('delivers a writer’s changes without automerge-repo sync messages about the document', async () => {
    const h = await holder(await tempDir(), randomBytes(32));
    const repoMessages: string[] = [];
    h.adapter.on('message', (m) => {
      if ('documentId' in m) repoMessages.push(`${m.type} ${m.documentId as string}`);
    });
    const w = await writer(h.transport);
    for (let i = 0; i < 20; i++) w.handle.change((d) => void d.items.push(`i${i}`));
    const want = items(w.handle);
    await waitFor('the holder has every item', () => {
      const got = heldItems(h, w.handle.documentId);
      return got?.length === want.length;
    });
    expect(heldItems(h, w.handle.documentId)).toEqual(want);
    await waitFor('the writer knows the holder is in sync', () =>
      w.sender.inSync(w.handle.documentId),
    );
    expect(repoMessages.filter((d) => d.endsWith(w.handle.documentId))).toEqual([]);
    expect(h.routes.receiver!.counts.taken).toBeGreaterThan(0);
    // Plain: taken without a handle in the Repo.
    expect(h.repo.handles[w.handle.documentId] === undefined).toBe(plainDocs);
  });

  it('what the holder answered survives its restart, and a restarted holder is sent only what it lacks', async () => {
    const dir = await tempDir();
    const key = randomBytes(32);
    let h = await holder(dir, key);
    const w = await writer(h.transport);
    w.handle.change((d) => void d.items.push('before'));
    await waitFor('in sync', () => w.sender.inSync(w.handle.documentId));
    const addr = h.transport.addr();
    await h.stop(); // answered: on disk, whatever happens next
    w.handle.change((d) => void d.items.push('while away'));
    h = await holder(dir, key);
    expect(h.transport.nodeId).toBe(addr.nodeId);
    w.adapter.addPeer(h.transport.addr()); // its new port
    await waitFor('in sync again', () => w.sender.inSync(w.handle.documentId), 30_000);
    expect(heldItems(h, w.handle.documentId)).toEqual(['before', 'while away']);
    await h.stop();
    const reread = await FsStore.open(dir);
    cleanups.push(() => reread.close());
    const chunks = await reread.loadRange([w.handle.documentId]);
    const doc = A.loadIncremental(A.init<Doc>(), concatBytes(...chunks.map((c) => c.data!)));
    expect([...doc.items]).toEqual(['before', 'while away']);
  });

  it('a document new to a holder that answers before saving is saved without a further change', async () => {
    const h = await holder(await tempDir(), randomBytes(32), () => 'accept', false);
    const w = await writer(h.transport);
    w.handle.change((d) => void d.items.push('only'));
    await waitFor('in sync', () => w.sender.inSync(w.handle.documentId));
    // No change after the one push: only a save of the import itself puts it on disk.
    const doc = w.handle.documentId;
    await waitFor('the holder stored it', () => isStored(h.store, doc), 10_000);
    expect(h.routes.receiver!.counts.taken).toBe(1);
  });

  it('a push of a change that does not decode costs its connection and stores nothing', async () => {
    const h = await holder(await tempDir(), randomBytes(32));
    const good = await writer(h.transport);
    good.handle.change((d) => void d.items.push('ok'));
    await waitFor('in sync', () => good.sender.inSync(good.handle.documentId));
    const rogue = await bind();
    cleanups.push(() => rogue.close());
    /** Pushes `change` for `doc` on a connection of its own; resolves with how it was closed. */
    const garbage = async (doc: DocumentId, change: Uint8Array) => {
      const conn = await rogue.connect(h.transport.addr(), ALPN.sync);
      const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.sync]);
      await framed.writeFrame(
        encodeCbor({ v: 0, type: 'hello', peerId: rogue.nodeId, meta: { push: 0 } }),
      );
      await framed.writeFrame(
        encodeCbor({
          type: 'flt-push',
          senderId: rogue.nodeId,
          targetId: h.transport.nodeId,
          documentId: doc,
          heads: [],
          changes: [change],
        }),
      );
      return conn.closed;
    };
    // A new document (made by the push) and one the holder has loaded (changed by it).
    const doc = 'rogueDoc1111111111111111111' as DocumentId;
    expect((await garbage(doc, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]))).code).toBe(
      CloseCode.PROTOCOL_ERROR,
    );
    expect(await h.store.loadRange([doc])).toEqual([]);
    expect(h.held(doc)).toBeUndefined();
    const before = A.getHeads(h.held(good.handle.documentId)!);
    const real = A.getLastLocalChange(good.handle.doc())!;
    const broken = real.slice();
    broken[broken.length - 3]! ^= 0xff;
    const info = await garbage(good.handle.documentId, broken);
    expect(info.code).toBe(CloseCode.PROTOCOL_ERROR);
    expect(A.getHeads(h.held(good.handle.documentId)!)).toEqual(before);
    // The holder goes on serving its good writer.
    good.handle.change((d) => void d.items.push('still'));
    await waitFor('in sync', () => good.sender.inSync(good.handle.documentId));
    expect(heldItems(h, good.handle.documentId)).toEqual(['ok', 'still']);
  });

  it('a push the holder refuses closes the connection as unauthorized; a dropped one is not taken', async () => {
    const refused = await holder(await tempDir(), randomBytes(32), () => {
      throw new FltError('UNAUTHORIZED_PEER', 'not yours');
    });
    const w1 = await writer(refused.transport);
    w1.handle.change((d) => void d.items.push('x'));
    await waitFor('the connection was refused', () =>
      refused.closed.includes(CloseCode.UNAUTHORIZED),
    );
    expect(refused.held(w1.handle.documentId)).toBeUndefined();

    const dropping = await holder(await tempDir(), randomBytes(32), () => 'drop');
    const w2 = await writer(dropping.transport);
    w2.handle.change((d) => void d.items.push('y'));
    await waitFor(
      'the writer gave up for this session',
      () =>
        (w2.sender as unknown as { docs: Map<string, { stuck: boolean }> }).docs.get(
          w2.handle.documentId,
        )?.stuck,
    );
    expect(heldItems(dropping, w2.handle.documentId)).toBeUndefined();
    expect(dropping.routes.receiver!.counts.taken).toBe(0);
  });

  it('a peer that does not speak push is never sent a push, and its push messages are ignored', async () => {
    const transport = await bind();
    const plain = new SyncAdapter({ transport });
    const plainRepo = new Repo({ network: [plain], peerId: transport.nodeId as string as PeerId });
    const seen: string[] = [];
    plain.on('message', (m) => seen.push(m.type));
    new Router(transport).route(ALPN.sync, (c) => plain.accept(c)).start();
    cleanups.push(async () => {
      await plainRepo.shutdown();
      await transport.close();
    });
    const w = await writer(transport);
    await waitFor('connected', () => w.adapter.connectedPeers().includes(transport.nodeId));
    expect(w.adapter.speaksPush(transport.nodeId)).toBe(false);
    w.handle.change((d) => void d.items.push('z'));
    await w.repo.flush();
    expect(w.sender.inSync(w.handle.documentId)).toBe(false);
    expect(seen.filter((t) => t.startsWith('flt-'))).toEqual([]);
  });
});
