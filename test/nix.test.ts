// The Nix side, as far as this machine can check it (no nixpkgs here, so nothing is built):
// every .nix file parses (`nix-instantiate --parse`, from Debian's nix-bin, which .ci/run
// installs), and the JSON config file the NixOS modules render from `settings` is one flt reads,
// with the same keys the modules document. Where the evaluation chroot exists (nix/eval/run.sh:
// Nix 2.26, nixpkgs' lib, blueprint and importNpmLock), the flake itself is evaluated too.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_SPECS, parseDuration } from '../src/config/schema.js';
import { runFlt, tempDir } from './helpers/flt.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const MODULES = ['coordinator', 'agent'] as const;

async function nixFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await nixFiles(path)));
    else if (e.name.endsWith('.nix')) out.push(path);
  }
  return out;
}

async function hasNixInstantiate(): Promise<boolean> {
  return run('nix-instantiate', ['--version']).then(
    () => true,
    () => false,
  );
}

const optionNames = (text: string) =>
  [...text.matchAll(/^\s+(\w+) = lib\.mkOption/gm)].map((m) => m[1]!);

/**
 * The keys a module writes from its own options (agent: `deploy.*`, `admins` and
 * `nix.trustedPublicKeys`; coordinator: `nix.trustedPublicKeys` and `artifacts.gcGrace`).
 */
function mappedKeys(text: string): string[] {
  return ['deploySettings = ', 'artifactSettings = '].flatMap((name) => {
    const start = text.indexOf(name);
    if (start < 0) return [];
    const block = text.slice(start, text.indexOf('};', start));
    return [...block.matchAll(/^\s+(\w+) = cfg\.\S+;$/gm)].map((m) => m[1]!);
  });
}

/**
 * The typed keys of a module's `settings` submodule: `<name> = lib.mkOption` inside it, plus the
 * ones both modules share (nix/settings.nix).
 */
async function documentedKeys(module: string): Promise<string[]> {
  const text = await readFile(join(ROOT, 'nix/modules/nixos', `${module}.nix`), 'utf8');
  const start = text.indexOf('settings = lib.mkOption');
  const end = text.indexOf('keyFile = lib.mkOption', start);
  const shared = await readFile(join(ROOT, 'nix/settings.nix'), 'utf8');
  return [...optionNames(shared), ...optionNames(text.slice(start, end)), ...mappedKeys(text)];
}

/** A value for each key as a module user would write it in `settings`. */
const SAMPLE: Record<string, unknown> = {
  bind: '0.0.0.0:7447',
  admins: ['0e3f3b2f3cdb6e2bdf7b0fb2b5e7b5d3b0a3e1c0e0f6a8d5c7b8a9e0f1d2c3b4'],
  relay: 'disabled',
  discovery: 'none',
  log_level: 'debug',
  coordinator: 'endpointabc',
  facts_interval: '30s',
  deploy_activator: 'profile',
  deploy_profile: '/nix/var/nix/profiles/per-user/root/app',
  deploy_command: '"$1"/bin/switch-to-configuration "$2"',
  deploy_check: 'ok() { test ! -e "$1/unhealthy"; }; ok',
  deploy_health_timeout: '5m',
  deploy_recheck: '1m',
  nix_store: 'local?store=/srv/nix/store',
  nix_trusted_keys: ['flt-admin-1:6vW1m0yB3cBm4h0Xo2bq0m6Zq0r6p9sQe1kI7w5lC2Y='],
  artifact_gc_grace: '30d',
};

describe('nix files', () => {
  it('every .nix file parses', async (ctx) => {
    if (!(await hasNixInstantiate())) {
      // CI installs nix-bin (.ci/run); only a developer machine without Nix gets here.
      if (process.env.CI) throw new Error('nix-instantiate is missing: .ci/run installs nix-bin');
      ctx.skip('nix-instantiate is not installed (Debian: apt-get install nix-bin)');
    }
    const files = [join(ROOT, 'flake.nix'), ...(await nixFiles(join(ROOT, 'nix')))];
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      const failure = await run('nix-instantiate', ['--parse', f]).then(
        () => '',
        (err: Error & { stderr?: string }) => err.stderr ?? err.message,
      );
      expect(failure, f).toBe('');
    }
  }, 60_000);
});

