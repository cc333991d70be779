// The agent's Deployer (src/roles/deployer.ts) against a stand-in coordinator: a local Repo
// holding this agent's desired document and the fleet's admins document, written by the test
// with real signed parts (signDeployment) and real admin ops (signOp), and a status document the
// Deployer writes. Activations are real: Nix store paths built by test/helpers/nix.ts, the
// `profile` activator on a profile in a temp dir, detached runners. Covers: activation once and
// no repeat after a restart (also mid-activation), every refusal code of design §5 with nothing
// activated, a coordinator-forged part, only the newest of two parts, waiting for a store path
// and for the admin trail, rollbacks, the trust-on-first-use pin, hwm recovery, a corrupt journal.

import * as A from '@automerge/automerge';
import { Repo, type DocHandle } from '@automerge/automerge-repo';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeId } from '../sync/ids.js';
import { silentLogger } from '../sync/log.js';
import { currentGeneration, listGenerations } from '../src/deploy/nix.js';
import { Journal } from '../src/deploy/journal.js';
import { ProfileActivator } from '../src/deploy/profile.js';
import { adminsBase, appendAdminOp, writeAdminsStart, type AdminsDoc } from '../src/docs/admins.js';
import { desiredBase, encodeDesired, type DesiredDoc } from '../src/docs/desired.js';
import {
  readStatus,
  statusBase,
  type DeploymentStatus,
  type StatusDoc,
} from '../src/docs/status.js';
import { generateNodeKey, type NodeKey } from '../src/identity/index.js';
import { collectFacts } from '../src/facts/index.js';
import { Agent } from '../src/roles/agent.js';
import type { Liveness } from '../src/roles/liveness.js';
import { Deployer, type DeployerOptions } from '../src/roles/deployer.js';
import type { EnsureOptions, EnsureResult } from '../src/artifacts/fetcher.js';
import { FltError } from '../src/errors.js';
import { localConfig, testFleet } from './helpers/fleet.js';
import { signOp } from '../src/trust/admin-ops.js';
import {
  MAX_PART_TARGETS,
  partDigest,
  signDeployment,
  type DeployAction,
  type SignedPart,
} from '../src/trust/deployment.js';
import { tempDir } from './helpers/flt.js';
import { nixFixtures, type NixFixtures } from './helpers/nix.js';
import { waitFor, waitForChanges } from './helpers/wait.js';

const SWITCH_CMD = '"$1"/bin/switch-to-configuration "$2"';
const CHECK_CMD = 'ok() { test ! -e "$1/unhealthy"; }; ok';
const FLEET = '4Nq7bP2xYzR1cVw9kLmT3sHdFgJa';
const OTHER_FLEET = '5Pq7bP2xYzR1cVw9kLmT3sHdFgJb';
const HOUR = 3_600_000;

let nix: NixFixtures;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  nix = await nixFixtures();
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** One agent, its documents in a stand-in coordinator's Repo, and Deployers over them. */
interface Rig {
  readonly dir: string;
  readonly me: NodeKey;
  readonly admin: NodeKey;
  readonly coord: NodeKey;
  readonly desired: DocHandle<DesiredDoc>;
  readonly admins: DocHandle<AdminsDoc>;
  readonly status: DocHandle<StatusDoc>;
  readonly profile: string;
  /** Starts a Deployer over the rig (options overridable); closed after the test. */
  start(over?: Partial<DeployerOptions>): Promise<Deployer>;
  /** Signs a part for this agent as `key` (default: the admin). */
  sign(opts: {
    storePath: string;
    seq: number;
    key?: NodeKey;
    fleet?: string;
    action?: DeployAction;
    targets?: NodeId[];
    now?: Date;
    expiresInMs?: number;
  }): SignedPart;
  /** Places `current` in the desired document as the coordinator does (C4). */
  place(part: unknown, adminOps?: number): void;
  record(id: string): DeploymentStatus | undefined;
  /** Waits for the record of `id` to reach `state`. */
  until(id: string, state: DeploymentStatus['state']): Promise<DeploymentStatus>;
  activations(): Promise<string[]>;
}

