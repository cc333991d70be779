// flt/rpc/0 over both transports: many calls multiplexed on one stream and answered out of
// order, every failure arriving as its stable code, deadlines and aborts honoured on both ends.

import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { MAX_IN_FLIGHT, RpcClient, RpcServer, type RpcMethod } from '../sync/rpc.js';
import { CloseCode, type Connection, type Transport } from '../sync/transport.js';
import { bindLocal } from './helpers/fleet.js';
import { hang, inc, isN, method, type N } from './helpers/rpc-methods.js';
import { waitFor } from './helpers/wait.js';

/** Answers n * 2 once the test opens its gate. */
const gated = method('test.gated');
/** Throws BAD_ARGUMENT. */
const refuse = method('test.refuse');
/** Not registered on the server. */
const missing = method('test.missing');

type Make = () => Promise<Transport>;
/** An iroh endpoint on loopback with a fresh key. */
const bindIroh: Make = () => bindLocal(randomBytes(32));
const kinds: [string, () => Make][] = [
  [
    'memory',
    () => {
      const net = new MemoryNetwork();
      return () => Promise.resolve(net.bind(ALL_ALPNS));
    },
  ],
  ['iroh', () => bindIroh],
];

/** Promises that never settle on their own, counted, and released by the test. */
function deferredMap<T>() {
  const open = new Map<number, (v: T) => void>();
  return {
    open,
    wait: (key: number) => new Promise<T>((resolve) => open.set(key, resolve)),
    release(key: number, value: T) {
      const r = open.get(key);
      if (!r) throw new Error(`nothing waits on ${key}`);
      open.delete(key);
      r(value);
    },
  };
}

