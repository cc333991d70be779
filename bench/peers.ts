// Two in-memory Repos (no storage, so only the network path is measured) connected over one of
// four paths: flt's push (sync/push.ts) on our SyncAdapter on IrohTransport, automerge-repo's sync
// protocol over that same SyncAdapter, automerge-repo's WebSocket adapters, and its MessageChannel
// adapter, plus the document both groups change. Used by sync.ts and latency.ts; B always
// connects to A (B dials A, B is the WebSocket client).

import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  Repo,
  type DocHandle,
  type DocumentId,
  type PeerId,
  type RepoMessage,
} from '@automerge/automerge-repo';
import { MessageChannelNetworkAdapter } from '@automerge/automerge-repo-network-messagechannel';
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from '@automerge/automerge-repo-network-websocket';
import { WebSocketServer } from 'ws';
import { shortId, type NodeId } from '../sync/ids.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { scopePeers } from '../sync/peer-scopes.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { PushReceiver, PushRoutes, PushSender } from '../sync/push.js';
import type { PushWireMessage } from '../sync/push-wire.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { closeAll, until } from './wait.js';

/**
 * `push`: flt's path for a single-writer document (A pushes, B holds); `iroh`: automerge-repo's
 * sync protocol over flt's SyncAdapter and transport; the others: automerge-repo's own adapters.
 */
export const TRANSPORTS = ['push', 'iroh', 'websocket', 'messagechannel'] as const;
export type TransportKind = (typeof TRANSPORTS)[number];

export interface RepoPair {
  readonly kind: TransportKind;
  /** The repo that makes the changes. */
  readonly a: Repo;
  /** The repo that receives them. */
  readonly b: Repo;
  /** Whether `repo` (a or b) has a session with `peer` on which the pair's documents travel. */
  linked(repo: Repo, peer: PeerId): boolean;
  /** B's handle of `ha`, a document A just created, once B has it. */
  adopt<T>(ha: DocHandle<T>): Promise<DocHandle<T>>;
  /**
   * Calls `listener` with the document id of every message that reaches B from now on (sync
   * messages of automerge-repo, or push messages), until the returned unsubscribe.
   */
  onMessageToB(listener: (documentId: string) => void): () => void;
  /** Shuts both repos down and releases every socket, timer and port they used. */
  close(): Promise<void>;
}

/** automerge-repo's pairs: linked once the Repo lists the peer, documents found by URL. */
const repoSync = (b: Repo) => ({
  linked: (repo: Repo, peer: PeerId) => repo.peers.includes(peer),
  adopt: <T>(ha: DocHandle<T>) => b.find<T>(ha.url),
  onMessageToB: (listener: (documentId: string) => void) => {
    const net = b.networkSubsystem;
    const onMessage = (m: RepoMessage) => {
      if ('documentId' in m && m.documentId !== undefined) listener(m.documentId);
    };
    net.on('message', onMessage);
    return () => void net.off('message', onMessage);
  },
});

/** How long a pair may take to see each other before the measurement fails. */
const CONNECT_TIMEOUT_MS = 15_000;

