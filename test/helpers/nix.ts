// Real Nix store paths for the deployment tests (design §7): test/fixtures/systems.nix built
// with Debian's nix-bin into a local store of this user, `local?store=<tmp>/flt-test-nix-<uid>/
// nix/store&state=...` (hermetic, no daemon, works as root on CI and as a developer), with
// substituters, build users and the sandbox off, so nothing waits on the network, needs nixbld
// or a chroot (whatever /etc/nix/nix.conf says). Built once per test process (~0.1 s; Nix's own
// locks make parallel workers safe). No nix-build: the test fails with one line saying what to
// install (CI's .ci/run installs nix-bin, which has nix-build, nix-store, nix-env).

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** A file of test/fixtures, from test/helpers (vitest) or dist/test/helpers (the bench). */
export function fixtureFile(name: string): string {
  return [
    resolve(import.meta.dirname, '../fixtures', name),
    resolve(import.meta.dirname, '../../../test/fixtures', name),
  ].find((f) => existsSync(f))!;
}
const FIXTURES = fixtureFile('systems.nix');
/** Nothing from the network, no build users, no sandbox (whatever /etc/nix/nix.conf says). */
export const NIX_OPTIONS = [
  '--option',
  'substituters',
  '',
  '--option',
  'build-users-group',
  '',
  '--option',
  'sandbox',
  'false',
];
const SYSTEMS = ['a', 'b', 'bad', 'sick', 'none'] as const;

export interface NixFixtures {
  /** The store URI to pass as `--store` (config `nix_store`). */
  readonly store: string;
  /** The store directory (`store=` of the URI): paths are `<storeDir>/<hash>-system-*`. */
  readonly storeDir: string;
  readonly paths: Readonly<Record<(typeof SYSTEMS)[number], string>>;
  /** A new system each call, known (instantiated) but not built until `build()`. */
  late(): Promise<{ readonly path: string; build(): Promise<void> }>;
}

let built: Promise<NixFixtures> | undefined;

/** The fixtures, built on first use in this process. */
export function nixFixtures(): Promise<NixFixtures> {
  built ??= buildFixtures();
  return built;
}

async function buildFixtures(): Promise<NixFixtures> {
  await run('nix-build', ['--version']).catch(() => {
    throw new Error('nix-build not found: install Debian nix-bin (apt-get install nix-bin)');
  });
  const uid = process.getuid?.() ?? 'user';
  const root = join(tmpdir(), `flt-test-nix-${uid}`);
  const storeDir = join(root, 'nix/store');
  const store = `local?store=${storeDir}&state=${root}/nix/var&log=${root}/nix/log`;
  const args = ['--store', store, ...NIX_OPTIONS];
  const attrs = SYSTEMS.flatMap((s) => ['-A', s]);
  const { stdout } = await run('nix-build', [...args, '--no-out-link', FIXTURES, ...attrs]);
  const out = stdout.trim().split('\n');
  if (out.length !== SYSTEMS.length) throw new Error(`nix-build printed ${stdout}`);
  const paths = Object.fromEntries(SYSTEMS.map((s, i) => [s, out[i]!])) as NixFixtures['paths'];
  const late = async () => {
    const nonce = ['--argstr', 'nonce', randomBytes(6).toString('hex')];
    const drv = (
      await run('nix-instantiate', [...args, FIXTURES, '-A', 'late', ...nonce])
    ).stdout.trim();
    const path = (await run('nix-store', [...args, '-q', '--outputs', drv])).stdout.trim();
    return { path, build: async () => void (await run('nix-store', [...args, '-r', drv])) };
  };
  return { store, storeDir, paths, late };
}