describe('NixOS module settings', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => dir?.remove());

  it.each(MODULES)(
    '%s: every documented key is a flt key, and flt reads the rendered file',
    async (module) => {
      const keys = await documentedKeys(module);
      expect(keys.length).toBeGreaterThan(3);
      if (module === 'agent')
        expect(keys).toEqual(
          expect.arrayContaining([
            'admins',
            'deploy_activator',
            'deploy_check',
            'nix_store',
            'nix_trusted_keys',
          ]),
        );
      if (module === 'coordinator')
        expect(keys).toEqual(expect.arrayContaining(['nix_trusted_keys', 'artifact_gc_grace']));
      const fltKeys = new Set(KEY_SPECS.map((s) => s.key as string));
      for (const k of keys) expect(fltKeys, `${module}.nix settings.${k}`).toContain(k);
      // What pkgs.formats.json renders: one JSON object of the settings.
      const settings = Object.fromEntries(keys.map((k) => [k, SAMPLE[k]]));
      for (const k of keys) expect(SAMPLE, `a sample value for ${k}`).toHaveProperty(k);
      const file = join(dir.path, `${module}.json`);
      await writeFile(file, JSON.stringify(settings, null, 2));
      const r = await runFlt(['--config', file, '--json', 'config', 'show']);
      expect(r.code, r.stderr).toBe(0);
      const shown = JSON.parse(r.stdout) as Record<string, { value: unknown; source: string }>;
      for (const k of keys) {
        expect(shown[k]!.source, k).toMatch(/^file /);
        expect(shown[k]!.value, k).toEqual(settings[k]);
      }
    },
  );
});

/** The chroot nix/eval/run.sh evaluates in; absent on CI and most machines. */
const CHROOT = process.env.CHROOT ?? '/work/chroot-trixie';

interface Outcome {
  builds: boolean;
  failedAssertions: string[];
  unitsEvaluate: boolean;
}

interface Report {
  systems: string[];
  packages: Record<string, string[]>;
  checks: Record<string, string[]>;
  platforms: string[];
  drvPaths: Record<string, string>;
  npm: {
    lockEntries: number;
    withIntegrity: number;
    resolvedToStore: number;
    unresolved: string[];
    packageJsonDepsInStore: boolean;
    hashesAreIntegrity: boolean;
    anyRegistryHostInLock: boolean;
  };
  node: { package: string; configHookNodeGyp: boolean; configHookNodeSrc: string };
  modules: Record<string, Outcome> & {
    agentKeyPathLiteralRefused: boolean;
    coordinatorKeyPathLiteralRefused: boolean;
    agentExecStart: { LoadCredential: string[]; ExecStart: string };
    agentNixKeys: Record<string, unknown>;
    coordinatorDefaultSettings: Record<string, unknown>;
    coordinatorArtifactsSettings: Record<string, unknown>;
    agentDeploySettings: Record<string, unknown>;
    agentDefaultSettings: Record<string, unknown>;
    agentDeployWarnings: string[];
    agentDefaultWarnings: string[];
    agentUnit: {
      restartIfChanged: boolean;
      stopIfChanged: boolean;
      KillMode: string;
      User: string;
      path: string[];
    };
  };
  vm: Record<'deploy' | 'rollback', VmCheck> & { artifacts: VmArtifactsCheck };
}

/** The artifacts VM check as the harness sees it (nix/eval/default.nix `vmArtifactsReport`). */
interface VmArtifactsCheck {
  pushed: string[];
  onCoordinator: boolean;
  notOnAgent: boolean;
  inScript: boolean;
  agentSubstituters: string[];
  agentEnvironmentFile: boolean;
}

/** A deployment VM check as the harness sees it (nix/eval/default.nix `vmReport`). */
interface VmCheck {
  variants: string[];
  registered: boolean;
  inScript: boolean;
  distinct: boolean;
  agentSettings: Record<string, unknown>;
}

const EVAL_USABLE =
  process.getuid?.() === 0 &&
  existsSync(join(CHROOT, 'usr/bin/nix-instantiate')) &&
  existsSync(join(CHROOT, 'eval-inputs/blueprint/lib'));
const EVAL_SUITE = EVAL_USABLE
  ? 'flake evaluation (nix/eval)'
  : `flake evaluation (nix/eval): skipped, no evaluation chroot at ${CHROOT} or not root (see nix/eval/run.sh)`;

