// Hardening of the artifact transfer (issue 12, design §3, §4, §6, §7; real iroh on 127.0.0.1,
// real stores):
// - a full disk at the coordinator: a push is refused DISK_FULL (one line naming free and needed
//   space and the way out), every path tried, nothing committed; simulated with
//   artifact_min_free far above the free space, not by filling a disk;
// - a full disk at the agent: the deployment waits on `artifacts` with DISK_FULL naming the dir
//   and the bytes needed; once the setting allows it, the same state dir fetches;
// - the coherent lying list: an evil coordinator that recomputes the BLAKE3 list over wrong
//   bytes. Announcing a root other than the closure answer's b3 is HASH_MISMATCH; lying in the
//   closure answer's b3 as well (b3 is not under the Nix signature) passes every chunk check and
//   fails the SHA-256 against narHash: NAR_HASH_MISMATCH. Either way the agent closes the
//   connection, keeps nothing of the blob, and nothing reaches the store. The same two lies by a
//   pushing admin cost it its connection at the coordinator, with nothing committed.

import { randomBytes } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { CHUNK, chunkCount, hashAt, type BlobDigest } from '../sync/blob-hash.js';
import { sendBlob, type Chunk } from '../sync/blob-stream.js';
import { decodeBlobFrame, encodeCtrl } from '../sync/blob-wire.js';
import type { FramedStream } from '../sync/framed-stream.js';
import { createLogger } from '../sync/log.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { serveStreams } from '../sync/service.js';
import type { CloseInfo, Connection, Transport } from '../sync/transport.js';
import { NixCache } from '../src/artifacts/cache.js';
import { hashPart, narHashName, type ArtifactMeta, type StorePath } from '../src/artifacts/meta.js';
import { fromNix32, nix32 } from '../src/artifacts/nix32.js';
import { writeFileAtomic } from '../stores/atomic-write.js';
import { pushClosure as pushAll, pushOrThrow } from '../src/artifacts/push.js';
import { BlobServer } from '../src/artifacts/server.js';
import { blake3Hashing, narKey, openArtifacts } from '../src/artifacts/store.js';
import { codeOf, messageOf } from '../src/errors.js';
import { nodeKeyFromSeed } from '../src/identity/index.js';
import { BlobStore } from '../stores/blob-store.js';
import { artifactFleet, type ArtifactFleet } from './helpers/artifact-fleet.js';
import { narOf, push, type Nar } from './helpers/artifact-push.js';
import { nixStore } from './helpers/artifacts.js';
import { bindLocal } from './helpers/fleet.js';

const log = createLogger('error', 'artifacts-harden', () => undefined);
const TIB = 2 ** 40;
let af: ArtifactFleet;
const transports: Transport[] = [];

beforeAll(async () => {
  af = await artifactFleet(log);
}, 240_000);
afterAll(async () => {
  await Promise.allSettled(transports.map((t) => t.close()));
  await af?.close();
});

async function invalidInC(paths: readonly string[]): Promise<string[]> {
  const out = await nixStore(af.fx.agent, '--check-validity', '--print-invalid', ...paths);
  return out.trim().split('\n').filter(Boolean).sort();
}

/** A transport of the pushing admin (a fresh endpoint each call). */
async function pusherTransport(): Promise<Transport> {
  const t = await bindLocal(af.pusher.secret);
  transports.push(t);
  return t;
}

/** A real BlobServer of its own (state in `dir`), every peer an admin; `minFree` as given. */
async function ownServer(dir: string, minFree: number) {
  const { blobs, index } = await openArtifacts(dir, af.hasher, () => undefined);
  const server = new BlobServer({
    blobs,
    index,
    hasher: af.hasher,
    roleOf: () => 'admin',
    desiredPathOf: () => undefined,
    minFree,
    log,
  });
  const transport = await bindLocal(nodeKeyFromSeed(randomBytes(32)).secret);
  const router = new Router(transport);
  const closed: Promise<CloseInfo>[] = [];
  router.service({
    alpn: ALPN.blobs,
    serve: (conn: Connection) => {
      closed.push(conn.closed);
      return server.serve(conn);
    },
    close: () => server.close(),
  });
  router.start();
  return {
    addr: parsePeerAddress(transport.ticket()),
    blobs,
    index,
    closed,
    async close() {
      await router.stop();
      await transport.close();
    },
  };
}

