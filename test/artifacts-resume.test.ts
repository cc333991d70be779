// A fetch killed with SIGKILL halfway resumes and sends no verified chunk twice (issue 12,
// design §6 "Resume after SIGKILL", §9). The coordinator's BlobServer runs in the test process
// (real iroh on 127.0.0.1, the real BlobStore and index) and counts every data chunk it sends
// (`onSent`); the agent's fetch runs in a child (test/helpers/fetch-child.ts, built), with
// `artifact_parallel` 1, and is SIGKILLed once the server has sent half the closure's chunks. On
// disk the agent then holds, per NAR, a verified prefix of k chunks (re-verified by the BlobStore,
// as a resume does) or the whole NAR; a second run finishes the fetch, and every chunk below
// those prefixes crossed the wire exactly once; only chunks in flight at the kill went twice.
// The closure then verifies in the agent's store with B's narHashes.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { blobHasher, type BlobHasher } from '../sync/blob-hash.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import type { Transport } from '../sync/transport.js';
import { BlobServer } from '../src/artifacts/server.js';
import { hashPart, narHashName } from '../src/artifacts/meta.js';
import { parseSigningKey } from '../src/artifacts/nix-key.js';
import { blake3Hashing, narKey, openArtifacts } from '../src/artifacts/store.js';
import { nodeKeyFromSeed, type NodeKey } from '../src/identity/index.js';
import { BlobStore } from '../stores/blob-store.js';
import { expectSameInStores } from './helpers/artifact-fleet.js';
import { pushClosure, type Nar } from './helpers/artifact-push.js';
import { artifactStores, nixKeys, type ArtifactStores } from './helpers/artifacts.js';
import { bindLocal } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/fetch-child.js');
const log = createLogger('error', 'artifacts-resume', () => undefined);
/** A run of the child that does not finish in this long has failed. */
const CHILD_DEADLINE_MS = 120_000;

let dir: Awaited<ReturnType<typeof tempDir>>;
let fx: ArtifactStores;
let hasher: BlobHasher;
let router: Router;
let nars: Map<string, Nar>;
const transports: Transport[] = [];
const keys = {} as Record<'coord' | 'pusher' | 'agent', NodeKey>;
/** `narHash:index` -> times the server sent that chunk. */
const sent = new Map<string, number>();
let onChunk: (() => void) | undefined;
let coordTicket: string;
let publicKey: string;

beforeAll(async () => {
  dir = await tempDir();
  hasher = await blobHasher();
  fx = await artifactStores();
  const nk = await nixKeys('flt-test-k', dir.path);
  const k = parseSigningKey(nk.secretKey);
  publicKey = nk.publicKey;
  for (const n of ['coord', 'pusher', 'agent'] as const) keys[n] = nodeKeyFromSeed(randomBytes(32));
  const { blobs, index } = await openArtifacts(join(dir.path, 'coord'), hasher, () => undefined);
  const t = await bindLocal(keys.coord.secret);
  transports.push(t);
  router = new Router(t);
  router.service(
    new BlobServer({
      blobs,
      index,
      hasher,
      roleOf: (p) =>
        p === keys.pusher.nodeId ? 'admin' : p === keys.agent.nodeId ? 'agent' : 'unknown',
      desiredPathOf: () => fx.paths.top,
      log,
      onSent: (narHash, i) => {
        const key = `${narHash}:${i}`;
        sent.set(key, (sent.get(key) ?? 0) + 1);
        onChunk?.();
      },
    }),
  );
  router.start();
  coordTicket = t.ticket();
  const pt = await bindLocal(keys.pusher.secret);
  transports.push(pt);
  const conn = await pt.connect(parsePeerAddress(coordTicket), ALPN.blobs);
  nars = await pushClosure(conn, fx, fx.closure, hasher, k);
  conn.close(0, 'done');
  sent.clear(); // the pusher read nothing back; only the agent's fetches count
}, 240_000);
afterAll(async () => {
  await router?.stop();
  await Promise.allSettled(transports.map((t) => t.close()));
  await fx?.close();
  await dir?.remove();
});

