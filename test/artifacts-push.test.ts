// The admin's push (issue 12, design §5, §7) over real iroh on 127.0.0.1 to an in-process
// coordinator that trusts the admin's Nix key, from the admin's store B of the artifact fixture
// (test/helpers/artifacts.ts): the whole closure arrives with the store's narHash, narSize and
// references and a signature that verifies; a second push sends nothing; after change() only the
// changed top is sent (data bytes counted at the coordinator). NOT_IN_STORE, NO_SIGNING_KEY,
// BAD_SIGNING_KEY and UNKNOWN_SIGNING_KEY change nothing at the coordinator. `--flake` builds a
// flake's host (BUILD_FAILED for a failing builder) and the result is pushed. Deploy pushes
// before it submits and refuses when the push fails; a queued record marked `push` is pushed at
// flush, and recorded NOT_IN_STORE when its path is gone. The CLI runs as child processes.

import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { arch } from 'node:os';
import { join } from 'node:path';
import { Repo } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { buildFlake, parseFlakeRef } from '../src/artifacts/flake.js';
import { narHashName } from '../src/artifacts/meta.js';
import { parsePublicKey, parseSigningKey, verifySig } from '../src/artifacts/nix-key.js';
import { closureMetas } from '../src/artifacts/nix-query.js';
import { preparePush, pushClosure, PUSH_CACHE_DIR } from '../src/artifacts/push.js';
import { collectFacts } from '../src/facts/index.js';
import { loadOrCreateNodeKey, nodeKeyFromSeed } from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import { Coordinator } from '../src/roles/coordinator.js';
import { Outbox } from '../src/roles/outbox.js';
import { Agent } from '../src/roles/agent.js';
import { signDeployment } from '../src/trust/deployment.js';
import { Progress } from '../src/cli/progress.js';
import { artifactStores, nixKeys, NIX_OPTIONS, type ArtifactStores } from './helpers/artifacts.js';
import { LOCAL, runFlt, tempDir } from './helpers/flt.js';
import { bindLocal, localConfig } from './helpers/fleet.js';
import { fixtureFile } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';
import { MemoryStore } from '../stores/memory-store.js';

const log = createLogger('error', 'fleet', () => undefined);

let dir: Awaited<ReturnType<typeof tempDir>>;
let fx: ArtifactStores;
let coordinator: Coordinator;
let admin: Admin;
let agent: Agent;
let keys: Awaited<ReturnType<typeof nixKeys>>;
let agentId: NodeId;
/** A changed top the coordinator refused (UNKNOWN_SIGNING_KEY): still missing there. */
let refusedTop: string;
/** Data bytes the coordinator received in puts, per narHash. */
const received = new Map<string, number>();

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof FltError ? e.code : String(e)),
  );
const receivedTotal = () => [...received.values()].reduce((a, b) => a + b, 0);
const indexed = () =>
  coordinator.artifacts.index
    .all()
    .map((e) => e.path)
    .sort();

beforeAll(async () => {
  dir = await tempDir();
  fx = await artifactStores();
  keys = await nixKeys('flt-admin-1', dir.path);
  const adminDir = join(dir.path, 'admin');
  const adminId = (await loadOrCreateNodeKey(adminDir)).key.nodeId;
  coordinator = await Coordinator.start(
    await localConfig(join(dir.path, 'coordinator'), {
      admin: [adminId],
      'nix-trusted-keys': [keys.publicKey],
    }),
    log,
  );
  coordinator.artifacts.server.onReceived = (h, _i, n) =>
    received.set(h, (received.get(h) ?? 0) + n);
  admin = await Admin.open(
    await localConfig(adminDir, {
      coordinator: coordinator.ticket,
      'nix-store': fx.admin,
      'nix-signing-key': keys.secretFile,
    }),
    log,
    false,
  );
  const { token } = await admin.enrollToken(60_000);
  const facts = await collectFacts();
  agent = await Agent.start(
    await localConfig(join(dir.path, 'agent1'), {
      coordinator: coordinator.ticket,
      'enroll-token': token,
    }),
    log,
    () => Promise.resolve({ ...facts, hostname: 'web-1' }),
  );
  agentId = agent.node.key.nodeId;
  await waitFor('the agent enrolled with a desired document', () =>
    coordinator.fleet.agent(agentId)?.desiredDocId ? true : undefined,
  );
  await agent.close();
}, 240_000);

afterAll(async () => {
  await admin?.close();
  await coordinator?.close();
  await fx?.close();
  await dir?.remove();
});

