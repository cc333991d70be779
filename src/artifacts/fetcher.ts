// The agent's side of flt/blobs/0 (design §6): brings the missing part of a deployment's closure
// from the coordinator into the agent's Nix store, through Nix itself.
//   1. `closure` request -> the metas of the whole closure, saved as the want list
//      (`<state>/artifacts/want/<hash32 of root>.json`, atomic; dropped once the path is valid).
//   2. Our own pre-checks: every path in our store dir (BAD_STORE_PATH); with `nix_trusted_keys`
//      set, every path to fetch signed by one of them (UNTRUSTED_SIGNATURE, before a byte moves).
//      `nix-store --check-validity` -> the missing part (paths the coordinator lacks but we have
//      are fine).
//   3. `get` of each missing NAR into the agent's own BlobStore (`<state>/artifacts/partial/`):
//      a partial left by an earlier run (even one killed with SIGKILL) is re-verified and cut
//      after its last good chunk, and the request starts there; each chunk is checked against
//      its BLAKE3 entry before it is written (a bad one: the connection is closed with
//      HASH_MISMATCH, nothing of it written). Up to `artifact_parallel` paths at once, at most one
//      of them big (lanes.ts). A complete
//      blob (SHA-256 = narHash) moves into the `file://` cache (`<state>/artifacts/cache/`).
//   4. `nix-store -r ROOT` with that cache as the only substituter and `require-sigs true`
//      (cache.ts substitute): Nix checks each signature and narHash; a GC root keeps the closure.
// A changed answer: when the want file of the same root lists a path with another narHash (or
// b3) than the coordinator answers now, the new answer wins and what only the old one named is
// dropped (partial, unadopted blob, cache entry; see forgetChanged): each NAR is still checked
// by BLAKE3 per chunk, SHA-256 against narHash and by Nix against a trusted signature, so the
// answer itself needs no trust; keeping the old one would only stall a rebuilt closure.
// One ensure() at a time: a newer call aborts the older (its partials stay for a later resume).
// The connection to the coordinator is open only while an ensure() transfers.

import { readFile, rm, statfs } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { CHUNK, hashAt, HASH_BYTES, type BlobHasher } from '../../sync/blob-hash.js';
import { receiveBlob, remoteError } from '../../sync/blob-stream.js';
import { decodeBlobFrame, decodeTransferMsg, encodeCtrl } from '../../sync/blob-wire.js';
import { FramedStream } from '../../sync/framed-stream.js';
import type { Logger } from '../../sync/log.js';
import { ALPN, MAX_FRAME } from '../../sync/protocols.js';
import { CloseCode, type Connection, type PeerAddr, type Transport } from '../../sync/transport.js';
import { ensureDir, writeFileAtomic } from '../../stores/atomic-write.js';
import { BlobStore, type PartialBlob } from '../../stores/blob-store.js';
import { isStorePathIn, storeDirOf } from '../deploy/nix.js';
import { codeOf, FltError, messageOf } from '../errors.js';
import { NixCache, substitute } from './cache.js';
import { gb, throwDiskFull } from './disk.js';
import { runLanes } from './lanes.js';
import { hashPart, narHashName, type ArtifactMeta, type StorePath } from './meta.js';
import { invalidPaths } from './nix-query.js';
import { fromNix32 } from './nix32.js';
import { parsePublicKey, verifySig, type PublicKey } from './nix-key.js';
import { ARTIFACTS_DIR, blake3Hashing, narKey } from './store.js';
import { decodeMetas } from './wire.js';

/** ENOSPC on a write: DISK_FULL. */
const DISK_FULL = throwDiskFull("the agent's disk");

/** Default `artifact_parallel`. */
export const DEFAULT_PARALLEL = 4;
/** Default `artifact_min_free` (1 GiB). */
export const DEFAULT_AGENT_MIN_FREE = 1024 ** 3;
/** The moving window of the rate. */
const RATE_WINDOW_MS = 10_000;
/** Most `metas` frames one closure answer may take (2,000 metas each). */
const MAX_METAS_FRAMES = 1000;

/** Where a fetch stands (the deployment status's `fetch`). */
export interface FetchProgress {
  /** NAR bytes held (verified) of the paths to fetch, resumed ones included. */
  readonly bytes: number;
  /** NAR bytes of the paths to fetch. */
  readonly total: number;
  /** Paths to fetch, and how many of them are complete. */
  readonly paths: number;
  readonly pathsDone: number;
  /** Bytes per second over the last 10 s. */
  readonly rate: number;
}

