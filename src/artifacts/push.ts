// The admin's push (design §5): a closure from the admin's Nix store to the coordinator over
// flt/blobs/0. One `have` request finds what the coordinator lacks; each missing path is then
// dumped twice: pass 1 hashes the NAR (BLAKE3 chunk list and SHA-256, checked against the
// store's narHash; the list is cached so a re-push never hashes again), pass 2 `put`s it with
// the meta signed by the admin's Nix key and streams the chunks from the server's resume point,
// each checked against pass 1 before it leaves. No temp copy: a NAR is deterministic.
// Neighbours: nix-query.ts (the store), server.ts (the other end), cli/progress.ts (the display).

import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  blobHasher,
  CHUNK,
  chunkCount,
  HASH_BYTES,
  type BlobDigest,
  type BlobHasher,
} from '../../sync/blob-hash.js';
import { remoteError, sendBody, type Chunk } from '../../sync/blob-stream.js';
import {
  decodeBlobFrame,
  decodeTransferMsg,
  encodeCtrl,
  type CtrlMap,
} from '../../sync/blob-wire.js';
import { FramedStream } from '../../sync/framed-stream.js';
import { ALPN, MAX_FRAME } from '../../sync/protocols.js';
import type { Connection } from '../../sync/transport.js';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { codeOf, FltError, isErrorCode, messageOf } from '../errors.js';
import { runLanes } from './lanes.js';
import { narHashName, type ArtifactMeta, type Hex32, type NarMeta } from './meta.js';
import { readSigningKey, type SigningKey } from './nix-key.js';
import { closureMetas, dumpNar, invalidPaths, signMeta } from './nix-query.js';
import { nix32 } from './nix32.js';
import { decodeHave, MAX_HAVE_PATHS } from './wire.js';

/** Where pass 1's chunk lists are kept, below the admin's state dir (`<nh>.b3`: the raw list). */
export const PUSH_CACHE_DIR = 'artifacts/b3';

/** What a push has done so far (for a progress display). */
export interface PushProgress {
  /** Chunk bytes sent so far. */
  readonly bytes: number;
  /** Chunk bytes to send in all (what the coordinator lacks, partial uploads deducted). */
  readonly total: number;
  /** Paths to send. */
  readonly paths: number;
  /** Paths finished (sent, or failed). */
  readonly pathsDone: number;
  /** Set on the call that reports one path finished. */
  readonly finished?: {
    readonly path: string;
    readonly narSize: number;
    readonly error?: { readonly code: string; readonly message: string };
  };
}

export interface PushSummary {
  /** Paths in the closure. */
  readonly paths: number;
  /** Paths sent now (or whose blob the coordinator held and only indexed). */
  readonly pushed: { readonly path: string; readonly narSize: number }[];
  /** Paths the coordinator had already. */
  readonly present: string[];
  /** Bytes of chunks and chunk hashes sent. */
  readonly bytesSent: number;
  readonly seconds: number;
  /** Paths that failed, in the order they failed: the first one's code is the push's. */
  readonly failed: { readonly path: string; readonly code: string; readonly message: string }[];
}

export interface PushOptions {
  /** The admin's store (`nix_store`); Nix's default when undefined. */
  readonly store?: string | undefined;
  readonly key: SigningKey;
  /** A connection to the coordinator on flt/blobs/0 (opened once, when needed). */
  connect(): Promise<Connection>;
  /** Paths sent at once (`artifact_parallel`), default 4. */
  readonly parallel?: number;
  /** The admin's state dir: pass 1's lists are cached below it (PUSH_CACHE_DIR). */
  readonly stateDir?: string;
  readonly hasher?: BlobHasher;
  onProgress?(p: PushProgress): void;
  readonly signal?: AbortSignal;
}

/**
 * What every push checks before any network use: the paths are valid in the admin's store
 * (NOT_IN_STORE naming the first that is not) and the signing key reads (NO_SIGNING_KEY,
 * BAD_SIGNING_KEY). The key comes first: it needs no Nix.
 */
export async function preparePush(
  paths: readonly string[],
  keyFile: string | undefined,
  store: string | undefined,
): Promise<SigningKey> {
  if (keyFile === undefined)
    throw new FltError(
      'NO_SIGNING_KEY',
      'no Nix signing key: set nix_signing_key to a key made by nix-store --generate-binary-cache-key NAME sk pk',
    );
  const key = await readSigningKey(keyFile);
  const invalid = await invalidPaths(paths, store);
  if (invalid.length > 0)
    throw new FltError(
      'NOT_IN_STORE',
      `${invalid[0]} is not a valid path in the Nix store (build it first; ${store === undefined ? "Nix's default store" : `store: ${store}`})`,
    );
  return key;
}

