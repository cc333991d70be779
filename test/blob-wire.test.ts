// flt/blobs/0 frame bodies: every kind encodes and decodes; the framed bytes give the same frames
// whole, split at every offset, and merged; garbage is refused with a code; an oversized frame is
// refused from its header, before its body is buffered.

import { createHash, randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { CHUNK, HASH_BYTES } from '../sync/blob-hash.js';
import {
  decodeBlobFrame,
  decodeTransferMsg,
  encodeCtrl,
  encodeData,
  encodeHashes,
  MAX_HASHES_PER_FRAME,
  type BlobFrame,
} from '../sync/blob-wire.js';
import { encodeFrame, FrameDecoder } from '../sync/framing.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import { thrownCode } from './helpers/errors.js';

const CAP = MAX_FRAME[ALPN.blobs];
const bytes = (n: number) => new Uint8Array(randomBytes(n));

const BODIES = [
  encodeCtrl({ t: 'blob', size: 3 * CHUNK + 5, chunks: 4, root: bytes(32) }),
  encodeHashes(0, bytes(4 * HASH_BYTES)),
  encodeData(0, bytes(CHUNK)),
  encodeData(3, bytes(5)),
  encodeCtrl({ t: 'end' }),
  encodeHashes(8192, bytes(MAX_HASHES_PER_FRAME * HASH_BYTES)),
  encodeCtrl({ t: 'err', code: 'BLOB_CORRUPT', msg: 'chunk 3' }),
  encodeCtrl({ t: 'ready', from: 7 }),
];

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}
const WIRE = concat(BODIES.map((b) => encodeFrame(b, CAP)));

/** A frame's kind, number and the sha256 of its payload: cheap to compare for 1 MB of frames. */
function summary(f: BlobFrame): string {
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  if (f.kind === 'ctrl')
    return `ctrl ${JSON.stringify(f.msg, (_, v: unknown) => (v instanceof Uint8Array ? sha(v) : v))}`;
  return f.kind === 'data'
    ? `data ${f.index} ${sha(f.bytes)}`
    : `hashes ${f.first} ${sha(f.hashes)}`;
}
const decodeSummaries = (chunks: Iterable<Uint8Array>) => decodeAll(chunks).map(summary);

function decodeAll(chunks: Iterable<Uint8Array>): BlobFrame[] {
  const d = new FrameDecoder(CAP);
  const out: BlobFrame[] = [];
  for (const c of chunks) for (const body of d.push(c)) out.push(decodeBlobFrame(body));
  d.end();
  return out;
}

function ctrlOf(f: BlobFrame | undefined) {
  if (f?.kind !== 'ctrl') throw new Error('not a control frame');
  return f.msg;
}

it('every frame kind round-trips, and the largest fit the 1 MiB cap', () => {
  const frames = decodeAll([WIRE]);
  expect(frames.map((f) => f.kind)).toEqual([
    'ctrl',
    'hashes',
    'data',
    'data',
    'ctrl',
    'hashes',
    'ctrl',
    'ctrl',
  ]);
  const blob = decodeTransferMsg(ctrlOf(frames[0]));
  expect(blob).toMatchObject({ t: 'blob', size: 3 * CHUNK + 5, chunks: 4 });
  expect(frames[3]).toEqual({ kind: 'data', index: 3, bytes: BODIES[3]!.subarray(6) });
  expect(frames[5]).toMatchObject({ kind: 'hashes', first: 8192 });
  expect(decodeTransferMsg(ctrlOf(frames[6]))).toEqual({
    t: 'err',
    code: 'BLOB_CORRUPT',
    msg: 'chunk 3',
  });
  expect(Math.max(...BODIES.map((b) => b.length))).toBeLessThanOrEqual(CAP);
});