describe.each(kinds)('rpc over %s', (_kind, makeFactory) => {
  const transports: Transport[] = [];
  let gates: ReturnType<typeof deferredMap<N>>;
  let signals: AbortSignal[];
  let serverConns: Connection[];
  let client: RpcClient;
  let clientConn: Connection;

  beforeEach(async () => {
    const make = makeFactory();
    const [srv, cli] = [await make(), await make()];
    transports.push(srv, cli);
    gates = deferredMap<N>();
    signals = [];
    serverConns = [];
    const rpc = new RpcServer()
      .register(gated, (req) => gates.wait(req.n))
      .register(inc, (req) => Promise.resolve({ n: req.n + 1 }))
      .register(refuse, () => Promise.reject(new FltError('BAD_ARGUMENT', 'no')))
      .register(hang, (_req, ctx) => {
        signals.push(ctx.signal);
        return new Promise<N>(() => undefined);
      });
    new Router(srv)
      .route(ALPN.rpc, (c) => {
        serverConns.push(c);
        return rpc.serve(c);
      })
      .start();
    clientConn = await cli.connect(srv.addr(), ALPN.rpc, { timeoutMs: 5000 });
    client = await RpcClient.open(clientConn, 5000);
  });

  afterEach(async () => {
    await Promise.all(transports.splice(0).map((t) => t.close()));
  });

  it('answers 50 calls in flight on one connection, in reverse order', async () => {
    const settled: number[] = [];
    const calls = Array.from({ length: 50 }, (_, n) =>
      client.call(gated, { n }).then((r) => {
        settled.push(n);
        return r;
      }),
    );
    await waitFor('all 50 handlers running', () => gates.open.size === 50);
    for (let n = 49; n >= 0; n--) {
      gates.release(n, { n: n * 2 });
      await waitFor(`answer ${n}`, () => settled.includes(n)); // one at a time: a strict order
    }
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 50 }, (_, n) => ({ n: n * 2 })));
    expect(settled).toEqual(Array.from({ length: 50 }, (_, i) => 49 - i));
  });

  it('a handler throwing FltError(BAD_ARGUMENT) arrives as BAD_ARGUMENT', async () => {
    await expectCode(client.call(refuse, { n: 1 }), 'BAD_ARGUMENT');
    expect(await client.call(inc, { n: 1 })).toEqual({ n: 2 });
  });

  it('an unknown method is RPC_UNKNOWN_METHOD', async () => {
    await expectCode(client.call(missing, { n: 1 }), 'RPC_UNKNOWN_METHOD');
  });

  it('a request failing the method validator is BAD_MESSAGE, and the connection stays', async () => {
    await expectCode(client.call(inc, { n: 'one' } as unknown as N), 'BAD_MESSAGE');
    await expectCode(client.call(inc, { n: 1.5 }), 'BAD_MESSAGE');
    expect(await client.call(inc, { n: 41 })).toEqual({ n: 42 });
  });

  it('a handler that never answers: TIMEOUT at the client, and its ctx.signal is aborted', async () => {
    await expectCode(client.call(hang, { n: 0 }, { timeoutMs: 200 }), 'TIMEOUT');
    const [signal] = await waitFor('the handler started', () =>
      signals.length === 1 ? signals : undefined,
    );
    await waitFor('the handler is aborted at its deadline', () => signal!.aborted, 5000);
    expect(await client.call(inc, { n: 0 })).toEqual({ n: 1 });
  });

  it('the server closing the connection rejects in-flight calls with CONNECTION_LOST', async () => {
    // Expectations attached at once: both reject together, and neither may go unhandled.
    const inFlight = [client.call(gated, { n: 1 }), client.call(hang, { n: 2 })].map((c) =>
      expectCode(c, 'CONNECTION_LOST'),
    );
    await waitFor('both handlers running', () => gates.open.size === 1 && signals.length === 1);
    serverConns[0]!.close(CloseCode.SHUTDOWN, 'going down');
    await Promise.all(inFlight);
    await expectCode(client.call(inc, { n: 1 }), 'CONNECTION_LOST');
    await waitFor('the server aborts the running handler', () => signals[0]!.aborted, 5000);
  });

  it('an AbortSignal aborts a call with ABORTED; other calls are unaffected', async () => {
    const ac = new AbortController();
    const call = client.call(gated, { n: 7 }, { signal: ac.signal });
    const other = client.call(gated, { n: 8 });
    await waitFor('both handlers running', () => gates.open.size === 2);
    ac.abort();
    await expectCode(call, 'ABORTED');
    gates.release(7, { n: 14 }); // the late answer to the aborted call is dropped
    gates.release(8, { n: 16 });
    expect(await other).toEqual({ n: 16 });
  });

  it('a call whose signal is already aborted is ABORTED and never reaches the server', async () => {
    await expectCode(client.call(gated, { n: 99 }, { signal: AbortSignal.abort() }), 'ABORTED');
    // Requests on the stream are read in order: had 99 been sent, its handler would run first.
    expect(await client.call(inc, { n: 0 })).toEqual({ n: 1 });
    expect(gates.open.has(99)).toBe(false);
  });

  it(`answers BUSY to calls beyond MAX_IN_FLIGHT (${MAX_IN_FLIGHT}), and serves the rest`, async () => {
    const extra = 3;
    const results = Array.from({ length: MAX_IN_FLIGHT + extra }, (_, n) =>
      client.call(gated, { n }).then(
        (r) => r.n,
        (err: unknown) => (err instanceof FltError ? err.code : 'not an FltError'),
      ),
    );
    await waitFor(
      'the first MAX_IN_FLIGHT handlers running',
      () => gates.open.size === MAX_IN_FLIGHT,
    );
    // The excess is refused while the others still run.
    const busy = await Promise.all(results.slice(MAX_IN_FLIGHT));
    expect(busy).toEqual(Array.from({ length: extra }, () => 'BUSY'));
    for (const n of [...gates.open.keys()]) gates.release(n, { n: n * 2 });
    const done = await Promise.all(results.slice(0, MAX_IN_FLIGHT));
    expect(done).toEqual(Array.from({ length: MAX_IN_FLIGHT }, (_, n) => n * 2));
    expect(await client.call(inc, { n: 1 })).toEqual({ n: 2 }); // room again
  });

  it('a call racing the connection close rejects with CONNECTION_LOST, leaving nothing unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      clientConn.close(CloseCode.NORMAL, 'bye');
      const calls = Array.from({ length: 5 }, (_, n) => client.call(inc, { n }));
      await Promise.all(calls.map((c) => expectCode(c, 'CONNECTION_LOST')));
      // Unhandled rejections are reported after the current macrotask; let one pass.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await p.then(
    (v) => expect.fail(`resolved with ${JSON.stringify(v)}; expected ${code}`),
    (err: unknown) => {
      expect(err).toBeInstanceOf(FltError);
      expect((err as FltError).code).toBe(code);
    },
  );
}