async function rig(initialAdmins?: (admin: NodeKey) => NodeId[]): Promise<Rig> {
  const tmp = await tempDir('flt-deployer-');
  cleanup.push(() => tmp.remove());
  const dir = tmp.path;
  const repo = new Repo({ network: [] });
  cleanup.push(() => repo.shutdown());
  const [me, admin, coord] = [generateNodeKey(), generateNodeKey(), generateNodeKey()];
  const desired = repo.create<DesiredDoc>(desiredBase(me.nodeId));
  const admins = repo.create<AdminsDoc>(adminsBase(coord.nodeId));
  admins.change((d) => writeAdminsStart(d, FLEET, initialAdmins?.(admin) ?? [admin.nodeId]));
  const status = repo.create<StatusDoc>(statusBase(me.nodeId));
  const profile = join(dir, 'profiles/system');
  const r: Rig = {
    dir,
    me,
    admin,
    coord,
    desired,
    admins,
    status,
    profile,
    async start(over = {}) {
      const deployer = new Deployer(
        { desired, admins, status },
        {
          stateDir: dir,
          nodeId: me.nodeId,
          fleet: FLEET,
          admins: [admin.nodeId],
          activator: new ProfileActivator({ profile, command: SWITCH_CMD, nixStore: nix.store }),
          check: CHECK_CMD,
          healthTimeoutMs: 20_000,
          recheckMs: 100,
          runnerMode: 'child',
          log: silentLogger,
          ...over,
        },
      );
      cleanup.push(() => deployer.close());
      await deployer.start();
      return deployer;
    },
    sign(o) {
      const targets = new Map((o.targets ?? [me.nodeId]).map((t) => [t, o.seq]));
      const spec = {
        targets,
        storePath: o.storePath,
        action: o.action ?? 'switch',
        expiresInMs: o.expiresInMs ?? HOUR,
      };
      return signDeployment(spec, o.fleet ?? FLEET, o.key ?? admin, o.now)[0]!;
    },
    place(part, adminOps) {
      const ops = adminOps ?? admins.doc().ops.length;
      desired.change((d) => {
        d.current = encodeDesired({ part: part as SignedPart, adminOps: ops });
      });
    },
    record: (id) => readStatus(status.doc()).deployments.find((x) => x.id === id),
    until: (id, state) =>
      waitForChanges(`deployment ${id.slice(0, 8)} ${state}`, status, () => {
        const rec = r.record(id);
        return rec?.state === state ? rec : undefined;
      }),
    async activations() {
      const text = await readFile(join(dir, 'activations.log'), 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l !== '');
    },
  };
  return r;
}

/** Nothing ran: no activation logged, no profile generation, hwm still 0. */
async function expectNothingActivated(r: Rig): Promise<void> {
  expect(await r.activations()).toEqual([]);
  expect(await listGenerations(r.profile)).toEqual([]);
  expect((await Journal.open(r.dir)).state.hwm).toBe(0);
}