/**
 * Pushes the closure of `roots` to the coordinator: what it lacks, `parallel` paths at once.
 * Every path is tried; the summary lists the ones that failed (pushClosure does not throw for
 * them: see pushOrThrow).
 * @throws FltError for what stops the whole push: the store's answers (NOT_IN_STORE, IO), the
 *   `have` request (no connection, the coordinator's err).
 */
export async function pushClosure(
  roots: readonly string[],
  opts: PushOptions,
): Promise<PushSummary> {
  const started = performance.now();
  const hasher = opts.hasher ?? (await blobHasher());
  const metas = await closureMetas(roots, opts.store);
  const conn = await opts.connect();
  const { present, partial } = await have(conn, metas);
  const missing = metas.filter((m) => !present.has(m.path));
  const total = missing.reduce(
    (n, m) => n + Math.max(0, m.narSize - (partial.get(m.narHash) ?? 0) * CHUNK),
    0,
  );
  let bytes = 0;
  let bytesSent = 0;
  let pathsDone = 0;
  const pushed: PushSummary['pushed'] = [];
  const failed: PushSummary['failed'][number][] = [];
  const report = (finished?: PushProgress['finished']) =>
    opts.onProgress?.({
      bytes,
      total,
      paths: missing.length,
      pathsDone,
      ...(finished ? { finished } : {}),
    });
  report();
  await runLanes(missing, opts.parallel ?? 4, async (m) => {
    try {
      const sent = await pushPath(conn, m, opts, hasher, (n) => {
        bytes += n;
        report();
      });
      bytesSent += sent;
      pushed.push({ path: m.path, narSize: m.narSize });
      pathsDone++;
      report({ path: m.path, narSize: m.narSize });
    } catch (err) {
      if (opts.signal?.aborted || codeOf(err) === 'ABORTED')
        throw new FltError('ABORTED', 'push aborted', { cause: err });
      const error = { code: codeOf(err), message: messageOf(err) };
      failed.push({ path: m.path, ...error });
      pathsDone++;
      report({ path: m.path, narSize: m.narSize, error });
    }
    return 'next';
  });
  return {
    paths: metas.length,
    pushed,
    present: metas.filter((m) => present.has(m.path)).map((m) => m.path),
    bytesSent,
    seconds: (performance.now() - started) / 1000,
    failed,
  };
}

/** pushClosure, then the first failed path's error (its code) if any path failed. */
export async function pushOrThrow(
  roots: readonly string[],
  opts: PushOptions,
): Promise<PushSummary> {
  const summary = await pushClosure(roots, opts);
  const first = summary.failed[0];
  if (first !== undefined) {
    // The coordinator's message names the path already (DISK_FULL, ...): not twice.
    const msg = first.message.replace(/^peer: /, '');
    throw new FltError(
      isErrorCode(first.code) ? first.code : 'RPC_REMOTE',
      `push: ${summary.failed.length} of ${summary.pushed.length + summary.failed.length} paths failed; ` +
        (msg.includes(first.path) ? msg : `${first.path}: ${msg}`),
    );
  }
  return summary;
}

async function openStream(conn: Connection): Promise<FramedStream> {
  return new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.blobs]);
}

/** The next control message of the server (its `err` thrown with the server's code). */
async function nextCtrl(fs: FramedStream): Promise<CtrlMap> {
  const body = await fs.readFrame();
  if (body === null)
    throw new FltError('CONNECTION_LOST', 'blobs: the coordinator ended the stream');
  const frame = decodeBlobFrame(body);
  if (frame.kind !== 'ctrl')
    throw new FltError('BAD_MESSAGE', `blobs: ${frame.kind} frame, expected ctrl`);
  if (frame.msg.t === 'err') {
    const e = decodeTransferMsg(frame.msg);
    if (e.t === 'err') throw remoteError(e.code, e.msg);
  }
  return frame.msg;
}

/** One `have` per MAX_HAVE_PATHS paths: which the coordinator holds, and partial uploads. */
async function have(
  conn: Connection,
  metas: readonly NarMeta[],
): Promise<{ present: Set<string>; partial: Map<string, number> }> {
  const present = new Set<string>();
  const partial = new Map<string, number>();
  for (let i = 0; i < metas.length; i += MAX_HAVE_PATHS) {
    const batch = metas.slice(i, i + MAX_HAVE_PATHS);
    const fs = await openStream(conn);
    await fs.writeFrame(
      encodeCtrl({
        t: 'have',
        paths: batch.map((m) => m.path),
        narHashes: batch.map((m) => m.narHash),
      }),
    );
    const answer = decodeHave(await nextCtrl(fs));
    await fs.finish();
    for (const p of answer.present) present.add(p);
    for (const [h, n] of Object.entries(answer.partial)) partial.set(h, n);
  }
  return { present, partial };
}

