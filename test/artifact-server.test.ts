// The coordinator's artifact server (issue 12, design §3-§4) over real iroh on 127.0.0.1, with
// real NARs (`nix-store --dump` of the fixture closure): an admin pushes a closure and reads it
// back verified; an agent fetches what its deployment references and nothing else; an unknown
// peer is refused; a pusher sending a bad chunk is disconnected with nothing committed; a corrupt
// blob on disk is refused (BLOB_CORRUPT) while the other paths transfer, and `flt doctor` reports
// it; GC removes an unreferenced path after the grace and keeps the referenced ones; stats.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { blobHasher, CHUNK, type BlobHasher } from '../sync/blob-hash.js';
import { receiveBlob, remoteError } from '../sync/blob-stream.js';
import { decodeTransferMsg, encodeCtrl, encodeData, encodeHashes } from '../sync/blob-wire.js';
import { FltError } from '../sync/errors.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { RpcClient } from '../sync/rpc.js';
import type { Connection, Transport } from '../sync/transport.js';
import { ArtifactGc } from '../src/artifacts/gc.js';
import { narHashName, type ArtifactMeta } from '../src/artifacts/meta.js';
import { parseSigningKey, sign, type SigningKey } from '../src/artifacts/nix-key.js';
import { decodeMetas } from '../src/artifacts/wire.js';
import { collectFacts } from '../src/facts/index.js';
import { nodeKeyFromSeed, type NodeKey } from '../src/identity/index.js';
import { artifactsStats } from '../src/rpc-methods.js';
import { signDeployment } from '../src/trust/deployment.js';
import { artifactStores, nixKeys, type ArtifactStores } from './helpers/artifacts.js';
import {
  blobStream,
  ctrl,
  narOf as narOfPath,
  push as pushNar,
  type Nar,
} from './helpers/artifact-push.js';
import { FLT_BIN, tempDir, LOCAL } from './helpers/flt.js';
import { bindLocal, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const run = promisify(execFile);
const log = createLogger('error', 'fleet', () => undefined);

let dir: Awaited<ReturnType<typeof tempDir>>;
let fx: ArtifactStores;
let fleet: TestFleet;
let hasher: BlobHasher;
let key: SigningKey;
let publicKey: string;
const nars = new Map<string, Nar>();
const keys = {} as Record<'admin' | 'unknown', NodeKey>;
let agentKey: NodeKey;
const transports: Transport[] = [];

const narOf = (path: string): Promise<Nar> => narOfPath(fx, path, hasher, [key]);

async function connect(k: NodeKey): Promise<Connection> {
  const t = await bindLocal(k.secret);
  transports.push(t);
  return t.connect(parsePeerAddress(fleet.coordinator.ticket), ALPN.blobs);
}

const stream = blobStream;
const push = (conn: Connection, nar: Nar) => pushNar(conn, nar, publicKey);

/** Fetches one NAR, verified against the meta's b3; its bytes. */
async function get(conn: Connection, meta: ArtifactMeta): Promise<Uint8Array> {
  const fs = await stream(conn);
  await fs.writeFrame(encodeCtrl({ t: 'get', narHash: meta.narHash, from: 0, hashes: true }));
  const parts: Uint8Array[] = [];
  await receiveBlob(fs, {
    root: Buffer.from(meta.b3, 'hex'),
    hasher,
    conn,
    write: (_i, bytes) => {
      parts.push(Uint8Array.from(bytes));
      return Promise.resolve();
    },
  });
  await fs.finish();
  return Buffer.concat(parts);
}

async function closure(conn: Connection, path: string) {
  const fs = await stream(conn);
  await fs.writeFrame(encodeCtrl({ t: 'closure', path }));
  const items: ArtifactMeta[] = [];
  for (let i = 0; i < 100; i++) {
    const msg = await ctrl(fs);
    if (msg.t === 'err') {
      const e = decodeTransferMsg(msg);
      if (e.t === 'err') throw remoteError(e.code, e.msg);
    }
    const m = decodeMetas(msg);
    items.push(...m.items);
    if (!m.more) {
      expect(decodeTransferMsg(await ctrl(fs)).t).toBe('end');
      return { items, missing: m.missing };
    }
  }
  throw new Error('too many metas frames');
}

const codeOfCall = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof FltError ? e.code : String(e)),
  );

