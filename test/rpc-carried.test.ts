// Rpc carried on a sync session's connection (sync-adapter.ts carry, rpc-channel.ts `via`): an
// agent holds one connection to its coordinator instead of two (issue 13). Real iroh endpoints.

import { Repo, type PeerId } from '@automerge/automerge-repo';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { RpcServer } from '../sync/rpc.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import type { ByteStream, CloseInfo, Connection, Transport } from '../sync/transport.js';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { bindLocal, testFleet } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { inc } from './helpers/rpc-methods.js';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A sync node on a fresh endpoint, with a Repo (which starts the adapter's run). */
async function syncNode(dial: Transport | undefined) {
  const transport = await bindLocal(randomBytes(32));
  const adapter = new SyncAdapter({
    transport,
    dial: dial ? [dial.addr()] : [],
    backoff: { initialMs: 20, maxMs: 200 },
  });
  const router = new Router(transport).route(ALPN.sync, (c) => adapter.accept(c));
  const repo = new Repo({ network: [adapter], peerId: transport.nodeId as string as PeerId });
  cleanups.push(async () => {
    await repo.shutdown();
    await transport.close();
  });
  return { transport, adapter, router };
}

/** A coordinator-like server: sync and rpc, carrying rpc on sync sessions if `carry`. */
async function server(carry: boolean) {
  const node = await syncNode(undefined);
  const rpc = new RpcServer().register(inc, (req) => Promise.resolve({ n: req.n + 1 }));
  node.router.service(rpc).start();
  if (carry) node.adapter.carry(rpc);
  return node;
}

/** An agent-like client of `s`: a sync session dialed to it and an rpc channel preferring it. */
async function client(s: Transport) {
  const node = await syncNode(s);
  const channel = new RpcChannel(node.transport, s.addr(), {
    timeoutMs: 5000,
    via: () => node.adapter.rpcConnection(s.nodeId),
  });
  cleanups.push(() => Promise.resolve(channel.close()));
  return { ...node, channel };
}