describe('Deployer: activation', () => {
  it('activates a part once, reports it, and a restart does not repeat it', async () => {
    const r = await rig();
    const part = r.sign({ storePath: nix.paths.a, seq: 10 });
    const first = await r.start();
    r.place(part);
    const done = await r.until(part.id, 'succeeded');
    expect(done).toMatchObject({ seq: 10, storePath: nix.paths.a, signer: r.admin.nodeId });
    expect(done.times.received).toBeDefined();
    expect(done.times.finished).toBeDefined();
    expect(await r.activations()).toEqual(['a switch']);
    const system = await waitFor('system record', () => {
      const s = readStatus(r.status.doc()).system;
      return s?.hwm === 10 ? s : undefined;
    });
    expect(system).toMatchObject({ activator: 'profile', current: nix.paths.a, generation: 1 });
    await first.close();
    await first.close(); // idempotent

    const second = await r.start();
    await second.idle();
    r.place(part); // the coordinator writes the same part again: still nothing new
    await second.idle();
    expect(await r.activations()).toEqual(['a switch']);
    expect(r.record(part.id)?.state).toBe('succeeded');
    expect(second.hwm).toBe(10);
  });

  it('an outcome and the system it leaves are one change: no state says succeeded beside the old system', async () => {
    const r = await rig();
    // Every state the status document passes through, as a replica receiving each change sees it.
    const seen: { a?: string; b?: string; current: string | null }[] = [];
    r.status.on('change', ({ doc }) => {
      const { system, deployments } = readStatus(doc);
      const state = (id: string) => deployments.find((x) => x.id === id)?.state;
      seen.push({ a: state(partA.id), b: state(partB.id), current: system?.current ?? null });
    });
    const partA = r.sign({ storePath: nix.paths.a, seq: 1 });
    const partB = r.sign({ storePath: nix.paths.b, seq: 2 });
    await r.start();
    r.place(partA);
    await r.until(partA.id, 'succeeded');
    r.place(partB);
    await r.until(partB.id, 'succeeded');
    const doneA = seen.filter((s) => s.a === 'succeeded' && s.b === undefined);
    const doneB = seen.filter((s) => s.b === 'succeeded');
    expect(doneA.length).toBeGreaterThan(0);
    expect(doneB.length).toBeGreaterThan(0);
    expect(doneA.map((s) => s.current)).toEqual(doneA.map(() => nix.paths.a));
    expect(doneB.map((s) => s.current)).toEqual(doneB.map(() => nix.paths.b));
  });

  it('an activation interrupted by a restart is resumed, not repeated', async () => {
    const r = await rig();
    const slow = `sleep 1; ${SWITCH_CMD}`;
    const profileSlow = new ProfileActivator({
      profile: r.profile,
      command: slow,
      nixStore: nix.store,
    });
    const first = await r.start({ activator: profileSlow });
    const part = r.sign({ storePath: nix.paths.a, seq: 3 });
    r.place(part);
    await r.until(part.id, 'activating');
    await first.close(); // the runner goes on in its own process group
    expect((await Journal.open(r.dir)).state.active?.phase).toBe('activating');

    await r.start({ activator: profileSlow });
    await r.until(part.id, 'succeeded');
    expect(await r.activations()).toEqual(['a switch']);
    expect(await currentGeneration(r.profile)).toEqual({ generation: 1, path: nix.paths.a });
  });

  it('of two parts only the newest activates; one waiting is superseded', async () => {
    const r = await rig();
    // Offline: both placed before the agent starts; the desired document holds only the newest.
    const older = r.sign({ storePath: nix.paths.a, seq: 1 });
    const newer = r.sign({ storePath: nix.paths.b, seq: 2 });
    r.place(older);
    r.place(newer);
    await r.start();
    await r.until(newer.id, 'succeeded');
    expect(r.record(older.id)).toBeUndefined();
    expect(await r.activations()).toEqual(['b switch']);

    // A part waiting for its store path, replaced by a newer one before it activates.
    const late = await nix.late();
    const waiting = r.sign({ storePath: late.path, seq: 3 });
    r.place(waiting);
    await r.until(waiting.id, 'waiting');
    const newest = r.sign({ storePath: nix.paths.a, seq: 4 });
    r.place(newest);
    await r.until(newest.id, 'succeeded');
    expect(await r.until(waiting.id, 'superseded')).toMatchObject({ seq: 3 });
    await late.build();
    await waitFor('a recheck', async () => (await r.activations()).length === 2);
    expect(await r.activations()).toEqual(['b switch', 'a switch']);
  });

  it('waits for a missing store path, then activates it once it is built', async () => {
    const r = await rig();
    const late = await nix.late();
    const part = r.sign({ storePath: late.path, seq: 5 });
    const deployer = await r.start();
    r.place(part);
    expect(await r.until(part.id, 'waiting')).toMatchObject({ waitingFor: 'store-path' });
    await deployer.idle();
    expect(await r.activations()).toEqual([]);
    await late.build();
    await r.until(part.id, 'succeeded');
    expect(await r.activations()).toEqual(['late switch']);
  });

  it('waits for the admin trail to hold what the coordinator held when it placed the part', async () => {
    const r = await rig();
    const added = generateNodeKey();
    const addOp = signOp({ op: 'admin.add', node: added.nodeId }, FLEET, r.admin);
    const part = r.sign({ storePath: nix.paths.a, seq: 7, key: added });
    await r.start();
    r.place(part, 1); // the coordinator had the add op; our copy does not yet
    expect(await r.until(part.id, 'waiting')).toMatchObject({ waitingFor: 'admin-trail' });
    r.admins.change((d) => appendAdminOp(d, addOp));
    await r.until(part.id, 'succeeded');
    expect(await r.activations()).toEqual(['a switch']);
  });
});

