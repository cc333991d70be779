// The coordinator's artifact store as the admin sees it (issue 12, design §4 "Status" and "GC"):
// the root document's `artifacts` summary (validated when read: a malformed one is ignored, not
// fatal), written after pushes (throttled) and after each GC; the one line of `flt admin status`
// live and --offline; `flt admin artifacts stats`; `flt admin artifacts gc [--dry-run]` (rpc
// artifacts.gc). Real iroh on 127.0.0.1, real pushes over flt/blobs/0 (synthetic NARs: the store
// checks bytes, not NAR syntax), the CLI as child processes of the built flt.

import { createHash, randomBytes } from 'node:crypto';
import { access, utimes } from 'node:fs/promises';
import * as A from '@automerge/automerge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { blobHasher, CHUNK, chunkCount, type BlobDigest } from '../sync/blob-hash.js';
import { remoteError, sendBody, type Chunk } from '../sync/blob-stream.js';
import { decodeBlobFrame, decodeTransferMsg, encodeCtrl } from '../sync/blob-wire.js';
import { publicKeyOf } from '../sync/ed25519.js';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { FramedStream } from '../sync/framed-stream.js';
import { createLogger } from '../sync/log.js';
import { ALPN, MAX_FRAME } from '../sync/protocols.js';
import type { Transport } from '../sync/transport.js';
import { narHashName, type ArtifactMeta, type StorePath } from '../src/artifacts/meta.js';
import {
  formatPublicKey,
  parseSigningKey,
  sign,
  type SigningKey,
} from '../src/artifacts/nix-key.js';
import { nix32 } from '../src/artifacts/nix32.js';
import { LAST_GC_SLACK_MS, SummaryWriter } from '../src/artifacts/summary.js';
import { artifactsLine } from '../src/cli/commands/artifact-store.js';
import { formatBinaryBytes as formatBytes } from '../src/cli/progress.js';
import {
  agentsOf,
  encodeArtifacts,
  rootArtifacts,
  type ArtifactsSummary,
} from '../src/docs/root.js';
import { nodeKeyFromSeed, type NodeKey } from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import { artifactSettings, Coordinator } from '../src/roles/coordinator.js';
import { LOCAL, nodeIdOf, runFlt, tempDir } from './helpers/flt.js';
import { bindLocal, localConfig } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('error', 'fleet', () => undefined);

const SUMMARY: ArtifactsSummary = {
  paths: 412,
  blobs: 400,
  bytes: 3.1 * 2 ** 30,
  partialBytes: 120 * 2 ** 20,
  quarantined: 0,
  lastGc: '2024-05-01T10:00:00.000Z',
};

describe('the root document artifacts summary', () => {
  it('round-trips, and the status line says it', () => {
    const root = { agents: {}, artifacts: encodeArtifacts({ ...SUMMARY, bytes: 3328599654 }) };
    expect(rootArtifacts(root)).toEqual({ ...SUMMARY, bytes: 3328599654 });
    expect(artifactsLine(rootArtifacts(root)!, Date.parse('2024-05-01T12:00:00Z'))).toBe(
      'artifacts at the coordinator: 412 paths, 3.1 GiB (+120 MiB partial), 0 quarantined, gc 2h ago',
    );
    expect(artifactsLine({ ...SUMMARY, partialBytes: 0, lastGc: null, paths: 1 })).toMatch(
      /: 1 path, 3\.1 GiB, 0 quarantined, no gc yet$/,
    );
    expect([formatBytes(512), formatBytes(1536), formatBytes(100 * 2 ** 20)]).toEqual([
      '512 B',
      '1.5 KiB',
      '100 MiB',
    ]);
  });

  it('a malformed one is ignored, and the agents are still read', () => {
    const bad: unknown[] = [
      'not json',
      JSON.stringify({ ...SUMMARY, paths: -1 }),
      JSON.stringify({ ...SUMMARY, bytes: 1.5 }),
      JSON.stringify({ ...SUMMARY, quarantined: '0' }),
      JSON.stringify({ ...SUMMARY, lastGc: 'yesterday' }),
      JSON.stringify({ ...SUMMARY, blobs: undefined }),
      JSON.stringify([1, 2]),
      JSON.stringify({ ...SUMMARY, pad: 'x'.repeat(2000) }),
    ];
    for (const text of bad) {
      const root = { agents: {}, artifacts: new A.ImmutableString(text as string) };
      expect([text, rootArtifacts(root)]).toEqual([text, undefined]);
      expect(agentsOf(root)).toEqual([]);
    }
    expect(rootArtifacts({ agents: {}, artifacts: 7 })).toBeUndefined();
    expect(rootArtifacts({ agents: {} })).toBeUndefined();
  });
});

