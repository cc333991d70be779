// The Transport contract, as one suite run against every implementation (test/transport.test.ts
// runs it over MemoryTransport and IrohTransport). Whatever sync/ builds on a Transport may rely
// on exactly what is checked here, and nothing else.

import { afterEach, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import type { ByteStream, Connection, PeerAddr, Transport } from '../sync/transport.js';
import { waitFor } from './helpers/wait.js';

export interface TransportFixture {
  /** A fresh transport accepting `alpns` (not yet listening). */
  bind(alpns: readonly string[]): Promise<Transport>;
  /** A valid address at which no node answers. */
  unknownPeer(): Promise<PeerAddr>;
}

const ALPN_A = 'conformance/a/0';
const ALPN_B = 'conformance/b/0';

/** Registers the conformance tests in the current describe block. */
export function transportConformance(makeFixture: () => TransportFixture): void {
  let fixture: TransportFixture;
  const open: Transport[] = [];

  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close()));
  });

  async function bind(alpns: readonly string[] = [ALPN_A, ALPN_B]): Promise<Transport> {
    fixture ??= makeFixture();
    const t = await fixture.bind(alpns);
    open.push(t);
    return t;
  }

  /** A listening server, and a way to take the connections it accepted in order. */
  async function server(alpns?: readonly string[]) {
    const t = await bind(alpns);
    const accepted: Connection[] = [];
    t.listen((c) => accepted.push(c));
    const next = () => waitFor('an accepted connection', () => accepted.shift(), 10_000);
    return { t, next };
  }

  async function connected(alpn = ALPN_A) {
    const srv = await server();
    const client = await bind();
    const mine = await client.connect(srv.t.addr(), alpn, { timeoutMs: 5000 });
    const theirs = await srv.next();
    return { srv: srv.t, client, mine, theirs };
  }

  it('connects and accepts with the authenticated ids and the ALPN on both sides', async () => {
    for (const alpn of [ALPN_A, ALPN_B]) {
      const { srv, client, mine, theirs } = await connected(alpn);
      expect(mine.remoteId).toBe(srv.nodeId);
      expect(theirs.remoteId).toBe(client.nodeId);
      expect(mine.alpn).toBe(alpn);
      expect(theirs.alpn).toBe(alpn);
    }
  });

  it('carries bytes both ways on a stream; read returns null after finish', async () => {
    const { mine, theirs } = await connected();
    const up = new Uint8Array(200_000).map((_, i) => i * 7);
    const s = await mine.openStream();
    await s.write(up); // iroh only announces a stream once bytes were sent on it
    await s.finish();
    const t = await acceptOrFail(theirs);
    expect(Buffer.compare(await readAll(t), up)).toBe(0);
    const down = Uint8Array.of(1, 2, 3, 0, 255);
    await t.write(down);
    await t.finish();
    expect(await readAll(s)).toEqual(down);
    expect(await s.read(10)).toBeNull(); // and it stays null
  });

  it('packet counts, where the transport keeps them, grow with what each side sends', async () => {
    const { mine, theirs } = await connected();
    const s = await mine.openStream();
    await s.write(Uint8Array.of(1));
    const t = await acceptOrFail(theirs);
    await t.read(1);
    const counts = () =>
      [mine.packets?.(), theirs.packets?.()].flatMap((p) => [p?.sent, p?.received]);
    const before = counts();
    if (before.some((n) => n === undefined)) {
      // A transport that cannot tell says so for every count (MemoryTransport).
      expect(before.every((n) => n === undefined)).toBe(true);
      return;
    }
    await s.write(new Uint8Array(50_000).fill(3));
    await readAtLeast(t, 50_000);
    await t.write(new Uint8Array(50_000).fill(4));
    await readAtLeast(s, 50_000);
    const after = counts() as number[];
    for (let i = 0; i < 4; i++) expect(after[i]!).toBeGreaterThan(before[i]!);
  });

  it('runs several streams on one connection independently', async () => {
    const { mine, theirs } = await connected();
    const N = 5;
    const opened = await Promise.all(Array.from({ length: N }, () => mine.openStream()));
    await Promise.all(opened.map((s, i) => s.write(Uint8Array.of(i, i, i))));
    // The acceptor echoes each stream's bytes back reversed, on the same stream.
    const served: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      const t = await acceptOrFail(theirs);
      served.push(
        (async () => {
          const got = await readAll(t);
          await t.write(got.reverse());
          await t.finish();
        })(),
      );
    }
    // Finish in reverse order: streams must not depend on each other.
    for (let i = N - 1; i >= 0; i--) {
      await opened[i]!.write(Uint8Array.of(100 + i));
      await opened[i]!.finish();
    }
    await Promise.all(served);
    const back = await Promise.all(opened.map((s) => readAll(s)));
    back.forEach((b, i) => expect([...b]).toEqual([100 + i, i, i, i]));
  });

  it.each([
    ['a reason', 42, 'going away'],
    ['an empty reason', 7, ''],
  ])('close(code, reason) with %s reaches the peer', async (_name, code, reason) => {
    const { mine, theirs } = await connected();
    mine.close(code, reason);
    expect(await theirs.closed).toEqual({ code, reason, byPeer: true });
    expect(await mine.closed).toEqual({ code, reason, byPeer: false });
  });

  it('close is idempotent: the first code and reason win on both sides', async () => {
    const { mine, theirs } = await connected();
    theirs.close(3, 'first');
    theirs.close(9, 'second');
    expect(await mine.closed).toEqual({ code: 3, reason: 'first', byPeer: true });
    mine.close(4, 'late'); // on a connection the peer already closed: changes nothing
    expect(await mine.closed).toEqual({ code: 3, reason: 'first', byPeer: true });
    expect(await theirs.closed).toEqual({ code: 3, reason: 'first', byPeer: false });
  });

  it('after a close: reads and writes reject with CONNECTION_LOST, acceptStream gives null', async () => {
    const { mine, theirs } = await connected();
    const s = await mine.openStream();
    await s.write(Uint8Array.of(1));
    const t = await acceptOrFail(theirs);
    expect(await t.read(1)).toEqual(Uint8Array.of(1));
    // Waiting for bytes that will never come; checked at once so its rejection is handled.
    const pendingRead = expectCode(t.read(10), ['CONNECTION_LOST']);
    const pendingAccept = theirs.acceptStream();
    mine.close(1, 'bye');
    await theirs.closed;
    await pendingRead;
    expect(await pendingAccept).toBeNull();
    expect(await theirs.acceptStream()).toBeNull();
    // A write on a dead connection rejects (it must not throw synchronously, nor hang).
    const write = settle(() => t.write(Uint8Array.of(2)));
    await expectCode(write, ['CONNECTION_LOST']);
    await expectCode(
      settle(() => theirs.openStream()),
      ['CONNECTION_LOST'],
    );
  });

  it('fails to connect to an unknown node instead of hanging', async () => {
    const client = await bind();
    await client.connect(await fixture.unknownPeer(), ALPN_A, { timeoutMs: 3000 }).then(
      () => expect.fail('connected to nobody'),
      (err: unknown) => expectFltCode(err, ['CONNECT_FAILED', 'TIMEOUT']),
    );
  });

  it('fails to connect with an ALPN the peer does not serve', async () => {
    const srv = await server([ALPN_A]);
    const client = await bind([ALPN_A, 'conformance/other/0']);
    await client.connect(srv.t.addr(), 'conformance/other/0', { timeoutMs: 3000 }).then(
      () => expect.fail('connected on an ALPN the server does not serve'),
      (err: unknown) => expectFltCode(err, ['CONNECT_FAILED', 'TIMEOUT']),
    );
    // The server is still fine for the ALPN it serves.
    const ok = await client.connect(srv.t.addr(), ALPN_A, { timeoutMs: 3000 });
    expect((await srv.next()).remoteId).toBe(client.nodeId);
    ok.close(0, 'done');
  });

  it('transport.close() is idempotent and closes every open connection', async () => {
    const { srv, client, mine, theirs } = await connected();
    const second = await client.connect(srv.addr(), ALPN_B, { timeoutMs: 5000 });
    await Promise.all([srv.close(), srv.close()]);
    await srv.close();
    expect((await theirs.closed).byPeer).toBe(false);
    const seen = await Promise.all([mine.closed, second.closed]);
    for (const info of seen) expect(info.byPeer).toBe(true);
  });

  it("a connection the server had no time to accept sees its close as the peer's", async () => {
    // Closing right after the client's handshake: the server usually still holds the connection
    // in its accept queue, and closes it "during the handshake" (about 1 in 15 here).
    for (let i = 0; i < 10; i++) {
      const srv = await server([ALPN_A]);
      const client = await bind([ALPN_A]);
      const conn = await client.connect(srv.t.addr(), ALPN_A, { timeoutMs: 5000 });
      await srv.t.close();
      expect((await conn.closed).byPeer).toBe(true);
    }
  });

  it('refuses a second listener', async () => {
    const t = await bind();
    t.listen(() => undefined);
    expect(() => t.listen(() => undefined)).toThrow(FltError);
  });
}