/** Runs the fetch child; SIGKILLs it when `killAt` chunks were sent (if given). */
async function runChild(
  state: string,
  killAt?: number,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  if (!existsSync(CHILD)) throw new Error(`${CHILD} missing: run npm run build first`);
  const child = spawn(
    process.execPath,
    [
      CHILD,
      state,
      fx.agent,
      coordTicket,
      fx.paths.top,
      Buffer.from(keys.agent.secret).toString('hex'),
      '1',
      publicKey,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  createInterface({ input: child.stdout }).on('line', (l) => (stdout += l + '\n'));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const total = () => [...sent.values()].reduce((a, b) => a + b, 0);
  if (killAt !== undefined)
    onChunk = () => {
      if (total() >= killAt) {
        onChunk = undefined;
        child.kill('SIGKILL');
      }
    };
  const deadline = setTimeout(() => child.kill('SIGKILL'), CHILD_DEADLINE_MS);
  const [code, signal] = await new Promise<[number | null, string | null]>((res) =>
    child.on('close', (c, s) => res([c, s])),
  );
  clearTimeout(deadline);
  onChunk = undefined;
  return { code, signal, stdout, stderr };
}

describe('a fetch killed with SIGKILL halfway', () => {
  it('resumes, sends no verified chunk twice, and the closure verifies in the agent store', async () => {
    const state = join(dir.path, 'agent');
    const metas = fx.closure.map((p) => nars.get(p)!.meta);
    const chunks = metas.reduce((n, m) => n + m.chunks, 0);
    expect(chunks).toBeGreaterThan(20);
    const first = await runChild(state, Math.floor(chunks / 2));
    expect(first.signal, first.stderr).toBe('SIGKILL');
    expect(first.stdout).not.toMatch(/^ready/m);
    // What the agent holds now: per NAR its verified prefix (or all of it, once complete).
    const art = join(state, 'artifacts');
    const blobs = await BlobStore.open(art, {
      hashing: blake3Hashing(hasher),
      keyOf: narKey,
      logger: () => undefined,
    });
    const held = new Map<string, number>();
    for (const m of metas) {
      const key = narHashName(m.narHash);
      const whole =
        existsSync(join(art, 'cache', `${hashPart(m.path)}.narinfo`)) || (await blobs.has(key));
      held.set(m.narHash, whole ? m.chunks : await blobs.partialChunks(key));
    }
    const heldChunks = [...held.values()].reduce((a, b) => a + b, 0);
    expect(heldChunks).toBeGreaterThan(0);
    expect(heldChunks).toBeLessThan(chunks);
    const sentBefore = [...sent.values()].reduce((a, b) => a + b, 0);

    const second = await runChild(state);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/^ready /m);
    // The second run started from what the first left: its first progress counts it.
    const firstProgress = /^progress (\d+) (\d+)$/m.exec(second.stdout);
    expect(Number(firstProgress?.[1])).toBeGreaterThan(0);
    // No chunk below a verified prefix crossed the wire twice; every chunk at least once.
    for (const m of metas)
      for (let i = 0; i < m.chunks; i++) {
        const n = sent.get(`${m.narHash}:${i}`) ?? 0;
        if (i < held.get(m.narHash)!) expect(n, `${m.path} chunk ${i}`).toBe(1);
        else expect(n, `${m.path} chunk ${i}`).toBeGreaterThanOrEqual(1);
      }
    const sentTotal = [...sent.values()].reduce((a, b) => a + b, 0);
    const resent = sentTotal - chunks;
    // Only the chunks in flight at the kill went twice (sent, not yet verified and written).
    expect(resent).toBe(sentBefore - heldChunks);
    expect(resent).toBeLessThan(chunks / 2);
    for (const r of await expectSameInStores(fx, fx.closure)) {
      expect(r.ok, `verify-path ${r.path}`).toBe(true);
      expect(r.agent).toBe(r.admin);
    }
  }, 300_000);
});
