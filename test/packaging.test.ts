// Packaging, the way Nix's buildNpmPackage will use it (issue: Nix): the lockfile pins the iroh
// addon for both Linux architectures the flake builds, and the packed tarball alone (its `files`
// and `bin`) installs into an empty directory and runs, with nothing taken from the source tree.
// The install is offline and from the lockfile (`npm ci --offline --omit=dev`): it needs only the
// package tarballs that the project's own `npm ci` put in npm's cache, looked up by integrity.
// (`npm install --offline TARBALL` would also need registry metadata that `npm ci` never caches,
// so it failed on a new machine: issue 9.1.)

import { execFile } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skippedInSandbox } from './helpers/env.js';
import { tempDir } from './helpers/flt.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');

interface LockEntry {
  version?: string;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  optional?: boolean;
}

describe('package-lock.json', () => {
  it('holds the Linux x64 and arm64 (glibc) entries of the iroh addon, at the binding version', async () => {
    const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, LockEntry>;
    };
    const binding = lock.packages['node_modules/@number0/iroh']!;
    expect(binding.version).toMatch(/^\d+\.\d+\.\d+$/);
    for (const cpu of ['x64', 'arm64']) {
      const entry = lock.packages[`node_modules/@number0/iroh-linux-${cpu}-gnu`];
      expect(entry, cpu).toBeDefined();
      expect(entry).toMatchObject({ version: binding.version, os: ['linux'], cpu: [cpu] });
      expect(entry!.libc).toEqual(['glibc']);
      expect(entry!.optional).toBe(true);
    }
  });
});

describe.skipIf(
  skippedInSandbox('the packed tarball', 'installs from the npm cache, which the sandbox lacks'),
)('the packed tarball', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let flt: string;

  beforeAll(async () => {
    dir = await tempDir();
    // dist/ is built by the test setup; pack exactly what `files` and `bin` name.
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir.path], {
      cwd: ROOT,
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string }[];
    await run('tar', ['-xzf', join(dir.path, info!.filename), '-C', dir.path]);
    const pkg = join(dir.path, 'package');
    await copyFile(join(ROOT, 'package-lock.json'), join(pkg, 'package-lock.json'));
    await run('npm', ['ci', '--offline', '--omit=dev', '--no-audit', '--no-fund'], {
      cwd: pkg,
      timeout: 240_000,
    });
    const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8')) as {
      bin: { flt: string };
    };
    flt = join(pkg, manifest.bin.flt);
  }, 300_000);

  afterAll(() => dir?.remove());

  it('runs `flt --version` from the installed package', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    const r = await run(process.execPath, [flt, '--version'], { cwd: dir.path });
    expect(r.stdout.trim()).toContain(version);
  });

  it('runs `flt demo --once` from the installed package, away from the source tree', async () => {
    const r = await run(
      process.execPath,
      [flt, '--state-dir', join(dir.path, 'state'), 'demo', '--once'],
      {
        cwd: dir.path,
        timeout: 90_000,
      },
    );
    expect(r.stdout).toMatch(/2 agents/);
  }, 120_000);
});
