// What the agent refuses (issue 12, design §6, §9): a closure signed by a key it does not trust
// is `refused` UNTRUSTED_SIGNATURE with nothing in its store, both by its own pre-check
// (nix_trusted_keys set: before a byte moves) and by Nix itself (nix_trusted_keys unset: Nix's
// own trusted-public-keys decide, and the E signature is not among them); and a peer streaming
// bytes that do not match their BLAKE3 entry (an evil coordinator, a test double that flips a
// byte of chunk 3) loses its connection (HASH_MISMATCH, closed by the agent), with no byte of
// that chunk in the partial file and nothing in the store.

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK, chunkCount } from '../sync/blob-hash.js';
import { sendBlob, type Chunk } from '../sync/blob-stream.js';
import { decodeBlobFrame, encodeCtrl } from '../sync/blob-wire.js';
import type { FramedStream } from '../sync/framed-stream.js';
import { createLogger } from '../sync/log.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { serveStreams } from '../sync/service.js';
import type { CloseInfo, Connection } from '../sync/transport.js';
import { narHashName } from '../src/artifacts/meta.js';
import { parseSigningKey } from '../src/artifacts/nix-key.js';
import { blake3Hashing, narKey } from '../src/artifacts/store.js';
import { codeOf } from '../src/errors.js';
import { nodeKeyFromSeed } from '../src/identity/index.js';
import { BlobStore } from '../stores/blob-store.js';
import { artifactFleet, type ArtifactFleet } from './helpers/artifact-fleet.js';
import { narOf, pushClosure, type Nar } from './helpers/artifact-push.js';
import { nixKeys, nixStore } from './helpers/artifacts.js';
import { bindLocal } from './helpers/fleet.js';
import { randomBytes } from 'node:crypto';

const log = createLogger('error', 'artifacts-refusals', () => undefined);
let af: ArtifactFleet;

beforeAll(async () => {
  af = await artifactFleet(log);
}, 240_000);
afterAll(async () => af?.close());

async function invalidInC(paths: readonly string[]): Promise<string[]> {
  const out = await nixStore(af.fx.agent, '--check-validity', '--print-invalid', ...paths);
  return out.trim().split('\n').filter(Boolean).sort();
}

describe('a closure signed by a key the agent does not trust', () => {
  it('is refused UNTRUSTED_SIGNATURE by the pre-check and by Nix itself; nothing in the store', async () => {
    const { fx } = af;
    const e = parseSigningKey((await nixKeys('flt-test-e', af.dir)).secretKey);
    const conn = await af.connect();
    await pushClosure(conn, fx, fx.closure, af.hasher, e);
    conn.close(0, 'done');
    // (1) nix_trusted_keys = K: our own check, before any NAR moves.
    const a1 = await af.agent('agent1', { 'nix-trusted-keys': [af.publicKey] });
    const id1 = await af.deploy(a1, fx.paths.top);
    const r1 = await af.until(a1, id1, (r) => r.state === 'refused', 'agent1 refused');
    expect(r1.code).toBe('UNTRUSTED_SIGNATURE');
    expect(r1.reason).toContain('flt-test-e');
    expect(r1.reason).toMatch(/art-(lib1|lib2|app|top)/);
    const cache1 = join(af.dir, 'fleet', 'agent1', 'artifacts');
    expect(
      await stat(join(cache1, 'cache')).then(
        () => 'made',
        () => 'none',
      ),
    ).toBe('none');
    expect(await invalidInC(fx.closure)).toEqual([...fx.closure].sort());
    // (2) nix_trusted_keys unset: fetched, then Nix refuses (its trusted-public-keys lack E).
    const a2 = await af.agent('agent2');
    const id2 = await af.deploy(a2, fx.paths.top);
    const r2 = await af.until(a2, id2, (r) => r.state === 'refused', 'agent2 refused');
    expect(r2.code).toBe('UNTRUSTED_SIGNATURE');
    expect(r2.reason).toContain('Nix refused');
    expect(await invalidInC(fx.closure)).toEqual([...fx.closure].sort());
    expect(await af.activations('agent1')).toEqual([]);
    expect(await af.activations('agent2')).toEqual([]);
  }, 240_000);
});

describe('a peer streaming bytes that do not match the BLAKE3 list', () => {
  it('loses its connection (HASH_MISMATCH); no byte of the bad chunk in the partial; nothing in the store', async () => {
    const { fx } = af;
    const lib1 = await narOf(fx, fx.paths.lib1, af.hasher, [af.key]);
    expect(lib1.meta.chunks).toBeGreaterThan(4);
    const BAD = 3;
    // The evil coordinator: answers closure honestly, but flips a byte of chunk BAD.
    const evilKey = nodeKeyFromSeed(randomBytes(32));
    const transport = await bindLocal(evilKey.secret);
    const router = new Router(transport);
    const closed: Promise<CloseInfo>[] = [];
    router.service({
      alpn: ALPN.blobs,
      serve: (conn: Connection) => {
        closed.push(conn.closed);
        return serveStreams(conn, (fs) => evil(fs, lib1, BAD), {
          maxFrame: MAX_FRAME[ALPN.blobs],
          maxStreams: 4,
        });
      },
      close: () => Promise.resolve(),
    });
    router.start();
    const stateDir = join(af.dir, 'evil-agent');
    const fetcher = await af.fetcher({ stateDir, coordinator: transport.ticket(), parallel: 1 });
    try {
      const err = await fetcher.ensure(fx.paths.lib1).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(codeOf(err)).toBe('HASH_MISMATCH');
      expect(closed).toHaveLength(1);
      const info = await closed[0]!;
      expect(info).toMatchObject({ reason: 'HASH_MISMATCH', byPeer: true });
      const key = narHashName(lib1.meta.narHash);
      const partial = join(stateDir, 'artifacts', 'partial', `${key}.blob`);
      expect((await stat(partial)).size).toBe(BAD * CHUNK);
      const blobs = await BlobStore.open(join(stateDir, 'artifacts'), {
        hashing: blake3Hashing(af.hasher),
        keyOf: narKey,
        logger: () => undefined,
      });
      expect(await blobs.partialChunks(key)).toBe(BAD);
      expect(await blobs.has(key)).toBe(false);
      expect(await invalidInC([fx.paths.lib1])).toEqual([fx.paths.lib1]);
    } finally {
      await fetcher.close();
      await router.stop();
      await transport.close();
    }
  }, 120_000);
});

/** The evil coordinator's one stream: closure of lib1 honestly; get with chunk `bad` flipped. */
async function evil(fs: FramedStream, nar: Nar, bad: number): Promise<void> {
  const body = await fs.readFrame();
  if (body === null) return fs.finish();
  const frame = decodeBlobFrame(body);
  if (frame.kind !== 'ctrl') throw new Error('a request first');
  if (frame.msg.t === 'closure') {
    await fs.writeFrame(encodeCtrl({ t: 'metas', items: [nar.meta], more: false }));
    await fs.writeFrame(encodeCtrl({ t: 'end' }));
  } else if (frame.msg.t === 'get') {
    const from = frame.msg.from as number;
    async function* chunks(): AsyncGenerator<Chunk> {
      for (let i = from; i < chunkCount(nar.bytes.length); i++) {
        const bytes = Uint8Array.from(nar.bytes.subarray(i * CHUNK, (i + 1) * CHUNK));
        if (i === bad) bytes[100]! ^= 0x01;
        yield await Promise.resolve({ index: i, bytes });
      }
    }
    await sendBlob(fs, nar.digest, chunks(), { from }).catch(() => undefined);
  }
  await fs.finish().catch(() => undefined);
}