/** The same-length NAR of random bytes, its own coherent list, and `meta` with that b3 or not. */
function lie(nar: Nar, b3: 'lying' | 'honest'): Nar {
  const bytes = randomBytes(nar.bytes.length);
  const h = af.hasher.chunker();
  h.push(bytes);
  const digest = h.finish();
  const meta: ArtifactMeta =
    b3 === 'lying'
      ? { ...nar.meta, b3: Buffer.from(digest.root).toString('hex') as ArtifactMeta['b3'] }
      : nar.meta;
  return { meta, bytes, digest };
}

describe('a full disk at the coordinator', () => {
  it('refuses a push DISK_FULL in one line, tries every path, commits nothing', async () => {
    const { fx } = af;
    const srv = await ownServer(join(af.dir, 'full-coord'), TIB);
    try {
      const t = await pusherTransport();
      const opts = {
        store: fx.admin,
        key: af.key,
        connect: () => t.connect(srv.addr, ALPN.blobs),
        stateDir: join(af.dir, 'full-admin'),
        hasher: af.hasher,
      };
      const summary = await pushAll([fx.paths.top], opts);
      expect(summary.pushed).toEqual([]);
      expect(summary.failed.map((f) => f.path).sort()).toEqual([...fx.closure].sort());
      expect(new Set(summary.failed.map((f) => f.code))).toEqual(new Set(['DISK_FULL']));
      const err = await pushOrThrow([fx.paths.top], opts).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(codeOf(err)).toBe('DISK_FULL');
      const line = `flt: ${codeOf(err)}: ${messageOf(err)}`;
      expect(line).not.toContain('\n');
      expect(line).toMatch(
        /^flt: DISK_FULL: push: 4 of 4 paths failed; the coordinator has \d+\.\d GB free, needs \d+\.\d GB for \/\S+; free space or run flt admin artifacts gc$/,
      );
      expect(srv.index.all()).toEqual([]);
      expect(await srv.blobs.stats()).toMatchObject({ blobs: 0, partialBytes: 0 });
    } finally {
      await srv.close();
    }
  }, 120_000);
});

describe('a pushing admin that lies to the coordinator', () => {
  it.each([
    ['NAR_HASH_MISMATCH', 'lying'],
    ['HASH_MISMATCH', 'honest'],
  ] as const)(
    '%s (meta b3 %s, list of wrong bytes): connection closed, nothing committed',
    async (code, b3) => {
      const { fx } = af;
      const srv = await ownServer(join(af.dir, `lied-to-${code}`), 0);
      try {
        const nar = lie(await narOf(fx, fx.paths.lib2, af.hasher, [af.key]), b3);
        const t = await pusherTransport();
        const conn = await t.connect(srv.addr, ALPN.blobs);
        const err = await push(conn, nar, af.key).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeDefined();
        expect(await srv.closed[0]).toMatchObject({ reason: code, byPeer: false });
        const key = narHashName(nar.meta.narHash);
        expect(srv.index.get(fx.paths.lib2)).toBeUndefined();
        expect(await srv.blobs.has(key)).toBe(false);
        // A lie of the whole NAR leaves nothing; one caught at a chunk keeps only verified
        // chunks: none here (chunk 0 already fails).
        expect(await srv.blobs.partialChunks(key)).toBe(0);
      } finally {
        await srv.close();
      }
    },
    120_000,
  );
});

