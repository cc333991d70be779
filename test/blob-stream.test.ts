// One verified blob over flt/blobs/0, on both transports (memory, and real iroh on 127.0.0.1):
// it transfers and verifies; a resumed transfer sends only the missing chunks (bytes counted on
// the sender); a flipped byte in a chunk is refused with HASH_MISMATCH before any of that chunk
// is written, and the receiver closes the connection with that code.

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { blobHasher, CHUNK, chunkCount, type BlobDigest } from '../sync/blob-hash.js';
import { receiveBlob, sendBlob, type Chunk } from '../sync/blob-stream.js';
import { FltError } from '../sync/errors.js';
import { FramedStream } from '../sync/framed-stream.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import type { Connection, Transport } from '../sync/transport.js';
import { waitFor } from './helpers/wait.js';

const CAP = MAX_FRAME[ALPN.blobs];
const SIZE = 5 * CHUNK + 1234; // 6 chunks, the last short

async function* chunksOf(blob: Uint8Array, from: number, flip?: number): AsyncIterable<Chunk> {
  await Promise.resolve(); // a source reading a file awaits; so does this one
  for (let i = from; i < chunkCount(blob.length); i++) {
    const bytes = blob.slice(i * CHUNK, (i + 1) * CHUNK);
    if (i === flip) bytes[100]! ^= 1;
    yield { index: i, bytes };
  }
}

function suite(bind: () => Promise<Transport>) {
  const open: Transport[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close()));
  });

  /** A server answering each stream with the blob from the `from` the client writes (u32). */
  async function setup(blob: Uint8Array, flip?: number) {
    const hasher = await blobHasher();
    const digest = digestOf(hasher, blob);
    const [srv, cli] = [await bind(), await bind()];
    open.push(srv, cli);
    const sent = { bytes: 0 };
    srv.listen((conn) => {
      void (async () => {
        const s = await conn.acceptStream();
        if (!s) return;
        const fs = new FramedStream(s, CAP);
        const req = await fs.readFrame();
        const from = new DataView(req!.buffer, req!.byteOffset).getUint32(0);
        const hashes = req![4] === 1;
        const stats = await sendBlob(fs, digest, chunksOf(blob, from, flip), {
          from,
          hashes,
        }).catch(() => ({ bytes: 0 }));
        sent.bytes += stats.bytes;
        await fs.finish().catch(() => undefined);
      })();
    });
    const conn = await cli.connect(srv.addr(), ALPN.blobs, { timeoutMs: 5000 });
    return { hasher, digest, conn, sent };
  }

  async function get(
    conn: Connection,
    from: number,
    opts: { hashes?: Uint8Array; root: Uint8Array },
  ) {
    const hasher = await blobHasher();
    const fs = new FramedStream(await conn.openStream(), CAP);
    const req = new Uint8Array(5);
    new DataView(req.buffer).setUint32(0, from);
    req[4] = opts.hashes ? 0 : 1;
    await fs.writeFrame(req);
    const written = new Map<number, Uint8Array>();
    const result = await receiveBlob(fs, {
      ...opts,
      from,
      hasher,
      conn,
      write: (i, b) => {
        written.set(i, b.slice());
        return Promise.resolve();
      },
    }).catch((err: unknown) => err as FltError);
    return { result, written };
  }

  it('transfers a blob, every chunk verified, and the root binds the list', async () => {
    const blob = new Uint8Array(randomBytes(SIZE));
    const { digest, conn, sent } = await setup(blob);
    const { result, written } = await get(conn, 0, { root: digest.root });
    expect(result).toMatchObject({ size: SIZE, chunks: 6, bytes: SIZE });
    const got = Buffer.concat(
      [...written.keys()].sort((a, b) => a - b).map((i) => written.get(i)!),
    );
    expect(Buffer.compare(got, blob)).toBe(0);
    await waitFor('the sender to count', () => sent.bytes === SIZE);
  });

  it('resumes from a chunk: only the missing chunks cross the wire', async () => {
    const blob = new Uint8Array(randomBytes(SIZE));
    const { digest, conn, sent } = await setup(blob);
    const { result, written } = await get(conn, 4, { root: digest.root, hashes: digest.hashes });
    expect(result).toMatchObject({ chunks: 2, bytes: SIZE - 4 * CHUNK });
    expect([...written.keys()]).toEqual([4, 5]);
    await waitFor('the sender to count', () => sent.bytes === SIZE - 4 * CHUNK);
  });

  it('refuses a flipped byte with HASH_MISMATCH: nothing of that chunk written, connection closed', async () => {
    const blob = new Uint8Array(randomBytes(SIZE));
    const { digest, conn } = await setup(blob, 3);
    const { result, written } = await get(conn, 0, { root: digest.root });
    expect(result).toBeInstanceOf(FltError);
    expect((result as FltError).code).toBe('HASH_MISMATCH');
    expect([...written.keys()]).toEqual([0, 1, 2]);
    const closed = await conn.closed;
    expect(closed.reason).toBe('HASH_MISMATCH');
  });

  it('refuses a root other than the expected one before any chunk', async () => {
    const blob = new Uint8Array(randomBytes(SIZE));
    const { conn } = await setup(blob);
    const { result, written } = await get(conn, 0, { root: new Uint8Array(32) });
    expect((result as FltError).code).toBe('HASH_MISMATCH');
    expect(written.size).toBe(0);
  });
}

function digestOf(hasher: Awaited<ReturnType<typeof blobHasher>>, blob: Uint8Array): BlobDigest {
  const c = hasher.chunker();
  c.push(blob);
  return c.finish();
}

describe('blob stream over MemoryTransport', () => {
  const net = new MemoryNetwork();
  suite(() => Promise.resolve(net.bind([ALPN.blobs])));
});

describe('blob stream over IrohTransport (127.0.0.1)', () => {
  suite(() =>
    IrohTransport.bind({
      secretKey: randomBytes(32),
      alpns: [ALPN.blobs],
      bind: '127.0.0.1:0',
      relay: 'disabled',
      discovery: 'none',
    }),
  );
});
