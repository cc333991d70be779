// The fleet-sync workload of issue 13 (point 4), both sides of it, each in a process of its own
// so that the server's CPU can be read alone from /proc (scale.ts drives them):
//
//   node dist/bench/fleet-sync-child.js server iroh|websocket DIR
//       One Repo on a store in DIR: for `iroh` flt's sync stack as the coordinator runs it (FsStore,
//       Router + SyncAdapter on IrohTransport, the coordinator's save debounce, pushed documents
//       held as plain documents: sync/plain-docs.ts); for `websocket`
//       automerge-repo's own set-up (NodeFSStorageAdapter, WebSocketServerAdapter on a `ws`
//       server). It takes every document its peers announce, and for each change that arrives
//       records the delay from the writer's time stamp in the document to now.
//       Steps: `ready` (its address); commands `held` (how many changes it holds, all told),
//       `report SINCE UNTIL` (the delays of what arrived since SINCE, and how many changes
//       arrived from SINCE to UNTIL; wall-clock ms).
//   node dist/bench/fleet-sync-child.js writers iroh|websocket ADDR N
//       N writers, each its own Repo and connection (one iroh endpoint or one WebSocket each) with
//       one document of its own. Steps: `ready` once every writer is connected and its document
//       created; command `go SECONDS`: each writer changes its document once a second (writers
//       staggered over the second), step `done` with the number of changes made.
//
// Both sides talk in lines: JSON steps on stdout, commands on stdin; they exit when stdin closes.

