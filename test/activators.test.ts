// The activation layer (src/deploy/) against real Nix store paths in a per-run local store
// (test/helpers/nix.ts) and a Nix profile in a temp dir: the profile and command activators,
// rollback to the recorded generation, honest outcomes (first deployment, failed rollback), the
// detached runner surviving a SIGKILLed parent (resumed exactly once), the journal's refusal of
// a corrupt file, and the store-path checks (BAD_STORE_PATH, NOT_A_SYSTEM, waiting).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { activate, resume, type ActivationContext } from '../src/deploy/activate.js';
import { checkDeployConfig, type Activator } from '../src/deploy/activator.js';
import { createActivator } from '../src/deploy/factory.js';
import { CommandActivator } from '../src/deploy/command.js';
import { newFailures, parseFailedUnits } from '../src/deploy/health.js';
import { Journal } from '../src/deploy/journal.js';
import {
  currentGeneration,
  isStorePathIn,
  listGenerations,
  storeDirOf,
} from '../src/deploy/nix.js';
import { NixosActivator } from '../src/deploy/nixos.js';
import { ProfileActivator } from '../src/deploy/profile.js';
import { defaultMode, planRun, systemdRunArgs } from '../src/deploy/runner.js';
import { checkClosure } from '../src/deploy/system.js';
import { codeOf } from '../src/errors.js';
import { tempDir } from './helpers/flt.js';
import { nixFixtures, type NixFixtures } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';

const SWITCH_CMD = '"$1"/bin/switch-to-configuration "$2"';
// deploy_check gets STORE_PATH ACTION appended (`<cmd> "$@"`): a function takes them as $1 $2.
const CHECK_CMD = 'ok() { test ! -e "$1/unhealthy"; }; ok';

let nix: NixFixtures;
const dirs: { remove(): Promise<void> }[] = [];

beforeAll(async () => {
  nix = await nixFixtures();
});
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => d.remove()));
});

async function stateDir(): Promise<string> {
  const d = await tempDir('flt-act-');
  dirs.push(d);
  return d.path;
}

async function context(
  dir: string,
  activator: Activator,
  check?: string,
): Promise<ActivationContext> {
  return {
    activator,
    journal: await Journal.open(dir),
    stateDir: dir,
    health: { timeoutMs: 20_000, check },
    runnerMode: 'child',
  };
}

const profileActivator = (dir: string, command: string | undefined = SWITCH_CMD) =>
  new ProfileActivator({ profile: join(dir, 'profiles/system'), command, nixStore: nix.store });