export interface EnsureOptions {
  readonly signal?: AbortSignal;
  /** Called after each chunk and each finished path (the caller throttles). */
  readonly progress?: (p: FetchProgress) => void;
}

/** What ensure() did: the path is valid now, or the coordinator lacks part of its closure. */
export type EnsureResult =
  | { readonly state: 'ready'; readonly fetched: number; readonly bytes: number }
  | { readonly state: 'missing'; readonly missing: readonly StorePath[]; readonly reason: string };

export interface ArtifactFetcherOptions {
  /** The agent's endpoint (its node's transport). */
  readonly transport: Transport;
  readonly coordinator: PeerAddr;
  /** The agent's state dir: `<stateDir>/artifacts/{partial,blobs,cache,want,roots}`. */
  readonly stateDir: string;
  /** The store to fill (`nix_store`, the activator's); undefined: Nix's default store. */
  readonly nixStore?: string | undefined;
  /** `nix_trusted_keys` (`name:base64`); empty: Nix's own configuration decides. */
  readonly trustedKeys?: readonly string[];
  /** `artifact_parallel`. */
  readonly parallel?: number;
  /** `artifact_min_free` in bytes. */
  readonly minFree?: number;
  readonly hasher: BlobHasher;
  readonly log: Logger;
}

interface Running {
  readonly ctl: AbortController;
  readonly done: Promise<unknown>;
}

/** A narHash as a want file holds it (the blob key is its nix32 part). */
const NAR_HASH = /^sha256:[0-9abcdfghijklmnpqrsvwxyz]{52}$/;

/** Errors that end one path's transfer but let the others go on (the connection stays). */
const PER_PATH = new Set(['BLOB_CORRUPT', 'BLOB_MISSING', 'ARTIFACT_NOT_ALLOWED', 'DISK_FULL']);

export class ArtifactFetcher {
  private running: Running | undefined;
  private closed = false;
  private readonly trusted: PublicKey[];
  private readonly storeDir: string;
  private readonly dir: string;
  private blobs: BlobStore | undefined;
  private cache: NixCache | undefined;

  constructor(private readonly opts: ArtifactFetcherOptions) {
    this.trusted = (opts.trustedKeys ?? []).map(parsePublicKey);
    this.storeDir = storeDirOf(opts.nixStore);
    this.dir = join(opts.stateDir, ARTIFACTS_DIR);
  }

  /** The cache directory Nix substitutes from. */
  get cacheDir(): string {
    return join(this.dir, 'cache');
  }

