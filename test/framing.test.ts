// Length-prefixed framing: the decoder gives the same frames however the bytes are chunked,
// refuses oversized frames from their header alone, and FramedStream keeps write order.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import { FramedStream, IDLE_READ, READ_CHUNK, WRITE_BATCH } from '../sync/framed-stream.js';
import { encodeFrame, FrameDecoder, LENGTH_BYTES } from '../sync/framing.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { CloseCode, type ByteStream, type Connection } from '../sync/transport.js';

const CAP = 1 << 20;

/** Frames of assorted sizes, including an empty one and one of 70 KB. */
const bytes = (n: number) => new Uint8Array(randomBytes(n));
const BODIES = [
  new Uint8Array(0),
  Uint8Array.of(7),
  bytes(3),
  bytes(70_000),
  new Uint8Array(0),
  bytes(LENGTH_BYTES),
  bytes(257),
  new Uint8Array(0),
];

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const WIRE = concat(BODIES.map((b) => encodeFrame(b, CAP)));

/** Feeds `chunks` to a fresh decoder and returns every frame, checking the stream ends cleanly. */
function decodeAll(chunks: Iterable<Uint8Array>, cap = CAP): Uint8Array[] {
  const decoder = new FrameDecoder(cap);
  const frames: Uint8Array[] = [];
  for (const c of chunks) frames.push(...decoder.push(c));
  decoder.end();
  return frames;
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FltError);
    expect((err as FltError).code).toBe(code);
    return;
  }
  expect.fail(`expected ${code}, nothing was thrown`);
}

/** A frame header announcing `len` body bytes. */
function header(len: number): Uint8Array {
  const h = new Uint8Array(LENGTH_BYTES);
  new DataView(h.buffer).setUint32(0, len, false);
  return h;
}

