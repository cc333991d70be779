// BlobServer: the coordinator's flt/blobs/0 service (design §3, §4). One bidirectional stream per
// request, at most MAX_BLOB_STREAMS served at once per connection. Who may ask what is decided at
// each stream's open from the coordinator's state now (access.ts's rule, inlined here): admins
// everything; an agent only the closure of the store path its desired document holds, and the
// NARs in it; the Router admits no one else. Every request is validated in full (wire.ts) first.
//
// put: the meta's signatures are checked before `ready` (all by the key the pusher names; one by
// a trusted key when `trustedKeys` is set); the hash list must hash to meta.b3 and every chunk to
// its entry before it touches the partial file; the SHA-256 must equal narHash before the blob is
// moved into place and the index entry written. A peer breaking any of this loses its connection
// (HASH_MISMATCH, NAR_HASH_MISMATCH) and nothing of it is committed.
// get: every chunk read from disk is verified against the stored list before it is sent; a blob
// found corrupt is quarantined, its index entries dropped, and that stream answered BLOB_CORRUPT,
// while the connection and the other streams go on.

import { statfs } from 'node:fs/promises';
import { concatHashes, HASH_BYTES, hashAt, type BlobHasher } from '../../sync/blob-hash.js';
import { receiveBody, sendBlob, sendError, type Chunk } from '../../sync/blob-stream.js';
import { decodeBlobFrame, encodeCtrl } from '../../sync/blob-wire.js';
import type { FramedStream } from '../../sync/framed-stream.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { ALPN, MAX_FRAME } from '../../sync/protocols.js';
import { ConnectionSet, serveStreams, type Service } from '../../sync/service.js';
import type { Connection } from '../../sync/transport.js';
import type { BlobStore, PartialBlob } from '../../stores/blob-store.js';
import { codeOf, FltError, messageOf } from '../errors.js';
import type { Role } from '../trust/authority.js';
import { gb, throwDiskFull } from './disk.js';
import type { ArtifactIndex } from './index.js';
import { narHashName, type ArtifactMeta, type NarHash } from './meta.js';
import { fromNix32 } from './nix32.js';
import { formatPublicKey, parsePublicKey, verifySig, type PublicKey } from './nix-key.js';
import { metaOf, type StoredEntry } from './store.js';
import { decodeRequest, MAX_METAS_PER_FRAME, METAS_FRAME_BYTES, type BlobRequest } from './wire.js';
import { encodeCbor } from '../../sync/codec.js';

/** ENOSPC on a write: DISK_FULL. */
const DISK_FULL = throwDiskFull("the coordinator's disk");

/** Requests served at once on one connection; further streams wait to be accepted. */
export const MAX_BLOB_STREAMS = 16;
/** Default free space the coordinator keeps beyond an upload (`artifact_min_free`, 1 GiB). */
export const DEFAULT_MIN_FREE = 1024 ** 3;

/** Codes by which a peer broke the protocol: its connection is closed. */
const VIOLATIONS = new Set([
  'HASH_MISMATCH',
  'NAR_HASH_MISMATCH',
  'BAD_MESSAGE',
  'UNSUPPORTED_VERSION',
  'FRAME_TOO_LARGE',
  'CONNECTION_LOST',
  'CLOSED',
]);

export interface BlobServerOptions {
  readonly blobs: BlobStore;
  readonly index: ArtifactIndex;
  readonly hasher: BlobHasher;
  /** The peer's role now (the coordinator's gate). */
  roleOf(peer: NodeId): Role;
  /** The store path of the part now in `agent`'s desired document, if any. */
  desiredPathOf(agent: NodeId): string | undefined;
  /** `nix_trusted_keys` of the coordinator: when non-empty a put needs a sig by one of them. */
  readonly trustedKeys?: readonly PublicKey[];
  /** Free bytes to keep beyond an upload's size (`artifact_min_free`). Default 1 GiB. */
  readonly minFree?: number;
  readonly log: Logger;
  /** After a put committed or entries were dropped (for the coordinator's throttled summary). */
  onChange?(): void;
  /** Each data chunk sent (tests count what crosses the wire). */
  onSent?(narHash: string, index: number, bytes: number): void;
}

export class BlobServer implements Service {
  readonly alpn = ALPN.blobs;
  private readonly conns = new ConnectionSet();
  /** Each verified data chunk received in a put (tests count what crossed the wire). */
  onReceived: ((narHash: string, index: number, bytes: number) => void) | undefined;

  constructor(private readonly opts: BlobServerOptions) {}

  serve(conn: Connection): Promise<void> {
    return this.conns.serve(conn, (c) =>
      serveStreams(c, (fs, cc) => this.stream(fs, cc), {
        maxFrame: MAX_FRAME[ALPN.blobs],
        maxStreams: MAX_BLOB_STREAMS,
      }),
    );
  }

  close(): Promise<void> {
    return this.conns.close();
  }