  /**
   * Makes `storePath` (and its closure) valid in the agent's store, fetching what is missing.
   * Aborts a running ensure() first (and waits for it to let go of its files).
   * @throws FltError BAD_STORE_PATH, UNTRUSTED_SIGNATURE (final for the deployment);
   *   BLOB_CORRUPT, BLOB_MISSING, DISK_FULL, HASH_MISMATCH, NAR_HASH_MISMATCH, CONNECTION_LOST,
   *   SUBSTITUTE_FAILED, TIMEOUT, IO (worth another try); ABORTED when aborted or closed.
   */
  async ensure(storePath: string, options: EnsureOptions = {}): Promise<EnsureResult> {
    const prev = this.running;
    prev?.ctl.abort();
    await prev?.done.catch(() => undefined);
    if (this.closed) throw new FltError('ABORTED', 'the artifact fetcher is closed');
    const ctl = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, ctl.signal]) : ctl.signal;
    const done = this.run(storePath, signal, options.progress);
    const running = { ctl, done };
    this.running = running;
    try {
      return await done;
    } finally {
      if (this.running === running) this.running = undefined;
    }
  }

  /** Aborts a running ensure() and waits for it. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const r = this.running;
    r?.ctl.abort();
    await r?.done.catch(() => undefined);
  }

  private async run(
    root: string,
    signal: AbortSignal,
    progress: EnsureOptions['progress'],
  ): Promise<EnsureResult> {
    if (!isStorePathIn(root, this.storeDir))
      throw new FltError('BAD_STORE_PATH', `${root} is not a path in ${this.storeDir}`);
    const rootPath = root as StorePath;
    if ((await invalidPaths([rootPath], this.opts.nixStore)).length === 0)
      return { state: 'ready', fetched: 0, bytes: 0 };
    signal.throwIfAborted();
    const conn = await this.opts.transport.connect(this.opts.coordinator, ALPN.blobs, { signal });
    const onAbort = () => conn.close(CloseCode.NORMAL, 'ABORTED');
    signal.addEventListener('abort', onAbort);
    try {
      return await this.fetch(conn, rootPath, signal, progress);
    } catch (err) {
      if (signal.aborted) throw new FltError('ABORTED', `the fetch of ${root} was stopped`);
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      conn.close(CloseCode.NORMAL, 'done');
    }
  }

  private async fetch(
    conn: Connection,
    root: StorePath,
    signal: AbortSignal,
    progress: EnsureOptions['progress'],
  ): Promise<EnsureResult> {
    const { items, missing } = await closureOf(conn, root);
    await this.forgetChanged(root, items);
    await this.saveWant(root, items);
    // The coordinator lacks some paths: fine if we hold them already.
    const lacking = missing.length > 0 ? await invalidPaths(missing, this.opts.nixStore) : [];
    if (lacking.length > 0)
      return {
        state: 'missing',
        missing: lacking,
        reason:
          `the coordinator has not got ${lacking[0]}` +
          (lacking.length > 1 ? ` (and ${lacking.length - 1} more)` : '') +
          `; push it: flt admin push ${root}`,
      };
    for (const m of items)
      if (posix.dirname(m.path) !== this.storeDir)
        throw new FltError(
          'BAD_STORE_PATH',
          `the coordinator sent ${m.path}, not a path in ${this.storeDir}`,
        );
    const invalid = new Set<string>(
      await invalidPaths(
        items.map((m) => m.path),
        this.opts.nixStore,
      ),
    );
    const wanted = items.filter((m) => invalid.has(m.path));
    if (this.trusted.length > 0)
      for (const m of wanted)
        if (!m.sigs.some((s) => verifySig(m, s, this.trusted) === 'ok'))
          throw new FltError(
            'UNTRUSTED_SIGNATURE',
            `${m.path} is signed by ${m.sigs.map((s) => s.slice(0, s.indexOf(':'))).join(', ') || 'no key'}, ` +
              `none of which this agent trusts (nix_trusted_keys: ${this.trusted.map((k) => k.name).join(', ')})`,
          );
    const blobs = await this.openBlobs();
    const cache = await this.openCache();
    const meter = new Meter(
      wanted.reduce((n, m) => n + m.narSize, 0),
      wanted.length,
      progress,
    );
    const todo: ArtifactMeta[] = [];
    /** Verified chunks of each path's partial, read once here: the resume point of its `get`. */
    const resume = new Map<ArtifactMeta, number>();
    for (const m of wanted) {
      if (await cache.has(m)) {
        meter.done(m.narSize, true);
        continue;
      }
      todo.push(m);
      resume.set(m, await blobs.partialChunks(narHashName(m.narHash)));
      meter.add(Math.min(m.narSize, resume.get(m)! * CHUNK));
    }
    meter.report();
    const errors: unknown[] = [];
    let gone = false;
    void conn.closed.then(() => (gone = true));
    await runLanes(todo, this.opts.parallel ?? DEFAULT_PARALLEL, async (m) => {
      if (signal.aborted || gone) return 'stop';
      try {
        await this.getOne(conn, m, resume.get(m)!, blobs, cache, meter, signal);
      } catch (err) {
        errors.push(err);
        if (!PER_PATH.has(codeOf(err))) return 'stop'; // the connection is gone: no use going on
        this.opts.log.warn(`fetching ${m.path}: ${messageOf(err)}`);
      }
      return 'next';
    });
    signal.throwIfAborted();
    if (errors.length > 0) throw errors[0];
    await ensureDir(join(this.dir, 'roots'));
    await substitute([root], {
      ...(this.opts.nixStore === undefined ? {} : { store: this.opts.nixStore }),
      cacheDir: cache.dir,
      storeDir: this.storeDir,
      trustedKeys: this.opts.trustedKeys ?? [],
      gcRoot: join(this.dir, 'roots', 'current'),
    });
    for (const m of items) await cache.remove(m);
    await rm(this.wantFile(root), { force: true });
    this.opts.log.info(`fetched ${wanted.length} paths for ${root}`, { bytes: meter.total });
    return { state: 'ready', fetched: wanted.length, bytes: meter.total };
  }

  /** Fetches one NAR into the BlobStore from chunk `from` (its partial's), then into the cache. */
  private async getOne(
    conn: Connection,
    m: ArtifactMeta,
    from: number,
    blobs: BlobStore,
    cache: NixCache,
    meter: Meter,
    signal: AbortSignal,
  ): Promise<void> {
    const key = narHashName(m.narHash);
    if (!(await blobs.has(key))) {
      await this.checkSpace(m);
      const fs = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.blobs]);
      await fs.writeFrame(encodeCtrl({ t: 'get', narHash: m.narHash, from, hashes: true }));
      let partial: PartialBlob | undefined;
      try {
        await receiveBlob(fs, {
          root: Buffer.from(m.b3, 'hex'),
          size: m.narSize,
          from,
          hasher: this.opts.hasher,
          conn,
          signal,
          onHashes: async (hashes) => {
            const list: Uint8Array[] = [];
            for (let i = 0; i < hashes.length / HASH_BYTES; i++) list.push(hashAt(hashes, i));
            partial = await blobs.beginPut(key, {
              size: m.narSize,
              sha256: fromNix32(key, 32),
              root: Buffer.from(m.b3, 'hex'),
              hashes: list,
            });
            if (partial.next !== from)
              throw new FltError('IO', `the partial download of ${m.path} changed under us`);
          },
          write: async (index, bytes) => {
            if (!(await partial!.write(index, bytes)))
              throw new FltError('HASH_MISMATCH', `blobs: chunk ${index} does not match its hash`);
            meter.add(bytes.length);
          },
        }).catch(DISK_FULL);
        await fs.finish().catch(() => undefined);
        await partial!.commit().catch((err: unknown) => {
          if (codeOf(err) !== 'STORE_CORRUPT') return DISK_FULL(err);
          conn.close(CloseCode.PROTOCOL_ERROR, 'NAR_HASH_MISMATCH');
          throw new FltError(
            'NAR_HASH_MISMATCH',
            `${m.path}: the NAR the coordinator sent is not ${m.narHash}; dropped`,
          );
        });
      } finally {
        await partial?.close();
      }
    }
    await cache.adoptNar(m, blobs.dataPath(key));
    await blobs.remove(key);
    meter.done(m.narSize, false);
  }

  private async checkSpace(m: ArtifactMeta): Promise<void> {
    const minFree = this.opts.minFree ?? DEFAULT_AGENT_MIN_FREE;
    const st = await statfs(this.dir);
    const free = Number(st.bavail) * Number(st.bsize);
    if (free < m.narSize + minFree)
      throw new FltError(
        'DISK_FULL',
        `need ${gb(m.narSize + minFree - free)} more in ${this.dir} for ${m.path} ` +
          `(${gb(free)} free, artifact_min_free ${gb(minFree)})`,
      );
  }

  private async openBlobs(): Promise<BlobStore> {
    this.blobs ??= await BlobStore.open(this.dir, {
      hashing: blake3Hashing(this.opts.hasher),
      keyOf: narKey,
      logger: (line) => this.opts.log.warn(line),
    });
    return this.blobs;
  }

  private async openCache(): Promise<NixCache> {
    this.cache ??= await NixCache.open(this.cacheDir, this.storeDir);
    return this.cache;
  }

  private wantFile(root: StorePath): string {
    return join(this.dir, 'want', `${hashPart(root)}.json`);
  }

  /**
   * A changed answer (design §6): the want file of `root` lists a path with another narHash or
   * b3 than the coordinator's answer now (a re-push after a rebuild, or a coordinator that
   * lies). The new answer wins; what only the old one named goes: its partial download, an
   * unadopted blob, and the path's cache entry (its narinfo would else make the path look
   * fetched). No trust is lost by following the new answer: each NAR is still checked chunk by
   * chunk (BLAKE3), whole (SHA-256 = narHash) and by Nix against a trusted signature.
   */
  private async forgetChanged(root: StorePath, items: readonly ArtifactMeta[]): Promise<void> {
    const old = await this.readWant(root);
    if (old.length === 0) return;
    const now = new Set(items.map((m) => `${m.path} ${m.narHash} ${m.b3}`));
    const gone = old.filter((o) => !now.has(`${o.path} ${o.narHash} ${o.b3}`));
    if (gone.length === 0) return;
    const blobs = await this.openBlobs();
    const cache = await this.openCache();
    const kept = new Set(items.map((m) => `${m.narHash} ${m.b3}`));
    for (const o of gone) {
      const key = narHashName(o.narHash);
      if (!kept.has(`${o.narHash} ${o.b3}`)) {
        await blobs.removePartial(key);
        if (await blobs.has(key)) await blobs.remove(key);
      }
      await cache.removePath(o.path);
    }
    this.opts.log.info(`the coordinator's closure of ${root} changed; the new answer wins`, {
      dropped: gone.length,
    });
  }

  /** The saved want list of `root` (path, narHash, b3 of each); empty when none or unreadable. */
  private async readWant(
    root: StorePath,
  ): Promise<Pick<ArtifactMeta, 'path' | 'narHash' | 'b3'>[]> {
    try {
      const v = JSON.parse(await readFile(this.wantFile(root), 'utf8')) as { items?: unknown };
      if (!Array.isArray(v.items)) return [];
      const out: Pick<ArtifactMeta, 'path' | 'narHash' | 'b3'>[] = [];
      for (const m of v.items as { path?: unknown; narHash?: unknown; b3?: unknown }[]) {
        if (typeof m.path !== 'string' || typeof m.narHash !== 'string') continue;
        if (!isStorePathIn(m.path, this.storeDir) || !NAR_HASH.test(m.narHash)) continue;
        out.push({
          path: m.path as StorePath,
          narHash: m.narHash as ArtifactMeta['narHash'],
          b3: String(m.b3) as ArtifactMeta['b3'],
        });
      }
      return out;
    } catch {
      return [];
    }
  }

  /** Saves the closure answer as the want list (rewritten only when it changed). */
  private async saveWant(root: StorePath, items: readonly ArtifactMeta[]): Promise<void> {
    const text = JSON.stringify({ root, items }) + '\n';
    const file = this.wantFile(root);
    const old = await readFile(file, 'utf8').catch(() => undefined);
    if (old !== text) await writeFileAtomic(file, text, { createDir: true });
  }
}