describe('flt admin push (library)', () => {
  it('pushes a closure: every path indexed with the store facts and a verifying signature', async () => {
    const progress: number[] = [];
    const s = await admin.push([fx.paths.top], (p) => progress.push(p.pathsDone));
    expect(s.paths).toBe(4);
    expect(s.pushed.map((p) => p.path).sort()).toEqual([...fx.closure].sort());
    expect(s.present).toEqual([]);
    expect(progress.at(-1)).toBe(4);
    expect(indexed()).toEqual([...fx.closure].sort());
    const facts = await closureMetas([fx.paths.top], fx.admin);
    const pk = parsePublicKey(keys.publicKey);
    for (const m of facts) {
      const e = coordinator.artifacts.index.get(m.path)!;
      expect({ narHash: e.narHash, narSize: e.narSize, references: e.references }).toEqual({
        narHash: m.narHash,
        narSize: m.narSize,
        references: m.references,
      });
      expect(e.sigs.map((sig) => verifySig(m, sig, [pk]))).toEqual(['ok']);
      expect(await coordinator.artifacts.blobs.has(narHashName(m.narHash))).toBe(true);
    }
    const narTotal = facts.reduce((n, m) => n + m.narSize, 0);
    expect(receivedTotal()).toBe(narTotal);
    expect(s.bytesSent).toBeGreaterThanOrEqual(narTotal);
    // pass 1's lists are cached for a re-push
    expect((await readdir(join(dir.path, 'admin', PUSH_CACHE_DIR))).length).toBe(4);
  });

  it('a second push sends nothing; after one path changed, only that path', async () => {
    received.clear();
    const again = await admin.push([fx.paths.top]);
    expect(again.pushed).toEqual([]);
    expect(again.present.sort()).toEqual([...fx.closure].sort());
    expect(receivedTotal()).toBe(0);

    const top2 = await fx.change();
    const s = await admin.push([top2]);
    const [m2] = await closureMetas([top2], fx.admin).then((ms) =>
      ms.filter((m) => m.path === top2),
    );
    expect(s.pushed).toEqual([{ path: top2, narSize: m2!.narSize }]);
    expect(s.present.sort()).toEqual([fx.paths.app, fx.paths.lib1, fx.paths.lib2].sort());
    expect([...received.keys()]).toEqual([m2!.narHash]);
    expect(receivedTotal()).toBe(m2!.narSize);
  });

  it('NOT_IN_STORE, NO_SIGNING_KEY, BAD_SIGNING_KEY change nothing at the coordinator', async () => {
    const before = indexed();
    received.clear();
    const absent = `${fx.storeDir}/${'0'.repeat(32)}-absent`;
    expect(await codeOf(admin.push([absent]))).toBe('NOT_IN_STORE');
    expect(await codeOf(admin.push([fx.paths.top, absent]))).toBe('NOT_IN_STORE');
    expect(await codeOf(preparePush([fx.paths.top], join(dir.path, 'no.sk'), fx.admin))).toBe(
      'NO_SIGNING_KEY',
    );
    expect(await codeOf(preparePush([fx.paths.top], undefined, fx.admin))).toBe('NO_SIGNING_KEY');
    const bad = join(dir.path, 'bad.sk');
    await writeFile(bad, 'flt-admin-1:bm90IGEga2V5\n');
    expect(await codeOf(preparePush([fx.paths.top], bad, fx.admin))).toBe('BAD_SIGNING_KEY');
    expect(indexed()).toEqual(before);
    expect(receivedTotal()).toBe(0);
  });

  it('UNKNOWN_SIGNING_KEY: a key the coordinator does not trust is refused for every path', async () => {
    const top3 = await fx.change();
    refusedTop = top3;
    const before = indexed();
    received.clear();
    const other = await nixKeys('flt-stranger', dir.path);
    const adminKey = (await loadOrCreateNodeKey(join(dir.path, 'admin'))).key;
    const t = await bindLocal(adminKey.secret);
    try {
      const s = await pushClosure([top3], {
        store: fx.admin,
        key: parseSigningKey(other.secretKey),
        connect: () => t.connect(parsePeerAddress(coordinator.ticket), ALPN.blobs),
      });
      expect(s.pushed).toEqual([]);
      expect(s.failed.map((f) => [f.path, f.code])).toEqual([[top3, 'UNKNOWN_SIGNING_KEY']]);
      expect(s.failed[0]!.message).toContain('flt-admin-1');
    } finally {
      await t.close();
    }
    expect(indexed()).toEqual(before);
    expect(receivedTotal()).toBe(0);
  });
});