describe('SummaryWriter', () => {
  it('writes at once, then at most once per interval (the last change kept), and only what changed', async () => {
    let figures = { ...SUMMARY, paths: 1 };
    let held: ArtifactsSummary | undefined;
    const writes: number[] = [];
    const w = new SummaryWriter({
      stats: () => Promise.resolve({ ...figures }),
      current: () => held,
      write: (s) => {
        held = s;
        writes.push(s.paths);
      },
      intervalMs: 3_600_000,
      log,
    });
    w.changed();
    await waitFor('the first write', () => (writes.length === 1 ? true : undefined));
    figures = { ...figures, paths: 2 };
    w.changed();
    figures = { ...figures, paths: 3 };
    w.changed();
    await Promise.resolve();
    expect(writes).toEqual([1]); // throttled: the hour is not over
    await w.flush(); // a GC run writes at once, pending change included
    expect(writes).toEqual([1, 3]);
    await w.flush(); // nothing changed: nothing written
    expect(writes).toEqual([1, 3]);
    figures = { ...figures, paths: 4 };
    w.changed();
    await w.close(); // the pending change is not lost
    expect(writes).toEqual([1, 3, 4]);
    w.changed();
    await w.flush();
    expect(writes).toEqual([1, 3, 4]);
  });

  it('a GC that changed no other figure writes lastGc only once the recorded one is half an hour old', async () => {
    const at = (minutes: number) =>
      new Date(Date.parse(SUMMARY.lastGc!) + minutes * 60_000).toISOString();
    let figures: ArtifactsSummary = { ...SUMMARY, lastGc: null };
    let held: ArtifactsSummary | undefined;
    const written: (string | null)[] = [];
    const w = new SummaryWriter({
      stats: () => Promise.resolve({ ...figures }),
      current: () => held,
      write: (s) => void written.push((held = s).lastGc),
      log,
    });
    const gcRun = async (lastGc: string | null, more: Partial<ArtifactsSummary> = {}) => {
      figures = { ...figures, ...more, lastGc };
      await w.flush();
    };
    await gcRun(null);
    await gcRun(at(0)); // the first GC since none
    await gcRun(at(5)); // a restart's GC, 5 minutes later: the root stays as it was
    await gcRun(at(29));
    expect(written).toEqual([null, at(0)]);
    await gcRun(at(31)); // past the slack
    await gcRun(at(40), { paths: 1 }); // another figure changed: written with it
    await gcRun(at(35)); // a clock set back
    expect(written).toEqual([null, at(0), at(31), at(40), at(35)]);
    expect(LAST_GC_SLACK_MS).toBe(30 * 60_000);
    await w.close();
  });
});

interface Nar {
  readonly meta: ArtifactMeta;
  readonly bytes: Uint8Array;
  readonly digest: BlobDigest;
}