  /** Serves one request stream; throws (closing the connection) when the peer broke the protocol. */
  private async stream(fs: FramedStream, conn: Connection): Promise<void> {
    const body = await fs.readFrame();
    if (body === null) return fs.finish();
    const frame = decodeBlobFrame(body);
    if (frame.kind !== 'ctrl')
      throw new FltError('BAD_MESSAGE', 'blobs: a request must come first');
    const req = decodeRequest(frame.msg);
    const peer = conn.remoteId;
    try {
      this.authorize(peer, req);
      switch (req.t) {
        case 'closure':
          await this.closure(fs, req);
          break;
        case 'have':
          await this.have(fs, req);
          break;
        case 'get':
          await this.get(fs, req);
          break;
        case 'put':
          await this.put(fs, conn, req);
          break;
      }
    } catch (err) {
      if (VIOLATIONS.has(codeOf(err))) {
        this.opts.log.warn('blobs: peer broke the protocol', {
          peer: shortId(peer),
          code: codeOf(err),
          msg: messageOf(err),
        });
        throw err;
      }
      await sendError(fs, err);
    }
    await fs.finish();
  }

  /** Access (design §3): admins all; agents closure/get within their desired path's closure. */
  private authorize(peer: NodeId, req: BlobRequest): void {
    const role = this.opts.roleOf(peer);
    if (role === 'admin') return;
    if (role !== 'agent')
      throw new FltError('UNAUTHORIZED_PEER', `${peer} is not a member of this fleet`);
    if (req.t === 'have' || req.t === 'put')
      throw new FltError('NOT_ADMIN', `${peer} is not an admin (blobs ${req.t})`);
    const desired = this.opts.desiredPathOf(peer);
    const refuse = (what: string) =>
      new FltError(
        'ARTIFACT_NOT_ALLOWED',
        `${what} is not in the closure of a deployment targeting ${shortId(peer)}`,
      );
    if (req.t === 'closure') {
      if (desired === undefined || req.path !== desired) throw refuse(req.path);
      return;
    }
    if (desired === undefined) throw refuse(req.narHash);
    const { entries } = this.opts.index.closure([desired]);
    if (!entries.some((e) => e.narHash === req.narHash)) throw refuse(req.narHash);
  }

  private async closure(
    fs: FramedStream,
    req: Extract<BlobRequest, { t: 'closure' }>,
  ): Promise<void> {
    const { entries, missing } = this.opts.index.closure([req.path]);
    const skip = new Set<string>(req.have);
    const items = entries.filter((e) => !skip.has(e.narHash)).map((e) => metaOf(e as StoredEntry));
    let batch: ArtifactMeta[] = [];
    let bytes = 0;
    const flush = async (last: boolean) => {
      const msg: Record<string, unknown> & { t: string } = {
        t: 'metas',
        items: batch,
        more: !last,
      };
      if (last && missing.length > 0) msg.missing = missing;
      await fs.writeFrame(encodeCtrl(msg));
      batch = [];
      bytes = 0;
    };
    for (const item of items) {
      const size = encodeCbor(item).length;
      if (
        batch.length > 0 &&
        (batch.length >= MAX_METAS_PER_FRAME || bytes + size > METAS_FRAME_BYTES)
      )
        await flush(false);
      batch.push(item);
      bytes += size;
    }
    await flush(true);
    await fs.writeFrame(encodeCtrl({ t: 'end' }));
  }

  private async have(fs: FramedStream, req: Extract<BlobRequest, { t: 'have' }>): Promise<void> {
    const present: string[] = [];
    for (const path of new Set(req.paths)) {
      const entry = this.opts.index.get(path);
      if (entry && (await this.opts.blobs.has(entry.blob))) present.push(path);
    }
    const partial: Record<string, number> = {};
    for (const h of new Set(req.narHashes)) {
      const n = await this.opts.blobs.partialChunks(narHashName(h));
      if (n > 0) partial[h] = n;
    }
    await fs.writeFrame(encodeCtrl({ t: 'have', present, partial }));
  }

  private async get(fs: FramedStream, req: Extract<BlobRequest, { t: 'get' }>): Promise<void> {
    const key = narHashName(req.narHash);
    const reader = await this.opts.blobs
      .openBlob(key)
      .catch((err: unknown) => this.corrupt(key, err));
    if (reader === undefined)
      throw new FltError('BLOB_MISSING', `the coordinator has no blob for ${req.narHash}`);
    try {
      const { list } = reader;
      if (req.from > reader.chunks)
        throw new FltError('BAD_ARGUMENT', `from ${req.from} is past the ${reader.chunks} chunks`);
      const opts = this.opts;
      async function* counted(): AsyncGenerator<Chunk> {
        for await (const c of reader!.read(req.from)) {
          // Counted as it is handed to sendBlob: after the last chunk the loop there breaks,
          // so code after this yield never runs for it.
          opts.onSent?.(req.narHash, c.index, c.bytes.length);
          yield c;
        }
      }
      await sendBlob(
        fs,
        { size: list.size, hashes: concatHashes(list.hashes), root: list.root },
        counted(),
        { from: req.from, hashes: req.hashes },
      ).catch((err: unknown) => this.corrupt(key, err));
    } finally {
      await reader.close();
    }
  }

