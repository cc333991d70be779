// flt/echo/0 over real iroh endpoints: rounds of every size come back intact, and a peer or
// path that changes a byte or the sequence number is caught (ECHO_MISMATCH).

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { EchoClient, MAX_ECHO_PAYLOAD, serveEcho } from '../sync/echo.js';
import { FltError } from '../sync/errors.js';
import { FramedStream } from '../sync/framed-stream.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import type { Connection, Transport } from '../sync/transport.js';

const open: Transport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function bind(): Promise<IrohTransport> {
  const t = await IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });
  open.push(t);
  return t;
}

/** An echo server whose answers pass through `tamper` first. */
function tamperingEcho(tamper: (frame: Uint8Array) => Uint8Array) {
  return async (conn: Connection): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const stream = await conn.acceptStream();
      if (!stream) return;
      const framed = new FramedStream(stream, MAX_FRAME[ALPN.echo]);
      for (let f = await framed.readFrame(); f !== null; f = await framed.readFrame()) {
        await framed.writeFrame(tamper(Uint8Array.from(f)));
      }
    }
  };
}

/** A client session against a server running `handler` on flt/echo/0. */
async function session(handler: (conn: Connection) => Promise<void>): Promise<EchoClient> {
  const server = await bind();
  new Router(server).route(ALPN.echo, handler).start();
  const client = await bind();
  return EchoClient.open(await client.connect(server.addr(), ALPN.echo, { timeoutMs: 5000 }));
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await p.then(
    () => expect.fail(`resolved; expected ${code}`),
    (err: unknown) => {
      expect(err).toBeInstanceOf(FltError);
      expect((err as FltError).code).toBe(code);
    },
  );
}

describe('echo over iroh', () => {
  it('rounds of 0 B, 1 B, 64 KiB and 1 MiB come back intact, one after another', async () => {
    const echo = await session(serveEcho);
    for (const size of [0, 1, 64 * 1024, 1024 * 1024, 0]) {
      const rtt = await echo.round(randomBytes(size), 10_000);
      expect(rtt).toBeGreaterThanOrEqual(0);
    }
    await echo.close();
  });

  it('a server that flips one payload byte: ECHO_MISMATCH', async () => {
    const echo = await session(
      tamperingEcho((f) => {
        if (f.length > 5) f[f.length - 1]! ^= 0x01;
        return f;
      }),
    );
    await expectCode(echo.round(randomBytes(1000), 5000), 'ECHO_MISMATCH');
  });

  it('a server that answers with another seq: ECHO_MISMATCH', async () => {
    const echo = await session(
      tamperingEcho((f) => {
        const view = new DataView(f.buffer, f.byteOffset, f.length);
        view.setUint32(1, view.getUint32(1, false) + 1, false);
        return f;
      }),
    );
    await expectCode(echo.round(randomBytes(10), 5000), 'ECHO_MISMATCH');
  });

  it('a payload over MAX_ECHO_PAYLOAD is BAD_ARGUMENT, and nothing is sent', async () => {
    let frames = 0;
    const echo = await session(
      tamperingEcho((f) => {
        frames++;
        return f;
      }),
    );
    await expectCode(echo.round(new Uint8Array(MAX_ECHO_PAYLOAD + 1), 5000), 'BAD_ARGUMENT');
    // The session is still usable, and the refused payload never reached the server.
    await echo.round(Uint8Array.of(1), 5000);
    expect(frames).toBe(1);
  });
});

describe('echo over memory', () => {
  // 16 MiB through the iroh bindings takes seconds (bytes cross as Array<number>); the frame
  // arithmetic at the cap does not depend on the transport.
  it('the largest payload, MAX_ECHO_PAYLOAD, fits in one frame', async () => {
    const net = new MemoryNetwork();
    const server = net.bind(ALL_ALPNS);
    const client = net.bind(ALL_ALPNS);
    open.push(server, client);
    new Router(server).route(ALPN.echo, serveEcho).start();
    const echo = await EchoClient.open(await client.connect(server.addr(), ALPN.echo));
    await echo.round(randomBytes(MAX_ECHO_PAYLOAD), 20_000);
  });
});
