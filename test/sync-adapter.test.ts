import { Repo, type AutomergeUrl, type DocHandle, type PeerId } from '@automerge/automerge-repo';
import { getPublicKeyAsync } from '@noble/ed25519';
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { IrohTransport } from '../sync/iroh-transport.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { nodeIdFromBytes, type NodeId } from '../sync/ids.js';
import { CloseCode, type Connection, type PeerAddr, type Transport } from '../sync/transport.js';
import { withDeadline } from '../sync/deadline.js';
import { codeOf } from '../sync/errors.js';
import { silentLogger } from '../sync/log.js';
import { MemoryStore } from '../stores/memory-store.js';
import { thrownCode } from './helpers/errors.js';
import { waitFor } from './helpers/wait.js';

type Doc = { items: string[] };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function node(transport: Transport, dial: PeerAddr[] = [], handshakeTimeoutMs?: number) {
  const adapter = new SyncAdapter({
    transport,
    dial,
    backoff: { initialMs: 20, maxMs: 200 },
    handshakeTimeoutMs,
  });
  const accepted: Connection[] = [];
  new Router(transport)
    .route(ALPN.sync, (c) => {
      accepted.push(c);
      return adapter.accept(c);
    })
    .start();
  // The adapter's events for one peer, in order (listening before the Repo starts any dial).
  const events: { event: 'candidate' | 'disconnected'; peer: string }[] = [];
  adapter.on('peer-candidate', ({ peerId }) => events.push({ event: 'candidate', peer: peerId }));
  adapter.on('peer-disconnected', ({ peerId }) =>
    events.push({ event: 'disconnected', peer: peerId }),
  );
  const repo = new Repo({ network: [adapter], peerId: transport.nodeId as string as PeerId });
  cleanups.push(async () => {
    await repo.shutdown();
    await transport.close();
  });
  const eventsFor = (peer: string) => events.filter((e) => e.peer === peer).map((e) => e.event);
  return { repo, adapter, accepted, eventsFor };
}

/** Finds a document, retrying while the first sync is still on its way. */
function findDoc(repo: Repo, url: AutomergeUrl): Promise<DocHandle<Doc>> {
  return waitFor('the doc is found', async () => {
    try {
      return await repo.find<Doc>(url);
    } catch {
      return undefined;
    }
  });
}

/** The node id of a fresh key pair that no endpoint uses. */
async function unusedNodeId(): Promise<NodeId> {
  return nodeIdFromBytes(await getPublicKeyAsync(randomBytes(32)));
}

const iroh = () =>
  IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

