// The admin side of deployments (issue 11, design §1 targets/seq, §2.4 outbox, §6 views), from a
// replica built here: a root document signed with a coordinator key, status documents signed with
// agent keys, and a stand-in coordinator (a real iroh endpoint on 127.0.0.1 serving only
// deploy.submit with the real schema) that records what it receives.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Repo, type DocumentId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { silentLogger } from '../sync/log.js';
import { OwnedDoc } from '../sync/owned-doc.js';
import { RpcServer } from '../sync/rpc.js';
import { Router } from '../sync/router.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS } from '../sync/protocols.js';
import {
  ROOT_KEY,
  STATUS_KEY,
  encodeAgent,
  rootBase,
  statusBase,
  writeDeployment,
  writeSystem,
  type AgentEntry,
  type RootDoc,
  type StatusDoc,
} from '../src/docs/types.js';
import { deriveKeyPair } from '../src/identity/derive.js';
import { loadOrCreateNodeKey, type NodeKey } from '../src/identity/index.js';
import { openDocuments } from '../src/node.js';
import { Admin } from '../src/roles/admin.js';
import { Outbox } from '../src/roles/outbox.js';
import { saveReplicaInfo } from '../src/roles/replica.js';
import { configOf, knownSeqs, resolveTargets } from '../src/roles/rollout.js';
import { deploySubmit } from '../src/rpc-methods.js';
import { signDeployment, verifyPart, type SignedPart } from '../src/trust/deployment.js';
import { localConfig } from './helpers/fleet.js';
import { runFlt, tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';
import { MemoryStore } from '../stores/memory-store.js';

const SYSTEM_A = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-a';
const SYSTEM_B = '/nix/store/abcdfghijklmnpqrsvwxyz0123456789-nixos-system-b';

let dir: Awaited<ReturnType<typeof tempDir>>;
let coordKey: NodeKey;
const agents: { key: NodeKey; host: string; labels: Record<string, string> }[] = [];
let entries: AgentEntry[];
let rootDocId: string;

beforeAll(async () => {
  dir = await tempDir();
  coordKey = (await loadOrCreateNodeKey(join(dir.path, 'coord'))).key;
  const spec = [
    { host: 'web1', labels: { role: 'web', env: 'prod' } },
    { host: 'web2', labels: { role: 'web', env: 'test' } },
    { host: 'db1', labels: { role: 'db', env: 'prod' } },
  ];
  for (const [i, s] of spec.entries())
    agents.push({ key: (await loadOrCreateNodeKey(join(dir.path, `agent${i}`))).key, ...s });
  // The admin's replica: root signed by the coordinator key, web1's status signed by web1.
  const adminDir = join(dir.path, 'admin');
  await mkdir(adminDir, { recursive: true });
  const adminKey = (await loadOrCreateNodeKey(adminDir)).key;
  const docs = await openDocuments(await localConfig(adminDir), adminKey, silentLogger);
  const web1 = agents[0]!;
  const status = new OwnedDoc<StatusDoc>(deriveKeyPair(web1.key.secret, STATUS_KEY));
  const sh = await status.open(docs.repo, docs.store, statusBase(web1.key.nodeId));
  sh.change((d) => {
    writeSystem(d, {
      activator: 'profile',
      current: SYSTEM_A,
      booted: null,
      profile: SYSTEM_A,
      generation: 2,
      rebootNeeded: false,
      hwm: 9_000_000_000_000,
      at: new Date().toISOString(),
    });
    writeDeployment(d, {
      id: 'aa'.repeat(16),
      seq: 9_000_000_000_000,
      storePath: SYSTEM_A,
      action: 'switch',
      signer: adminKey.nodeId,
      state: 'rolled-back',
      code: 'HEALTH_CHECK_FAILED',
      reason: 'check command exited 1',
      rollback: 'done',
      times: { received: new Date().toISOString() },
      log: 'unhealthy',
    });
  });
  entries = agents.map((a, i) => ({
    nodeId: a.key.nodeId,
    factsDocId: `facts${i}` as DocumentId,
    factsWriteKey: '00'.repeat(32),
    enrolledAt: new Date().toISOString(),
    lastSeen: new Date().toISOString(),
    summary: { hostname: a.host, os: 'NixOS', nixosVersion: '25.05', kernel: '6', arch: 'x86_64' },
    factsHeads: null,
    statusDocId: (i === 0 ? status.docId : `status${i}`) as DocumentId,
    ...(i === 0
      ? {
          statusWriteKey: status.writeKey,
          statusHeads: status.signed(),
          desired: {
            id: 'aa'.repeat(16),
            seq: 9_000_000_000_000,
            storePath: SYSTEM_A,
            action: 'switch' as const,
          },
          deploy: {
            current: SYSTEM_A,
            booted: null,
            rebootNeeded: true,
            last: {
              id: 'aa'.repeat(16),
              state: 'rolled-back' as const,
              code: 'HEALTH_CHECK_FAILED' as const,
            },
          },
        }
      : {}),
    labels: a.labels,
  }));
  const root = new OwnedDoc<RootDoc>(deriveKeyPair(coordKey.secret, ROOT_KEY));
  const rh = await root.open(docs.repo, docs.store, rootBase(coordKey.nodeId));
  rh.change((d) => {
    for (const e of entries) d.agents[e.nodeId] = encodeAgent(e);
  });
  rootDocId = root.docId;
  await saveReplicaInfo(adminDir, {
    coordinator: coordKey.nodeId,
    rootDocId,
    rootSigned: root.signed(),
    asOf: new Date().toISOString(),
    presence: [],
  });
  await docs.repo.flush();
  await docs.store.idle();
  await docs.store.close();
});
afterAll(() => dir.remove());

const q = (words: string[], all = false, labels: [string, string][] = []) => ({
  words,
  all,
  labels,
});

describe('targets and seqs', () => {
  it('resolves node ids, prefixes, hostnames, --all and ANDed labels; empty is BAD_ARGUMENT', () => {
    const ids = (es: AgentEntry[]) => es.map((e) => e.nodeId).sort();
    const [web1, web2, db1] = agents.map((a) => a.key.nodeId);
    expect(ids(resolveTargets(entries, q(['web1', db1!.slice(0, 12)])))).toEqual(
      [web1, db1].sort(),
    );
    expect(ids(resolveTargets(entries, q([], true)))).toEqual([web1, web2, db1].sort());
    expect(
      ids(
        resolveTargets(
          entries,
          q([], false, [
            ['role', 'web'],
            ['env', 'prod'],
          ]),
        ),
      ),
    ).toEqual([web1]);
    expect(() => resolveTargets(entries, q([], false, [['role', 'cache']]))).toThrow(
      /no agent carries/,
    );
    expect(() => resolveTargets(entries, q([]))).toThrow(FltError);
    expect(() => resolveTargets(entries, q(['nosuch']))).toThrow(/no agent matches/);
    const old = entries.map((e) =>
      e.summary?.hostname === 'db1' ? { ...e, statusDocId: undefined } : e,
    );
    expect(() => resolveTargets(old, q(['db1']))).toThrow(/without deployments/);
  });

  it('known seq: the highest of the desired summary, the status hwm and queued parts', () => {
    const [web1, web2] = agents.map((a) => a.key.nodeId) as [NodeId, NodeId];
    const statuses = new Map([[web2, { system: null, deployments: [] }]]);
    const queued = [
      {
        id: 'bb'.repeat(16),
        queuedAt: '',
        parts: [{ targets: { [web2]: 42 } } as unknown as SignedPart],
      },
    ];
    const known = knownSeqs(entries, statuses, queued);
    expect(known.get(web1)).toBe(9_000_000_000_000);
    expect(known.get(web2)).toBe(42);
  });

  it('CONFIG: ok, pending, ROLLED-BACK and never deployed', () => {
    expect(configOf(entries[0]!)?.state).toBe('ROLLED-BACK');
    expect(configOf(entries[1]!)).toBeNull();
    const e = entries[0]!;
    expect(configOf({ ...e, deploy: { ...e.deploy!, last: null } })?.state).toBe('ok');
    expect(configOf({ ...e, deploy: { ...e.deploy!, current: SYSTEM_B, last: null } })?.state).toBe(
      'pending',
    );
  });
});

describe('admin views from the replica (offline)', () => {
  it('status reads the status document trusted view; the fleet table has CONFIG', async () => {
    const config = await localConfig(join(dir.path, 'admin'));
    const admin = await Admin.open(config, silentLogger, true);
    try {
      const s = await admin.status('web1');
      const web1 = s.agents[0]!;
      expect(web1.current).toBe(SYSTEM_A);
      expect(web1.onDesired).toBe(true);
      expect(web1.last).toMatchObject({ state: 'rolled-back', code: 'HEALTH_CHECK_FAILED' });
      expect(web1.deployments?.[0]?.log).toBe('unhealthy');
      const all = await admin.status();
      expect(all.agents.find((a) => a.hostname === 'web2')?.statusUnavailable).toBe(true);
      const fleet = await admin.fleet();
      expect(fleet.agents.find((a) => a.hostname === 'web1')?.config).toMatchObject({
        state: 'ROLLED-BACK',
        rebootNeeded: true,
      });
    } finally {
      await admin.close();
    }
  });
});

describe('the outbox', () => {
  it('queues while the coordinator is unreachable, survives a restart, is delivered once by the next online open', async () => {
    const port = await freeUdpPort();
    const config = await localConfig(join(dir.path, 'admin'), {
      coordinator: `${coordKey.nodeId}@127.0.0.1:${port}`,
      'rpc-timeout': '1500ms',
    });
    // 1. nothing listens: signed, kept, queued
    const a1 = await Admin.open(config, silentLogger, false);
    let outcome;
    try {
      outcome = await a1.deploy({
        ...q(['web2', 'db1']),
        storePath: SYSTEM_B,
        action: 'switch',
        expiresInMs: 3_600_000,
      });
    } finally {
      await a1.close();
    }
    expect(outcome.queued).toBe(true);
    expect(outcome.parts).toHaveLength(1);
    const part = verifyPart(outcome.parts[0], rootDocId);
    expect(Object.keys(part.targets).sort()).toEqual(
      [agents[1]!.key.nodeId, agents[2]!.key.nodeId].sort(),
    );
    // 2. still queued after a restart (offline read of the state dir)
    const off = await Admin.open(config, silentLogger, true);
    const listed = await off.deployments().finally(() => off.close());
    expect(listed.deployments.find((d) => d.id === outcome.id)?.where).toBe('queued');
    // 3. the coordinator comes up: the next online open delivers it, exactly once
    const received: unknown[][] = [];
    const transport = await IrohTransport.bind({
      secretKey: coordKey.secret,
      alpns: ALL_ALPNS,
      bind: `127.0.0.1:${port}`,
      relay: 'disabled',
      discovery: 'none',
    });
    const rpc = new RpcServer({
      access: { roleOf: () => 'admin', refuse: () => new FltError('NOT_ADMIN', 'no') },
    }).register(deploySubmit, ({ parts }) => {
      received.push(parts);
      return Promise.resolve({
        index: received.length,
        placed: Object.keys((parts[0] as SignedPart).targets) as NodeId[],
        stale: [],
        unknown: [],
      });
    });
    const router = new Router(transport).service(rpc);
    router.start();
    try {
      const a2 = await Admin.open(config, silentLogger, false);
      await a2.close(); // close waits for the delivery started by open
      expect(received).toHaveLength(1);
      expect(received[0]).toEqual(outcome.parts.map((p) => ({ ...p })));
      const a3 = await Admin.open(config, silentLogger, false);
      await a3.close();
      expect(received).toHaveLength(1); // nothing left to send
      const off2 = await Admin.open(config, silentLogger, true);
      const after = await off2.deployments().finally(() => off2.close());
      expect(after.deployments.find((d) => d.id === outcome.id)).toBeUndefined(); // sent, not in the (empty) trail copy
    } finally {
      await router.stop();
      await transport.close();
    }
  });
});

describe('the outbox and the coordinator errors', () => {
  it('keeps queued what is not a definite refusal (IO, BUSY, an unknown code); a refusal moves to sent', async () => {
    const key = (await loadOrCreateNodeKey(join(dir.path, 'outbox-admin'))).key;
    const repo = new Repo({ network: [] });
    try {
      const outbox = await Outbox.open(repo, new MemoryStore(), key);
      const parts = signDeployment(
        {
          targets: new Map([[agents[0]!.key.nodeId, 1]]),
          storePath: SYSTEM_A,
          action: 'switch',
          expiresInMs: 3_600_000,
        },
        rootDocId,
        key,
      );
      await outbox.queue(parts, 1);
      let calls = 0;
      const failing = (code: 'IO' | 'BUSY' | 'INTERNAL' | 'NOT_ADMIN') => () => {
        calls++;
        return Promise.reject(new FltError(code, `the coordinator says ${code}`));
      };
      for (const c of ['IO', 'BUSY', 'INTERNAL'] as const) {
        const r = await outbox.flush(failing(c));
        expect(r.sent).toEqual([]);
        expect(r.unreachable?.code).toBe(c);
        expect(outbox.read(rootDocId).queued.map((q) => q.id)).toEqual([parts[0]!.id]);
      }
      const refused = await outbox.flush(failing('NOT_ADMIN'));
      expect(refused.sent.map((x) => x.error?.code)).toEqual(['NOT_ADMIN']);
      expect(outbox.read(rootDocId).queued).toEqual([]);
      expect(calls).toBe(4);
    } finally {
      await repo.shutdown();
    }
  });
});

describe('flt admin deploy: bad input', () => {
  it.each([
    [['admin', 'deploy', '--all', 'not-a-store-path'], /not a Nix store path/],
    [['admin', 'deploy', SYSTEM_A], /no target/],
    [
      ['admin', 'deploy', '--all', '--action', 'reboot', SYSTEM_A],
      /--action: one of switch, boot, test/,
    ],
    [['admin', 'deploy', '--all', '--expires', '40d', SYSTEM_A], /--expires/],
    [['admin', 'deploy', '--label', 'Role', SYSTEM_A], /labels are KEY=VALUE/],
    [['admin', 'label', 'web1'], /missing required argument/],
    [['admin', 'label', 'web1', 'role'], /labels are KEY=VALUE/],
  ])('flt %j refuses with one line, exit 2', async (argv, message) => {
    const r = await runFlt([...argv, '--state-dir', join(dir.path, 'cli')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });
});
