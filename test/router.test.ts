// The ALPN router over real iroh endpoints: garbage on any protocol costs only the sender its
// connection (THREATS rows 1, 2), while other peers keep being served; per-peer connection
// limits (row 7) and the access check (row 5) refuse before any handler runs.

import { randomBytes } from 'node:crypto';
import { Repo, type PeerId } from '@automerge/automerge-repo';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EchoClient, serveEcho } from '../sync/echo.js';
import { FltError } from '../sync/errors.js';
import { LENGTH_BYTES } from '../sync/framing.js';
import type { NodeId } from '../sync/ids.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import type { Logger } from '../sync/log.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { ANYONE, RpcClient, RpcServer, type RpcMethod } from '../sync/rpc.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { CloseCode, type Connection, type Transport } from '../sync/transport.js';
import { waitFor } from './helpers/wait.js';

const EXTRA_ALPN = 'flt/unrouted/0';

const bindIroh = () =>
  IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: [...ALL_ALPNS, EXTRA_ALPN],
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

interface Sum {
  sum: number;
}
const add: RpcMethod<{ a: number; b: number }, Sum> = {
  name: 'test.add',
  allow: [ANYONE],
  request: (v) => {
    const r = v as { a?: unknown; b?: unknown } | null;
    if (typeof r?.a !== 'number' || typeof r.b !== 'number') {
      throw new FltError('BAD_MESSAGE', 'add: a and b must be numbers');
    }
    return { a: r.a, b: r.b };
  },
  response: (v) => {
    if (typeof (v as Sum | null)?.sum !== 'number') throw new FltError('BAD_MESSAGE', 'bad sum');
    return v as Sum;
  },
};