describe.each([
  [
    'memory',
    () => {
      const net = new MemoryNetwork();
      return () => Promise.resolve(net.bind(ALL_ALPNS));
    },
  ],
  ['iroh', () => iroh],
] as const)('sync adapter over %s', (_name, makeFactory) => {
  it('syncs one document both ways', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = node(ta);
    const b = node(tb, [ta.addr()]);
    const ha = a.repo.create<Doc>({ items: ['from-a'] });
    const hb = await waitFor('b finds the doc', async () => {
      try {
        return await b.repo.find<Doc>(ha.url);
      } catch {
        return undefined;
      }
    });
    hb.change((d) => void d.items.push('from-b'));
    await waitFor('a sees b', () => ha.doc().items.includes('from-b'));
    expect(hb.doc().items).toEqual(['from-a', 'from-b']);
  });

  it('addPeer before the Repo has connected the adapter dials once it has: no refused hello', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = node(ta);
    const adapter = new SyncAdapter({ transport: tb, backoff: { initialMs: 20, maxMs: 200 } });
    new Router(tb).route(ALPN.sync, (c) => adapter.accept(c)).start();
    adapter.addPeer(ta.addr()); // no peer id yet: it must not say hello without one
    const repo = new Repo({ network: [adapter], peerId: tb.nodeId as string as PeerId });
    cleanups.push(async () => {
      await repo.shutdown();
      await tb.close();
    });
    await waitFor('A sees B', () => a.eventsFor(tb.nodeId).includes('candidate'));
    expect(a.accepted).toHaveLength(1);
    expect(a.eventsFor(tb.nodeId)).toEqual(['candidate']);
  });

  it('a dropped connection: B reports the peer gone before it is back, then syncs again', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = node(ta);
    const b = node(tb, [ta.addr()]);
    const ha = a.repo.create<Doc>({ items: ['v1'] });
    const hb = await findDoc(b.repo, ha.url);
    expect(b.eventsFor(ta.nodeId)).toEqual(['candidate']);

    // A drops B's connection (as a coordinator going away mid-sync would).
    expect(a.accepted).toHaveLength(1);
    a.accepted[0]!.close(CloseCode.SHUTDOWN, 'test: drop');
    await waitFor(
      'B redials A',
      // A accepts the new connection before the hello exchange announces it: wait for both sides.
      () =>
        a.accepted.length === 2 &&
        b.eventsFor(ta.nodeId).length >= 3 &&
        a.eventsFor(tb.nodeId).length >= 3,
    );
    expect(b.eventsFor(ta.nodeId)).toEqual(['candidate', 'disconnected', 'candidate']);
    expect(a.eventsFor(tb.nodeId)).toEqual(['candidate', 'disconnected', 'candidate']);
    expect(b.adapter.connectedPeers()).toEqual([ta.nodeId]);

    // Changes made after the reconnect flow both ways.
    await syncsBothWays(ha, hb);
  });

  it('disconnect() then connect(): the adapter redials, accepts redials and syncs again', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = node(ta);
    const b = node(tb, [ta.addr()]);
    const ha = a.repo.create<Doc>({ items: ['v1'] });
    const hb = await findDoc(b.repo, ha.url);
    const peers = () => [a.eventsFor(tb.nodeId), b.eventsFor(ta.nodeId)];

    // The dialer leaves: both sides see the peer go, and B is gone at once (sends nothing more).
    b.adapter.disconnect();
    b.adapter.disconnect(); // idempotent: no second round of events
    expect(b.adapter.connectedPeers()).toEqual([]);
    await waitFor('A sees B go', () => a.eventsFor(tb.nodeId).length === 2);
    expect(peers()).toEqual([
      ['candidate', 'disconnected'],
      ['candidate', 'disconnected'],
    ]);
    // ...and comes back: its dial to A works again.
    b.adapter.connect(tb.nodeId as string as PeerId);
    await waitFor('B redials A', () => peers().every((e) => e.length === 3));

    // The acceptor leaves and comes back: B's redial is accepted, not refused as aborted.
    a.adapter.disconnect();
    expect(a.adapter.connectedPeers()).toEqual([]);
    a.adapter.connect(ta.nodeId as string as PeerId);
    await waitFor('A accepts B again', () => peers().every((e) => e.length === 5));
    const cycle = ['candidate', 'disconnected', 'candidate', 'disconnected', 'candidate'];
    expect(peers()).toEqual([cycle, cycle]);
    expect(a.adapter.connectedPeers()).toEqual([tb.nodeId]);
    expect(b.adapter.connectedPeers()).toEqual([ta.nodeId]);
    await a.adapter.whenReady();
    await b.adapter.whenReady();

    await syncsBothWays(ha, hb);
  });

  it('a Repo whose peer id is not the node id fails loudly (BAD_ARGUMENT), not silently', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = node(ta);
    const ha = a.repo.create<Doc>({ items: ['v1'] });
    const errors: string[] = [];
    const log = { ...silentLogger, error: (msg: string) => void errors.push(msg) };
    const adapter = new SyncAdapter({ transport: tb, dial: [ta.addr()], logger: log });
    new Router(tb).route(ALPN.sync, (c) => adapter.accept(c)).start();
    // automerge-repo calls connect() itself and swallows what it throws: find() must fail
    // with the reason instead of waiting for a peer that never comes.
    const repo = new Repo({ network: [adapter], peerId: 'alice' as PeerId });
    cleanups.push(async () => {
      await repo.shutdown();
      await tb.close();
    });
    const found = await withDeadline(
      repo.find<Doc>(ha.url).then(
        () => 'found',
        (err: unknown) => codeOf(err),
      ),
      { timeoutMs: 20_000 },
      'find with a refused peer id',
    );
    expect(found).toBe('BAD_ARGUMENT');
    expect(errors).toHaveLength(1);
    expect(a.eventsFor(tb.nodeId)).toEqual([]);
    // Called directly, connect() throws the same code; the right id then connects.
    expect(thrownCode(() => adapter.connect('bob' as PeerId))).toBe('BAD_ARGUMENT');
    await expect(adapter.whenReady()).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    adapter.connect(tb.nodeId as string as PeerId);
    await adapter.whenReady();
    await waitFor('A sees B once its id is right', () =>
      a.eventsFor(tb.nodeId).includes('candidate'),
    );
  });

  it('whenReady resolves even when the dial target is down', async () => {
    const make = makeFactory();
    const tb = await make();
    // A real key that no node serves, at an address where (for iroh) nothing answers any more.
    const gone = await make();
    const target: PeerAddr = { nodeId: await unusedNodeId(), direct: gone.addr().direct };
    await gone.close();
    const b = node(tb, [target], 2000);
    await b.adapter.whenReady();
    expect(b.adapter.isReady()).toBe(true);
    expect(b.adapter.connectedPeers()).toEqual([]);
    expect(b.eventsFor(target.nodeId)).toEqual([]);
  });
});