async function activations(dir: string): Promise<string[]> {
  const text = await readFile(join(dir, 'activations.log'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l !== '');
}

let seq = 0;
const req = (storePath: string, action: 'switch' | 'boot' | 'test' = 'switch') => {
  seq += 1;
  return { id: `d${seq}`, seq, digest: `digest${seq}`, storePath, action };
};

describe('profile activator', () => {
  it('sets the profile and runs the command; each deployment is a new generation', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir), CHECK_CMD);
    const first = req(nix.paths.a);
    expect((await activate(ctx, first)).state).toBe('succeeded');
    expect((await activate(ctx, req(nix.paths.b))).state).toBe('succeeded');
    const profile = join(dir, 'profiles/system');
    expect(await currentGeneration(profile)).toEqual({ generation: 2, path: nix.paths.b });
    expect((await listGenerations(profile)).map((g) => g.path)).toEqual([nix.paths.a, nix.paths.b]);
    expect(await activations(dir)).toEqual(['a switch', 'b switch']);
    expect(ctx.journal.state.lastGood).toEqual({ storePath: nix.paths.b, generation: 2 });
    // hwm is durable: the same or a lower seq never runs again.
    await expect(activate(ctx, first)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    expect((await Journal.open(dir)).state.hwm).toBe(seq);
  });

  it("keeps only the newest activation's run directories (and so its logs)", async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir), CHECK_CMD);
    const runs = () => readdir(join(dir, 'deploy/run')).then((n) => n.sort());
    await activate(ctx, req(nix.paths.a));
    const bad = req(nix.paths.bad);
    expect((await activate(ctx, bad)).state).toBe('rolled-back');
    expect(await runs()).toEqual([`activate-${bad.seq}`, `rollback-${bad.seq}`]);
    const b = req(nix.paths.b);
    expect((await activate(ctx, b)).state).toBe('succeeded');
    expect(await runs()).toEqual([`activate-${b.seq}`]);
  });

  it('a failing activation rolls back to the recorded generation', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir), CHECK_CMD);
    await activate(ctx, req(nix.paths.a));
    const out = await activate(ctx, req(nix.paths.bad));
    expect(out).toMatchObject({
      state: 'rolled-back',
      code: 'ACTIVATION_FAILED',
      rollback: 'done',
    });
    expect(out.reason).toMatch(/exit code 1/);
    expect(await currentGeneration(join(dir, 'profiles/system'))).toEqual({
      generation: 1,
      path: nix.paths.a,
    });
    expect(await activations(dir)).toEqual(['a switch', 'bad switch', 'a switch']);
    expect(ctx.journal.state.lastGood?.storePath).toBe(nix.paths.a);
  });

  it('a failing health check rolls back', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir), CHECK_CMD);
    await activate(ctx, req(nix.paths.a));
    const out = await activate(ctx, req(nix.paths.sick));
    expect(out).toMatchObject({
      state: 'rolled-back',
      code: 'HEALTH_CHECK_FAILED',
      rollback: 'done',
    });
    expect(out.reason).toMatch(/deploy_check/);
    expect((await currentGeneration(join(dir, 'profiles/system')))?.path).toBe(nix.paths.a);
    expect(await activations(dir)).toEqual(['a switch', 'sick switch', 'a switch']);
  });

  it('a failing first deployment says no rollback is possible', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir));
    const out = await activate(ctx, req(nix.paths.bad));
    expect(out).toMatchObject({
      state: 'failed',
      code: 'ACTIVATION_FAILED',
      rollback: 'impossible-first-deployment',
    });
    expect(await activations(dir)).toEqual(['bad switch']);
    expect(ctx.journal.state.lastGood).toBeNull();
  });

  it('`test` leaves the profile alone', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir));
    await activate(ctx, req(nix.paths.a));
    expect((await activate(ctx, req(nix.paths.b, 'test'))).state).toBe('succeeded');
    expect((await currentGeneration(join(dir, 'profiles/system')))?.path).toBe(nix.paths.a);
    expect(await activations(dir)).toEqual(['a switch', 'b test']);
  });
});

describe('command activator', () => {
  it('runs the command with STORE_PATH ACTION; rollback goes to lastGood', async () => {
    const dir = await stateDir();
    const act = new CommandActivator({ command: SWITCH_CMD, nixStore: nix.store });
    const ctx = await context(dir, act, CHECK_CMD);
    expect((await activate(ctx, req(nix.paths.a))).state).toBe('succeeded');
    expect((await activate(ctx, req(nix.paths.sick))).state).toBe('rolled-back');
    expect(await activations(dir)).toEqual(['a switch', 'sick switch', 'a switch']);
    expect((await act.system(ctx.journal.state.lastGood)).current).toBe(nix.paths.a);
  });

  it('a rollback that fails is `failed` with rollback: failed, never rolled-back', async () => {
    const dir = await stateDir();
    const cmd = `[ -z "$FLT_ROLLBACK" ] && ${SWITCH_CMD}`;
    const ctx = await context(dir, new CommandActivator({ command: cmd }));
    await activate(ctx, req(nix.paths.a));
    const out = await activate(ctx, req(nix.paths.bad));
    expect(out).toMatchObject({ state: 'failed', code: 'ROLLBACK_FAILED', rollback: 'failed' });
    expect(out.reason).toMatch(/activation: exit code 1.*rollback: exit code 1/);
    expect(await activations(dir)).toEqual(['a switch', 'bad switch']);
  });

  it('a rollback that exits 0 but leaves the profile elsewhere is `failed`, not rolled-back', async () => {
    const dir = await stateDir();
    // On rollback the command "succeeds" but points the profile back at the failed generation.
    const cmd =
      'go() { if [ -n "$FLT_ROLLBACK" ]; then ln -sfn system-2-link profiles/system; ' +
      `else ${SWITCH_CMD}; fi; }; cd ${dir} && go`;
    const ctx = await context(dir, profileActivator(dir, cmd));
    expect((await activate(ctx, req(nix.paths.a))).state).toBe('succeeded');
    const out = await activate(ctx, req(nix.paths.bad));
    expect(out).toMatchObject({ state: 'failed', code: 'ROLLBACK_FAILED', rollback: 'failed' });
    expect(out.reason).toMatch(/exited 0, but the profile is .*system-bad, not .*system-a/);
  });

  it('keeps at most 4 KiB of log', async () => {
    const dir = await stateDir();
    const cmd =
      'i=0; while [ $i -lt 500 ]; do echo "line $i of the activation output"; i=$((i+1)); done; exit 2; :';
    const ctx = await context(dir, new CommandActivator({ command: cmd }));
    const out = await activate(ctx, req(nix.paths.a));
    expect(out.state).toBe('failed');
    expect(Buffer.byteLength(out.log ?? '')).toBeLessThanOrEqual(4096);
    expect(out.log).toMatch(/^line \d+ .*\nline 499 of the activation output\n$/s);
  });
});

