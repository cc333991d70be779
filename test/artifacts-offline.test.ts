// Issue 12, "Must show": an agent that is offline when the admin pushes and deploys gets
// everything when it starts, after the coordinator has restarted. Real `flt` processes on
// loopback (coordinator, agent, admin commands), real Nix stores (test/helpers/artifacts.ts):
// the admin pushes from store B signed with key K, the agent's store C starts empty, trusts K
// only, and has no substituter but what flt delivers; the `profile` activator on a profile in the
// agent's state dir runs the top's switch-to-configuration, which logs "top switch".

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentsOf } from '../src/docs/root.js';
import { readStatus } from '../src/docs/status.js';
import { loadReplicaInfo, loadStoredDoc } from '../src/roles/replica.js';
import { FsStore } from '../stores/fs-store.js';
import { expectSameInStores } from './helpers/artifact-fleet.js';
import { artifactStores, nixKeys, nixStore, type ArtifactStores } from './helpers/artifacts.js';
import { CliFleet } from './helpers/fleet-cli.js';
import { runFlt, tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';

interface StatusRow {
  nodeId: string;
  current: string | null;
  last: { id: string; state: string; code?: string; reason?: string } | null;
}

interface Stats {
  paths: number;
  blobs: number;
  bytes: number;
  quarantined: number;
}

let fx: ArtifactStores;
let dir: Awaited<ReturnType<typeof tempDir>>;
let keys: Awaited<ReturnType<typeof nixKeys>>;
const fleets: CliFleet[] = [];

beforeAll(async () => {
  fx = await artifactStores();
  dir = await tempDir();
  keys = await nixKeys('flt-offline-k', dir.path);
}, 120_000);
afterAll(async () => {
  for (const f of fleets.splice(0)) await f.stopAll();
  await fx?.close();
  await dir?.remove();
});

/** The agent's flags: profile activator in its state dir, store C, trusts K only. */
function agentFlags(stateDir: string): string[] {
  return [
    '--facts-interval',
    '1s',
    '--deploy-activator',
    'profile',
    '--deploy-profile',
    join(stateDir, 'profiles', 'system'),
    '--deploy-command',
    'go() { "$1/bin/switch-to-configuration" "$2"; }; go',
    '--deploy-recheck',
    '1s',
    '--nix-store',
    fx.agent,
    '--nix-trusted-keys',
    keys.publicKey,
    '--artifact-min-free',
    '0',
  ];
}

async function stats(fleet: CliFleet): Promise<Stats> {
  const r = await runFlt(fleet.admin('artifacts', 'stats', '--json'));
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Stats;
}

/**
 * The states deployment `id` went through on agent `agentId`, oldest first (repeats merged), from
 * the history of the agent's status document as the admin's replica holds it (every change the
 * agent made is there: a `fetching` record that lasted a second is seen whatever the polling).
 */
async function stateHistory(adminDir: string, agentId: string, id: string): Promise<string[]> {
  const info = await loadReplicaInfo(adminDir);
  const store = await FsStore.open(join(adminDir, 'repo'));
  try {
    const root = await loadStoredDoc<unknown>(store, info.rootDocId as DocumentId);
    const entry = agentsOf(root).find((e) => e.nodeId === agentId);
    if (!entry?.statusDocId) throw new Error(`no status document for ${agentId} in the replica`);
    const status = await loadStoredDoc<unknown>(store, entry.statusDocId);
    const states: string[] = [];
    for (const { snapshot } of A.getHistory(status)) {
      const s = readStatus(snapshot).deployments.find((d) => d.id === id)?.state;
      if (s !== undefined && states.at(-1) !== s) states.push(s);
    }
    return states;
  } finally {
    await store.close();
  }
}

describe('an agent offline while the admin pushes and deploys', () => {
  it('gets the whole closure when it starts, after the coordinator restarted, and activates it once', async () => {
    const fleet = await CliFleet.create(join(dir.path, 'fleet'), await freeUdpPort());
    fleets.push(fleet);
    await fleet.startCoordinator();
    const agentDir = `${fleet.root}/web1`;
    const { p, id: agentId } = await fleet.startAgent('web1', ...agentFlags(agentDir));
    await fleet.until('web1 online', (rows) => rows.some((r) => r.nodeId === agentId && r.online));
    p.kill('SIGKILL');
    await p.exited;

    // C lacks the whole closure: only flt can bring it.
    const closure = [...fx.closure].sort();
    const invalid = await nixStore(fx.agent, '--check-validity', '--print-invalid', ...closure);
    expect(invalid.trim().split('\n').sort()).toEqual(closure);

    // The deploy pushes the closure (signed with K), then submits, while the agent is down.
    const env = { FLT_NIX_STORE: fx.admin, FLT_NIX_SIGNING_KEY: keys.secretFile };
    const d = await runFlt(fleet.admin('deploy', '--json', agentId, fx.paths.top), env);
    expect(d.code, d.stderr).toBe(0);
    const out = JSON.parse(d.stdout) as {
      id: string;
      queued: boolean;
      placed: string[];
      pushed: { paths: number; pushed: { path: string }[]; present: string[] };
    };
    expect(out.queued).toBe(false);
    expect(out.placed).toEqual([agentId]);
    expect(out.pushed.paths).toBe(4);
    expect(out.pushed.pushed.map((x) => x.path).sort()).toEqual(closure);
    const before = await stats(fleet);
    expect(before).toMatchObject({ paths: 4, blobs: 4, quarantined: 0 });

    // The coordinator crashes and starts again: index and blobs come back from its disk.
    fleet.coordinator!.kill('SIGKILL');
    await fleet.coordinator!.exited;
    await fleet.startCoordinator();
    expect(await stats(fleet)).toMatchObject({
      paths: 4,
      blobs: 4,
      bytes: before.bytes,
      quarantined: 0,
    });

    // The agent starts (enrolled already: no token).
    fleet.spawn(agentDir, 'agent', '--coordinator', fleet.addr, ...agentFlags(agentDir));
    let last = 'never ran';
    let row: StatusRow | undefined;
    const deadline = performance.now() + 150_000;
    for (let i = 0; i < 300 && performance.now() < deadline; i++) {
      const r = await runFlt(fleet.admin('status', '--json'));
      last = `${r.code} ${r.stdout} ${r.stderr}`;
      if (r.code !== 0) continue;
      const found = (JSON.parse(r.stdout) as StatusRow[]).find((s) => s.nodeId === agentId);
      if (found?.last?.id !== out.id) continue;
      if (['succeeded', 'refused', 'failed', 'rolled-back'].includes(found.last.state)) {
        row = found;
        break;
      }
    }
    expect(row, `no final state; last: ${last}`).toBeDefined();
    expect(row!.last).toMatchObject({ id: out.id, state: 'succeeded' });
    expect(row!.current).toBe(fx.paths.top);

    // Activated exactly once.
    const log = await readFile(join(agentDir, 'activations.log'), 'utf8').catch(() => '');
    expect(log.split('\n').filter(Boolean)).toEqual(['top switch']);

    // Every path of the closure is valid in C, verifies, and has B's narHash.
    expect(
      (await nixStore(fx.agent, '--check-validity', '--print-invalid', ...closure)).trim(),
    ).toBe('');
    for (const s of await expectSameInStores(fx, closure)) {
      expect(s.ok, `verify-path ${s.path}`).toBe(true);
      expect(s.agent, s.path).toBe(s.admin);
    }

    // The agent said `fetching` on the way, before it activated (its status history).
    const states = await stateHistory(`${fleet.root}/ad`, agentId, out.id);
    expect(states).toContain('fetching');
    expect(states.indexOf('fetching')).toBeLessThan(states.indexOf('activating'));
    expect(states.at(-1)).toBe('succeeded');
  }, 300_000);
});