describe('an evil coordinator sending a coherent list of wrong bytes', () => {
  it.each([
    ['HASH_MISMATCH', 'honest'],
    ['NAR_HASH_MISMATCH', 'lying'],
  ] as const)(
    '%s (closure answer b3 %s): the agent closes the connection, keeps nothing, nothing in the store',
    async (code, b3) => {
      const { fx } = af;
      const real = await narOf(fx, fx.paths.lib1, af.hasher, [af.key]);
      const fake = lie(real, b3);
      const evilKey = nodeKeyFromSeed(randomBytes(32));
      const transport = await bindLocal(evilKey.secret);
      transports.push(transport);
      const router = new Router(transport);
      const closed: Promise<CloseInfo>[] = [];
      router.service({
        alpn: ALPN.blobs,
        serve: (conn: Connection) => {
          closed.push(conn.closed);
          return serveStreams(conn, (fs) => evil(fs, fake.meta, fake.bytes, fake.digest), {
            maxFrame: MAX_FRAME[ALPN.blobs],
            maxStreams: 4,
          });
        },
        close: () => Promise.resolve(),
      });
      router.start();
      const stateDir = join(af.dir, `evil-${code}`);
      const fetcher = await af.fetcher({ stateDir, coordinator: transport.ticket(), parallel: 1 });
      try {
        const err = await fetcher.ensure(fx.paths.lib1).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(codeOf(err)).toBe(code);
        expect(closed).toHaveLength(1);
        expect(await closed[0]!).toMatchObject({ reason: code, byPeer: true });
        const key = narHashName(real.meta.narHash);
        const blobs = await BlobStore.open(join(stateDir, 'artifacts'), {
          hashing: blake3Hashing(af.hasher),
          keyOf: narKey,
          logger: () => undefined,
        });
        expect(await blobs.partialChunks(key)).toBe(0);
        expect(await blobs.has(key)).toBe(false);
        const partialDir = join(stateDir, 'artifacts', 'partial');
        expect((await readdir(partialDir).catch(() => [])).filter((n) => n.includes(key))).toEqual(
          [],
        );
        expect(
          await stat(join(stateDir, 'artifacts', 'cache', 'nar', `${key}.nar`)).then(
            () => 'there',
            () => 'none',
          ),
        ).toBe('none');
        expect(await invalidInC([fx.paths.lib1])).toEqual([fx.paths.lib1]);
      } finally {
        await fetcher.close();
        await router.stop();
      }
    },
    120_000,
  );
});

describe('a full disk at the agent', () => {
  it('waits on artifacts with DISK_FULL naming the dir and the bytes; fetches once the setting allows it', async () => {
    const { fx } = af;
    await af.push(fx.closure);
    const full = await af.agent('full', {
      'nix-trusted-keys': [af.publicKey],
      'artifact-min-free': '1t',
    });
    const id = await af.deploy(full, fx.paths.top);
    const r = await af.until(
      full,
      id,
      (x) => x.state === 'waiting' && x.code === 'DISK_FULL',
      'full waits DISK_FULL',
    );
    const dir = join(af.dir, 'fleet', 'full', 'artifacts');
    expect(r.waitingFor).toBe('artifacts');
    expect(r.reason).toContain(dir);
    expect(r.reason).toMatch(
      /need \d+\.\d GB more in \S+ for \/\S+ \(\d+\.\d GB free, artifact_min_free 1099\.5 GB\)/,
    );
    expect(await invalidInC(fx.closure)).toEqual([...fx.closure].sort());
    await full.close();
    // The same state dir, now with room allowed: the fetch completes (as an admin, who may
    // fetch any closure: the agent's own key is not needed to show the store side).
    const t = await pusherTransport();
    const fetcher = (minFree: number) =>
      af.fetcher({ transport: t, stateDir: join(af.dir, 'fleet', 'full'), minFree });
    const still = await fetcher(TIB);
    expect(codeOf(await still.ensure(fx.paths.top).catch((e: unknown) => e))).toBe('DISK_FULL');
    await still.close();
    const roomy = await fetcher(0);
    try {
      expect(await roomy.ensure(fx.paths.top)).toMatchObject({ state: 'ready', fetched: 4 });
    } finally {
      await roomy.close();
    }
    expect(await invalidInC(fx.closure)).toEqual([]);
  }, 240_000);
});

