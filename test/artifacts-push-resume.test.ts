// An interrupted push resumes where it stopped (issue 12: "ranges so an interrupted transfer
// resumes"): the admin's push client (src/artifacts/push.ts) against a real BlobServer on iroh
// 127.0.0.1 with its blob store on disk, over the fixture closure of helpers/artifacts.ts.
// The first push loses its connection once the coordinator holds part of lib1 (3 MiB, 12 chunks, one path
// at a time); the second push is told by `have` how many chunks the partial holds, sends only the
// rest, and every chunk of the closure reaches the coordinator exactly once.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { blobHasher, CHUNK, chunkCount, type BlobHasher } from '../sync/blob-hash.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import type { Connection, Transport } from '../sync/transport.js';
import { closureMetas } from '../src/artifacts/nix-query.js';
import { parseSigningKey, type SigningKey } from '../src/artifacts/nix-key.js';
import { pushClosure } from '../src/artifacts/push.js';
import { BlobServer } from '../src/artifacts/server.js';
import { openArtifacts } from '../src/artifacts/store.js';
import type { ArtifactIndex } from '../src/artifacts/index.js';
import { codeOf } from '../src/errors.js';
import { nodeKeyFromSeed } from '../src/identity/index.js';
import { artifactStores, nixKeys, type ArtifactStores } from './helpers/artifacts.js';
import { bindLocal } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';

const log = createLogger('error', 'push-resume', () => undefined);

let dir: Awaited<ReturnType<typeof tempDir>>;
let fx: ArtifactStores;
let hasher: BlobHasher;
let key: SigningKey;
let router: Router;
let index: ArtifactIndex;
let coord: Transport;
let pusher: Transport;
/** `narHash:index` -> times the coordinator received (verified and wrote) that chunk. */
const received = new Map<string, number>();
let onChunk: ((narHash: string) => void) | undefined;
/** Every connection a push dialed: the caller owns it (pushClosure never closes it). */
const dialed: Connection[] = [];
const dial = async () => {
  const conn = await pusher.connect(coord.addr(), ALPN.blobs);
  dialed.push(conn);
  return conn;
};

beforeAll(async () => {
  dir = await tempDir();
  hasher = await blobHasher();
  fx = await artifactStores();
  key = parseSigningKey((await nixKeys('flt-test-k', dir.path)).secretKey);
  const pusherKey = nodeKeyFromSeed(randomBytes(32));
  const opened = await openArtifacts(join(dir.path, 'coord'), hasher, () => undefined);
  index = opened.index;
  coord = await bindLocal(nodeKeyFromSeed(randomBytes(32)).secret);
  pusher = await bindLocal(pusherKey.secret);
  const server = new BlobServer({
    ...opened,
    hasher,
    roleOf: (p) => (p === pusherKey.nodeId ? 'admin' : 'unknown'),
    desiredPathOf: () => undefined,
    minFree: 0,
    log,
  });
  server.onReceived = (narHash, i) => {
    const k = `${narHash}:${i}`;
    received.set(k, (received.get(k) ?? 0) + 1);
    onChunk?.(narHash);
  };
  router = new Router(coord).service(server);
  router.start();
}, 240_000);

afterAll(async () => {
  // One thing at a time, the pushes' connections first: an afterAll that closed both endpoints
  // at once with a push's connection still open hung past its 60 s twice (session 32), and
  // never in 13 runs since.
  for (const conn of dialed) conn.close(0, 'done');
  await Promise.allSettled(dialed.map((c) => c.closed));
  await router?.stop();
  await pusher?.close();
  await coord?.close();
  await fx?.close();
  await dir?.remove();
});

it('an aborted push resumes from the partial upload: no chunk is received twice', async () => {
  const metas = await closureMetas([fx.paths.top], fx.admin);
  const lib1 = metas.find((m) => m.path === fx.paths.lib1)!;
  let conn: Connection | undefined;
  const push = () =>
    pushClosure([fx.paths.top], {
      store: fx.admin,
      key,
      connect: async () => (conn = await dial()),
      parallel: 1,
      stateDir: join(dir.path, 'admin'),
      hasher,
    });

  // The admin's connection drops (as on a network loss or a killed admin) once the coordinator
  // has written 5 chunks of lib1, the first path sent: what was in flight is lost.
  let lib1Chunks = 0;
  onChunk = (h) => {
    if (h === lib1.narHash && ++lib1Chunks === 5) conn?.close(0, 'gone');
  };
  const first = await push();
  onChunk = undefined;
  expect(first.failed.map((f) => f.path)).toContain(fx.paths.lib1);
  expect(index.get(fx.paths.lib1)).toBeUndefined(); // not committed
  const before = received.size;
  expect(before).toBeGreaterThanOrEqual(5);

  const second = await push();
  expect(second.failed).toEqual([]);
  expect(second.pushed.map((p) => p.path)).toContain(fx.paths.lib1);
  for (const m of metas) expect(index.get(m.path)?.narHash).toBe(m.narHash);
  // Every chunk of every path exactly once, over both pushes together.
  const want = metas.flatMap((m) =>
    Array.from({ length: chunkCount(m.narSize) }, (_, i) => `${m.narHash}:${i}`),
  );
  expect([...received.keys()].sort()).toEqual(want.sort());
  expect([...received.values()].every((n) => n === 1)).toBe(true);
  // The second push sent what the first had not: lib1 from where its partial stopped.
  const narTotal = metas.reduce((n, m) => n + m.narSize, 0);
  const hashBytes = metas.reduce((n, m) => n + chunkCount(m.narSize) * 32, 0);
  expect(second.bytesSent).toBe(narTotal - before * CHUNK + hashBytes);
});

it('a push whose signal aborts stops with ABORTED, not with the error of the path it was on', async () => {
  const stop = new AbortController();
  stop.abort();
  const err = await pushClosure([await fx.change()], {
    store: fx.admin,
    key,
    connect: dial,
    hasher,
    signal: stop.signal,
  }).catch((e: unknown) => e);
  expect(codeOf(err)).toBe('ABORTED');
});