import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { Repo, type DocHandle, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import {
  WebSocketClientAdapter,
  WebSocketServerAdapter,
} from '@automerge/automerge-repo-network-websocket';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { WebSocketServer } from 'ws';
import { favourMemory, memoryMode } from '../src/memory-mode.js';
import { COORDINATOR_STORE, SAVE_DEBOUNCE_MS } from '../src/node.js';
import { FsStore } from '../stores/fs-store.js';
import { PlainDocs } from '../sync/plain-docs.js';
import { ALPN } from '../sync/protocols.js';
import { scopePeers } from '../sync/peer-scopes.js';
import { PushReceiver, PushRoutes, PushSender } from '../sync/push.js';
import { guardRepoTimeouts } from '../sync/repo-timeouts.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import type { PeerAddr } from '../sync/transport.js';
import { childCommands } from './child-commands.js';
import { benchLogger } from './fleet-config.js';
import { bindIroh } from './peers.js';

/**
 * `push`: flt's sync stack as its coordinator takes agents' documents (sync/push.ts); `iroh`: the
 * same stack with automerge-repo's own sync protocol over flt/sync/0; `websocket`: automerge-repo's.
 */
export type FleetSyncKind = 'push' | 'iroh' | 'websocket';

/** One line of a child's stdout. */
export type FleetSyncStep =
  | {
      readonly step: 'ready';
      /** The server's address; empty from the writers. */
      readonly addr: string;
      /** From the writers: how many connected within CONNECT_DEADLINE_MS. */
      readonly writers?: number;
    }
  | {
      readonly step: 'report';
      /**
       * Change -> server has it, ms, since SINCE: one per arrival, the delay of the newest change
       * it brought (a server that falls behind takes several of a document's changes at once).
       */
      readonly delays: number[];
      /** Changes that arrived by the `report` command's UNTIL (all that each arrival brought). */
      readonly byUntil: number;
      /** Documents the server holds. */
      readonly docs: number;
    }
  | {
      readonly step: 'held';
      /** Changes the server holds of every writer's document, all told (the writers' counters). */
      readonly changes: number;
    }
  | {
      readonly step: 'done';
      readonly changes: number;
      /** Event-loop delay p99 of the writers process while writing, ms: writers that fall behind. */
      readonly loopDelayP99Ms: number;
    };

/** The writer's document: its last change's wall-clock time stamp, and a change counter. */
interface WriterDoc {
  t: number;
  n: number;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes. */
const wallNow = () => performance.timeOrigin + performance.now();
const emit = (s: FleetSyncStep) => process.stdout.write(JSON.stringify(s) + '\n');
const progress = (line: string) => process.stderr.write(`progress ${line}\n`);
/** How often the server looks for documents it has not watched yet (the first changes are warm-up). */
const WATCH_MS = 50;
/** How long a writer may take to connect; those that did not by then are left out and counted. */
const CONNECT_DEADLINE_MS = 60_000;

const nextCommand = childCommands(0);

/**
 * The servers' share policy, as automerge-repo's own sync server (automerge-repo-sync-server)
 * sets it: announce no document to a client that did not ask for it. The default announces every
 * document to every client: N documents to each of N writers, which no server of many writers runs.
 */
const NOT_GENEROUS = () => Promise.resolve(false);

async function server(kind: FleetSyncKind, dir: string): Promise<void> {
  guardRepoTimeouts(benchLogger('fleet-sync-server'));
  let repo: Repo;
  let addr: string;
  let plain: PlainDocs | undefined;
  /** Each arrival: when (wall clock, ms), how many changes it brought, its newest one's delay. */
  const arrivals: { at: number; changes: number; delay: number }[] = [];
  const lastN = new Map<string, number>();
  /** The sum of `lastN`: every change held, warm-up included (command `held`). */
  let heldChanges = 0;
  /** Changes of `doc` are here, up to the writer's counter `n`: the newest one's delay. */
  const arrived = (doc: string, value: WriterDoc, at: number) => {
    if (typeof value.n !== 'number' || lastN.get(doc) === value.n) return;
    const changes = value.n - (lastN.get(doc) ?? 0);
    heldChanges += changes;
    lastN.set(doc, value.n);
    if (value.n > 0) arrivals.push({ at, changes, delay: at - value.t });
  };
  if (kind !== 'websocket') {
    favourMemory(); // as `flt coordinator` runs (src/memory-mode.ts)
    const t = await bindIroh();
    const routes = new PushRoutes();
    const adapter = new SyncAdapter({ transport: t, ...(kind === 'push' ? { push: routes } : {}) });
    new Router(t).route(ALPN.sync, (c) => adapter.accept(c)).start();
    const store = await FsStore.open(join(dir, 'repo'), COORDINATOR_STORE); // as the coordinator's
    repo = new Repo({
      storage: store,
      network: [adapter],
      peerId: t.nodeId as string as PeerId,
      saveDebounceRate: SAVE_DEBOUNCE_MS,
      sharePolicy: NOT_GENEROUS,
    });
    // As the coordinator runs it: a writer that pushes syncs nothing through automerge-repo
    // (its own documents come by push; the coordinator scopes agents the same way).
    if (kind === 'push') scopePeers(repo, { scopeOf: () => [] });
    // The answer says what is held; pushed documents are plain documents, saved as they
    // change (sync/plain-docs.ts), as the coordinator holds its agents'.
    plain = new PlainDocs({ store, onWork: () => memoryMode.worked() }); // as the coordinator's
    plain.handOver(repo);
    const held = plain;
    routes.receiver = new PushReceiver({
      repo,
      link: adapter,
      authorize: () => 'accept',
      stored: async (doc) => (await store.loadRange([doc])).length > 0,
      plain: held,
      onPlain: (_peer, doc) => {
        const value = held.get<WriterDoc>(doc);
        if (value !== undefined) arrived(doc, value, wallNow());
      },
    });
    addr = JSON.stringify(t.addr());
  } else {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    const server = wss as unknown as ConstructorParameters<typeof WebSocketServerAdapter>[0];
    repo = new Repo({
      storage: new NodeFSStorageAdapter(join(dir, 'nodefs')),
      network: [new WebSocketServerAdapter(server)],
      sharePolicy: NOT_GENEROUS,
    });
    addr = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  }
  // automerge-repo 2.5.6 announces no new handle (no `document` event): look for them.
  const watched = new Set<string>();
  const watch = () => {
    for (const handle of Object.values(repo.handles)) {
      if (watched.has(handle.documentId)) continue;
      watched.add(handle.documentId);
      const h = handle as DocHandle<WriterDoc>;
      h.on('change', ({ doc }) => arrived(h.documentId, doc, wallNow()));
    }
  };
  setInterval(watch, WATCH_MS);
  emit({ step: 'ready', addr });
  for (;;) {
    const [c, arg, rest] = (await nextCommand()).split(' ');
    if (c === 'held') emit({ step: 'held', changes: heldChanges });
    else if (c === 'report') {
      // The parent read this process's CPU at SINCE and at UNTIL, and a server that falls behind
      // reads commands seconds late: the window is the parent's, by the arrivals' times.
      const [since, until] = [Number(arg), Number(rest ?? Infinity)];
      const timed = arrivals.filter((a) => a.at >= since);
      const delays = timed.map((a) => a.delay);
      const byUntil = timed.reduce((sum, a) => sum + (a.at <= until ? a.changes : 0), 0);
      const docs = Object.keys(repo.handles).length + (plain?.size ?? 0);
      emit({ step: 'report', delays, byUntil, docs });
    }
  }
}

async function writers(kind: FleetSyncKind, addr: string, n: number): Promise<void> {
  guardRepoTimeouts(benchLogger('fleet-sync-writers'));
  const handles: DocHandle<WriterDoc>[] = [];
  const t0 = performance.now();
  let connected = 0;
  const one = async () => {
    let repo: Repo;
    let sender: PushSender | undefined;
    if (kind !== 'websocket') {
      const t = await bindIroh();
      const to = JSON.parse(addr) as PeerAddr;
      const routes = new PushRoutes();
      const adapter = new SyncAdapter({
        transport: t,
        dial: [to],
        ...(kind === 'push' ? { push: routes } : {}),
      });
      new Router(t).route(ALPN.sync, (c) => adapter.accept(c)).start();
      const pushed = (_peer: PeerId, doc?: DocumentId) =>
        Promise.resolve(kind !== 'push' || doc === undefined);
      repo = new Repo({
        network: [adapter],
        peerId: t.nodeId as string as PeerId,
        shareConfig: { announce: pushed, access: pushed },
      });
      // The writers have no store in any variant: nothing to make durable before a push.
      if (kind === 'push')
        routes.sender = sender = new PushSender({
          link: adapter,
          peer: to.nodeId,
          durable: () => Promise.resolve(),
        });
    } else {
      repo = new Repo({ network: [new WebSocketClientAdapter(addr)] });
    }
    const up = await new Promise<boolean>((resolve) => {
      const check = () => {
        if (repo.peers.length === 0) return;
        clearTimeout(timer);
        repo.networkSubsystem.off('peer', check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        repo.networkSubsystem.off('peer', check);
        resolve(false);
      }, CONNECT_DEADLINE_MS);
      repo.networkSubsystem.on('peer', check);
      check();
    });
    // A writer that did not connect in time takes no part (`ready` says how many did).
    if (!up) return;
    const handle = repo.create<WriterDoc>({ t: wallNow(), n: 0 });
    sender?.track(handle);
    handles.push(handle);
    if (++connected % 100 === 0)
      progress(
        `${connected}/${n} writers connected after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
  };
  await Promise.all(Array.from({ length: n }, one));
  emit({ step: 'ready', addr: '', writers: handles.length });
  for (;;) {
    const c = await nextCommand();
    const m = /^go (\d+)$/.exec(c);
    if (!m) continue;
    const seconds = Number(m[1]);
    let changes = 0;
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const timers: NodeJS.Timeout[] = [];
    // A writers process that falls behind runs its timers late; past the end it stops changing,
    // so that the end comes when it is due rather than after the backlog.
    const endAt = performance.now() + seconds * 1000;
    const change = (h: DocHandle<WriterDoc>) => {
      if (performance.now() >= endAt) return;
      h.change((d) => {
        d.t = wallNow();
        d.n += 1;
      });
      changes++;
    };
    handles.forEach((h, i) => {
      // Staggered over the second, as independent agents would be.
      const start = setTimeout(
        () => {
          change(h);
          timers.push(setInterval(() => change(h), 1000));
        },
        (i * 1000) / handles.length,
      );
      timers.push(start);
    });
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    for (const t of timers) clearTimeout(t);
    loop.disable();
    emit({ step: 'done', changes, loopDelayP99Ms: loop.percentile(99) / 1e6 });
  }
}

async function main(): Promise<void> {
  const [role, kind, arg, nText] = process.argv.slice(2);
  if ((kind !== 'push' && kind !== 'iroh' && kind !== 'websocket') || arg === undefined)
    throw new Error('usage: fleet-sync-child.js server KIND DIR | writers KIND ADDR N');
  if (role === 'server') await server(kind, arg);
  else if (role === 'writers') await writers(kind, arg, Number(nText));
  else throw new Error(`unknown role ${role}`);
}

await main();