describe('rpc deadlines', () => {
  it('cover the write: a call on a stream whose write never completes is TIMEOUT', async () => {
    // What a connection to a peer that died without closing can do until QUIC's idle timeout
    // (~30 s): accept no more bytes. A liveness ping must still fail within its deadline.
    const never = () => new Promise<never>(() => undefined);
    const stalled: Connection = {
      remoteId: 'f'.repeat(64) as Connection['remoteId'],
      alpn: ALPN.rpc,
      openStream: () => Promise.resolve({ read: never, write: never, finish: never }),
      acceptStream: () => Promise.resolve(null),
      close: () => undefined,
      closed: never(),
    };
    const client = await RpcClient.open(stalled, 5000);
    await expect(client.call(inc, { n: 1 }, { timeoutMs: 200 })).rejects.toMatchObject({
      code: 'TIMEOUT',
    });
  });
});

describe('rpc channel: a peer that cannot be reached', () => {
  it('a call whose connect does not complete within its deadline is CONNECT_FAILED, not TIMEOUT', async () => {
    // A coordinator killed and not back yet: its address answers nothing, so the dial waits for
    // QUIC to resend. The liveness check must tell this (unreachable) from a slow answer.
    const gone = await bindIroh();
    const addr = gone.addr();
    await gone.close();
    const a = await bindIroh();
    const channel = new RpcChannel(a, addr, { timeoutMs: 10_000 });
    try {
      await expect(channel.call(inc, { n: 1 }, { timeoutMs: 500 })).rejects.toMatchObject({
        code: 'CONNECT_FAILED',
      });
    } finally {
      channel.close();
      await a.close();
    }
  });
});

describe('rpc access: who may call is declared on each method, deny by default', () => {
  it('refuses a method that allows nobody at registration', () => {
    const server = new RpcServer();
    expect(() =>
      server.register(method('test.nobody', []), () => Promise.resolve({ n: 0 })),
    ).toThrow(TypeError);
    const untyped = { name: 'test.untyped', request: isN, response: isN } as unknown as RpcMethod<
      N,
      N
    >;
    expect(() => server.register(untyped, () => Promise.resolve({ n: 0 }))).toThrow(TypeError);
    expect(server.methods()).toEqual([]);
  });

  it("refuses a role the method does not list with the owner's error, before the body is read or the handler runs", async () => {
    const net = new MemoryNetwork();
    const srv = net.bind(ALL_ALPNS);
    const roles = new Map<string, string>();
    const ran: string[] = [];
    const vip = method('test.vip', ['vip']);
    const open = method('test.open');
    const server = new RpcServer({
      access: {
        roleOf: (peer) => roles.get(peer) ?? 'stranger',
        refuse: (_peer, role, m) => new FltError('BAD_ARGUMENT', `${role} may not ${m.name}`),
      },
    })
      .register(vip, (req) => (ran.push(vip.name), Promise.resolve(req)))
      .register(open, (req) => (ran.push(open.name), Promise.resolve(req)));
    new Router(srv).route(ALPN.rpc, (c) => server.serve(c)).start();
    const cli = net.bind(ALL_ALPNS);
    const client = await RpcClient.open(await cli.connect(srv.addr(), ALPN.rpc), 5000);
    try {
      // Refused with the owner's code, even with a body that would fail validation.
      await expectCode(client.call(vip, { n: 1 }), 'BAD_ARGUMENT');
      await expectCode(client.call(vip, { n: 'x' } as unknown as N), 'BAD_ARGUMENT');
      expect(ran).toEqual([]);
      // ANYONE lets the stranger through; an unknown method is still RPC_UNKNOWN_METHOD.
      expect(await client.call(open, { n: 2 })).toEqual({ n: 2 });
      await expectCode(client.call(missing, { n: 1 }), 'RPC_UNKNOWN_METHOD');
      // The role is asked at every call: once a vip, the same connection gets through.
      roles.set(cli.nodeId, 'vip');
      expect(await client.call(vip, { n: 3 })).toEqual({ n: 3 });
      await expectCode(client.call(vip, { n: 'x' } as unknown as N), 'BAD_MESSAGE');
      expect(ran).toEqual([open.name, vip.name]);
    } finally {
      await Promise.all([srv.close(), cli.close()]);
    }
  });
});