/** Asks for the closure of `root`: every meta the coordinator has, and what it lacks. */
async function closureOf(
  conn: Connection,
  root: StorePath,
): Promise<{ items: ArtifactMeta[]; missing: StorePath[] }> {
  const fs = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.blobs]);
  await fs.writeFrame(encodeCtrl({ t: 'closure', path: root }));
  const items: ArtifactMeta[] = [];
  for (let i = 0; i < MAX_METAS_FRAMES; i++) {
    const msg = await ctrl(fs);
    const m = decodeMetas(msg);
    items.push(...m.items);
    if (!m.more) {
      const end = decodeTransferMsg(await ctrl(fs));
      if (end.t !== 'end') throw new FltError('BAD_MESSAGE', `blobs: expected end, got ${end.t}`);
      await fs.finish().catch(() => undefined);
      return { items, missing: [...m.missing] };
    }
  }
  throw new FltError('BAD_MESSAGE', 'blobs: a closure answer of too many frames');
}

/** The next control message of a stream; an `err` is thrown with its code. */
async function ctrl(fs: FramedStream) {
  const body = await fs.readFrame();
  if (body === null) throw new FltError('CONNECTION_LOST', 'blobs: the stream ended');
  const frame = decodeBlobFrame(body);
  if (frame.kind !== 'ctrl') throw new FltError('BAD_MESSAGE', `blobs: a ${frame.kind} frame`);
  if (frame.msg.t === 'err') {
    const e = decodeTransferMsg(frame.msg);
    if (e.t === 'err') throw remoteError(e.code, e.msg);
  }
  return frame.msg;
}

/** Bytes and paths of one ensure(), with a 10 s moving rate. */
class Meter {
  private bytes = 0;
  private pathsDone = 0;
  private readonly samples: { t: number; bytes: number }[] = [];

  constructor(
    readonly total: number,
    private readonly paths: number,
    private readonly onProgress: EnsureOptions['progress'],
  ) {}

  add(n: number): void {
    this.bytes += n;
    this.report();
  }

  done(size: number, held: boolean): void {
    if (held) this.bytes += size;
    this.pathsDone++;
    this.report();
  }

  report(): void {
    if (this.onProgress === undefined) return;
    const t = Date.now();
    this.samples.push({ t, bytes: this.bytes });
    while (this.samples.length > 1 && t - this.samples[0]!.t > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (t - first.t) / 1000;
    const rate = dt > 0 ? Math.round((this.bytes - first.bytes) / dt) : 0;
    this.onProgress({
      bytes: Math.min(this.bytes, this.total),
      total: this.total,
      paths: this.paths,
      pathsDone: this.pathsDone,
      rate,
    });
  }
}