/** A child node process that starts an activation through dist/ and reports its state dir. */
const CHILD = `
const [, , dist, dir, store, path, cmd] = process.argv;
const { activate } = await import(dist + '/activate.js');
const { Journal } = await import(dist + '/journal.js');
const { CommandActivator } = await import(dist + '/command.js');
const ctx = { activator: new CommandActivator({ command: cmd, nixStore: store }),
  journal: await Journal.open(dir), stateDir: dir, health: { timeoutMs: 20000 }, runnerMode: 'child' };
await activate(ctx, { id: 'k1', seq: 7, digest: 'x', storePath: path, action: 'switch' });
`;

describe('runner', () => {
  async function killedMidActivation(dir: string, cmd: string) {
    const script = join(dir, 'child.mjs');
    await writeFile(script, CHILD);
    const dist = resolve(import.meta.dirname, '../dist/src/deploy');
    const child = spawn(process.execPath, [script, dist, dir, nix.store, nix.paths.a, cmd], {
      stdio: 'ignore',
      detached: true, // its own group, killed whole as systemd kills the agent's cgroup
    });
    const exited = new Promise((r) => child.once('exit', r));
    await waitFor('the activation to start', () => existsSync(join(dir, 'started')));
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
    return new CommandActivator({ command: cmd, nixStore: nix.store });
  }
  const WAITING = `touch "$FLT_STATE_DIR/started"; i=0; while [ ! -e "$FLT_STATE_DIR/go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ${SWITCH_CMD}`;

  it('survives its SIGKILLed parent; resume finds the rc and finishes exactly once', async () => {
    const dir = await stateDir();
    const act = await killedMidActivation(dir, WAITING);
    const journal = await Journal.open(dir);
    expect(journal.state).toMatchObject({ hwm: 7, active: { phase: 'activating', seq: 7 } });
    await writeFile(join(dir, 'go'), '');
    const ctx = { ...(await context(dir, act)), journal };
    const out = await resume(ctx);
    expect(out?.state).toBe('succeeded');
    expect(await resume(ctx)).toEqual(out); // done: the same outcome again, nothing runs
    expect(await activations(dir)).toEqual(['a switch']);
    expect((await Journal.open(dir)).state.lastGood?.storePath).toBe(nix.paths.a);
  });

  it('a runner gone without an rc is INTERRUPTED', async () => {
    const dir = await stateDir();
    const act = await killedMidActivation(dir, WAITING);
    const journal = await Journal.open(dir);
    const runner = journal.state.active?.runner;
    const pid = Number(
      await waitFor('the pid file', () =>
        readFile(join(dir, 'deploy/run/activate-7/pid'), 'utf8').catch(() => undefined),
      ),
    );
    expect(runner?.kind).toBe('child');
    process.kill(-pid, 'SIGKILL');
    const out = await resume({ ...(await context(dir, act)), journal });
    expect(out).toMatchObject({
      state: 'failed',
      code: 'INTERRUPTED',
      rollback: 'impossible-first-deployment',
    });
    expect(await activations(dir)).toEqual([]);
  });

  it('a run planned before a reboot and never started runs after it, judged by this boot', async () => {
    const dir = await stateDir();
    const act = new CommandActivator({ command: `sleep 0.3; ${SWITCH_CMD}`, nixStore: nix.store });
    const journal = await Journal.open(dir);
    const spec = { name: 'activate-4', dir: join(dir, 'deploy/run'), argv: [], env: {} };
    const planned = await planRun({ ...spec, mode: 'child' });
    // Power lost after the journal write, before the runner started: the old boot's id, no run dir.
    await journal.write({
      ...journal.state,
      hwm: 4,
      active: {
        id: 'ab'.repeat(16),
        seq: 4,
        digest: 'cd'.repeat(32),
        storePath: nix.paths.a,
        action: 'switch',
        phase: 'activating',
        previous: await act.snapshot(null),
        runner: { ...planned, bootId: 'a-boot-before-this-one' },
        startedAt: new Date().toISOString(),
      },
    });
    const out = await resume({ ...(await context(dir, act)), journal });
    expect(out).toMatchObject({ state: 'succeeded' });
    expect(await activations(dir)).toEqual(['a switch']);
  });
});