/** A class-based logger, as an application might write one (methods need their `this`). */
class LogSink implements Logger {
  readonly lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  private add(level: string, msg: string, fields: Record<string, unknown> = {}) {
    this.lines.push({ level, msg, fields });
  }
  error(msg: string, fields?: Record<string, unknown>) {
    this.add('error', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>) {
    this.add('warn', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>) {
    this.add('info', msg, fields);
  }
  debug(msg: string, fields?: Record<string, unknown>) {
    this.add('debug', msg, fields);
  }
}

const open: Transport[] = [];
const repos: Repo[] = [];
afterEach(async () => {
  for (const r of repos.splice(0)) await r.shutdown();
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function bind(): Promise<IrohTransport> {
  const t = await bindIroh();
  open.push(t);
  return t;
}

/** A server routing echo, rpc and sync, as a coordinator does. */
async function startServer(options: ConstructorParameters<typeof Router>[1] = {}) {
  const transport = await bind();
  const adapter = new SyncAdapter({ transport, handshakeTimeoutMs: 5000 });
  const rpc = new RpcServer().register(add, (req) => Promise.resolve({ sum: req.a + req.b }));
  const handled: { peer: NodeId; alpn: string }[] = [];
  const seen =
    (fn: (c: Connection) => Promise<void>) =>
    (c: Connection): Promise<void> => {
      handled.push({ peer: c.remoteId, alpn: c.alpn });
      return fn(c);
    };
  new Router(transport, options)
    .route(ALPN.echo, seen(serveEcho))
    .route(
      ALPN.rpc,
      seen((c) => rpc.serve(c)),
    )
    .route(
      ALPN.sync,
      seen((c) => adapter.accept(c)),
    )
    .start();
  repos.push(new Repo({ network: [adapter], peerId: transport.nodeId as string as PeerId }));
  return { transport, handled };
}

/** A peer with an echo session and an rpc client open on two connections. */
async function goodClient(server: Transport) {
  const t = await bind();
  const echoConn = await t.connect(server.addr(), ALPN.echo, { timeoutMs: 5000 });
  const rpcConn = await t.connect(server.addr(), ALPN.rpc, { timeoutMs: 5000 });
  const echo = await EchoClient.open(echoConn);
  const rpc = await RpcClient.open(rpcConn, 5000);
  const works = async () => {
    await echo.round(randomBytes(1000), 5000);
    expect(await rpc.call(add, { a: 2, b: 40 })).toEqual({ sum: 42 });
  };
  await works();
  return { t, works, echoConn, rpcConn };
}

function header(len: number): Uint8Array {
  const h = new Uint8Array(LENGTH_BYTES);
  new DataView(h.buffer).setUint32(0, len, false);
  return h;
}

/** Bytes a broken or hostile peer sends, and the close reasons (error codes) they may earn. */
const GARBAGE: [string, () => Uint8Array, boolean, string[]][] = [
  // A well-formed frame around random bytes: not a version, not CBOR (0xff is a CBOR "break").
  [
    'a frame of random bytes',
    () => Buffer.concat([header(300), Uint8Array.of(0xff), randomBytes(299)]),
    false,
    ['BAD_MESSAGE', 'UNSUPPORTED_VERSION'],
  ],
  [
    'raw random bytes',
    () => Buffer.concat([Uint8Array.of(0xfe), randomBytes(4095)]),
    false,
    ['FRAME_TOO_LARGE'],
  ],
  ['a length prefix of 2^32-1', () => header(0xffff_ffff), false, ['FRAME_TOO_LARGE']],
  ['a truncated length prefix, then finish', () => Uint8Array.of(0, 0), true, ['BAD_MESSAGE']],
];

describe('Router over iroh', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let log: LogSink;

  beforeEach(async () => {
    log = new LogSink();
    server = await startServer({ logger: log });
  });

  describe.each([ALPN.echo, ALPN.rpc, ALPN.sync])('on %s', (alpn) => {
    it.each(GARBAGE)('%s closes only that connection', async (_name, bytes, finish, reasons) => {
      const good = await goodClient(server.transport);
      const bad = await bind();
      const conn = await bad.connect(server.transport.addr(), alpn, { timeoutMs: 5000 });
      const stream = await conn.openStream();
      await stream.write(bytes());
      if (finish) await stream.finish();

      const info = await conn.closed;
      expect(info.byPeer).toBe(true);
      expect(info.code).toBe(CloseCode.PROTOCOL_ERROR);
      expect(reasons).toContain(info.reason);

      // The other peer's connections, opened before the garbage, still work after it...
      await good.works();
      // ...and the server still accepts new connections.
      const again = await good.t.connect(server.transport.addr(), ALPN.echo, { timeoutMs: 5000 });
      await (await EchoClient.open(again)).round(Uint8Array.of(1, 2, 3), 5000);
      // The router said why it closed the connection (as a warning: a peer's fault, not ours).
      await waitFor('the router logs the close', () =>
        log.lines.find((l) => l.level === 'warn' && reasons.includes(l.fields.code as string)),
      );
      expect(log.lines.filter((l) => l.level === 'error')).toEqual([]);
    });
  });

  it('closes a connection on an advertised ALPN that has no route', async () => {
    const client = await bind();
    const conn = await client.connect(server.transport.addr(), EXTRA_ALPN, { timeoutMs: 5000 });
    expect(await conn.closed).toMatchObject({ code: CloseCode.PROTOCOL_ERROR, byPeer: true });
    expect(server.handled).toEqual([]);
  });
});

describe('Router limits over iroh', () => {
  it('enforces maxConnectionsPerPeer and frees the slot when a connection ends', async () => {
    const transport = await bind();
    let finished = 0;
    const handled: Connection[] = [];
    new Router(transport, { maxConnectionsPerPeer: 2 })
      .route(ALPN.echo, async (c) => {
        handled.push(c);
        try {
          await serveEcho(c);
        } finally {
          finished++;
        }
      })
      .start();
    const client = await bind();
    const other = await bind();
    const dial = (from: Transport) =>
      from.connect(transport.addr(), ALPN.echo, { timeoutMs: 5000 });

    const first = await dial(client);
    const second = await dial(client);
    await waitFor('both connections are being served', () => handled.length === 2);
    const third = await dial(client);
    expect(await third.closed).toMatchObject({ code: CloseCode.LIMIT, byPeer: true });
    expect(handled).toHaveLength(2);

    // The limit is per peer: another node is still served.
    const fromOther = await dial(other);
    await (await EchoClient.open(fromOther)).round(Uint8Array.of(9), 5000);
    // Both first connections still work.
    for (const c of [first, second]) await (await EchoClient.open(c)).round(Uint8Array.of(1), 5000);

    first.close(CloseCode.NORMAL, 'done');
    await waitFor('the handler of the closed connection returns', () => finished === 1);
    const fourth = await dial(client);
    await (await EchoClient.open(fourth)).round(Uint8Array.of(4), 5000);
    expect(handled.map((c) => c.remoteId)).toEqual([
      client.nodeId,
      client.nodeId,
      other.nodeId,
      client.nodeId,
    ]);
  });

  it('an access check returning false closes with UNAUTHORIZED before the handler runs', async () => {
    const banned = await bind();
    const allowed = await bind();
    const asked: string[] = [];
    const server = await startServer({
      access: (peer, alpn) => {
        asked.push(alpn);
        return peer !== banned.nodeId;
      },
    });
    for (const alpn of [ALPN.echo, ALPN.rpc, ALPN.sync]) {
      const conn = await banned.connect(server.transport.addr(), alpn, { timeoutMs: 5000 });
      // Bytes sent anyway must not reach a handler.
      void conn
        .openStream()
        .then((s) => s.write(randomBytes(64)))
        .catch(() => undefined); // fails once the server closes: expected
      expect(await conn.closed).toMatchObject({ code: CloseCode.UNAUTHORIZED, byPeer: true });
    }
    const ok = await allowed.connect(server.transport.addr(), ALPN.echo, { timeoutMs: 5000 });
    await (await EchoClient.open(ok)).round(Uint8Array.of(5), 5000);
    expect(asked).toEqual([ALPN.echo, ALPN.rpc, ALPN.sync, ALPN.echo]);
    expect(server.handled).toEqual([{ peer: allowed.nodeId, alpn: ALPN.echo }]);
  });
});