async function acceptOrFail(conn: Connection): Promise<ByteStream> {
  const s = await conn.acceptStream();
  if (!s) throw new Error('connection closed before the stream arrived');
  return s;
}

/** Everything until the peer finishes (bounded: at most 10 000 reads). */
export async function readAll(s: ByteStream): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 10_000; i++) {
    const chunk = await s.read(64 * 1024);
    if (chunk === null) return new Uint8Array(Buffer.concat(parts));
    parts.push(chunk);
  }
  throw new Error('stream did not end after 10 000 reads');
}

/** Reads until `n` bytes came (bounded: at most 10 000 reads). */
async function readAtLeast(s: ByteStream, n: number): Promise<void> {
  let got = 0;
  for (let i = 0; i < 10_000 && got < n; i++) {
    const chunk = await s.read(64 * 1024);
    if (chunk === null) throw new Error(`stream ended after ${got} of ${n} bytes`);
    got += chunk.length;
  }
  if (got < n) throw new Error(`${got} of ${n} bytes after 10 000 reads`);
}

/** Calls `fn`, turning a synchronous throw into a test failure rather than a rejection. */
function settle<T>(fn: () => Promise<T>): Promise<T> {
  let p: Promise<T>;
  try {
    p = fn();
  } catch (err) {
    return Promise.resolve().then(() => expect.fail(`threw synchronously: ${String(err)}`));
  }
  return p;
}

export function expectFltCode(err: unknown, codes: readonly string[]): void {
  expect(err).toBeInstanceOf(FltError);
  expect(codes).toContain((err as FltError).code);
}

export async function expectCode(p: Promise<unknown>, codes: readonly string[]): Promise<void> {
  await p.then(
    () => expect.fail(`resolved; expected ${codes.join(' or ')}`),
    (err: unknown) => expectFltCode(err, codes),
  );
}