describe('encodeFrame / FrameDecoder', () => {
  it('decodes frames fed whole', () => {
    expectBodies(decodeAll([WIRE]), 'fed whole');
  });

  it('decodes the same frames when split into two chunks at every offset', () => {
    for (let cut = 0; cut <= WIRE.length; cut++) {
      expectBodies(decodeAll([WIRE.subarray(0, cut), WIRE.subarray(cut)]), `split at ${cut}`);
    }
  });

  it('decodes the same frames when fed byte by byte', () => {
    const bytes = Array.from({ length: WIRE.length }, (_, i) => WIRE.subarray(i, i + 1));
    expectBodies(decodeAll(bytes), 'byte by byte');
  });

  it('decodes a frame sent in 150 000 one-byte chunks', () => {
    // A peer may trickle a frame byte by byte. A decoder that shifts its chunk list once per
    // chunk spends time quadratic in the frame size (over 20 s here, past the test deadline);
    // linear takes ~70 ms. Tests assert no wall-clock times: the deadline is the guard.
    const wire = encodeFrame(bytes(150_000), CAP);
    const decoder = new FrameDecoder(CAP);
    let frames = 0;
    for (let i = 0; i < wire.length; i++) frames += decoder.push(wire.subarray(i, i + 1)).length;
    expect(frames).toBe(1);
  });

  it('decodes frames merged with the bytes of the next frame in random chunks', () => {
    const seed = randomBytes(4).readUInt32BE(0);
    let state = seed;
    const rand = (n: number) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    for (let round = 0; round < 20; round++) {
      const chunks: Uint8Array[] = [];
      for (let off = 0; off < WIRE.length; ) {
        const n = 1 + rand(round % 2 === 0 ? 16 : 20_000);
        chunks.push(WIRE.subarray(off, off + n));
        off += n;
      }
      expectBodies(decodeAll(chunks), `seed ${seed} round ${round}`);
    }
  });

  it('returns views that stay valid after more input is pushed', () => {
    const decoder = new FrameDecoder(CAP);
    const [first] = decoder.push(concat([encodeFrame(Uint8Array.of(1, 2, 3), CAP), header(2)]));
    decoder.push(Uint8Array.of(9, 9));
    expect(first).toEqual(Uint8Array.of(1, 2, 3));
  });

  it.each([
    ['2^32-1', 0xffff_ffff],
    ['cap+1', CAP + 1],
  ])('refuses a header announcing %s bytes as soon as its 4 bytes arrive', (_name, len) => {
    const h = header(len);
    const decoder = new FrameDecoder(CAP);
    for (let i = 0; i < LENGTH_BYTES - 1; i++) {
      expect(decoder.push(h.subarray(i, i + 1))).toEqual([]);
      expect(decoder.pending).toBe(i + 1);
    }
    // The fourth header byte alone is enough to refuse: no body byte was ever needed.
    expectCode(() => decoder.push(h.subarray(LENGTH_BYTES - 1)), 'FRAME_TOO_LARGE');
    expect(decoder.pending).toBe(0);
  });

  it('refuses a huge header that follows a good frame in the same chunk, holding no body', () => {
    const decoder = new FrameDecoder(CAP);
    const chunk = concat([
      encodeFrame(Uint8Array.of(1), CAP),
      header(0xffff_ffff),
      randomBytes(16),
    ]);
    expectCode(() => decoder.push(chunk), 'FRAME_TOO_LARGE');
    expect(decoder.pending).toBeLessThanOrEqual(16);
  });

  it('accepts a frame of exactly the cap', () => {
    const body = randomBytes(1000);
    expect(decodeAll([encodeFrame(body, 1000)], 1000)).toEqual([new Uint8Array(body)]);
  });

  it('end() inside a frame is BAD_MESSAGE (truncated header and truncated body)', () => {
    const frame = encodeFrame(randomBytes(10), CAP);
    for (const cut of [1, LENGTH_BYTES - 1, LENGTH_BYTES, frame.length - 1]) {
      const decoder = new FrameDecoder(CAP);
      expect(decoder.push(frame.subarray(0, cut))).toEqual([]);
      expectCode(() => decoder.end(), 'BAD_MESSAGE');
    }
  });

  it('end() after whole frames is clean', () => {
    const decoder = new FrameDecoder(CAP);
    expect(decoder.push(WIRE)).toHaveLength(BODIES.length);
    expect(() => decoder.end()).not.toThrow();
  });

  it('encodeFrame refuses a body over the cap', () => {
    expectCode(() => encodeFrame(new Uint8Array(101), 100), 'FRAME_TOO_LARGE');
    expect(encodeFrame(new Uint8Array(100), 100)).toHaveLength(100 + LENGTH_BYTES);
  });
});

describe('FramedStream read sizes', () => {
  it('asks for IDLE_READ between frames and up to READ_CHUNK while a large frame arrives', async () => {
    // The iroh binding allocates `max` for each pending read: idle reads must stay small.
    const big = randomBytes(3 * READ_CHUNK);
    const wire = [
      encodeFrame(new Uint8Array([1, 2, 3]), 8 * READ_CHUNK),
      encodeFrame(big, 8 * READ_CHUNK),
    ];
    let bytes = Buffer.concat(wire);
    const asked: number[] = [];
    const stream: ByteStream = {
      read(max) {
        asked.push(max);
        if (bytes.length === 0) return Promise.resolve(null);
        const step = Math.min(max, 4096 + asked.length * 100_000); // arrives in uneven pieces
        const chunk = bytes.subarray(0, step);
        bytes = bytes.subarray(step);
        return Promise.resolve(new Uint8Array(chunk));
      },
      write: () => Promise.resolve(),
      finish: () => Promise.resolve(),
    };
    const framed = new FramedStream(stream, 8 * READ_CHUNK);
    expect(await framed.readFrame()).toEqual(new Uint8Array([1, 2, 3]));
    expect(Buffer.compare(Buffer.from((await framed.readFrame())!), big)).toBe(0);
    expect(await framed.readFrame()).toBeNull();
    expect(asked[0]).toBe(IDLE_READ);
    expect(Math.max(...asked)).toBe(READ_CHUNK);
    expect(asked.at(-1)).toBe(IDLE_READ); // the frame done, back to idle reads
  });
});