describe('--flake', () => {
  it('builds REF#nixosConfigurations.HOST into a store and pushes the result; a failing build is BUILD_FAILED', async () => {
    expect(() => parseFlakeRef('path:/x#packages.x86_64-linux.default')).toThrow(/expected REF/);
    expect(parseFlakeRef('.#nixosConfigurations.web-1').host).toBe('web-1');
    const root = join(dir.path, 'flake-store');
    const storeDir = join(root, 'nix/store');
    const store = `local?store=${storeDir}&state=${root}/var&log=${root}/log`;
    const flakeDir = join(dir.path, 'flake');
    await mkdir(flakeDir, { recursive: true });
    await copyFile(fixtureFile('artifacts.nix'), join(flakeDir, 'artifacts.nix'));
    const system = `${arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;
    const seed = randomBytes(4).toString('hex');
    await writeFile(
      join(flakeDir, 'flake.nix'),
      `{ outputs = { self }: let f = import ./artifacts.nix { seed = "${seed}"; system = "${system}"; }; in {
  nixosConfigurations.agent.config.system.build.toplevel = f.top;
  nixosConfigurations.broken.config.system.build.toplevel = derivation {
    name = "broken"; system = "${system}"; builder = "/bin/sh";
    args = [ "-c" "echo this build fails >&2; exit 1" ];
  };
}; }\n`,
    );
    const logs: string[] = [];
    const opts = { store, extraArgs: NIX_OPTIONS, onStderr: (t: string) => logs.push(t) };
    const bad = buildFlake(parseFlakeRef(`path:${flakeDir}#nixosConfigurations.broken`), opts);
    await expect(bad).rejects.toMatchObject({ code: 'BUILD_FAILED' });
    await expect(bad).rejects.toThrow(/error: /);
    expect(logs.join('')).toContain('this build fails');

    const top = await buildFlake(parseFlakeRef(`path:${flakeDir}#nixosConfigurations.agent`), opts);
    expect(top.startsWith(`${storeDir}/`)).toBe(true);
    const adminKey = (await loadOrCreateNodeKey(join(dir.path, 'admin'))).key;
    const t = await bindLocal(adminKey.secret);
    try {
      const s = await pushClosure([top], {
        store,
        key: parseSigningKey(keys.secretKey),
        connect: () => t.connect(parsePeerAddress(coordinator.ticket), ALPN.blobs),
      });
      expect(s.failed).toEqual([]);
      expect(s.pushed.map((p) => p.path)).toContain(top);
      expect(s.paths).toBe(4);
    } finally {
      await t.close();
    }
    expect(coordinator.artifacts.index.get(top)).toBeDefined();
  });
});

describe('deploy pushes first', () => {
  it('pushes the closure before it submits; a path not in the store refuses the deploy, nothing kept', async () => {
    const top = await fx.change();
    received.clear();
    const req = { words: [agentId], all: false, labels: [], action: 'switch' as const };
    const r = await admin.deploy({ ...req, storePath: top, expiresInMs: 3_600_000, push: {} });
    expect(r.queued).toBe(false);
    expect(r.sent?.answer?.placed).toHaveLength(1);
    expect(r.pushed?.pushed.map((p) => p.path)).toEqual([top]);
    expect(coordinator.artifacts.index.get(top)).toBeDefined();

    const before = (await admin.deployments()).deployments.length;
    const absent = `${fx.storeDir}/${'1'.repeat(32)}-absent`;
    const refused = admin.deploy({ ...req, storePath: absent, expiresInMs: 3_600_000, push: {} });
    expect(await codeOf(refused)).toBe('NOT_IN_STORE');
    expect((await admin.deployments()).deployments.length).toBe(before);
  });

  it('a queued record marked push is pushed at flush; its path gone: NOT_IN_STORE recorded, not submitted', async () => {
    const key = nodeKeyFromSeed(randomBytes(32));
    const repo = new Repo({ network: [] });
    try {
      const outbox = await Outbox.open(repo, new MemoryStore(), key);
      const part = (storePath: string) =>
        signDeployment(
          {
            targets: new Map([[key.nodeId, 1]]),
            storePath,
            action: 'switch',
            expiresInMs: 3_600_000,
          },
          'fleet',
          key,
        );
      const gone = part(`${fx.storeDir}/${'2'.repeat(32)}-gone`);
      const kept = part(fx.paths.top);
      await outbox.queue(gone, 1, { push: true });
      await outbox.queue(kept, 2, { push: true });
      expect(outbox.read().queued.map((q) => q.push)).toEqual([true, true]);
      const submitted: string[] = [];
      const pushed: string[] = [];
      const r = await outbox.flush(
        (parts) => {
          submitted.push(parts[0]!.storePath);
          return Promise.resolve({ index: 1, placed: [], stale: [], unknown: [] });
        },
        async (q) => {
          if (q.push === true) pushed.push(...(await admin.push([q.parts[0]!.storePath])).present);
        },
      );
      expect(r.sent.map((s) => s.error?.code ?? 'ok')).toEqual(['NOT_IN_STORE', 'ok']);
      expect(submitted).toEqual([fx.paths.top]);
      expect(pushed.sort()).toEqual([...fx.closure].sort());
      expect(outbox.read().queued).toEqual([]);
    } finally {
      await repo.shutdown();
    }
  });
});

