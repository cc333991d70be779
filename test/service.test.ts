// Protocols as services on the Router (sync/service.ts): a service serves until it is closed;
// close() is idempotent, closes its live connections with SHUTDOWN and refuses new ones, and
// leaves the other protocols serving. serveStreams serves at most `maxStreams` streams at once.

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../sync/deadline.js';
import { EchoClient, echoService } from '../sync/echo.js';
import { FltError } from '../sync/errors.js';
import { FramedStream } from '../sync/framed-stream.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { ANYONE, RpcClient, RpcServer, type RpcMethod } from '../sync/rpc.js';
import { serveStreams } from '../sync/service.js';
import { CloseCode, type Connection, type Transport } from '../sync/transport.js';
import { bindLocal } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const open: Transport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

/** How `conn` closed, failing (TIMEOUT) if it is still open after a few seconds. */
const closeOf = (conn: Connection) => withDeadline(conn.closed, { timeoutMs: 5000 }, 'close');

const ping: RpcMethod<null, string> = {
  name: 'test.ping',
  allow: [ANYONE],
  request: () => null,
  response: (v) => {
    if (typeof v !== 'string') throw new FltError('BAD_MESSAGE', 'ping: not a string');
    return v;
  },
};

const transports: [string, () => Promise<[Transport, Transport]>][] = [
  [
    'iroh',
    async () => {
      return [await bindLocal(randomBytes(32)), await bindLocal(randomBytes(32))];
    },
  ],
  [
    'memory',
    () => {
      const net = new MemoryNetwork();
      return Promise.resolve([net.bind(ALL_ALPNS), net.bind(ALL_ALPNS)]);
    },
  ],
];

describe.each(transports)('services over %s', (_name, pair) => {
  async function setup() {
    const [server, client] = await pair();
    open.push(server, client);
    const echo = echoService();
    const rpc = new RpcServer().register(ping, () => Promise.resolve('pong'));
    const router = new Router(server).service(echo).service(rpc);
    router.start();
    const dial = (alpn: string) => client.connect(server.addr(), alpn, { timeoutMs: 5000 });
    return { router, echo, rpc, dial };
  }

  it('a closed service closes its live connections and refuses new ones; others keep serving', async () => {
    const { echo, rpc, dial } = await setup();
    const echoConn = await dial(ALPN.echo);
    const session = await EchoClient.open(echoConn);
    await session.round(Uint8Array.of(1, 2, 3), 5000);
    const rpcClient = await RpcClient.open(await dial(ALPN.rpc), 5000);
    expect(await rpcClient.call(ping, null)).toBe('pong');

    const first = echo.close();
    expect(echo.close()).toBe(first); // idempotent: the same close
    await first;
    const closed = await closeOf(echoConn);
    expect(closed.byPeer).toBe(true);
    // QUIC sends its close once (again only to packets that arrive while the server drains): on a
    // loaded machine the datagram can be lost, and the client then learns of the close by a
    // stateless reset, with no code (a fresh-clone run under the whole suite's load once got no
    // code here; its reason was not recorded: this is the one loss QUIC explains).
    if (closed.reason !== 'reset by peer') expect(closed.code).toBe(CloseCode.SHUTDOWN);

    // A new echo connection is closed at once; rpc, a service of its own, still answers.
    const late = await dial(ALPN.echo);
    expect((await closeOf(late)).code).toBe(CloseCode.SHUTDOWN);
    expect(await rpcClient.call(ping, null)).toBe('pong');
    await rpc.close();
    expect(await rpcClient.call(ping, null).catch((err: FltError) => err.code)).toBe(
      'CONNECTION_LOST',
    );
  });

  it('router.stop() closes every service, once', async () => {
    const { router, dial } = await setup();
    const echoConn = await dial(ALPN.echo);
    await (await EchoClient.open(echoConn)).round(Uint8Array.of(7), 5000);
    const rpcConn = await dial(ALPN.rpc);
    const rpcClient = await RpcClient.open(rpcConn, 5000);
    expect(await rpcClient.call(ping, null)).toBe('pong');

    await Promise.all([router.stop(), router.stop()]);
    await router.stop();
    expect((await closeOf(echoConn)).code).toBe(CloseCode.SHUTDOWN);
    expect((await closeOf(rpcConn)).code).toBe(CloseCode.SHUTDOWN);
  });
});

describe('serveStreams', () => {
  it('serves at most maxStreams streams of one connection at once', async () => {
    const net = new MemoryNetwork();
    const [server, client] = [net.bind(ALL_ALPNS), net.bind(ALL_ALPNS)];
    open.push(server, client);
    let active = 0;
    let most = 0;
    let started = 0;
    new Router(server)
      .route(ALPN.echo, (conn) =>
        serveStreams(
          conn,
          async (framed) => {
            started++;
            most = Math.max(most, ++active);
            try {
              for (let f = await framed.readFrame(); f !== null; f = await framed.readFrame())
                await framed.writeFrame(f);
              await framed.finish();
            } finally {
              active--;
            }
          },
          { maxFrame: MAX_FRAME[ALPN.echo], maxStreams: 2 },
        ),
      )
      .start();
    const conn = await client.connect(server.addr(), ALPN.echo);
    const streams: FramedStream[] = [];
    for (let i = 0; i < 3; i++) {
      const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.echo]);
      await framed.writeFrame(Uint8Array.of(i));
      streams.push(framed);
    }
    const [s0, s1, s2] = streams as [FramedStream, FramedStream, FramedStream];
    expect(await s0.readFrame()).toEqual(Uint8Array.of(0));
    expect(await s1.readFrame()).toEqual(Uint8Array.of(1));
    // Another round on a served stream: the server has had every chance to take the third.
    await s1.writeFrame(Uint8Array.of(9));
    expect(await s1.readFrame()).toEqual(Uint8Array.of(9));
    expect(started).toBe(2);
    // The first stream ends; the third is served.
    await s0.finish();
    expect(await s0.readFrame()).toBeNull();
    expect(await s2.readFrame()).toEqual(Uint8Array.of(2));
    await waitFor('three streams served', () => started === 3);
    expect(most).toBe(2);
  });
});