describe('rpc carried on the sync connection', () => {
  it('calls move onto the sync session once it carries rpc, and the channel closes its own connection', async () => {
    const s = await server(true);
    const c = await client(s.transport);
    const peer = c.transport.nodeId;
    const session = await waitFor('the sync session carries rpc', () =>
      c.adapter.rpcConnection(s.transport.nodeId),
    );
    expect(session.alpn).toBe(ALPN.sync);
    expect(await c.channel.call(inc, { n: 1 })).toEqual({ n: 2 });
    // The session's connection only: the channel dialed none of its own.
    expect(s.router.connectionsOf(peer)).toBe(1);

    // A new session (the old one dropped, as liveness does after a restart): calls follow it.
    c.adapter.redial(s.transport.nodeId, 'test');
    await waitFor('a new session carries rpc', () => {
      const now = c.adapter.rpcConnection(s.transport.nodeId);
      return now !== undefined && now !== session ? now : undefined;
    });
    expect(await c.channel.call(inc, { n: 2 })).toEqual({ n: 3 });
    await waitFor('one connection again', () => s.router.connectionsOf(peer) === 1 || undefined);
  });

  it('a channel that called before the session opened moves over and closes its own connection', async () => {
    const s = await server(true);
    const t = await bindLocal(randomBytes(32));
    cleanups.push(() => t.close());
    const session: { conn?: Connection } = {};
    const channel = new RpcChannel(t, s.transport.addr(), {
      timeoutMs: 5000,
      via: () => session.conn,
    });
    cleanups.push(() => Promise.resolve(channel.close()));
    expect(await channel.call(inc, { n: 1 })).toEqual({ n: 2 }); // on its own connection
    expect(s.router.connectionsOf(t.nodeId)).toBe(1);
    // The sync session comes up (dialed by hand here: the adapter's dial loop does it for real).
    const adapter = new SyncAdapter({ transport: t, dial: [s.transport.addr()] });
    const repo = new Repo({ network: [adapter], peerId: t.nodeId as string as PeerId });
    cleanups.push(() => repo.shutdown());
    session.conn = await waitFor('session', () => adapter.rpcConnection(s.transport.nodeId));
    await waitFor('both connections', () => s.router.connectionsOf(t.nodeId) === 2 || undefined);
    expect(await channel.call(inc, { n: 2 })).toEqual({ n: 3 });
    await waitFor('the own connection closed', () =>
      s.router.connectionsOf(t.nodeId) === 1 ? true : undefined,
    );
    expect(await channel.call(inc, { n: 3 })).toEqual({ n: 4 });
  });

  it('a server that does not carry rpc (an older coordinator): calls stay on a connection of their own', async () => {
    const s = await server(false);
    const c = await client(s.transport);
    await waitFor(
      'the sync session',
      () => c.adapter.connectedPeers().includes(s.transport.nodeId) || undefined,
    );
    expect(c.adapter.rpcConnection(s.transport.nodeId)).toBeUndefined();
    expect(await c.channel.call(inc, { n: 1 })).toEqual({ n: 2 });
    expect(s.router.connectionsOf(c.transport.nodeId)).toBe(2);
  });

  it('a call on the carried connection that gets no sign of the peer: the channel dials its own and leaves that connection to its session', async () => {
    const s = await server(true);
    const t = await bindLocal(randomBytes(32));
    cleanups.push(() => t.close());
    // A connection whose peer went silent: writes are taken, nothing ever comes back.
    const closes: string[] = [];
    const silentStream: ByteStream = {
      read: () => new Promise<never>(() => undefined),
      write: () => Promise.resolve(),
      finish: () => Promise.resolve(),
    };
    const silent: Connection = {
      remoteId: s.transport.nodeId,
      alpn: ALPN.sync,
      openStream: () => Promise.resolve(silentStream),
      acceptStream: () => new Promise<never>(() => undefined),
      close: (_code, reason) => void closes.push(reason),
      closed: new Promise<CloseInfo>(() => undefined),
      packets: () => ({ received: 7, sent: 7 }),
    };
    const channel = new RpcChannel(t, s.transport.addr(), { timeoutMs: 5000, via: () => silent });
    cleanups.push(() => Promise.resolve(channel.close()));
    const outcome = await channel.call(inc, { n: 1 }, { timeoutMs: 300 }).then(
      () => 'answered',
      (err: unknown) => (err instanceof FltError ? err.code : String(err)),
    );
    expect(outcome).toBe('TIMEOUT');
    expect(s.router.connectionsOf(t.nodeId)).toBe(0);
    expect(await channel.call(inc, { n: 2 })).toEqual({ n: 3 });
    expect(s.router.connectionsOf(t.nodeId)).toBe(1);
    expect(closes).toEqual([]);
  });
});

describe('an agent and its coordinator', () => {
  it('hold one connection once the agent synced: pings and heartbeats go on the sync session', async () => {
    const dir = await tempDir();
    const fleet = await testFleet(dir.path, createLogger('warn', 'test'));
    cleanups.push(async () => {
      await fleet.close();
      await dir.remove();
    });
    const facts = await collectFacts();
    const agent = await fleet.addAgent('ag', () => Promise.resolve(facts));
    const id = agent.node.key.nodeId;
    const router = fleet.coordinator.node.router;
    const coordinator = fleet.coordinator.node.key.nodeId;
    await waitFor('the agent syncs', () => agent.node.sync.rpcConnection(coordinator));
    // Enrolled on a connection of its own; the next ping moves over and closes it.
    await waitFor('one connection', () => router.connectionsOf(id) === 1 || undefined, 20_000);
    const online = await waitFor('the agent online in the table', async () => {
      const { agents } = await fleet.admin.fleet();
      return agents.find((r) => r.nodeId === id && r.online === true && r.hostname !== null);
    });
    expect(online.hostname).toBe(facts.hostname);
    expect(router.connectionsOf(id)).toBe(1);
  }, 60_000);
});