describe('progress display', () => {
  it('a terminal gets one line redrawn at most every 200 ms; a pipe gets plain lines', () => {
    let now = 0;
    const out: string[] = [];
    const tty = new Progress({
      verb: 'push',
      tty: true,
      write: (t) => out.push(t),
      now: () => now,
    });
    const state = { bytes: 0, total: 6_400_000, items: 3, itemsDone: 0 };
    tty.update(state);
    now = 100;
    tty.update({ ...state, bytes: 1_000_000 }); // within 200 ms: not drawn
    expect(out).toHaveLength(1);
    now = 1000;
    tty.update({ ...state, bytes: 3_900_000, itemsDone: 2 });
    expect(out).toHaveLength(2);
    expect(out[1]).toMatch(
      /^\rpush {2}\[#{10}\.{6}\] {3}60% {2}3\.9\/6\.4 MB {2}3\.9 MB\/s {2}ETA 0:01 {2}\(2\/3 paths\)/,
    );
    tty.item('pushed x (1.0 MB)'); // shown by the bar only
    expect(out).toHaveLength(2);
    tty.finish();
    expect(out.at(-1)).toBe('\r\x1b[K');

    const lines: string[] = [];
    const pipe = new Progress({ verb: 'push', tty: false, write: (t) => lines.push(t) });
    pipe.update(state);
    pipe.item('pushed x (1.0 MB)');
    pipe.finish();
    expect(lines).toEqual(['pushed x (1.0 MB)\n']);
  });
});

describe('flt admin push (CLI)', () => {
  let operator: string;
  const env = () => ({ FLT_NIX_STORE: fx.admin, FLT_NIX_SIGNING_KEY: keys.secretFile });
  const cli = (...args: string[]) => [
    '--state-dir',
    operator,
    ...LOCAL,
    'admin',
    '--coordinator',
    coordinator.ticket,
    ...args,
  ];

  beforeAll(async () => {
    operator = join(dir.path, 'operator');
    const { key } = await loadOrCreateNodeKey(operator);
    await admin.submit({ op: 'admin.add', node: key.nodeId });
  });

  it('--json prints only the summary; ./result symlinks are resolved', async () => {
    const link = join(dir.path, 'result');
    await symlink(fx.paths.app, link);
    const r = await runFlt(cli('push', '--json', link), env());
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(s).sort()).toEqual(['bytesSent', 'paths', 'present', 'pushed', 'seconds']);
    expect(s).toMatchObject({ paths: 3, pushed: [], bytesSent: 0 });
    expect((s.present as string[]).sort()).toEqual(
      [fx.paths.lib1, fx.paths.lib2, fx.paths.app].sort(),
    );
  });

  it('not a TTY: one plain line per pushed path and the summary; errors are one line, exit 1', async () => {
    const path = refusedTop;
    const r = await runFlt(cli('push', path), env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^pushed ${path} \\(\\d+\\.\\d kB\\)$`, 'm'));
    expect(r.stdout).toMatch(/^pushed 1 of 4 paths \(.*B\/s\); 3 already at the coordinator$/m);
    expect(r.stderr).not.toContain('\r');

    const absent = `${fx.storeDir}/${'3'.repeat(32)}-absent`;
    const bad = await runFlt(cli('push', absent), env());
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^flt: NOT_IN_STORE: .*-absent is not a valid path/),
    ]);
    const nokey = await runFlt(cli('push', path), { FLT_NIX_STORE: fx.admin });
    expect(nokey.code).toBe(1);
    expect(nokey.stderr).toMatch(/^flt: NO_SIGNING_KEY: /m);
  });
});