describe('runner mode', () => {
  it('is systemd-run only for a root systemd service; its unit gets the whole environment', async () => {
    expect(defaultMode({})).toBe('child');
    const spec = {
      name: 'activate-3',
      dir: '/var/lib/flt/deploy/run',
      argv: ['/bin/sh', '-c', 'x'],
      env: { PATH: '/bin', FLT_ACTION: 'switch' },
      mode: 'systemd-run' as const,
    };
    const planned = await planRun(spec);
    expect(planned).toMatchObject({ kind: 'systemd-run', unit: 'flt-activate-3' });
    const args = systemdRunArgs(planned, spec);
    expect(args.slice(0, 8)).toEqual([
      '--unit',
      'flt-activate-3',
      '--property=Type=oneshot',
      '--no-block',
      '--collect',
      '--quiet',
      '--setenv=PATH=/bin',
      '--setenv=FLT_ACTION=switch',
    ]);
    // The command's text is in the run's script, not on systemd's command line.
    expect(args.slice(-2)).toEqual(['/bin/sh', '/var/lib/flt/deploy/run/activate-3/run.sh']);
  });

  it('runs a command with `$$`, `${X}` and `%` as written (systemd would rewrite them on a command line)', async () => {
    const dir = await stateDir();
    const out = join(dir, 'out.txt');
    const cmd = `go() { X=x; printf '%s|%s\\n' "\${X}" "$$" > ${out}; "$1/bin/switch-to-configuration" "$2"; }; go`;
    const ctx = await context(dir, new CommandActivator({ command: cmd }));
    const r = await activate(ctx, req(nix.paths.a));
    expect(r.state, `${r.reason} ${r.log}`).toBe('succeeded');
    expect(await readFile(out, 'utf8')).toMatch(/^x\|\d+\n$/);
  });
});

describe('journal', () => {
  it('a corrupt or truncated journal is STORE_CORRUPT, never a crash', async () => {
    const dir = await stateDir();
    const ctx = await context(dir, profileActivator(dir));
    await activate(ctx, req(nix.paths.a));
    const file = Journal.fileIn(dir);
    const good = await readFile(file, 'utf8');
    const parsed = JSON.parse(good) as { active: object };
    expect((await Journal.open(dir)).state.hwm).toBe(seq);
    const bad = [
      good.slice(0, good.length / 2), // truncated
      'garbage',
      JSON.stringify({ ...parsed, hwm: -1 }),
      JSON.stringify({ ...parsed, extra: 1 }),
      JSON.stringify({ ...parsed, active: { ...parsed.active, phase: 'dancing' } }),
    ];
    for (const text of bad) {
      await writeFile(file, text);
      const err = await Journal.open(dir).catch((e: unknown) => e);
      expect(codeOf(err), text.slice(0, 40)).toBe('STORE_CORRUPT');
    }
    await writeFile(file, good);
    await expect(ctx.journal.write({ ...ctx.journal.state, hwm: 0 })).rejects.toThrow(TypeError);
  });
});

