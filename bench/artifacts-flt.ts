// The flt row of the `artifacts` group: the coordinator's BlobServer (its real blob store and
// index on disk, behind a Router on its own iroh endpoint), an admin node pushing with the real
// push client (src/artifacts/push.ts: closure, `have`, two-pass signed `put`), and an agent node
// fetching with the real ArtifactFetcher into a fresh store, where Nix substitutes every path
// with `require-sigs` against the admin's key. Three endpoints on 127.0.0.1, one process (as the
// raw row: both ends of a stream on one thread). No roles, no documents: the transfer alone.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { blobHasher, type BlobHasher } from '../sync/blob-hash.js';
import { silentLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import type { Transport } from '../sync/transport.js';
import { ArtifactFetcher } from '../src/artifacts/fetcher.js';
import { parseSigningKey, type SigningKey } from '../src/artifacts/nix-key.js';
import { pushClosure, type PushSummary } from '../src/artifacts/push.js';
import { BlobServer } from '../src/artifacts/server.js';
import { openArtifacts } from '../src/artifacts/store.js';
import { bindLocal } from '../test/helpers/fleet.js';
import type { BenchClosure } from './artifact-closure.js';
import { closeAll } from './wait.js';

const run = promisify(execFile);

const bind = () => bindLocal(randomBytes(32));

/** A coordinator's blob service, an admin and an agent, with state under `dir`. */
interface Trio {
  push(path: string): Promise<PushSummary>;
  /** Fetches `path` into `store`; the NAR bytes fetched. */
  fetch(path: string, store: string): Promise<number>;
  close(): Promise<void>;
}

async function trio(
  dir: string,
  hasher: BlobHasher,
  key: SigningKey,
  pub: string,
  c: BenchClosure,
): Promise<Trio> {
  const [coord, admin, agent] = await Promise.all([bind(), bind(), bind()]);
  const transports: Transport[] = [coord, admin, agent];
  const { blobs, index } = await openArtifacts(join(dir, 'coordinator'), hasher);
  let desired = c.top;
  const router = new Router(coord);
  router.service(
    new BlobServer({
      blobs,
      index,
      hasher,
      roleOf: (p) => (p === admin.nodeId ? 'admin' : p === agent.nodeId ? 'agent' : 'unknown'),
      desiredPathOf: () => desired,
      log: silentLogger,
      minFree: 0,
    }),
  );
  router.start();
  const fetchers: ArtifactFetcher[] = [];
  return {
    push: (path) =>
      pushClosure([path], {
        store: c.store,
        key,
        connect: () => admin.connect(coord.addr(), ALPN.blobs),
        stateDir: join(dir, 'admin'),
        hasher,
      }),
    async fetch(path, store) {
      desired = path;
      const fetcher = new ArtifactFetcher({
        transport: agent,
        coordinator: coord.addr(),
        stateDir: join(dir, `agent-${fetchers.length}`),
        nixStore: store,
        trustedKeys: [pub],
        minFree: 0,
        hasher,
        log: silentLogger,
      });
      fetchers.push(fetcher);
      const r = await fetcher.ensure(path);
      if (r.state !== 'ready') throw new Error(`fetch: ${r.reason}`);
      return r.bytes;
    },
    close: () =>
      closeAll([
        ...fetchers.map((f) => () => f.close()),
        () => router.stop(),
        ...transports.map((t) => () => t.close()),
      ]),
  };
}

async function signingKey(dir: string): Promise<{ key: SigningKey; pub: string }> {
  await mkdir(dir, { recursive: true });
  const [sk, pk] = [join(dir, 'bench.sk'), join(dir, 'bench.pk')];
  await run('nix-store', ['--generate-binary-cache-key', 'flt-bench-1', sk, pk]);
  return {
    key: parseSigningKey((await readFile(sk, 'utf8')).trim()),
    pub: (await readFile(pk, 'utf8')).trim(),
  };
}

export interface FltSample {
  readonly pushMs: number;
  readonly fetchMs: number;
  readonly pushed: number;
  readonly fetched: number;
}

/** One push of the whole closure to a new coordinator, then one fetch into a new store. */
export async function fltOnce(
  c: BenchClosure,
  rep: number,
  progress: (line: string) => void,
): Promise<FltSample> {
  const dir = join(c.root, `flt-${rep}`);
  const { key, pub } = await signingKey(dir);
  const t = await trio(dir, await blobHasher(), key, pub, c);
  try {
    let t0 = performance.now();
    const pushed = await t.push(c.top);
    const pushMs = performance.now() - t0;
    if (pushed.failed.length > 0) throw new Error(`push: ${pushed.failed[0]!.message}`);
    progress(`  flt push: ${pushed.pushed.length} paths in ${(pushMs / 1000).toFixed(1)} s`);
    const store = c.emptyStore(`flt-agent-${rep}`);
    t0 = performance.now();
    const fetched = await t.fetch(c.top, store);
    const fetchMs = performance.now() - t0;
    progress(
      `  flt fetch: ${(fetched / 2 ** 20).toFixed(1)} MiB in ${(fetchMs / 1000).toFixed(1)} s`,
    );
    await run('nix-store', ['--store', store, '--verify-path', c.top]);
    return { pushMs, fetchMs, pushed: pushed.pushed.length, fetched };
  } finally {
    await t.close();
  }
}

/** A push of the closure, then of the closure with its top changed: what the second one sent. */
export async function fltOneChange(
  c: BenchClosure,
  progress: (line: string) => void,
): Promise<{ bytesSent: number; narSize: number; present: number }> {
  const dir = join(c.root, 'flt-change');
  const { key, pub } = await signingKey(dir);
  const t = await trio(dir, await blobHasher(), key, pub, c);
  try {
    await t.push(c.top);
    const second = await t.push(c.changedTop);
    if (second.pushed.length !== 1)
      throw new Error(`second push sent ${second.pushed.length} paths`);
    progress(`  one changed path: ${second.bytesSent} bytes sent`);
    return {
      bytesSent: second.bytesSent,
      narSize: second.pushed[0]!.narSize,
      present: second.present.length,
    };
  } finally {
    await t.close();
  }
}
