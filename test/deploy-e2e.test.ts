// Deployments as an operator runs them: real `flt` processes (coordinator, agents, admin
// commands) on loopback, real Nix store paths (test/fixtures/systems.nix in a store of this
// test run), the `profile` activator on a profile in the agent's state dir. Each system's
// switch-to-configuration appends "<tag> <action>" to the agent's activations.log, so a test
// counts activations exactly. Issue 11, "Must show": eventual delivery across restarts of every
// component, exactly once, newest of two wins, rollback of a failing activation and of a
// failing health check, and a deployment signed while the coordinator is down.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CliFleet } from './helpers/fleet-cli.js';
import { runFlt, tempDir, type FltProcess } from './helpers/flt.js';
import { nixFixtures, type NixFixtures } from './helpers/nix.js';
import { freeUdpPort } from './helpers/peer-process.js';

interface StatusRow {
  nodeId: string;
  desired: { id: string; storePath: string } | null;
  current: string | null;
  onDesired: boolean | null;
  last: { id: string; state: string; code?: string; reason?: string; rollback?: string } | null;
}

let fx: NixFixtures;
beforeAll(async () => void (fx = await nixFixtures()));

const fleets: CliFleet[] = [];
const dirs: Awaited<ReturnType<typeof tempDir>>[] = [];
afterEach(async () => {
  for (const f of fleets.splice(0)) await f.stopAll();
  for (const d of dirs.splice(0)) await d.remove();
});

async function newFleet(): Promise<CliFleet> {
  const dir = await tempDir();
  dirs.push(dir);
  const fleet = await CliFleet.create(dir.path, await freeUdpPort());
  fleets.push(fleet);
  await fleet.startCoordinator();
  return fleet;
}

/** How an agent of these tests activates: a profile in its state dir, the fixture's script. */
function deployFlags(stateDir: string): string[] {
  return [
    '--facts-interval',
    '1s',
    '--deploy-activator',
    'profile',
    '--deploy-profile',
    join(stateDir, 'profiles', 'system'),
    '--deploy-command',
    'go() { "$1/bin/switch-to-configuration" "$2"; }; go',
    '--deploy-check',
    'ok() { test ! -e "$1/unhealthy"; }; ok',
    '--deploy-health-timeout',
    '30s',
    '--deploy-recheck',
    '1s',
    '--nix-store',
    fx.store,
  ];
}

/** Starts (or restarts) the agent in `root/name` without a token: it is enrolled already. */
function restartAgent(fleet: CliFleet, name: string): FltProcess {
  const dir = `${fleet.root}/${name}`;
  return fleet.spawn(dir, 'agent', '--coordinator', fleet.addr, ...deployFlags(dir));
}

async function enrolledAgent(fleet: CliFleet, name: string) {
  const dir = `${fleet.root}/${name}`;
  const { p, id } = await fleet.startAgent(name, ...deployFlags(dir));
  await fleet.until(`${name} online`, (rows) => rows.some((r) => r.nodeId === id && r.online));
  return { p, id, dir };
}