describe('Deployer: fetching a missing closure (issue 12)', () => {
  it('a fetch that found the coordinator unreachable is retried at once on reconnect, not only at the recheck', async () => {
    const r = await rig();
    const late = await nix.late();
    const part = r.sign({ storePath: late.path, seq: 5 });
    let calls = 0;
    const artifacts = {
      async ensure(): Promise<EnsureResult> {
        if (++calls === 1) throw new FltError('CONNECT_FAILED', 'the coordinator is away');
        await late.build();
        return { state: 'ready', fetched: 1, bytes: 1 };
      },
    };
    // An hour between rechecks: only the reconnect can start the second attempt.
    // Placed before the start (which runs the queue once); no tick for an hour after.
    r.place(part);
    const deployer = await r.start({ artifacts, recheckMs: HOUR });
    expect(await r.until(part.id, 'waiting')).toMatchObject({
      waitingFor: 'artifacts',
      code: 'CONNECT_FAILED',
    });
    await deployer.idle();
    expect(calls).toBe(1);
    deployer.reconnected();
    await r.until(part.id, 'succeeded');
    expect(calls).toBe(2);
    expect(await r.activations()).toEqual(['late switch']);
  });

  it('a failed fetch is shown waiting with its code before a recheck may retry it', async () => {
    const r = await rig();
    const late = await nix.late();
    const part = r.sign({ storePath: late.path, seq: 5 });
    const states: string[] = [];
    r.status.on('change', () => {
      const rec = r.record(part.id);
      const s = rec && [rec.state, rec.code].filter(Boolean).join(' ');
      if (s !== undefined && s !== states.at(-1)) states.push(s);
    });
    const started: { deployer?: Deployer } = {};
    let calls = 0;
    const artifacts = {
      async ensure(): Promise<EnsureResult> {
        if (++calls === 1) {
          // A recheck (here: a reconnect) lands after the failure, before the queue runs again.
          setImmediate(() => started.deployer?.reconnected());
          throw new FltError('CONNECT_FAILED', 'the coordinator is away');
        }
        await late.build();
        return { state: 'ready', fetched: 1, bytes: 1 };
      },
    };
    r.place(part);
    const deployer = (started.deployer = await r.start({ artifacts, recheckMs: HOUR }));
    await r.until(part.id, 'waiting');
    await deployer.idle();
    deployer.reconnected();
    await r.until(part.id, 'succeeded');
    expect(states.slice(0, 4)).toEqual([
      'received',
      'fetching',
      'waiting CONNECT_FAILED',
      'fetching',
    ]);
    expect(calls).toBe(2);
  });

  it('a fetch reporting progress thousands of times adds no history until 5 s of progress passed', async () => {
    const r = await rig();
    const late = await nix.late();
    const part = r.sign({ storePath: late.path, seq: 5 });
    let reports = 0;
    const artifacts = {
      async ensure(_path: string, o: EnsureOptions): Promise<EnsureResult> {
        for (let i = 1; i <= 20_000; i++) {
          o.progress?.({ bytes: i, total: 20_000, paths: 1, pathsDone: 0, rate: 1 });
          reports++;
          if (i % 1000 === 0) await new Promise((res) => setImmediate(res));
        }
        throw new FltError('CONNECTION_LOST', 'gone');
      },
    };
    r.place(part);
    const before = A.getHistory(r.status.doc()).length;
    const deployer = await r.start({ artifacts, recheckMs: HOUR });
    await r.until(part.id, 'waiting');
    await deployer.idle();
    expect(reports).toBe(20_000);
    // The system record, received, fetching, waiting; no progress write (far less than 5 s).
    expect(A.getHistory(r.status.doc()).length - before).toBeLessThanOrEqual(4);
    expect(r.record(part.id)?.fetch).toBeUndefined();
  });
});