beforeAll(async () => {
  dir = await tempDir();
  hasher = await blobHasher();
  fx = await artifactStores();
  const k = await nixKeys('flt-test-1', dir.path);
  key = parseSigningKey(k.secretKey);
  publicKey = k.publicKey;
  for (const p of fx.closure) nars.set(p, await narOf(p));
  fleet = await testFleet(`${dir.path}/fleet`, log);
  keys.admin = nodeKeyFromSeed(randomBytes(32));
  keys.unknown = nodeKeyFromSeed(randomBytes(32));
  await fleet.admin.submit({ op: 'admin.add', node: keys.admin.nodeId });
  // An enrolled agent, closed again: the test speaks for it with its key.
  const facts = await collectFacts();
  const agent = await fleet.addAgent('agent1', () => Promise.resolve({ ...facts, hostname: 'a1' }));
  agentKey = agent.node.key;
  await waitFor('the agent enrolled with a desired document', () =>
    fleet.coordinator.fleet.agent(agentKey.nodeId)?.desiredDocId ? true : undefined,
  );
  await agent.close();
}, 240_000);

afterAll(async () => {
  await Promise.allSettled(transports.map((t) => t.close()));
  await fleet?.close();
  await fx?.close();
  await dir?.remove();
});

describe('flt/blobs/0 at the coordinator', () => {
  it('an admin pushes a closure, a second push sends nothing, and reads it back verified', async () => {
    const conn = await connect(keys.admin);
    for (const p of fx.closure) expect((await push(conn, nars.get(p)!)).answer).toBe('ok');
    for (const p of fx.closure) expect((await push(conn, nars.get(p)!)).answer).toBe('done');
    for (const p of fx.closure) {
      const got = await get(conn, nars.get(p)!.meta);
      expect(Buffer.compare(Buffer.from(got), Buffer.from(nars.get(p)!.bytes))).toBe(0);
    }
    const { items, missing } = await closure(conn, fx.paths.top);
    expect(missing).toEqual([]);
    expect(items.map((m) => m.path).sort()).toEqual([...fx.closure].sort());
    // Dependencies first.
    expect(items.at(-1)!.path).toBe(fx.paths.top);
    const hs = await stream(conn);
    await hs.writeFrame(encodeCtrl({ t: 'have', paths: [...fx.closure, fx.paths.top + 'x'] }));
    expect((await ctrl(hs)).present).toEqual([...fx.closure]);
  });

  it('a push whose signature does not verify with its key is refused, nothing stored', async () => {
    const conn = await connect(keys.admin);
    const nar = nars.get(fx.paths.lib1)!;
    const other = parseSigningKey((await nixKeys('flt-other', dir.path)).secretKey);
    const forged = { ...nar, meta: { ...nar.meta, sigs: [sign(nar.meta, other)] } };
    expect(await codeOfCall(push(conn, forged))).toBe('UNTRUSTED_SIGNATURE');
  });

  it('an agent fetches the closure of its deployment and is refused anything else', async () => {
    const part = signDeployment(
      {
        targets: new Map([[agentKey.nodeId, Date.now()]]),
        storePath: fx.paths.app,
        action: 'switch',
        expiresInMs: 3_600_000,
      },
      fleet.coordinator.fleet.root.documentId,
      nodeKeyFromSeed(randomBytes(32)),
    )[0]!;
    await fleet.coordinator.deployments.place(agentKey.nodeId, part);
    const conn = await connect(agentKey);
    const { items } = await closure(conn, fx.paths.app);
    expect(items.map((m) => m.path).sort()).toEqual(
      [fx.paths.lib1, fx.paths.lib2, fx.paths.app].sort(),
    );
    for (const p of [fx.paths.lib1, fx.paths.app]) {
      const got = await get(conn, nars.get(p)!.meta);
      expect(Buffer.from(got).equals(Buffer.from(nars.get(p)!.bytes))).toBe(true);
    }
    // top is not in app's closure; have and put are admins' only. The connection stays.
    expect(await codeOfCall(closure(conn, fx.paths.top))).toBe('ARTIFACT_NOT_ALLOWED');
    expect(await codeOfCall(get(conn, nars.get(fx.paths.top)!.meta))).toBe('ARTIFACT_NOT_ALLOWED');
    expect(await codeOfCall(push(conn, nars.get(fx.paths.top)!))).toBe('NOT_ADMIN');
    expect((await get(conn, nars.get(fx.paths.lib2)!.meta)).length).toBe(
      nars.get(fx.paths.lib2)!.meta.narSize,
    );
  });

  it('an unknown peer is refused at the connection', async () => {
    const conn = await connect(keys.unknown);
    expect(await codeOfCall(closure(conn, fx.paths.top))).not.toBe('ok');
    expect((await conn.closed).reason).toBe('UNAUTHORIZED_PEER');
  });
});