describe.skipIf(!EVAL_USABLE)(EVAL_SUITE, () => {
  let report: Report;
  beforeAll(async () => {
    const r = await run(join(ROOT, 'nix/eval/run.sh'), ['report', ROOT], {
      env: { ...process.env, CHROOT },
      maxBuffer: 16 * 1024 * 1024,
    });
    report = JSON.parse(r.stdout) as Report;
  }, 300_000);

  it('claims only systems with an iroh addon, each with packages.flt and .default', () => {
    expect(report.systems).toEqual(['aarch64-darwin', 'x86_64-linux']);
    expect(report.platforms).toEqual(['x86_64-linux', 'aarch64-darwin']);
    for (const system of report.systems) {
      expect(report.packages[system]).toEqual(['default', 'flt']);
      expect(report.checks[system]).toEqual(
        expect.arrayContaining([
          'pkgs-flt',
          'pkgs-flt-suite',
          'vm-fleet',
          'vm-deploy',
          'vm-rollback',
          'vm-artifacts',
          'devshell-default',
        ]),
      );
    }
    expect(report.drvPaths.default).toBe(report.drvPaths.flt);
    for (const drv of Object.values(report.drvPaths))
      expect(drv).toMatch(/^\/nix\/store\/.+\.drv$/);
  });

  it('points every locked tarball at a store path hashed by its integrity, skipping the rest', () => {
    const { npm } = report;
    expect(npm.resolvedToStore).toBe(npm.withIntegrity);
    expect(npm.hashesAreIntegrity).toBe(true);
    expect(npm.packageJsonDepsInStore).toBe(true);
    expect(npm.anyRegistryHostInLock).toBe(false);
    // Only addons npm could not lock (no tarball published for them) are left without a source.
    expect(npm.unresolved.length).toBe(npm.lockEntries - npm.withIntegrity);
    for (const p of npm.unresolved)
      expect(p).toMatch(/@(number0\/iroh|cbor-extract\/cbor-extract)-/);
  });

  it('gives the npm config hook the pinned Node', () => {
    expect(report.node.package).toBe('nodejs-22-stub');
    expect(report.node.configHookNodeGyp).toBe(true);
    expect(report.node.configHookNodeSrc).toBe('nodejs-22-stub-source');
  });

  it('agent without a coordinator: an assertion says what to set', () => {
    const o = report.modules.agentWithoutCoordinator!;
    expect(o.builds).toBe(false);
    expect(o.unitsEvaluate).toBe(true);
    expect(o.failedAssertions).toHaveLength(1);
    expect(o.failedAssertions[0]).toMatch(/services\.flt-agent\.settings\.coordinator must be set/);
    expect(report.modules.agent!.builds).toBe(true);
    expect(report.modules.coordinator!.builds).toBe(true);
  });

  it('secret paths: strings outside the store; a store path, a relative one or a path literal is refused', () => {
    for (const name of ['agentKeyInStore', 'agentTokenInStore', 'coordinatorKeyInStore']) {
      const o = report.modules[name]!;
      expect(o.builds, name).toBe(false);
      expect(o.failedAssertions.join('\n'), name).toMatch(/is in the Nix store/);
    }
    expect(report.modules.agentKeyRelative!.failedAssertions.join('\n')).toMatch(/absolute path/);
    expect(report.modules.agentKeyPathLiteralRefused).toBe(true);
    expect(report.modules.coordinatorKeyPathLiteralRefused).toBe(true);
    expect(report.modules.agentExecStart.LoadCredential).toEqual([
      'node-key:/etc/ssh/ssh_host_ed25519_key',
    ]);
  });

  it('agent deploy options: a nonsense combination is an assertion that says what to set', () => {
    const m = report.modules;
    const cases: [string, RegExp][] = [
      [
        'agentProfileWithoutPath',
        /deploy\.profile must be set when deploy\.activator is "profile"/,
      ],
      ['agentProfileRelative', /deploy\.profile must be an absolute path/],
      [
        'agentCommandWithoutCommand',
        /deploy\.command must be set when deploy\.activator is "command"/,
      ],
      ['agentNixosWithStore', /deploy\.nixStore cannot be set with deploy\.activator "nixos"/],
    ];
    for (const [name, message] of cases) {
      const o = m[name]!;
      expect(o.builds, name).toBe(false);
      expect(o.failedAssertions, name).toHaveLength(1);
      expect(o.failedAssertions[0], name).toMatch(message);
    }
    expect(m.agentDeploy!.builds).toBe(true);
    expect(m.agentDeployWarnings).toEqual([]);
    // nixos by default on NixOS, and without an admin anchor a warning says so.
    expect(m.agentDefaultSettings.deploy_activator).toBe('nixos');
    expect(m.agentDefaultSettings).not.toHaveProperty('admins');
    expect(m.agentDefaultWarnings.join('\n')).toMatch(/admins is empty.*trust on first use/s);
  });

  it('agent deploy options: the rendered config file is one flt reads, with every value', async () => {
    const settings = report.modules.agentDeploySettings;
    expect(Object.keys(settings)).toEqual(
      expect.arrayContaining([
        'admins',
        'deploy_activator',
        'deploy_profile',
        'deploy_command',
        'deploy_check',
        'deploy_health_timeout',
        'deploy_recheck',
        'nix_store',
      ]),
    );
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'agent.json');
      await writeFile(file, JSON.stringify(settings));
      const r = await runFlt(['--config', file, '--json', 'config', 'show']);
      expect(r.code, r.stderr).toBe(0);
      const shown = JSON.parse(r.stdout) as Record<string, { value: unknown; source: string }>;
      const durations = new Set(KEY_SPECS.filter((x) => x.kind === 'duration').map((x) => x.key));
      for (const [k, v] of Object.entries(settings)) {
        expect(shown[k]!.source, k).toMatch(/^file /);
        // Durations are shown normalized (60s as 1m).
        if (durations.has(k as never))
          expect(parseDuration(shown[k]!.value as string), k).toBe(parseDuration(v as string));
        else expect(shown[k]!.value, k).toEqual(v);
      }
    } finally {
      await dir.remove();
    }
  });

  it('agent unit: a switch may restart it; systemd-run, systemctl and nix-env on its PATH', () => {
    const u = report.modules.agentUnit;
    expect(u.restartIfChanged).toBe(true);
    expect(u.stopIfChanged).toBe(false);
    // Not `process`/`none`, which would leave its helpers behind; the activation runs in its
    // own transient unit, out of the agent's cgroup.
    expect(u.KillMode).toBe('control-group');
    expect(u.User).toBe('root');
    expect(u.path).toEqual(expect.arrayContaining(['nix-stub', 'systemd-stub']));
  });

  it.each(['deploy', 'rollback'] as const)(
    'vm-%s: its systems are built with it, in the agent store, named in the script',
    (name) => {
      const v = report.vm[name];
      expect(v.variants).toEqual(name === 'deploy' ? ['next'] : ['brokenUnit', 'unhealthy']);
      expect(v.registered).toBe(true);
      expect(v.inScript).toBe(true);
      expect(v.distinct).toBe(true);
      expect(v.agentSettings).toMatchObject({ deploy_activator: 'nixos' });
      expect(v.agentSettings.admins).toEqual([expect.stringMatching(/\/key\.pub$/)]);
      expect(v.agentSettings.deploy_check).toMatch(/flt-unhealthy/);
    },
  );

  it('vm-artifacts: its systems are in the coordinator store only; the agent has no substituter', () => {
    const v = report.vm.artifacts;
    expect(v.pushed).toEqual(['other', 'pushed']);
    expect(v.onCoordinator).toBe(true);
    expect(v.notOnAgent).toBe(true);
    expect(v.inScript).toBe(true);
    expect(v.agentSubstituters).toEqual([]);
    expect(v.agentEnvironmentFile).toBe(true);
  });

  it('artifact options: rendered as nix_trusted_keys and artifact_gc_grace; a bad key is an assertion', () => {
    const m = report.modules;
    const key = 'flt-admin-1:6vW1m0yB3cBm4h0Xo2bq0m6Zq0r6p9sQe1kI7w5lC2Y=';
    expect(m.agentNixKeys.nix_trusted_keys).toEqual([key]);
    expect(m.agentDefaultSettings).not.toHaveProperty('nix_trusted_keys');
    expect(m.coordinatorArtifacts!.builds).toBe(true);
    expect(m.coordinatorArtifactsSettings).toEqual({
      nix_trusted_keys: [key],
      artifact_gc_grace: '30d',
    });
    expect(m.coordinatorDefaultSettings).not.toHaveProperty('nix_trusted_keys');
    expect(m.coordinatorDefaultSettings).not.toHaveProperty('artifact_gc_grace');
    for (const name of ['agentBadNixKey', 'coordinatorBadNixKey']) {
      expect(m[name]!.builds, name).toBe(false);
      expect(m[name]!.failedAssertions.join('\n'), name).toMatch(/is not a Nix public key/);
    }
  });
});