/** Sends one path (pass 1, then put); the bytes sent (chunks and hashes). */
async function pushPath(
  conn: Connection,
  m: NarMeta,
  opts: PushOptions,
  hasher: BlobHasher,
  onBytes: (n: number) => void,
): Promise<number> {
  const digest = await chunkList(m, opts, hasher);
  const signed = signMeta({ ...m, sigs: [] }, opts.key);
  const meta: ArtifactMeta = {
    ...signed,
    b3: Buffer.from(digest.root).toString('hex') as Hex32,
    chunks: chunkCount(m.narSize),
  };
  const fs = await openStream(conn);
  try {
    await fs.writeFrame(
      encodeCtrl({
        t: 'put',
        meta,
        size: m.narSize,
        signingKey: `${opts.key.name}:${Buffer.from(opts.key.publicKey).toString('base64')}`,
      }),
    );
    const first = decodeTransferMsg(await nextCtrl(fs));
    if (first.t === 'done') return 0;
    if (first.t !== 'ready') throw new FltError('BAD_MESSAGE', `blobs: put answered ${first.t}`);
    const stats = await sendBody(
      fs,
      digest,
      verifiedChunks(m, opts, hasher, digest, first.from, onBytes),
      {
        from: first.from,
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
    );
    const last = decodeTransferMsg(await nextCtrl(fs));
    if (last.t !== 'ok') throw new FltError('BAD_MESSAGE', `blobs: put ended with ${last.t}`);
    return stats.bytes + digest.hashes.length;
  } finally {
    await fs.finish().catch(() => undefined);
  }
}

/**
 * Pass 1: the NAR's chunk list, from the cache or by dumping and hashing it (its SHA-256
 * checked against the store's narHash, else IO: the local copy is damaged).
 */
async function chunkList(m: NarMeta, opts: PushOptions, hasher: BlobHasher): Promise<BlobDigest> {
  const nh = narHashName(m.narHash);
  const file =
    opts.stateDir === undefined ? undefined : join(opts.stateDir, PUSH_CACHE_DIR, `${nh}.b3`);
  if (file !== undefined) {
    const cached = await readFile(file).catch(() => undefined);
    if (cached !== undefined && cached.length === chunkCount(m.narSize) * HASH_BYTES) {
      const hashes = new Uint8Array(cached);
      return { size: m.narSize, hashes, root: hasher.rootOf(m.narSize, hashes) };
    }
  }
  const chunker = hasher.chunker();
  const sha = createHash('sha256');
  for await (const piece of dumpNar(m, opts.store) as AsyncIterable<Uint8Array>) {
    opts.signal?.throwIfAborted();
    chunker.push(piece);
    sha.update(piece);
  }
  const digest = chunker.finish();
  if (digest.size !== m.narSize || nix32(sha.digest()) !== nh) throw damaged(m);
  if (file !== undefined) {
    await mkdir(join(opts.stateDir!, PUSH_CACHE_DIR), { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, digest.hashes);
  }
  return digest;
}

function damaged(m: NarMeta): FltError {
  return new FltError(
    'IO',
    `the local store's copy of ${m.path} does not match its registered hash; run nix-store --verify --check-contents`,
  );
}

/** Pass 2's source: the NAR again, cut into chunks from `from`, each checked against pass 1. */
async function* verifiedChunks(
  m: NarMeta,
  opts: PushOptions,
  hasher: BlobHasher,
  digest: BlobDigest,
  from: number,
  onBytes: (n: number) => void,
): AsyncGenerator<Chunk> {
  const n = chunkCount(m.narSize);
  if (from >= n) return;
  const skip = from * CHUNK;
  const buf = new Uint8Array(CHUNK);
  let filled = 0;
  let at = 0; // NAR bytes read so far
  let index = from;
  const emit = (bytes: Uint8Array): Chunk => {
    if (!hasher.verifyChunk(digest.hashes, index, m.narSize, bytes)) throw damaged(m);
    onBytes(bytes.length);
    return { index: index++, bytes };
  };
  for await (const raw of dumpNar(m, opts.store) as AsyncIterable<Uint8Array>) {
    let piece = raw;
    if (at + piece.length <= skip) {
      at += piece.length;
      continue;
    }
    if (at < skip) {
      piece = piece.subarray(skip - at);
      at = skip;
    }
    at += piece.length;
    let off = 0;
    while (off < piece.length) {
      if (filled === 0 && piece.length - off >= CHUNK) {
        yield emit(piece.subarray(off, off + CHUNK));
        off += CHUNK;
        continue;
      }
      const k = Math.min(CHUNK - filled, piece.length - off);
      buf.set(piece.subarray(off, off + k), filled);
      filled += k;
      off += k;
      if (filled === CHUNK) {
        yield emit(Uint8Array.from(buf));
        filled = 0;
      }
    }
  }
  if (filled > 0) yield emit(buf.slice(0, filled));
  if (index !== n) throw damaged(m);
}
