// Two in-memory Repos (no storage, so only the network path is measured) connected over one of
// three transports: our SyncAdapter on IrohTransport, automerge-repo's WebSocket adapters, and
// its MessageChannel adapter, plus the document both groups change. Used by sync.ts and
// latency.ts; B always connects to A (B dials A, B is the WebSocket client).

import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Repo, type DocHandle, type PeerId } from '@automerge/automerge-repo';
import { MessageChannelNetworkAdapter } from '@automerge/automerge-repo-network-messagechannel';
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from '@automerge/automerge-repo-network-websocket';
import { WebSocketServer } from 'ws';
import { shortId } from '../sync/ids.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { closeAll, until } from './wait.js';

export const TRANSPORTS = ['iroh', 'websocket', 'messagechannel'] as const;
export type TransportKind = (typeof TRANSPORTS)[number];

export interface RepoPair {
  readonly kind: TransportKind;
  /** The repo that makes the changes. */
  readonly a: Repo;
  /** The repo that receives them. */
  readonly b: Repo;
  /** Shuts both repos down and releases every socket, timer and port they used. */
  close(): Promise<void>;
}

/** How long a pair may take to see each other before the measurement fails. */
const CONNECT_TIMEOUT_MS = 15_000;

export async function openPair(kind: TransportKind): Promise<RepoPair> {
  const pair =
    kind === 'iroh' ? await irohPair() : kind === 'websocket' ? await wsPair() : channelPair();
  try {
    await Promise.all([seesPeer(pair.a, pair.b.peerId), seesPeer(pair.b, pair.a.peerId)]);
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}

function seesPeer(repo: Repo, peer: PeerId): Promise<number> {
  const net = repo.networkSubsystem;
  return until(
    `${shortId(repo.peerId)} to see peer ${shortId(peer)}`,
    () => repo.peers.includes(peer),
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
    close: () =>
      closeAll([() => b.shutdown(), () => a.shutdown(), () => tb.close(), () => ta.close()]),
  };
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
  const hb = await pair.b.find<BenchDoc>(ha.url);
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