describe('store paths', () => {
  it('is a system closure, BAD_STORE_PATH, NOT_A_SYSTEM, or waiting until built', async () => {
    expect(await checkClosure(nix.paths.a, nix.store)).toEqual({ state: 'ready' });
    expect(await checkClosure(nix.paths.none, nix.store)).toMatchObject({
      state: 'refused',
      code: 'NOT_A_SYSTEM',
    });
    for (const bad of [
      '/etc/passwd',
      `${nix.paths.a}/bin`,
      `${nix.paths.a}/`,
      `${nix.storeDir}/../${nix.paths.a.slice(nix.storeDir.length + 1)}`,
      nix.paths.a.replace(/\/[0-9a-z]{32}-/, '/eeee-'),
      nix.paths.a.replace(nix.storeDir, '/nix/store'), // another store than the configured one
      '',
    ])
      expect(await checkClosure(bad, nix.store), bad).toMatchObject({ code: 'BAD_STORE_PATH' });
    const late = await nix.late();
    expect(await checkClosure(late.path, nix.store)).toEqual({ state: 'waiting' });
    await late.build();
    expect(await checkClosure(late.path, nix.store)).toEqual({ state: 'ready' });
  });

  it('reads the store dir of a store URI', () => {
    expect(storeDirOf()).toBe('/nix/store');
    expect(storeDirOf('daemon')).toBe('/nix/store');
    expect(storeDirOf('local?store=/x/nix/store&state=/x/var')).toBe('/x/nix/store');
    const h = '0123456789abcdfghijklmnpqrsvwxyz';
    expect(isStorePathIn(`/nix/store/${h}-system`, '/nix/store')).toBe(true);
    expect(isStorePathIn(`/nix/store/${h}-.hidden`, '/nix/store')).toBe(false);
    expect(isStorePathIn(`/nix/store/${h}`, '/nix/store')).toBe(false);
  });
});

describe('nixos activator (commands only: the VM check runs them)', () => {
  const P = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system';
  const nixos = new NixosActivator({ root: '/nonexistent' });
  it('sets the system profile, then switches; test leaves the profile', () => {
    const [sh, c, script, , ...args] = nixos.command(P, 'switch');
    expect([sh, c]).toEqual(['/bin/sh', '-c']);
    expect(script).toBe(
      `'nix-env' '--option' 'substituters' '' '-p' '/nix/var/nix/profiles/system' --set "$1" && "$1"/bin/switch-to-configuration "$2"`,
    );
    expect(args).toEqual([P, 'switch']);
    expect(nixos.command(P, 'test')[2]).toBe('"$1"/bin/switch-to-configuration "$2"');
  });

  it('rolls back by generation number, a test to the running system, none without one', () => {
    const prev = { storePath: P, generation: 41, failedUnits: [], running: P };
    expect(nixos.rollbackCommand(prev, 'boot')?.[2]).toMatch(
      /--switch-generation 41 && "\$1"\/bin\/switch-to-configuration "\$2"$/,
    );
    expect(nixos.rollbackCommand(prev, 'test')?.[2]).toBe('"$1"/bin/switch-to-configuration "$2"');
    const first = { storePath: null, generation: null, failedUnits: [], running: null };
    expect(nixos.rollbackCommand(first, 'switch')).toBeUndefined();
    expect(nixos.rollbackCommand(first, 'test')).toBeUndefined();
  });

  it('parses systemctl --failed and counts only new failures', () => {
    const text = [
      'foo.service   loaded failed failed Foo daemon',
      '● bar@1.service loaded failed failed Bar',
      '',
      'baz.mount loaded failed failed /baz',
    ].join('\n');
    expect(parseFailedUnits(text)).toEqual(['foo.service', 'bar@1.service', 'baz.mount']);
    expect(parseFailedUnits('')).toEqual([]);
    expect(newFailures(['foo.service'], parseFailedUnits(text))).toEqual([
      'bar@1.service',
      'baz.mount',
    ]);
  });
});

describe('configuration', () => {
  it('names the missing key; none means no activator', () => {
    expect(createActivator({ deployActivator: 'none' })).toBeUndefined();
    const code = (f: () => unknown) => {
      try {
        f();
        return 'none';
      } catch (err) {
        return `${codeOf(err)} ${(err as Error).message}`;
      }
    };
    expect(code(() => checkDeployConfig({ deployActivator: 'profile' }))).toMatch(
      /^BAD_CONFIG .*deploy_profile/,
    );
    expect(code(() => checkDeployConfig({ deployActivator: 'command' }))).toMatch(
      /^BAD_CONFIG .*deploy_command/,
    );
    expect(code(() => checkDeployConfig({ deployActivator: 'nixos', nixStore: 'x' }))).toMatch(
      /^BAD_CONFIG .*nix_store/,
    );
    expect(createActivator({ deployActivator: 'command', deployCommand: 'true' })?.kind).toBe(
      'command',
    );
  });
});