/** A change on each side after a reconnect reaches the other. */
async function syncsBothWays(ha: DocHandle<Doc>, hb: DocHandle<Doc>): Promise<void> {
  ha.change((d) => void d.items.push('after-reconnect-a'));
  await waitFor('B sees the change A made after the reconnect', () =>
    hb.doc().items.includes('after-reconnect-a'),
  );
  hb.change((d) => void d.items.push('after-reconnect-b'));
  await waitFor('A sees the change B made', () => ha.doc().items.includes('after-reconnect-b'));
}

/**
 * A transport whose sync connects take `delayMs` to complete, as a peer busy with a fan-in takes
 * to accept (the deadline still applies), counting every attempt.
 */
function slowToAccept(
  inner: Transport,
  delayMs: number,
): { transport: Transport; dials: () => number } {
  let dials = 0;
  const transport: Transport = {
    nodeId: inner.nodeId,
    addr: () => inner.addr(),
    ticket: () => inner.ticket(),
    listen: (handler) => inner.listen(handler),
    close: () => inner.close(),
    connect: (addr, alpn, options = {}) => {
      if (alpn === ALPN.sync) dials++;
      const late = new Promise((resolve) => setTimeout(resolve, delayMs)).then(() =>
        inner.connect(addr, alpn),
      );
      return withDeadline(late, options, `connect on ${alpn}`);
    },
  };
  return { transport, dials: () => dials };
}

/**
 * A node A, and a node dialing it through a transport slow to accept (400 ms per connect) with a
 * 150 ms hello deadline and `dialTimeoutMs`.
 */
function slowDial(dialTimeoutMs?: number) {
  const net = new MemoryNetwork();
  const ta = net.bind(ALL_ALPNS);
  const slow = slowToAccept(net.bind(ALL_ALPNS), 400);
  const a = node(ta);
  const adapter = new SyncAdapter({
    transport: slow.transport,
    dial: [ta.addr()],
    backoff: { initialMs: 20, maxMs: 200 },
    handshakeTimeoutMs: 150,
    ...(dialTimeoutMs === undefined ? {} : { dialTimeoutMs }),
  });
  const repo = new Repo({ network: [adapter], peerId: slow.transport.nodeId as string as PeerId });
  cleanups.push(async () => {
    await repo.shutdown();
    await slow.transport.close();
  });
  return { a, adapter, dials: slow.dials };
}

describe('sync dial deadline', () => {
  it('a dial given longer than the hello deadline waits for a peer slow to accept: one dial, one session', async () => {
    const { a, dials } = slowDial(5000);
    await waitFor('the session is open', () => a.adapter.connectedPeers().length === 1);
    expect(dials()).toBe(1);
  });

  it('without it, every dial gives up at the hello deadline and none completes', async () => {
    const { a, adapter, dials } = slowDial();
    await waitFor('three dials given up', () => dials() >= 3);
    expect(adapter.connectedPeers()).toEqual([]);
    expect(a.adapter.connectedPeers()).toEqual([]);
  });
});

describe('sync states kept per peer', () => {
  /** A node with a store; `keeps` says whose sync states its Repo keeps. */
  function stored(transport: Transport, dial: PeerAddr[], keeps?: (peer: NodeId) => boolean) {
    const adapter = new SyncAdapter({
      transport,
      dial,
      backoff: { initialMs: 20, maxMs: 200 },
      ...(keeps ? { keepsSyncState: keeps } : {}),
    });
    new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
    const store = new MemoryStore();
    const repo = new Repo({
      network: [adapter],
      storage: store,
      peerId: transport.nodeId as string as PeerId,
    });
    cleanups.push(async () => {
      await repo.shutdown();
      await transport.close();
    });
    return { repo, store };
  }

  /** The storage ids whose sync states `store` holds (automerge-repo: [doc, 'sync-state', id]). */
  async function syncStatesIn(store: MemoryStore): Promise<string[]> {
    const chunks = await store.loadRange([]);
    return chunks.filter((c) => c.key[1] === 'sync-state').map((c) => c.key[2]!);
  }

  it('a peer whose sync states are not kept syncs all the same, and none of its states is stored', async () => {
    const net = new MemoryNetwork();
    const [ta, tb, tc] = [net.bind(ALL_ALPNS), net.bind(ALL_ALPNS), net.bind(ALL_ALPNS)];
    const a = stored(ta, [], (peer) => peer !== tb.nodeId);
    const handle = a.repo.create<Doc>({ items: ['from-a'] });
    const b = stored(tb, [ta.addr()]);
    const hb = await findDoc(b.repo, handle.url);
    hb.change((d) => void d.items.push('from-b'));
    await waitFor('a has b change', () => handle.doc().items.includes('from-b'));
    // C's sessions are kept as before: once its state is stored, any of B's would have been.
    const c = stored(tc, [ta.addr()]);
    await findDoc(c.repo, handle.url);
    const cId = await c.repo.storageId();
    await waitFor("c's sync state is stored", async () =>
      (await syncStatesIn(a.store)).includes(cId!),
    );
    expect(await syncStatesIn(a.store)).not.toContain(await b.repo.storageId());
  });
});