describe('bad bytes', () => {
  it('a pusher sending a bad chunk is disconnected and nothing is committed', async () => {
    // A path the coordinator lacks: the first changed top.
    const top2 = await fx.change();
    const nar = await narOf(top2);
    expect(nar.meta.chunks).toBeGreaterThanOrEqual(1);
    const { index, blobs } = fleet.coordinator.artifacts;
    const conn = await connect(keys.admin);
    const fs = await stream(conn);
    await fs.writeFrame(
      encodeCtrl({ t: 'put', meta: nar.meta, size: nar.meta.narSize, signingKey: publicKey }),
    );
    expect(decodeTransferMsg(await ctrl(fs))).toEqual({ t: 'ready', from: 0 });
    await fs.writeFrame(encodeHashes(0, nar.digest.hashes));
    const bad = Uint8Array.from(nar.bytes.subarray(0, Math.min(CHUNK, nar.bytes.length)));
    bad[bad.length >> 1]! ^= 0xff;
    await fs.writeFrame(encodeData(0, bad)).catch(() => undefined);
    const closed = await conn.closed;
    expect(closed.reason).toBe('HASH_MISMATCH');
    expect(index.get(top2)).toBeUndefined();
    const key2 = narHashName(nar.meta.narHash);
    expect(await blobs.has(key2)).toBe(false);
    expect(await blobs.partialChunks(key2)).toBe(0);
    // An honest push afterwards goes through.
    expect((await push(await connect(keys.admin), nar)).answer).toBe('ok');
    expect(index.get(top2)?.narHash).toBe(nar.meta.narHash);
  });

  it('a corrupt blob on disk: doctor reports it, its get is BLOB_CORRUPT, the others transfer', async () => {
    const { blobs, index } = fleet.coordinator.artifacts;
    const lib2 = nars.get(fx.paths.lib2)!;
    const file = blobs.dataPath(narHashName(lib2.meta.narHash));
    await chmod(file, 0o644);
    const fh = await open(file, 'r+');
    const at = CHUNK + 100;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, at);
    await fh.close();
    const doctor = await run(
      process.execPath,
      [FLT_BIN, 'doctor', '--state-dir', `${dir.path}/fleet/coordinator`, ...LOCAL],
      { encoding: 'utf8' },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain(`STORE_CORRUPT ${file}: chunk 1 does not match its hash`);
    const conn = await connect(keys.admin);
    expect(await codeOfCall(get(conn, lib2.meta))).toBe('BLOB_CORRUPT');
    expect(index.get(fx.paths.lib2)).toBeUndefined(); // dropped: a re-push sends it again
    for (const p of [fx.paths.lib1, fx.paths.app, fx.paths.top])
      expect(
        Buffer.from(await get(conn, nars.get(p)!.meta)).equals(Buffer.from(nars.get(p)!.bytes)),
      ).toBe(true);
    expect((await blobs.stats()).quarantined).toBe(2);
    expect((await push(conn, lib2)).answer).toBe('ok');
    expect((await get(conn, lib2.meta)).length).toBe(lib2.meta.narSize);
  });
});

describe('gc and stats', () => {
  it('removes an unreferenced path after the grace, keeps the referenced ones; idempotent', async () => {
    const { index, blobs } = fleet.coordinator.artifacts;
    const top2 = [...index.all()].find((e) => !fx.closure.includes(e.path))!.path;
    const grace = 3_600_000;
    let now = Date.now();
    const gc = new ArtifactGc({
      index,
      blobs,
      roots: () => [{ path: fx.paths.top, at: now }],
      graceMs: grace,
      now: () => now,
      log,
    });
    // Within the grace: everything stays (top2 was pushed just now).
    expect((await gc.run()).paths).toEqual([]);
    now += grace + 60_000;
    const dry = await gc.run({ dryRun: true });
    expect(dry.paths).toEqual([top2]);
    expect(index.get(top2)).toBeDefined();
    const r = await gc.run();
    expect(r.paths).toEqual([top2]);
    expect(r.blobs).toEqual([index.get(top2)?.blob ?? r.blobs[0]]);
    expect(index.get(top2)).toBeUndefined();
    for (const p of fx.closure) expect(index.get(p)).toBeDefined();
    for (const p of fx.closure) expect(await blobs.has(index.get(p)!.blob)).toBe(true);
    const again = await gc.run();
    expect([again.paths, again.blobs, again.partials]).toEqual([[], [], []]);
  });

  it('artifacts.stats counts paths and bytes, for admins', async () => {
    const t = await bindLocal(keys.admin.secret);
    transports.push(t);
    const client = await RpcClient.open(
      await t.connect(parsePeerAddress(fleet.coordinator.ticket), ALPN.rpc),
    );
    const stats = await client.call(artifactsStats, {});
    const bytes = fx.closure.reduce((n, p) => n + nars.get(p)!.meta.narSize, 0);
    expect(stats).toMatchObject({ paths: fx.closure.length, blobs: fx.closure.length, bytes });
    expect(stats.quarantined).toBe(2);
    expect(stats.lastGc).not.toBeNull();
  });
});