describe('Deployer: failures roll back and say so', () => {
  it('a failing activation rolls back to the previous generation', async () => {
    const r = await rig();
    await r.start();
    const a = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    const bad = r.sign({ storePath: nix.paths.bad, seq: 2 });
    r.place(bad);
    const rec = await r.until(bad.id, 'rolled-back');
    expect(rec).toMatchObject({ code: 'ACTIVATION_FAILED', rollback: 'done' });
    expect(rec.reason).toMatch(/exit code 1/);
    expect(rec.times.finished).toBeDefined();
    expect(await currentGeneration(r.profile)).toEqual({ generation: 1, path: nix.paths.a });
    expect(await r.activations()).toEqual(['a switch', 'bad switch', 'a switch']);
  });

  it('a failing health check rolls back', async () => {
    const r = await rig();
    await r.start();
    const a = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    const sick = r.sign({ storePath: nix.paths.sick, seq: 2 });
    r.place(sick);
    const rec = await r.until(sick.id, 'rolled-back');
    expect(rec).toMatchObject({ code: 'HEALTH_CHECK_FAILED', rollback: 'done' });
    expect(rec.reason).toMatch(/deploy_check/);
    expect(await currentGeneration(r.profile)).toEqual({ generation: 1, path: nix.paths.a });
  });

  it('a failed first deployment says no rollback was possible', async () => {
    const r = await rig();
    await r.start();
    const bad = r.sign({ storePath: nix.paths.bad, seq: 1 });
    r.place(bad);
    const rec = await r.until(bad.id, 'failed');
    expect(rec).toMatchObject({
      code: 'ACTIVATION_FAILED',
      rollback: 'impossible-first-deployment',
    });
  });

  it('a failing reachability check (coordinator not answering) rolls back', async () => {
    const r = await rig();
    let reachable = true;
    await r.start({ reachable: () => Promise.resolve(reachable) });
    const a = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    reachable = false;
    const b = r.sign({ storePath: nix.paths.b, seq: 2 });
    r.place(b);
    const rec = await r.until(b.id, 'rolled-back');
    expect(rec.code).toBe('HEALTH_CHECK_FAILED');
    expect(rec.reason).toMatch(/coordinator did not answer/);
  });
});

describe('Deployer: stopping and odd input', () => {
  it('stopped while checking, it neither rolls back nor waits out the check; the next start re-runs it', async () => {
    const r = await rig();
    // The coordinator is down: "answered again" would wait out the whole (long) budget.
    const down = (deadline: number, signal?: AbortSignal) =>
      new Promise<boolean>((resolve, reject) => {
        const timer = setTimeout(() => resolve(false), deadline - Date.now());
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new Error('aborted'));
        });
      });
    const first = await r.start({ reachable: () => Promise.resolve(true) });
    const a = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    await first.close();
    const second = await r.start({ reachable: down, healthTimeoutMs: 10 * 60_000 });
    const b = r.sign({ storePath: nix.paths.b, seq: 2 });
    r.place(b);
    await r.until(b.id, 'checking');
    await second.close(); // before the fix: waited the 10 min budget (test timeout)
    expect(r.record(b.id)?.state).toBe('checking');
    expect((await Journal.open(r.dir)).state.active?.phase).toBe('checking');

    await r.start({ reachable: () => Promise.resolve(true) });
    expect(await r.until(b.id, 'succeeded')).not.toHaveProperty('code');
    expect(await r.activations()).toEqual(['a switch', 'b switch']);
    expect(await currentGeneration(r.profile)).toEqual({ generation: 2, path: nix.paths.b });
  });

  it('a log dense in control characters (colours) is cut to fit; the queue goes on', async () => {
    const r = await rig();
    // ~4 KiB of `ESC[32mxESC[0m`: each ESC is 6 characters in JSON, over what readers take.
    const colours = `i=0; while [ $i -lt 600 ]; do printf '\\033[32mx\\033[0m'; i=$((i+1)); done; ${SWITCH_CMD}`;
    const activator = new ProfileActivator({
      profile: r.profile,
      command: colours,
      nixStore: nix.store,
    });
    await r.start({ activator });
    const a = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(a);
    const rec = await r.until(a.id, 'succeeded');
    expect(rec.log).toContain('\u001b[0m');
    const b = r.sign({ storePath: nix.paths.b, seq: 2 });
    r.place(b);
    await r.until(b.id, 'succeeded');
    expect(await r.activations()).toEqual(['a switch', 'b switch']);
  });

  it('a sibling part of the same deployment (other targets) never overwrites the record of the part that ran', async () => {
    const r = await rig();
    // 65 targets: two parts of one deployment; we are in one only.
    const others = Array.from({ length: MAX_PART_TARGETS }, () => generateNodeKey().nodeId);
    const targets = new Map([r.me.nodeId, ...others].map((t) => [t, 1]));
    const spec = { targets, storePath: nix.paths.a, action: 'switch' as const, expiresInMs: HOUR };
    // Parts are split by sorted node id: ours is whichever part names us (1 in 65 it is the last).
    const parts = signDeployment(spec, FLEET, r.admin);
    expect(parts).toHaveLength(2);
    const ours = parts.find((p) => r.me.nodeId in p.targets);
    const sibling = parts.find((p) => p !== ours);
    expect(sibling!.id).toBe(ours!.id);
    const first = await r.start();
    r.place(ours);
    await r.until(ours!.id, 'succeeded');
    r.place(sibling); // validly signed, not for us
    expect(await r.until(partDigest(sibling!), 'refused')).toMatchObject({ code: 'NOT_TARGETED' });
    await first.close();
    const heads = A.getHeads(r.status.doc());
    await (await r.start()).idle(); // a run: resume, then evaluate the sibling again
    expect(r.record(ours!.id)).toMatchObject({ state: 'succeeded', digest: partDigest(ours!) });
    expect(A.getHeads(r.status.doc())).toEqual(heads); // no flip-flop, nothing rewritten
    expect(await r.activations()).toEqual(['a switch']);
  });
});