describe('a closure answer that changed since the want file was saved', () => {
  it('the new answer wins: the old partial and cache entry are dropped, the new NAR fetched', async () => {
    const { fx } = af;
    const top2 = await fx.change();
    const closure2 = (await nixStore(fx.admin, '-qR', top2)).trim().split('\n');
    await af.push(closure2);
    const real = await narOf(fx, top2, af.hasher, [af.key]);
    const fakeKey = nix32(randomBytes(32));
    const stale = { ...real.meta, narHash: `sha256:${fakeKey}` as ArtifactMeta['narHash'] };
    const stateDir = join(af.dir, 'changed');
    const dir = join(stateDir, 'artifacts');
    // What an earlier run left: the want file with the old answer, a partial of the old NAR,
    // and the old NAR in the cache with its narinfo.
    await writeFileAtomic(
      join(dir, 'want', `${hashPart(top2 as StorePath)}.json`),
      JSON.stringify({ root: top2, items: [stale] }) + '\n',
      { createDir: true },
    );
    const junk = lie(real, 'lying');
    const blobs = await BlobStore.open(dir, {
      hashing: blake3Hashing(af.hasher),
      keyOf: narKey,
      logger: () => undefined,
    });
    const list = Array.from({ length: chunkCount(junk.bytes.length) }, (_, i) =>
      hashAt(junk.digest.hashes, i),
    );
    const partial = await blobs.beginPut(fakeKey, {
      size: junk.bytes.length,
      sha256: fromNix32(fakeKey, 32),
      root: junk.digest.root,
      hashes: list,
    });
    expect(await partial.write(0, junk.bytes.subarray(0, CHUNK))).toBe(true);
    await partial.close();
    expect(await blobs.partialChunks(fakeKey)).toBe(1);
    const cache = await NixCache.open(join(dir, 'cache'), fx.storeDir);
    await writeFile(cache.narFile(stale), junk.bytes);
    await cache.putNarinfo(stale);
    const t = await pusherTransport();
    const fetcher = await af.fetcher({ transport: t, stateDir });
    try {
      expect(await fetcher.ensure(top2)).toMatchObject({ state: 'ready' });
    } finally {
      await fetcher.close();
    }
    expect(await blobs.partialChunks(fakeKey)).toBe(0);
    expect(
      await stat(cache.narFile(stale)).then(
        () => 'there',
        () => 'none',
      ),
    ).toBe('none');
    expect((await nixStore(fx.agent, '-q', '--hash', top2)).trim()).toBe(
      (await nixStore(fx.admin, '-q', '--hash', top2)).trim(),
    );
  }, 240_000);
});

/** The evil coordinator's stream: closure answered with `meta`; get with `bytes` and `digest`. */
async function evil(
  fs: FramedStream,
  meta: ArtifactMeta,
  bytes: Uint8Array,
  digest: BlobDigest,
): Promise<void> {
  const body = await fs.readFrame();
  if (body === null) return fs.finish();
  const frame = decodeBlobFrame(body);
  if (frame.kind !== 'ctrl') throw new Error('a request first');
  if (frame.msg.t === 'closure') {
    await fs.writeFrame(encodeCtrl({ t: 'metas', items: [meta], more: false }));
    await fs.writeFrame(encodeCtrl({ t: 'end' }));
  } else if (frame.msg.t === 'get') {
    const from = frame.msg.from as number;
    async function* chunks(): AsyncGenerator<Chunk> {
      for (let i = from; i < chunkCount(bytes.length); i++)
        yield await Promise.resolve({
          index: i,
          bytes: bytes.subarray(i * CHUNK, (i + 1) * CHUNK),
        });
    }
    await sendBlob(fs, digest, chunks(), { from }).catch(() => undefined);
  }
  await fs.finish().catch(() => undefined);
}