export async function openPair(kind: TransportKind): Promise<RepoPair> {
  const pair =
    kind === 'push'
      ? await pushPair()
      : kind === 'iroh'
        ? await irohPair()
        : kind === 'websocket'
          ? await wsPair()
          : channelPair();
  try {
    await Promise.all([
      seesPeer(pair, pair.a, pair.b.peerId),
      seesPeer(pair, pair.b, pair.a.peerId),
    ]);
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}

function seesPeer(pair: RepoPair, repo: Repo, peer: PeerId): Promise<number> {
  const net = repo.networkSubsystem;
  return until(
    `${shortId(repo.peerId)} to see peer ${shortId(peer)}`,
    () => pair.linked(repo, peer),
    (listener) => {
      net.on('peer', listener);
      return () => void net.off('peer', listener);
    },
    CONNECT_TIMEOUT_MS,
  );
}

export const bindIroh = () =>
  IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

/** Wired like test/sync-adapter.test.ts: Router -> SyncAdapter, Repo peerId = node id. */
async function irohPair(): Promise<RepoPair> {
  const [ta, tb] = await Promise.all([bindIroh(), bindIroh()]);
  const adapterA = new SyncAdapter({ transport: ta });
  new Router(ta).route(ALPN.sync, (c) => adapterA.accept(c)).start();
  const adapterB = new SyncAdapter({ transport: tb, dial: [ta.addr()] });
  new Router(tb).route(ALPN.sync, (c) => adapterB.accept(c)).start();
  const a = new Repo({ network: [adapterA], peerId: ta.nodeId as string as PeerId });
  const b = new Repo({ network: [adapterB], peerId: tb.nodeId as string as PeerId });
  return {
    kind: 'iroh',
    a,
    b,
    ...repoSync(b),
    close: () =>
      closeAll([() => b.shutdown(), () => a.shutdown(), () => tb.close(), () => ta.close()]),
  };
}

/** How long B may take to have a document A created and pushed before the measurement fails. */
const ADOPT_TIMEOUT_MS = 15_000;

/**
 * flt's path for a single-writer document, wired as its agents and coordinator (and as
 * fleet-sync-child.ts's `push`): the same transport, Router and SyncAdapter as `iroh`, both with
 * push routes. A writes and pushes every document it creates to B (PushSender; no store, so
 * nothing to make durable first); B holds them (PushReceiver; no store, so a document is new
 * until its first push makes it). automerge-repo never syncs them: A neither announces nor
 * gives access to them, and B scopes A to no documents (as the coordinator scopes its agents).
 */
async function pushPair(): Promise<RepoPair> {
  const [ta, tb] = await Promise.all([bindIroh(), bindIroh()]);
  const routesA = new PushRoutes();
  const adapterA = new SyncAdapter({ transport: ta, push: routesA });
  new Router(ta).route(ALPN.sync, (c) => adapterA.accept(c)).start();
  const routesB = new CountingRoutes();
  const adapterB = new SyncAdapter({ transport: tb, dial: [ta.addr()], push: routesB });
  new Router(tb).route(ALPN.sync, (c) => adapterB.accept(c)).start();
  const onlyPeers = (_peer: PeerId, doc?: DocumentId) => Promise.resolve(doc === undefined);
  const a = new Repo({
    network: [adapterA],
    peerId: ta.nodeId as string as PeerId,
    shareConfig: { announce: onlyPeers, access: onlyPeers },
  });
  const b = new Repo({ network: [adapterB], peerId: tb.nodeId as string as PeerId });
  scopePeers(b, { scopeOf: () => [] });
  const sender = new PushSender({
    link: adapterA,
    peer: tb.nodeId,
    durable: () => Promise.resolve(),
  });
  routesA.sender = sender;
  const adopted = new Set<() => void>();
  routesB.receiver = new PushReceiver({
    repo: b,
    link: adapterB,
    authorize: () => 'accept',
    stored: () => Promise.resolve(false),
    onHandle: () => {
      for (const listener of [...adopted]) listener();
    },
  });
  const adapters = new Map<string, SyncAdapter>([
    [a.peerId, adapterA],
    [b.peerId, adapterB],
  ]);
  return {
    kind: 'push',
    a,
    b,
    linked: (repo, peer) =>
      adapters.get(repo.peerId)?.speaksPush(peer as string as NodeId) === true,
    adopt: async <T>(ha: DocHandle<T>) => {
      sender.track(ha);
      const id = ha.documentId;
      await until(
        `B to take the first push of ${id}`,
        () => b.handles[id]?.isReady() === true,
        (listener) => {
          adopted.add(listener);
          return () => void adopted.delete(listener);
        },
        ADOPT_TIMEOUT_MS,
      );
      return b.handles[id] as DocHandle<T>;
    },
    onMessageToB: (listener) => routesB.watch(listener),
    close: () =>
      closeAll([() => b.shutdown(), () => a.shutdown(), () => tb.close(), () => ta.close()]),
  };
}

/** Push routes that also tell watchers of every push message that arrives (sync.ts counts them). */
class CountingRoutes extends PushRoutes {
  private readonly watchers = new Set<(documentId: string) => void>();

  watch(listener: (documentId: string) => void): () => void {
    this.watchers.add(listener);
    return () => void this.watchers.delete(listener);
  }

  override receive(peer: NodeId, message: PushWireMessage): Promise<void> | void {
    for (const w of this.watchers) w(message.documentId);
    return super.receive(peer, message);
  }
}

async function wsPair(): Promise<RepoPair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const { port } = wss.address() as AddressInfo;
  // The same ws class, typed once through `import` (here) and once through isomorphic-ws's
  // `import = require('ws')` (the adapter); TypeScript sees two unrelated types, so bridge them.
  const server = wss as unknown as ConstructorParameters<typeof WebSocketServerAdapter>[0];
  const a = new Repo({ network: [new WebSocketServerAdapter(server)] });
  // Default retry interval: its timer is cleared once the socket opens, and disconnect() removes
  // the close listener that would schedule a reconnect. (0 would mean "retry every tick".)
  const b = new Repo({ network: [new WebSocketClientAdapter(`ws://127.0.0.1:${port}`)] });
  const closeServer = () =>
    new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
  return {
    kind: 'websocket',
    a,
    b,
    ...repoSync(b),
    close: () => closeAll([() => b.shutdown(), () => a.shutdown(), closeServer]),
  };
}

/** Both repos in this process, joined by a global (not worker_threads) MessageChannel. */
function channelPair(): RepoPair {
  const { port1, port2 } = new MessageChannel();
  const a = new Repo({ network: [new MessageChannelNetworkAdapter(port1)] });
  const b = new Repo({ network: [new MessageChannelNetworkAdapter(port2)] });
  return {
    kind: 'messagechannel',
    a,
    b,
    ...repoSync(b),
    close: () =>
      closeAll([() => b.shutdown(), () => a.shutdown(), () => port1.close(), () => port2.close()]),
  };
}

/** One pair per transport, all open at once so measurements can interleave them. */
export async function openPairs(kinds: readonly TransportKind[] = TRANSPORTS): Promise<RepoPair[]> {
  const pairs: RepoPair[] = [];
  try {
    for (const kind of kinds) pairs.push(await openPair(kind));
  } catch (err) {
    await closePairs(pairs);
    throw err;
  }
  return pairs;
}

export function closePairs(pairs: readonly RepoPair[]): Promise<void> {
  return closeAll(pairs.map((p) => () => p.close()));
}

/** The document the sync and latency groups change on A and watch on B. */
export interface BenchDoc {
  counter: number;
  items: string[];
}

/** A new document on A, found by B before any timer starts. */
export async function freshDoc(
  pair: RepoPair,
): Promise<{ ha: DocHandle<BenchDoc>; hb: DocHandle<BenchDoc> }> {
  const ha = pair.a.create<BenchDoc>({ counter: -1, items: [] });
  const hb = await pair.adopt(ha);
  return { ha, hb };
}

/** Time stamp of the 'change' event after which `pred` holds on B's copy. */
export function seenOnB(
  hb: DocHandle<BenchDoc>,
  what: string,
  pred: (d: BenchDoc) => boolean,
  timeoutMs: number,
): Promise<number> {
  return until(
    what,
    () => pred(hb.doc()),
    (listener) => {
      hb.on('change', listener);
      return () => void hb.off('change', listener);
    },
    timeoutMs,
  );
}