describe('FramedStream over MemoryTransport', () => {
  async function pair(): Promise<{ client: Connection; server: Connection }> {
    const net = new MemoryNetwork();
    const a = net.bind(['t/0']);
    const b = net.bind(['t/0']);
    let server: Connection | undefined;
    b.listen((c) => (server = c));
    const client = await a.connect(b.addr(), 't/0');
    await Promise.resolve(); // the memory transport hands the connection over in a microtask
    if (!server) throw new Error('no server connection');
    return { client, server };
  }

  it('keeps the order of many frames written in the same tick, across write batches', async () => {
    const { client, server } = await pair();
    const out = new FramedStream(await client.openStream(), 4 * WRITE_BATCH);
    // Small frames with a few larger ones, so that coalescing cuts several batches.
    const bodies = Array.from({ length: 500 }, (_, i) => {
      const b = new Uint8Array(i % 97 === 0 ? 300_000 : 2 + (i % 13));
      new DataView(b.buffer).setUint16(0, i, false); // the index, so a reorder shows
      return b;
    });
    const written = Promise.all(bodies.map((b) => out.writeFrame(b)));
    const stream = await server.acceptStream();
    if (!stream) throw new Error('no stream');
    const input = new FramedStream(stream, 4 * WRITE_BATCH);
    const got: Uint8Array[] = [];
    for (let i = 0; i < bodies.length; i++) {
      const f = await input.readFrame();
      if (f === null) break;
      got.push(f);
    }
    await written;
    expect(got.length).toBe(bodies.length);
    got.forEach((f, i) => expect(sameBytes(f, bodies[i]!), `frame ${i}`).toBe(true));
    client.close(CloseCode.NORMAL, 'done');
  });

  it('finish() in the same tick as writeFrame still delivers every frame first', async () => {
    const { client, server } = await pair();
    const out = new FramedStream(await client.openStream(), CAP);
    const written = Promise.all([1, 2, 3].map((n) => out.writeFrame(Uint8Array.of(n))));
    await out.finish();
    await written;
    const stream = await server.acceptStream();
    if (!stream) throw new Error('no stream');
    const input = new FramedStream(stream, CAP);
    const got: number[] = [];
    for (let i = 0; i < 4; i++) {
      const f = await input.readFrame();
      if (f === null) break;
      got.push(f[0]!);
    }
    expect(got).toEqual([1, 2, 3]);
  });

  it('rejects queued and later writes with CONNECTION_LOST once the connection is gone', async () => {
    const { client, server } = await pair();
    const out = new FramedStream(await client.openStream(), CAP);
    server.close(CloseCode.NORMAL, 'bye');
    await client.closed;
    await expect(out.writeFrame(Uint8Array.of(1))).rejects.toMatchObject({
      code: 'CONNECTION_LOST',
    });
    await expect(out.writeFrame(Uint8Array.of(2))).rejects.toMatchObject({
      code: 'CONNECTION_LOST',
    });
  });

  it('readFrame throws FRAME_TOO_LARGE for an oversized header on the wire', async () => {
    const { client, server } = await pair();
    const raw = await client.openStream();
    await raw.write(header(0xffff_ffff));
    const stream = await server.acceptStream();
    if (!stream) throw new Error('no stream');
    await expect(new FramedStream(stream, CAP).readFrame()).rejects.toMatchObject({
      code: 'FRAME_TOO_LARGE',
    });
  });
});

/** Compares with Buffer.compare: toEqual walks 70 KB arrays element by element, too slowly. */
function expectBodies(frames: Uint8Array[], what: string): void {
  if (frames.length !== BODIES.length || frames.some((f, i) => !sameBytes(f, BODIES[i]!))) {
    expect.fail(`${what}: decoded frames differ from the encoded ones`);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