describe('Deployer: refusals (design §5), nothing activated', () => {
  /** Starts, places what `make` returns, waits for its refusal record, checks nothing ran. */
  async function refused(
    code: string,
    make: (r: Rig) => { id: string; current: unknown } | Promise<{ id: string; current: unknown }>,
    over: Partial<DeployerOptions> = {},
  ) {
    const r = await rig();
    const { id, current } = await make(r);
    const deployer = await r.start(over);
    r.place(current);
    const rec = await r.until(id, 'refused');
    expect(rec.code).toBe(code);
    expect(rec.reason).toBeTruthy();
    await deployer.idle();
    await expectNothingActivated(r);
    return { r, rec, deployer };
  }

  it('BAD_DEPLOYMENT: a malformed record (named by its digest)', async () => {
    const r = await rig();
    await r.start();
    r.desired.change((d) => {
      d.current = new A.ImmutableString(JSON.stringify({ part: { v: 2 }, adminOps: 0 }));
    });
    const rec = await waitFor('a refusal', () =>
      readStatus(r.status.doc()).deployments.find((x) => x.state === 'refused'),
    );
    expect(rec.code).toBe('BAD_DEPLOYMENT');
    expect(rec.id).toMatch(/^[0-9a-f]{64}$/);
    await expectNothingActivated(r);
  });

  it('BAD_SIGNATURE: a part whose signature does not verify', async () => {
    await refused('BAD_SIGNATURE', (r) => {
      const part = r.sign({ storePath: nix.paths.a, seq: 1 });
      const flipped = (part.sig[0] === '0' ? '1' : '0') + part.sig.slice(1);
      return { id: part.id, current: { ...part, sig: flipped } };
    });
  });

  it('BAD_SIGNATURE: the coordinator puts its own signature over an admin part', async () => {
    await refused('BAD_SIGNATURE', (r) => {
      const part = r.sign({ storePath: nix.paths.a, seq: 1 });
      const forged = r.sign({ storePath: nix.paths.b, seq: 1, key: r.coord });
      return { id: part.id, current: { ...part, storePath: nix.paths.b, sig: forged.sig } };
    });
  });

  it('WRONG_FLEET: a part of another fleet', async () => {
    await refused('WRONG_FLEET', (r) => {
      const part = r.sign({ storePath: nix.paths.a, seq: 1, fleet: OTHER_FLEET });
      return { id: part.id, current: part };
    });
  });

  it("NOT_TARGETED: another agent's part placed in our desired document", async () => {
    await refused('NOT_TARGETED', (r) => {
      const part = r.sign({ storePath: nix.paths.a, seq: 1, targets: [generateNodeKey().nodeId] });
      return { id: part.id, current: part };
    });
  });

  it('UNTRUSTED_TRAIL: the admin trail does not begin with the configured admins', async () => {
    const r = await rig(() => [generateNodeKey().nodeId]);
    const part = r.sign({ storePath: nix.paths.a, seq: 1 });
    await r.start();
    r.place(part);
    expect((await r.until(part.id, 'refused')).code).toBe('UNTRUSTED_TRAIL');
    await expectNothingActivated(r);
  });

  it('UNTRUSTED_TRAIL: a trail rewritten below what was pinned on first use', async () => {
    const r = await rig();
    const k2 = generateNodeKey();
    const add = signOp({ op: 'admin.add', node: k2.nodeId }, FLEET, r.admin);
    r.admins.change((d) => appendAdminOp(d, add));
    const first = r.sign({ storePath: nix.paths.a, seq: 1 });
    await r.start({ admins: [] }); // trust on first use
    r.place(first);
    await r.until(first.id, 'succeeded');
    const pin: unknown = JSON.parse(await readFile(join(r.dir, 'deploy/trust.json'), 'utf8'));
    expect(pin).toMatchObject({ fleet: FLEET, initialAdmins: [r.admin.nodeId], opsSeen: 1 });
    // The coordinator drops the add (a valid trail of its own, without the pinned op).
    r.admins.change((d) => {
      d.ops.splice(0, 1);
    });
    const second = r.sign({ storePath: nix.paths.b, seq: 2 });
    r.place(second);
    const rec = await r.until(second.id, 'refused');
    expect(rec.code).toBe('UNTRUSTED_TRAIL');
    expect(await r.activations()).toEqual(['a switch']);
  });

  it('SIGNER_NOT_ADMIN: a part forged by the coordinator with its own key', async () => {
    await refused('SIGNER_NOT_ADMIN', (r) => {
      const part = r.sign({ storePath: nix.paths.a, seq: 1, key: r.coord });
      return { id: part.id, current: part };
    });
  });

  it('SIGNER_NOT_ADMIN: a part by an admin removed since', async () => {
    await refused('SIGNER_NOT_ADMIN', (r) => {
      const k2 = generateNodeKey();
      const t = Date.now() - 60_000;
      const add = signOp({ op: 'admin.add', node: k2.nodeId }, FLEET, r.admin, new Date(t));
      const remove = signOp(
        { op: 'admin.remove', node: k2.nodeId },
        FLEET,
        r.admin,
        new Date(t + 1000),
      );
      r.admins.change((d) => {
        appendAdminOp(d, add);
        appendAdminOp(d, remove);
      });
      // Signed while it was an admin, placed after its removal.
      const part = r.sign({ storePath: nix.paths.a, seq: 1, key: k2, now: new Date(t + 500) });
      return { id: part.id, current: part };
    });
  });

  it('SEQ_NOT_NEWER: a part with a seq not above the last one activated', async () => {
    const r = await rig();
    await r.start();
    const a = r.sign({ storePath: nix.paths.a, seq: 10 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    const replay = r.sign({ storePath: nix.paths.b, seq: 10 });
    r.place(replay);
    expect((await r.until(replay.id, 'refused')).code).toBe('SEQ_NOT_NEWER');
    const older = r.sign({ storePath: nix.paths.b, seq: 9 });
    r.place(older);
    expect((await r.until(older.id, 'refused')).code).toBe('SEQ_NOT_NEWER');
    expect(await r.activations()).toEqual(['a switch']);
    expect((await Journal.open(r.dir)).state.hwm).toBe(10);
  });

  it('SEQ_NOT_NEWER: hwm is recovered from the status document when the journal is lost', async () => {
    const r = await rig();
    const first = await r.start();
    const a = r.sign({ storePath: nix.paths.a, seq: 10 });
    r.place(a);
    await r.until(a.id, 'succeeded');
    await first.close();
    await rm(join(r.dir, 'deploy'), { recursive: true });
    const second = await r.start();
    expect(second.hwm).toBe(10);
    const older = r.sign({ storePath: nix.paths.b, seq: 9 });
    r.place(older);
    expect((await r.until(older.id, 'refused')).code).toBe('SEQ_NOT_NEWER');
    expect(await r.activations()).toEqual(['a switch']);
  });

  it('DEPLOYMENT_EXPIRED: a part past its expiry', async () => {
    const { rec } = await refused('DEPLOYMENT_EXPIRED', (r) => {
      const part = r.sign({
        storePath: nix.paths.a,
        seq: 1,
        now: new Date(Date.now() - 2 * HOUR),
        expiresInMs: HOUR,
      });
      return { id: part.id, current: part };
    });
    expect(rec.reason).toMatch(/clock says/);
  });

  it("BAD_STORE_PATH: a path outside the agent's store", async () => {
    await refused('BAD_STORE_PATH', (r) => {
      const base = nix.paths.a.split('/').at(-1)!;
      const part = r.sign({ storePath: `/nix/store/${base}`, seq: 1 });
      return { id: part.id, current: part };
    });
  });

  it('NOT_A_SYSTEM: a store path without bin/switch-to-configuration', async () => {
    await refused('NOT_A_SYSTEM', (r) => {
      const part = r.sign({ storePath: nix.paths.none, seq: 1 });
      return { id: part.id, current: part };
    });
  });

  it('NO_ACTIVATOR: an agent not configured to deploy', async () => {
    const { r } = await refused(
      'NO_ACTIVATOR',
      (rr) => {
        const part = rr.sign({ storePath: nix.paths.a, seq: 1 });
        return { id: part.id, current: part };
      },
      { activator: undefined },
    );
    expect(readStatus(r.status.doc()).system?.activator).toBe('none');
  });

  it('a refusal is written once and is final for that part', async () => {
    const { r, rec, deployer } = await refused('SIGNER_NOT_ADMIN', (rr) => {
      const part = rr.sign({ storePath: nix.paths.a, seq: 1, key: rr.coord });
      return { id: part.id, current: part };
    });
    const heads = A.getHeads(r.status.doc());
    // The coordinator writes the same part again (a change of the desired document): no new write.
    const part = r.desired.doc().current;
    r.desired.change((d) => {
      d.current = new A.ImmutableString(String(part));
    });
    await waitFor('the queue to run', () => deployer.idle().then(() => true));
    await deployer.idle();
    expect(A.getHeads(r.status.doc())).toEqual(heads);
    expect(r.record(rec.id)).toEqual(rec);
  });
});

describe('Deployer: a corrupt journal', () => {
  it('stops deploying, says so in the system record, and does not throw', async () => {
    const r = await rig();
    await mkdir(join(r.dir, 'deploy'), { recursive: true });
    await writeFile(join(r.dir, 'deploy/journal.json'), '{"v": 1, "hwm": "lots"}');
    const part = r.sign({ storePath: nix.paths.a, seq: 1 });
    r.place(part);
    const deployer = await r.start();
    await deployer.idle();
    const system = r.status.doc().system;
    expect(JSON.parse(String(system))).toMatchObject({ error: { code: 'STORE_CORRUPT' } });
    expect(r.record(part.id)).toBeUndefined();
    expect(await r.activations()).toEqual([]);
    expect(existsSync(r.profile)).toBe(false);
  });
});

describe('Agent: deployment configuration', () => {
  it('refuses to start with a deploy configuration that cannot work (BAD_CONFIG naming the key)', async () => {
    const tmp = await tempDir('flt-deployer-');
    cleanup.push(() => tmp.remove());
    const start = async (flags: Record<string, string>) =>
      Agent.start(await localConfig(tmp.path, flags), silentLogger).then(
        () => 'started',
        (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`,
      );
    expect(await start({ 'deploy-activator': 'profile' })).toMatch(/^BAD_CONFIG: .*deploy_profile/);
    expect(await start({ 'deploy-activator': 'command' })).toMatch(/^BAD_CONFIG: .*deploy_command/);
    expect(await start({ 'deploy-activator': 'nixos', 'nix-store': nix.store })).toMatch(
      /^BAD_CONFIG: .*nix_store/,
    );
    expect(existsSync(join(tmp.path, 'deploy'))).toBe(false);
  });

  it('a health budget shorter than the ping interval still sees an answer (a ping goes out at once)', async () => {
    const tmp = await tempDir('flt-deployer-');
    cleanup.push(() => tmp.remove());
    const fleet = await testFleet(tmp.path, silentLogger);
    cleanup.push(() => fleet.close());
    const facts = await collectFacts();
    const agent = await fleet.addAgent('a1', () => Promise.resolve(facts));
    await waitFor('the deployment queue', () => agent.deployments);
    // The agent's liveness check, as the Deployer's `reachable` uses it (private: no other door).
    const live = (agent as unknown as { live: Liveness }).live;
    // Each round asks right after the previous answer: the next regular ping is ~2 s away, far
    // beyond this 1 s budget (the least deploy_health_timeout), so only a ping sent for the
    // question answers it.
    for (let round = 0; round < 3; round++) {
      const since = Date.now();
      expect(await live.answeredAfter(since, since + 1000)).toBe(true);
    }
  });
});
