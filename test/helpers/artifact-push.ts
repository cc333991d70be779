// A minimal pusher for the artifact tests: the NAR of a path of the admin's store B, its meta
// signed with a Nix key, and a `put` on flt/blobs/0 as an admin speaks it. It stands in for the
// admin's push client (src/artifacts/push.ts) so that the coordinator and agent tests do not
// depend on it; shared by test/artifact-server.test.ts and the artifacts-* tests.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { CHUNK, chunkCount, type BlobDigest, type BlobHasher } from '../../sync/blob-hash.js';
import { remoteError, sendBody, type Chunk } from '../../sync/blob-stream.js';
import { decodeBlobFrame, decodeTransferMsg, encodeCtrl } from '../../sync/blob-wire.js';
import { FltError } from '../../sync/errors.js';
import { FramedStream } from '../../sync/framed-stream.js';
import { ALPN, MAX_FRAME } from '../../sync/protocols.js';
import type { Connection } from '../../sync/transport.js';
import type { ArtifactMeta, StorePath } from '../../src/artifacts/meta.js';
import { nix32 } from '../../src/artifacts/nix32.js';
import { formatPublicKey, sign, type SigningKey } from '../../src/artifacts/nix-key.js';
import { nixStore, type ArtifactStores } from './artifacts.js';

const run = promisify(execFile);

export interface Nar {
  readonly meta: ArtifactMeta;
  readonly bytes: Uint8Array;
  readonly digest: BlobDigest;
}

/** The NAR of `path` in the admin's store B, its meta signed with `keys` (in order). */
export async function narOf(
  fx: ArtifactStores,
  path: string,
  hasher: BlobHasher,
  keys: readonly SigningKey[],
): Promise<Nar> {
  // Nix 2.8's --dump reads the logical path even with `real=`: dump B's physical copy (a NAR
  // does not depend on where its files are).
  const real = path.replace(fx.storeDir, fx.adminReal);
  const { stdout } = await run('nix-store', ['--dump', real], {
    encoding: 'buffer',
    maxBuffer: 256 << 20,
  });
  const bytes = new Uint8Array(stdout);
  const refs = (await nixStore(fx.admin, '-q', '--references', path)).trim().split('\n');
  const h = hasher.chunker();
  h.push(bytes);
  const digest = h.finish();
  const base = {
    path: path as StorePath,
    narHash:
      `sha256:${nix32(createHash('sha256').update(bytes).digest())}` as ArtifactMeta['narHash'],
    narSize: bytes.length,
    references: refs.filter((r) => r !== '').sort() as StorePath[],
    sigs: [] as string[],
  };
  const meta: ArtifactMeta = {
    ...base,
    sigs: keys.map((k) => sign(base, k)),
    b3: Buffer.from(digest.root).toString('hex') as ArtifactMeta['b3'],
    chunks: chunkCount(bytes.length),
  };
  return { meta, bytes, digest };
}

export async function blobStream(conn: Connection): Promise<FramedStream> {
  return new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.blobs]);
}

/** The next control message of a stream. */
export async function ctrl(fs: FramedStream) {
  const body = await fs.readFrame();
  if (body === null) throw new FltError('CONNECTION_LOST', 'stream ended');
  const frame = decodeBlobFrame(body);
  if (frame.kind !== 'ctrl') throw new Error(`expected ctrl, got ${frame.kind}`);
  return frame.msg;
}

export async function* chunksOf(bytes: Uint8Array, from: number): AsyncGenerator<Chunk> {
  for (let i = from; i < chunkCount(bytes.length); i++)
    yield await Promise.resolve({ index: i, bytes: bytes.subarray(i * CHUNK, (i + 1) * CHUNK) });
}

/**
 * Pushes one NAR as an admin, naming `signingKey` (the key its signatures are by, or its
 * `name:base64` public text): 'ok' (sent), 'done' (held already), or throws the server's err.
 */
export async function push(
  conn: Connection,
  nar: Nar,
  signingKey: SigningKey | string,
): Promise<{ answer: string; from: number }> {
  const fs = await blobStream(conn);
  const key = typeof signingKey === 'string' ? signingKey : formatPublicKey(signingKey);
  await fs.writeFrame(
    encodeCtrl({ t: 'put', meta: nar.meta, size: nar.meta.narSize, signingKey: key }),
  );
  const first = decodeTransferMsg(await ctrl(fs));
  if (first.t === 'err') throw remoteError(first.code, first.msg);
  if (first.t === 'done') return { answer: 'done', from: -1 };
  if (first.t !== 'ready') throw new Error(`unexpected ${first.t}`);
  await sendBody(fs, nar.digest, chunksOf(nar.bytes, first.from), { from: first.from });
  const last = decodeTransferMsg(await ctrl(fs));
  if (last.t === 'err') throw remoteError(last.code, last.msg);
  await fs.finish();
  return { answer: last.t, from: first.from };
}

/** Pushes every path of `paths` (NARs made with narOf and `key`); the NARs by path. */
export async function pushClosure(
  conn: Connection,
  fx: ArtifactStores,
  paths: readonly string[],
  hasher: BlobHasher,
  key: SigningKey,
): Promise<Map<string, Nar>> {
  const out = new Map<string, Nar>();
  for (const p of paths) {
    const nar = await narOf(fx, p, hasher, [key]);
    await push(conn, nar, key);
    out.set(p, nar);
  }
  return out;
}
