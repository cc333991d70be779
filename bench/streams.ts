// The two stream paths the transport group compares, each as a connected pair on 127.0.0.1:
// @number0/iroh used directly (what any user of the bindings gets), and IrohTransport +
// FramedStream from sync/ (what every sync message goes through). One transfer per new stream.

import { randomBytes } from 'node:crypto';
import * as iroh from '@number0/iroh/index.js';
import { FramedStream } from '../sync/framed-stream.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import type { Connection } from '../sync/transport.js';
import { closeAll } from './wait.js';

export const MiB = 1 << 20;
/** Write size of the raw variants and read size of every receiver: 1 MiB, as in sync/. */
export const CHUNK = MiB;
const RAW_ALPN = 'flt-bench/raw/0';
const FRAMED_ALPN = 'flt-bench/framed/0';
/** The cap the sync protocol runs with, so the decoder does the same checks as in production. */
const FRAME_CAP = MAX_FRAME[ALPN.sync];

/** Buffer -> Array<number> with a plain loop, as any user of the bindings must do. */
export function toArray(bytes: Uint8Array): number[] {
  const out = new Array<number>(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]!;
  return out;
}

/** Decimal megabytes per second (1 MB = 10^6 bytes). */
const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000);

interface Received {
  readonly bytes: number;
  /** performance.now() when the end of the stream was seen. */
  readonly at: number;
}

// ---- raw @number0/iroh ----

export interface RawPair {
  readonly sender: iroh.Connection;
  readonly receiver: iroh.Connection;
  close(): Promise<void>;
}

/** A raw endpoint on 127.0.0.1 without relays; it accepts connections on `alpn` if given. */
export async function rawEndpoint(alpn?: number[]): Promise<iroh.Endpoint> {
  const b = iroh.Endpoint.builder();
  iroh.presetMinimal(b);
  b.relayMode(iroh.RelayMode.disabled());
  b.bindAddr('127.0.0.1:0');
  if (alpn) b.alpns([alpn]);
  return b.bind();
}

/**
 * A server process's raw endpoint: prints its ticket on stdout, then serves every connection on
 * `alpn` with `serve` (a failing connection is dropped), until the endpoint closes.
 */
export async function serveRaw(
  alpn: number[],
  serve: (conn: iroh.Connection) => Promise<void>,
): Promise<void> {
  const ep = await rawEndpoint(alpn);
  process.stdout.write(`${iroh.EndpointTicket.fromAddr(ep.addr()).toString()}\n`);
  for (;;) {
    const incoming = await ep.acceptNext();
    if (!incoming) return;
    void (async () => serve(await (await incoming.accept()).connect()))().catch(() => undefined);
  }
}

async function acceptOne(ep: iroh.Endpoint): Promise<iroh.Connection> {
  const incoming = await ep.acceptNext();
  if (!incoming) throw new Error('raw endpoint closed before a connection arrived');
  return (await incoming.accept()).connect();
}

export async function openRawPair(): Promise<RawPair> {
  const alpn = toArray(Buffer.from(RAW_ALPN));
  const [a, b] = await Promise.all([rawEndpoint(alpn), rawEndpoint(alpn)]);
  const [sender, receiver] = await Promise.all([a.connect(b.addr(), alpn), acceptOne(b)]);
  return {
    sender,
    receiver,
    close: () => closeAll([() => sender.close(0n, []), () => a.close(), () => b.close()]),
  };
}

async function rawReceive(conn: iroh.Connection): Promise<Received> {
  const bi = await conn.acceptBi();
  let bytes = 0;
  for (;;) {
    const chunk = await bi.recv.read(CHUNK);
    if (chunk.length === 0) return { bytes, at: performance.now() }; // [] is end of stream
    bytes += chunk.length;
  }
}

/** One transfer on a new stream; `write` does the timed writes. Returns MB/s. */
export async function rawOnce(
  pair: RawPair,
  total: number,
  write: (send: iroh.SendStream) => Promise<void>,
): Promise<number> {
  const send = async (): Promise<number> => {
    const bi = await pair.sender.openBi();
    const t0 = performance.now();
    await write(bi.send);
    await bi.send.finish();
    return t0;
  };
  const [got, t0] = await Promise.all([rawReceive(pair.receiver), send()]);
  if (got.bytes !== total) throw new Error(`raw: received ${got.bytes} of ${total} bytes`);
  return mbps(total, got.at - t0);
}

// ---- IrohTransport + FramedStream ----

export interface FramedPair {
  readonly sender: Connection;
  readonly receiver: Connection;
  close(): Promise<void>;
}

const bindTransport = () =>
  IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns: [FRAMED_ALPN],
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

export async function openFramedPair(): Promise<FramedPair> {
  const [ta, tb] = await Promise.all([bindTransport(), bindTransport()]);
  const accepted = new Promise<Connection>((resolve) => tb.listen(resolve));
  const sender = await ta.connect(tb.addr(), FRAMED_ALPN, { timeoutMs: 10_000 });
  const receiver = await accepted;
  return { sender, receiver, close: () => closeAll([() => ta.close(), () => tb.close()]) };
}

async function framedReceive(conn: Connection): Promise<Received> {
  const stream = await conn.acceptStream();
  if (!stream) throw new Error('framed: connection closed before the stream arrived');
  const framed = new FramedStream(stream, FRAME_CAP);
  let bytes = 0;
  for (;;) {
    const frame = await framed.readFrame();
    if (frame === null) return { bytes, at: performance.now() };
    bytes += frame.length;
  }
}

/**
 * Queues every frame without awaiting each one, as SyncAdapter.send does, so FramedStream can
 * coalesce them; resolves with the start time once all are handed over and the stream finished.
 */
async function framedSend(
  conn: Connection,
  payload: Uint8Array,
  frameSize: number,
): Promise<number> {
  const framed = new FramedStream(await conn.openStream(), FRAME_CAP);
  const t0 = performance.now();
  const writes: Promise<void>[] = [];
  for (let off = 0; off < payload.length; off += frameSize) {
    writes.push(framed.writeFrame(payload.subarray(off, off + frameSize)));
  }
  await Promise.all(writes);
  await framed.finish();
  return t0;
}

/** One transfer of `payload` in frames of `frameSize`; MB/s of frame bodies. */
export async function framedOnce(
  pair: FramedPair,
  payload: Uint8Array,
  frameSize: number,
): Promise<number> {
  const [got, t0] = await Promise.all([
    framedReceive(pair.receiver),
    framedSend(pair.sender, payload, frameSize),
  ]);
  if (got.bytes !== payload.length) {
    throw new Error(`framed: received ${got.bytes} of ${payload.length} bytes`);
  }
  return mbps(payload.length, got.at - t0);
}