  /** STORE_CORRUPT of blob `key` (quarantined by the store): index entries dropped, BLOB_CORRUPT. */
  private async corrupt(key: string, err: unknown): Promise<never> {
    if (codeOf(err) !== 'STORE_CORRUPT') throw err;
    const paths = this.opts.index
      .all()
      .filter((e) => e.blob === key)
      .map((e) => e.path);
    for (const p of paths) await this.opts.index.remove(p);
    this.opts.log.error('blobs: a stored blob is corrupt; quarantined', {
      blob: key,
      paths: paths.join(' '),
      detail: messageOf(err),
    });
    this.opts.onChange?.();
    throw new FltError(
      'BLOB_CORRUPT',
      `the coordinator's copy of ${paths[0] ?? key} is corrupt (quarantined); push it again`,
    );
  }

  private async put(
    fs: FramedStream,
    conn: Connection,
    req: Extract<BlobRequest, { t: 'put' }>,
  ): Promise<void> {
    const { meta, size } = req;
    this.checkSigs(meta, req.signingKey);
    const key = narHashName(meta.narHash);
    const record = async () => {
      await this.opts.index.put({
        ...meta,
        blob: key,
        pushedAt: Date.now(),
        pushedBy: conn.remoteId,
      });
      this.opts.onChange?.();
    };
    if (await this.opts.blobs.has(key)) {
      await record();
      await fs.writeFrame(encodeCtrl({ t: 'done' }));
      return;
    }
    await this.checkSpace(size, meta.path);
    const from = await this.opts.blobs.partialChunks(key);
    await fs.writeFrame(encodeCtrl({ t: 'ready', from }));
    const root = Buffer.from(meta.b3, 'hex');
    const sha256 = fromNix32(key, 32);
    let partial: PartialBlob | undefined;
    try {
      await receiveBody(fs, {
        size,
        root,
        from,
        hasher: this.opts.hasher,
        conn,
        onHashes: async (hashes) => {
          const list = [];
          for (let i = 0; i < hashes.length / HASH_BYTES; i++) list.push(hashAt(hashes, i));
          partial = await this.opts.blobs.beginPut(key, { size, sha256, root, hashes: list });
          if (partial.next !== from)
            throw new FltError('IO', `the partial upload of ${meta.path} changed; push again`);
        },
        write: async (index, bytes) => {
          if (!(await partial!.write(index, bytes)))
            throw new FltError('HASH_MISMATCH', `blobs: chunk ${index} does not match its hash`);
          this.onReceived?.(meta.narHash, index, bytes.length);
        },
      }).catch(DISK_FULL);
      await partial!.commit().catch((err: unknown) => {
        if (codeOf(err) !== 'STORE_CORRUPT') return DISK_FULL(err);
        conn.close(1, 'NAR_HASH_MISMATCH');
        throw new FltError('NAR_HASH_MISMATCH', `blobs: the NAR sent is not ${meta.narHash}`);
      });
    } finally {
      await partial?.close();
    }
    await record();
    this.opts.log.info('blobs: stored', { path: meta.path, size, from: shortId(conn.remoteId) });
    await fs.writeFrame(encodeCtrl({ t: 'ok' }));
  }

  /** Every sig by the pusher's key and verifying; one by a trusted key when any are set. */
  private checkSigs(meta: ArtifactMeta, signingKey: string): void {
    const key = parsePublicKey(signingKey);
    for (const sig of meta.sigs)
      if (verifySig(meta, sig, [key]) !== 'ok')
        throw new FltError(
          'UNTRUSTED_SIGNATURE',
          `${meta.path}: signature ${sig.slice(0, sig.indexOf(':'))}:… does not verify with ${key.name}`,
        );
    const trusted = this.opts.trustedKeys ?? [];
    if (trusted.length > 0 && !meta.sigs.some((s) => verifySig(meta, s, trusted) === 'ok'))
      throw new FltError(
        'UNKNOWN_SIGNING_KEY',
        `the coordinator trusts only keys ${trusted.map((k) => k.name).join(', ')}; this admin ` +
          `signs with ${key.name}: add ${formatPublicKey(key)} to nix_trusted_keys of the ` +
          'coordinator and the agents',
      );
  }

  private async checkSpace(size: number, path: string): Promise<void> {
    const minFree = this.opts.minFree ?? DEFAULT_MIN_FREE;
    const st = await statfs(this.opts.blobs.dir);
    const free = Number(st.bavail) * Number(st.bsize);
    if (free < size + minFree)
      throw new FltError(
        'DISK_FULL',
        `the coordinator has ${gb(free)} free, needs ${gb(size + minFree)} for ${path}; ` +
          'free space or run flt admin artifacts gc',
      );
  }
}

export type { NarHash };