it('gives the same frames whole, split at every offset, and merged with the next', () => {
  const whole = decodeSummaries([WIRE]);
  expect(whole).toHaveLength(BODIES.length);
  // Every frame boundary +-2, and a stride through the large frames' bodies.
  const offsets = new Set<number>();
  let edge = 0;
  for (const b of BODIES) {
    for (let d = -2; d <= 6; d++) offsets.add(Math.min(WIRE.length, Math.max(0, edge + d)));
    for (let at = edge; at < edge + b.length; at += 65_537) offsets.add(at);
    edge += 4 + b.length;
  }
  for (const at of offsets)
    expect(decodeSummaries([WIRE.subarray(0, at), WIRE.subarray(at)])).toEqual(whole);
  // The small frames: split at every offset, and fed byte by byte.
  const small = concat(BODIES.filter((b) => b.length < 1000).map((b) => encodeFrame(b, CAP)));
  const smallFrames = decodeSummaries([small]);
  for (let at = 0; at <= small.length; at++)
    expect(decodeSummaries([small.subarray(0, at), small.subarray(at)])).toEqual(smallFrames);
  expect(decodeSummaries([...small].map((b) => Uint8Array.of(b)))).toEqual(smallFrames);
});

it('refuses garbage with a code', () => {
  const ctrl = (v: unknown) => {
    const c = encodeCtrl({ t: 'x' });
    return concat([c.subarray(0, 2), Buffer.from(JSON.stringify(v))]);
  };
  const cases: [Uint8Array, string][] = [
    [new Uint8Array(0), 'BAD_MESSAGE'],
    [Uint8Array.of(0), 'BAD_MESSAGE'],
    [Uint8Array.of(1, 1, 0xa0), 'UNSUPPORTED_VERSION'],
    [Uint8Array.of(0, 9, 0, 0, 0, 0, 1), 'BAD_MESSAGE'], // unknown kind
    [Uint8Array.of(0, 2, 0, 0, 0, 0), 'BAD_MESSAGE'], // data without bytes
    [Uint8Array.of(0, 2, 0, 0), 'BAD_MESSAGE'], // truncated header
    [concat([Uint8Array.of(0, 2, 0, 0, 0, 0), bytes(CHUNK + 1)]), 'BAD_MESSAGE'],
    [concat([Uint8Array.of(0, 3, 0, 0, 0, 0), bytes(33)]), 'BAD_MESSAGE'],
    [
      concat([Uint8Array.of(0, 3, 0, 0, 0, 0), bytes(32 * (MAX_HASHES_PER_FRAME + 1))]),
      'BAD_MESSAGE',
    ],
    [Uint8Array.of(0, 1, 0xff, 0xff), 'BAD_MESSAGE'], // not CBOR
    [ctrl('string'), 'BAD_MESSAGE'],
    [Uint8Array.of(0, 1, 0xa0), 'BAD_MESSAGE'], // a map without t
  ];
  for (const [body, code] of cases) expect(thrownCode(() => decodeBlobFrame(body))).toBe(code);
  const badMsgs = [
    { t: 'blob', size: 10, chunks: 2, root: bytes(32) },
    { t: 'blob', size: -1, chunks: 0, root: bytes(32) },
    { t: 'blob', size: 10, chunks: 1, root: bytes(31) },
    { t: 'ready', from: -1 },
    { t: 'err', code: '', msg: 'x' },
    { t: 'err', code: 'X', msg: 'x'.repeat(5000) },
    { t: 'put' }, // a request of the layer above, not a transfer message
  ];
  for (const m of badMsgs)
    expect(thrownCode(() => decodeTransferMsg(ctrlOf(decodeBlobFrame(encodeCtrl(m)))))).toBe(
      'BAD_MESSAGE',
    );
  expect(thrownCode(() => encodeData(0, new Uint8Array(0)))).toBe('BAD_ARGUMENT');
  expect(thrownCode(() => encodeData(0, bytes(CHUNK + 1)))).toBe('BAD_ARGUMENT');
  expect(thrownCode(() => encodeHashes(0, bytes(31)))).toBe('BAD_ARGUMENT');
});

it('refuses a frame above the cap from its 4 header bytes, before buffering its body', () => {
  const d = new FrameDecoder(CAP);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, CAP + 1, false);
  expect(thrownCode(() => d.push(header))).toBe('FRAME_TOO_LARGE');
  expect(d.pending).toBe(0);
  expect(thrownCode(() => encodeFrame(new Uint8Array(CAP + 1), CAP))).toBe('FRAME_TOO_LARGE');
});