describe('at the coordinator, through the admin CLI', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let coordinator: Coordinator;
  let admin: Admin;
  let pusher: NodeKey;
  let key: SigningKey;
  let cliDir: string;
  const transports: Transport[] = [];
  const nars: Nar[] = [];

  async function nar(name: string, size: number): Promise<Nar> {
    const bytes = new Uint8Array(randomBytes(size));
    const h = (await blobHasher()).chunker();
    h.push(bytes);
    const digest = h.finish();
    const hash = nix32(randomBytes(20)).slice(0, 32);
    const base = {
      path: `/nix/store/${hash}-${name}` as StorePath,
      narHash:
        `sha256:${nix32(createHash('sha256').update(bytes).digest())}` as ArtifactMeta['narHash'],
      narSize: size,
      references: [] as StorePath[],
      sigs: [] as string[],
    };
    const meta: ArtifactMeta = {
      ...base,
      sigs: [sign(base, key)],
      b3: Buffer.from(digest.root).toString('hex') as ArtifactMeta['b3'],
      chunks: chunkCount(size),
    };
    return { meta, bytes, digest };
  }

  async function* chunksOf(bytes: Uint8Array, from: number): AsyncGenerator<Chunk> {
    for (let i = from; i < chunkCount(bytes.length); i++)
      yield await Promise.resolve({ index: i, bytes: bytes.subarray(i * CHUNK, (i + 1) * CHUNK) });
  }

  /** Pushes `n` over flt/blobs/0 as an admin, as `flt admin push` does. */
  async function push(n: Nar): Promise<void> {
    const t = await bindLocal(pusher.secret);
    transports.push(t);
    const conn = await t.connect(parsePeerAddress(coordinator.ticket), ALPN.blobs);
    const fs = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.blobs]);
    const ctrl = async () => {
      const body = await fs.readFrame();
      if (body === null) throw new FltError('CONNECTION_LOST', 'stream ended');
      const frame = decodeBlobFrame(body);
      if (frame.kind !== 'ctrl') throw new Error(`expected ctrl, got ${frame.kind}`);
      return decodeTransferMsg(frame.msg);
    };
    const signingKey = formatPublicKey(key);
    await fs.writeFrame(encodeCtrl({ t: 'put', meta: n.meta, size: n.meta.narSize, signingKey }));
    const first = await ctrl();
    if (first.t === 'err') throw remoteError(first.code, first.msg);
    if (first.t !== 'ready') throw new Error(`unexpected ${first.t}`);
    await sendBody(fs, n.digest, chunksOf(n.bytes, first.from), { from: first.from });
    const last = await ctrl();
    if (last.t === 'err') throw remoteError(last.code, last.msg);
    expect(last.t).toBe('ok');
    await fs.finish();
  }

  /** `flt admin ... ARGS` as a child process, with the CLI admin's state dir. */
  async function flt(...args: string[]) {
    const r = await runFlt([
      '--state-dir',
      cliDir,
      ...LOCAL,
      'admin',
      '--coordinator',
      coordinator.ticket,
      ...args,
    ]);
    return r;
  }

  const held = () => rootArtifacts(coordinator.fleet.root.doc());

  beforeAll(async () => {
    dir = await tempDir();
    const seed = randomBytes(32);
    key = parseSigningKey(
      `flt-test:${Buffer.concat([seed, publicKeyOf(seed)]).toString('base64')}`,
    );
    const adminDir = `${dir.path}/admin`;
    const adminId = await nodeIdOf(adminDir);
    const config = await localConfig(`${dir.path}/coordinator`, { admin: [adminId] });
    // Summary writes unthrottled here: every push shows in the root at once.
    coordinator = await Coordinator.start(config, log, {
      ...artifactSettings(config),
      summaryIntervalMs: 0,
    });
    admin = await Admin.open(
      await localConfig(adminDir, { coordinator: coordinator.ticket }),
      log,
      false,
    );
    pusher = nodeKeyFromSeed(randomBytes(32));
    await admin.submit({ op: 'admin.add', node: pusher.nodeId });
    cliDir = `${dir.path}/cli`;
    await admin.submit({ op: 'admin.add', node: (await nodeIdOf(cliDir)) as NodeId });
    nars.push(await nar('old', 600 * 1024), await nar('fresh', 1024 * 1024));
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(transports.map((t) => t.close()));
    await admin?.close();
    await coordinator?.close();
    await dir?.remove();
  });

  it('the root summary follows pushes; admin status shows it live and --offline', async () => {
    // The GC run at start wrote the first summary.
    await waitFor('the summary after the GC at start', () => held()?.lastGc ?? undefined);
    expect(held()).toMatchObject({ paths: 0, blobs: 0, bytes: 0 });
    for (const n of nars) await push(n);
    await waitFor('the summary after two pushes', () => (held()?.paths === 2 ? true : undefined));
    expect(held()).toMatchObject({
      blobs: 2,
      bytes: 1624 * 1024,
      partialBytes: 0,
      quarantined: 0,
    });

    const line =
      /^artifacts at the coordinator: 2 paths, 1\.6 MiB, 0 quarantined, gc \d+[smhd] ago$/m;
    const live = await flt('status');
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toMatch(line);
    expect(live.stdout).not.toMatch(/# offline/);
    const offline = await flt('status', '--offline');
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stdout).toMatch(/^# offline/);
    expect(offline.stdout).toMatch(line);
    // --json stays the array of agents (no agents here).
    const json = await flt('status', '--json');
    expect(JSON.parse(json.stdout)).toEqual([]);

    const stats = await flt('artifacts', 'stats', '--json');
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toEqual(await coordinator.artifacts.stats());
    const statsOffline = await flt('artifacts', 'stats', '--offline', '--json');
    expect(JSON.parse(statsOffline.stdout)).toEqual(held());
  });

  it('gc --dry-run lists and removes nothing; gc removes the unreferenced path past the grace', async () => {
    const { index, blobs, gc } = coordinator.artifacts;
    const [old, fresh] = nars as [Nar, Nar];
    // `old` was pushed (and its blob written) three weeks ago, and no deployment names it.
    const weeks = Date.now() - 21 * 86_400_000;
    await index.put({ ...index.get(old.meta.path)!, pushedAt: weeks });
    const blob = narHashName(old.meta.narHash);
    const file = blobs.dataPath(blob);
    await utimes(file, weeks / 1000, weeks / 1000);
    const before = held()!;

    const dry = await flt('artifacts', 'gc', '--dry-run', '--json');
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      counts: { paths: 1, blobs: 1, partials: 0 },
      paths: [old.meta.path],
      blobs: [blob],
      bytes: old.meta.narSize,
    });
    const dryText = await flt('artifacts', 'gc', '--dry-run');
    expect(dryText.stdout).toContain(`would remove path ${old.meta.path}`);
    expect(dryText.stdout).toMatch(/artifacts gc \(dry run\): would remove 1 paths, 1 blobs/);
    expect(index.get(old.meta.path)).toBeDefined();
    await access(file);
    expect(held()).toEqual(before);

    const real = await flt('artifacts', 'gc', '--json');
    expect(real.code, real.stderr).toBe(0);
    expect(JSON.parse(real.stdout)).toMatchObject({
      dryRun: false,
      paths: [old.meta.path],
      blobs: [blob],
    });
    expect(index.get(old.meta.path)).toBeUndefined();
    expect(await blobs.has(blob)).toBe(false);
    expect(index.get(fresh.meta.path)).toBeDefined();
    expect(await blobs.has(narHashName(fresh.meta.narHash))).toBe(true);
    // The summary was rewritten by the run, before the answer.
    expect(held()).toMatchObject({ paths: 1, blobs: 1, bytes: fresh.meta.narSize });
    expect(held()!.lastGc).toBe(new Date(gc.lastRun!.at).toISOString());
    const status = await flt('status');
    expect(status.stdout).toMatch(/artifacts at the coordinator: 1 path, 1\.0 MiB, 0 quarantined/);
  });

  it('a malformed summary in the root is ignored by readers, then rewritten', async () => {
    coordinator.fleet.root.change(
      (d) => void (d.artifacts = new A.ImmutableString('{"paths":-1}')),
    );
    const status = await flt('status');
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^NODE\s+HOSTNAME/m);
    expect(status.stdout).not.toMatch(/artifacts at the coordinator/);
    const offline = await flt('artifacts', 'stats', '--offline');
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stdout).toContain('no figures');
    await coordinator.artifacts.summary.flush();
    expect(held()).toMatchObject({ paths: 1 });
  });
});