async function activations(agentDir: string): Promise<string[]> {
  const text = await readFile(join(agentDir, 'activations.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

async function status(fleet: CliFleet, ...more: string[]): Promise<StatusRow[]> {
  const r = await runFlt(fleet.admin('status', '--json', ...more));
  if (r.code !== 0) throw new Error(`admin status failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusRow[];
}

/** Polls `admin status --json` (bounded) until the agent's row satisfies `pred`. */
async function untilStatus(
  fleet: CliFleet,
  id: string,
  what: string,
  pred: (row: StatusRow) => boolean,
): Promise<StatusRow> {
  let last = 'never ran';
  for (let i = 0; i < 60; i++) {
    const r = await runFlt(fleet.admin('status', '--json'));
    last = `${r.code} ${r.stdout} ${r.stderr}`;
    const row =
      r.code === 0 ? (JSON.parse(r.stdout) as StatusRow[]).find((s) => s.nodeId === id) : undefined;
    if (row && pred(row)) return row;
  }
  throw new Error(`${what}: not seen; last: ${last}`);
}

/** `admin deploy ...`; returns the deployment id printed with --json. */
async function deploy(fleet: CliFleet, ...args: string[]): Promise<string> {
  const r = await runFlt(fleet.admin('deploy', '--no-push', '--json', ...args));
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

describe('a deployment', () => {
  it('reaches an agent that was down while it was made, across a coordinator crash, exactly once', async () => {
    const fleet = await newFleet();
    const agent = await enrolledAgent(fleet, 'web1');
    agent.p.kill('SIGKILL');
    await agent.p.exited;

    const id = await deploy(fleet, agent.id, fx.paths.a);
    fleet.coordinator!.kill('SIGKILL');
    await fleet.coordinator!.exited;
    await fleet.startCoordinator();
    restartAgent(fleet, 'web1');

    const row = await untilStatus(
      fleet,
      agent.id,
      'succeeded',
      (s) => s.last?.state === 'succeeded',
    );
    expect(row.last?.id).toBe(id);
    expect(await activations(agent.dir)).toEqual(['a switch']);

    // Restarted once more, the agent does not activate it again; the replica reads offline.
    const again = restartAgent(fleet, 'web1');
    await fleet.until('web1 online again', (rows) =>
      rows.some((r) => r.nodeId === agent.id && r.online),
    );
    again.kill('SIGKILL');
    const offline = (await status(fleet, '--offline')).find((s) => s.nodeId === agent.id);
    expect(offline).toMatchObject({ onDesired: true, current: fx.paths.a });
    expect(offline?.desired?.storePath).toBe(fx.paths.a);
    expect(await activations(agent.dir)).toEqual(['a switch']);
  });

  it('of two made while the agent was down, only the newest is activated', async () => {
    const fleet = await newFleet();
    const agent = await enrolledAgent(fleet, 'web1');
    agent.p.kill('SIGKILL');
    await agent.p.exited;

    await deploy(fleet, agent.id, fx.paths.a);
    const newest = await deploy(fleet, agent.id, fx.paths.b);
    restartAgent(fleet, 'web1');

    const row = await untilStatus(
      fleet,
      agent.id,
      'b succeeded',
      (s) => s.last?.state === 'succeeded',
    );
    expect(row.last?.id).toBe(newest);
    expect(row.current).toBe(fx.paths.b);
    expect(await activations(agent.dir)).toEqual(['b switch']);
  });

  it('that fails to activate, or fails its health check, is rolled back and --wait exits 1', async () => {
    const fleet = await newFleet();
    const agent = await enrolledAgent(fleet, 'web1');
    const ok = await runFlt(
      fleet.admin('deploy', '--no-push', agent.id, fx.paths.a, '--wait', '--timeout', '2m'),
    );
    expect(ok.code, ok.stderr).toBe(0);

    const bad = await runFlt(
      fleet.admin('deploy', '--no-push', agent.id, fx.paths.bad, '--wait', '--timeout', '2m'),
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^flt: DEPLOY_FAILED: /m);
    let row = await untilStatus(
      fleet,
      agent.id,
      'rolled back',
      (s) => s.last?.state === 'rolled-back',
    );
    expect(row.last).toMatchObject({ code: 'ACTIVATION_FAILED', rollback: 'done' });
    expect(row.current).toBe(fx.paths.a);

    const sick = await runFlt(
      fleet.admin('deploy', '--no-push', agent.id, fx.paths.sick, '--wait', '--timeout', '2m'),
    );
    expect(sick.code).toBe(1);
    expect(sick.stderr).toMatch(/^flt: DEPLOY_FAILED: /m);
    row = await untilStatus(
      fleet,
      agent.id,
      'rolled back again',
      (s) => s.last?.state === 'rolled-back' && s.last.code === 'HEALTH_CHECK_FAILED',
    );
    expect(row.current).toBe(fx.paths.a);
    // a, then bad (failed) and a again, then sick (activated, unhealthy) and a again
    expect(await activations(agent.dir)).toEqual([
      'a switch',
      'bad switch',
      'a switch',
      'sick switch',
      'a switch',
    ]);
  });

  it('signed while the coordinator is down is kept by the admin and delivered when it is back', async () => {
    const fleet = await newFleet();
    const agent = await enrolledAgent(fleet, 'web1');
    fleet.coordinator!.kill('SIGKILL');
    await fleet.coordinator!.exited;

    const queued = await runFlt(
      fleet.admin('deploy', '--no-push', '--json', '--rpc-timeout', '2s', agent.id, fx.paths.a),
    );
    expect(queued.code, queued.stderr).toBe(0);
    const { id, queued: wasQueued } = JSON.parse(queued.stdout) as { id: string; queued: boolean };
    expect(wasQueued).toBe(true);
    expect(await activations(agent.dir)).toEqual([]);

    // The coordinator comes back first, then any online admin command delivers the queue.
    await fleet.startCoordinator();
    const later = await runFlt(fleet.admin('agents', '--json'));
    expect(later.code, later.stderr).toBe(0);
    const row = await untilStatus(
      fleet,
      agent.id,
      'succeeded',
      (s) => s.last?.state === 'succeeded',
    );
    expect(row.last?.id).toBe(id);
    expect(await activations(agent.dir)).toEqual(['a switch']);
  });
});
