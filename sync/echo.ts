// flt/echo/0: diagnostics. The client sends frames `[version u8][seq u32 BE][payload]`; the
// server sends each frame back unchanged. The client checks seq and the payload's SHA-256, so a
// corrupting path or peer is caught, and times each round.

import { createHash } from 'node:crypto';
import { withDeadline } from './deadline.js';
import { FltError } from './errors.js';
import { FramedStream } from './framed-stream.js';
import { ALPN, MAX_FRAME } from './protocols.js';
import { protocolService, serveStreams, type Service } from './service.js';
import type { Connection } from './transport.js';

export const ECHO_VERSION = 0;
const HEADER = 5;
/** Largest payload one echo round may carry (the frame cap minus the header). */
export const MAX_ECHO_PAYLOAD = MAX_FRAME[ALPN.echo] - HEADER;

function encode(seq: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, ECHO_VERSION);
  view.setUint32(1, seq, false);
  out.set(payload, HEADER);
  return out;
}

function decode(frame: Uint8Array): { seq: number; payload: Uint8Array } {
  if (frame.length < HEADER)
    throw new FltError('BAD_MESSAGE', `echo frame of ${frame.length} bytes`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  if (view.getUint8(0) !== ECHO_VERSION) {
    throw new FltError('UNSUPPORTED_VERSION', `echo version ${view.getUint8(0)}`);
  }
  return { seq: view.getUint32(1, false), payload: frame.subarray(HEADER) };
}

/** Serves echo on one connection until the peer closes it. Bad frames close the connection. */
export function serveEcho(conn: Connection): Promise<void> {
  return serveStreams(conn, echoStream, { maxFrame: MAX_FRAME[ALPN.echo] });
}

/** The echo protocol as a Service, for `Router.service`. */
export function echoService(): Service {
  return protocolService(ALPN.echo, serveEcho);
}

async function echoStream(framed: FramedStream): Promise<void> {
  for (;;) {
    const frame = await framed.readFrame();
    if (frame === null) return framed.finish();
    decode(frame); // validate before answering
    await framed.writeFrame(frame);
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** One echo session over one stream; rounds run one after another. */
export class EchoClient {
  private seq = 0;

  private constructor(private readonly framed: FramedStream) {}

  static async open(conn: Connection): Promise<EchoClient> {
    return new EchoClient(new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.echo]));
  }

  /** Sends `payload`, waits for it to come back intact; returns the round-trip time in ms. */
  async round(payload: Uint8Array, timeoutMs: number): Promise<number> {
    if (payload.length > MAX_ECHO_PAYLOAD) {
      throw new FltError('BAD_ARGUMENT', `echo payload over ${MAX_ECHO_PAYLOAD} bytes`);
    }
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const start = performance.now();
    await this.framed.writeFrame(encode(seq, payload));
    const frame = await withDeadline(this.framed.readFrame(), { timeoutMs }, `echo round ${seq}`);
    const rtt = performance.now() - start;
    if (frame === null) throw new FltError('CONNECTION_LOST', 'peer ended the echo stream');
    const back = decode(frame);
    if (back.seq !== seq) throw new FltError('ECHO_MISMATCH', `round ${seq}: got seq ${back.seq}`);
    if (sha256(back.payload) !== sha256(payload)) {
      throw new FltError('ECHO_MISMATCH', `round ${seq}: echoed payload differs (hash mismatch)`);
    }
    return rtt;
  }

  async close(): Promise<void> {
    await this.framed.finish();
  }
}
