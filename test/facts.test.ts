// Tests for src/facts: collection on this real machine, a fake NixOS tree in a temp dir
// (os-release, generations, reboot-required, disks, machine-id), soft failure of every tool,
// the os-release parser, the validator readers run on peers' documents, and diffs.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyFactsPatch,
  collectFacts,
  collectVolatile,
  diffFacts,
  execTool,
  isEmptyPatch,
  MAX_STRING,
  osInfoFrom,
  parseMounts,
  parseNixVersion,
  parseOsRelease,
  validateFacts,
  validateVolatileFacts,
  type ExecFn,
  type Facts,
} from '../src/facts/index.js';
import { FltError, type ErrorCode } from '../sync/errors.js';
import { COLLECTORS } from '../src/facts/collectors.js';

const NIXOS_RELEASE = `ANSI_COLOR="0;38;2;126;186;228"
BUILD_ID="25.05.20250612.abcdef1"
DEFAULT_HOSTNAME=nixos
HOME_URL="https://nixos.org/"
ID=nixos
ID_LIKE=""
NAME=NixOS
PRETTY_NAME="NixOS 25.05 (Warbler)"
VERSION="25.05 (Warbler)"
VERSION_CODENAME=warbler
VERSION_ID="25.05"
`;
const MACHINE_ID = '0123456789abcdef0123456789abcdef';
const GEN_A = '/nix/store/aaaa-nixos-system-host-25.05';
const GEN_B = '/nix/store/bbbb-nixos-system-host-25.05';
const GEN_C = '/nix/store/cccc-nixos-system-host-25.05';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'flt-facts-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function put(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, file)), { recursive: true });
  await writeFile(path.join(root, file), text);
}

async function link(file: string, target: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, file)), { recursive: true });
  await symlink(target, path.join(root, file));
}

/** A system generation whose boot links point at `kernel`-named store paths. */
async function generation(gen: string, kernel: string): Promise<void> {
  await link(`${gen}/kernel`, `/nix/store/${kernel}-linux-6.12.30/bzImage`);
  await link(`${gen}/initrd`, `/nix/store/${kernel}-initrd-linux-6.12.30/initrd`);
  await link(`${gen}/kernel-modules`, `/nix/store/${kernel}-linux-6.12.30-modules`);
  await put(`${gen}/nixos-version`, '25.05.20250612.abcdef1 (Warbler)\n');
}

/** A NixOS-like tree: os-release, machine-id, mounts, and current/booted generations. */
async function nixosTree(booted: string): Promise<void> {
  await put('etc/os-release', NIXOS_RELEASE);
  await put('etc/machine-id', `${MACHINE_ID}\n`);
  await put(
    'proc/mounts',
    [
      'proc /proc proc rw,nosuid 0 0',
      'tmpfs /run tmpfs rw 0 0',
      '/dev/sda1 / ext4 rw,relatime 0 0',
      '/dev/sda1 /nix/store ext4 ro,relatime 0 0',
      '/dev/loop0 /snap/core squashfs ro 0 0',
      '/dev/sdb1 /mnt/my\\040disk xfs rw 0 0',
      '',
    ].join('\n'),
  );
  await mkdir(path.join(root, 'mnt/my disk'), { recursive: true });
  await generation(GEN_A, 'k1');
  await generation(GEN_B, 'k2');
  await generation(GEN_C, 'k1');
  await link('run/current-system', GEN_A);
  await link('run/booted-system', booted);
}

function notFound(file: string): Error {
  return Object.assign(new Error(`spawn ${file} ENOENT`), { code: 'ENOENT' });
}

/** Answers like a NixOS host with nix and nixos-facter installed. */
const nixosExec: ExecFn = (file) => {
  switch (file) {
    case 'nix':
      return Promise.resolve('nix (Nix) 2.28.3\n');
    case 'nixos-version':
      return Promise.resolve('25.05.20250612.abcdef1 (Warbler)\n');
    case 'nixos-facter':
      return Promise.resolve('{"version":2,"system":"x86_64-linux","hardware":{"cpu":[]}}');
    default:
      return Promise.reject(notFound(file));
  }
};

function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof FltError) return err.code;
    throw err;
  }
  return undefined;
}

describe('collectFacts on this machine', () => {
  it('matches uname and node:os, and passes the validator', async () => {
    const facts = await collectFacts();
    const uname = (flag: string) => execFileSync('uname', [flag], { encoding: 'utf8' }).trim();
    expect(facts.schema).toBe(1);
    expect(facts.hostname).toBe(os.hostname());
    expect(facts.kernel.release).toBe(uname('-r'));
    expect(facts.kernel.name).toBe(uname('-s'));
    expect(facts.arch).toBe(uname('-m'));
    expect(facts.cpus.count).toBeGreaterThan(0);
    expect(facts.memory.totalBytes).toBe(os.totalmem());
    expect(facts.network.every((n) => n.name !== 'lo')).toBe(true);
    expect(facts.disks.some((d) => d.mount === '/')).toBe(true);
    expect(validateFacts(facts)).toEqual(facts);
    expect(validateFacts(JSON.parse(JSON.stringify(facts)))).toEqual(facts);
  });

  it('samples volatile facts that pass their validator', async () => {
    const v = await collectVolatile({ now: () => new Date('2025-06-01T00:00:00Z') });
    expect(v.sampledAt).toBe('2025-06-01T00:00:00.000Z');
    expect(v.load).toHaveLength(3);
    expect(v.memoryAvailableBytes).toBeGreaterThan(0);
    expect(validateVolatileFacts(v)).toEqual(v);
  });
});

describe('collectFacts on a fake NixOS root', () => {
  it('reads os-release, generations, machine-id, disks and tools', async () => {
    await nixosTree(GEN_B);
    const now = () => new Date('2025-06-12T10:00:00Z');
    const facts = await collectFacts({ root, exec: nixosExec, now });
    expect(facts.collectedAt).toBe('2025-06-12T10:00:00.000Z');
    expect(facts.os).toEqual({
      id: 'nixos',
      name: 'NixOS',
      version: '25.05 (Warbler)',
      versionId: '25.05',
      prettyName: 'NixOS 25.05 (Warbler)',
      buildId: '25.05.20250612.abcdef1',
    });
    expect(facts.nixos).toEqual({
      version: '25.05.20250612.abcdef1 (Warbler)',
      currentSystem: GEN_A,
      bootedSystem: GEN_B,
      rebootRequired: true,
    });
    expect(facts.nix).toEqual({ version: '2.28.3' });
    expect(facts.facter).toEqual({ version: 2, system: 'x86_64-linux', hardware: { cpu: [] } });
    const hash = createHash('sha256').update(`flt/v1/machine-id:${MACHINE_ID}`).digest('hex');
    expect(facts.machineIdHash).toBe(hash);
    expect(JSON.stringify(facts)).not.toContain(MACHINE_ID);
    expect(facts.disks.map((d) => [d.mount, d.fs])).toEqual([
      ['/', 'ext4'],
      ['/mnt/my disk', 'xfs'],
    ]);
    expect(facts.disks.every((d) => d.totalBytes > 0)).toBe(true);
    expect(facts.notes).toEqual([]);
    expect(validateFacts(facts)).toEqual(facts);
  });

  it('needs no reboot when the booted generation has the same boot links', async () => {
    await nixosTree(GEN_C);
    const facts = await collectFacts({ root, exec: nixosExec });
    expect(facts.nixos?.bootedSystem).toBe(GEN_C);
    expect(facts.nixos?.rebootRequired).toBe(false);
  });

  it('needs no reboot when booted and current are the same generation', async () => {
    await nixosTree(GEN_A);
    const facts = await collectFacts({ root, exec: nixosExec });
    expect(facts.nixos?.rebootRequired).toBe(false);
  });

  it('reads MemAvailable for the volatile facts', async () => {
    await put('proc/meminfo', 'MemTotal:       2048 kB\nMemAvailable:    1000 kB\n');
    const v = await collectVolatile({ root });
    expect(v.memoryAvailableBytes).toBe(1000 * 1024);
  });
});

describe('the collector list', () => {
  it('fills each fact once, and every fact a collection returns has its collector', async () => {
    const keys = COLLECTORS.map((c) => c.key);
    expect(new Set(keys).size).toBe(keys.length);
    const facts = await collectFacts();
    const filled = Object.keys(facts).filter(
      (k) => !['schema', 'collectedAt', 'notes'].includes(k),
    );
    expect(keys).toEqual(expect.arrayContaining(filled));
    expect(filled).toEqual(keys.filter((k) => k in facts)); // in the list's order
  });
});

describe('collectors fail soft', () => {
  it('notes tools that are not installed, and falls back for the NixOS version', async () => {
    await nixosTree(GEN_B);
    const facts = await collectFacts({ root, exec: (file) => Promise.reject(notFound(file)) });
    expect(facts.nix).toBeUndefined();
    expect(facts.facter).toBeUndefined();
    expect(facts.nixos?.version).toBe('25.05.20250612.abcdef1 (Warbler)');
    expect(facts.notes).toEqual(['nix: not installed', 'facter: not on PATH']);
  });

  it('notes failing tools with their error', async () => {
    const facts = await collectFacts({ exec: () => Promise.reject(new Error('boom')) });
    expect(facts.notes).toContain('nix: boom');
    expect(facts.notes).toContain('facter: boom');
    expect(validateFacts(facts)).toEqual(facts);
  });

  it('notes a collector that throws synchronously (a programming error)', async () => {
    const exec: ExecFn = () => {
      throw new TypeError('exec is broken');
    };
    const facts = await collectFacts({ root, exec });
    expect(facts.notes).toContain('nix: exec is broken');
    expect(facts.notes).toContain('facter: exec is broken');
  });

  it('gives defaults and notes on an empty root', async () => {
    const facts = await collectFacts({ root, exec: () => Promise.reject(new Error('no')) });
    expect(facts.os.id).toBe('linux');
    expect(facts.disks).toEqual([]);
    expect(facts.machineIdHash).toBeUndefined();
    expect(facts.nixos).toBeUndefined();
    expect(facts.notes).toEqual(
      expect.arrayContaining([
        'os-release: not found',
        'disks: /proc/mounts not found',
        'machine-id: not set',
        'nixos: not NixOS',
      ]),
    );
    expect(validateFacts(facts)).toEqual(facts);
  });

  it('rejects with ABORTED when the signal is aborted', async () => {
    const signal = AbortSignal.abort();
    await expect(collectFacts({ root, signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('drops facter output that is not bounded JSON', async () => {
    const exec: ExecFn = (file) =>
      file === 'nixos-facter'
        ? Promise.resolve(JSON.stringify({ s: 'x'.repeat(MAX_STRING + 1) }))
        : Promise.reject(notFound(file));
    const facts = await collectFacts({ root, exec });
    expect(facts.facter).toBeUndefined();
    expect(facts.notes.some((n) => n.startsWith('facter: nixos-facter:'))).toBe(true);
  });
});

describe('execTool', () => {
  const node = process.execPath;

  it('runs without a shell and with PATH as the only variable', async () => {
    const out = await execTool(node, [
      '-e',
      'process.stdout.write(Object.keys(process.env).join())',
    ]);
    expect(out).toBe('PATH');
  });

  it('rejects a missing tool with ENOENT and too much output with IO', async () => {
    await expect(execTool('flt-no-such-tool', [])).rejects.toMatchObject({ code: 'ENOENT' });
    const big = execTool(node, ['-e', 'process.stdout.write("x".repeat(100))'], { maxBytes: 10 });
    await expect(big).rejects.toMatchObject({ code: 'IO' });
  });
});

describe('parsers', () => {
  it('parses os-release quotes, escapes, comments and blank lines', () => {
    const keys = parseOsRelease(
      [
        '# a comment',
        '',
        '   ',
        'NAME="Fancy \\"Quoted\\" OS"',
        "ID='fancy'",
        'VERSION="1 \\$HOME \\\\ \\q"',
        'VERSION_ID=1\\ 2',
        'PRETTY_NAME="Fancy"\' OS\'',
        'BUILD_ID=abc # trailing comment',
        'not a line',
        '1BAD=x',
        '__proto__=still-a-key',
      ].join('\n'),
    );
    expect(keys.get('NAME')).toBe('Fancy "Quoted" OS');
    expect(keys.get('ID')).toBe('fancy');
    expect(keys.get('VERSION')).toBe('1 $HOME \\ \\q');
    expect(keys.get('VERSION_ID')).toBe('1 2');
    expect(keys.get('PRETTY_NAME')).toBe('Fancy OS');
    expect(keys.get('BUILD_ID')).toBe('abc');
    expect(keys.get('1BAD')).toBeUndefined();
    expect(keys.get('__proto__')).toBe('still-a-key');
    expect(osInfoFrom(keys).versionId).toBe('1 2');
    expect(osInfoFrom(new Map())).toEqual({
      id: 'linux',
      name: 'Linux',
      version: '',
      versionId: '',
      prettyName: 'Linux',
    });
  });

  it('parses /proc/mounts escapes and nix --version', () => {
    expect(parseMounts('/dev/sda1 /a\\040b ext4 rw 0 0\n')).toEqual([
      { device: '/dev/sda1', mount: '/a b', fs: 'ext4' },
    ]);
    expect(parseNixVersion('nix (Nix) 2.24.10\n')).toBe('2.24.10');
  });
});

describe('validateFacts', () => {
  let facts: Facts;

  beforeEach(async () => {
    facts = await collectFacts({ exec: nixosExec });
  });

  it('accepts collected facts', () => {
    expect(validateFacts(facts)).toEqual(facts);
  });

  it('rejects wrong types with BAD_MESSAGE', () => {
    expect(codeOf(() => validateFacts({ ...facts, hostname: 42 }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, disks: [{ mount: '/' }] }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, notes: 'none' }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, collectedAt: 'yesterday' }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, memory: { totalBytes: -1 } }))).toBe(
      'BAD_MESSAGE',
    );
    expect(codeOf(() => validateFacts({ ...facts, schema: '1' }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts(null))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, schema: 2 }))).toBe('UNSUPPORTED_VERSION');
  });

  it('rejects over-long strings and arrays, also inside facter', () => {
    const long = 'x'.repeat(MAX_STRING + 1);
    expect(codeOf(() => validateFacts({ ...facts, hostname: long }))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, facter: { a: [long] } }))).toBe('BAD_MESSAGE');
    const many = Array.from({ length: 1025 }, () => 'n');
    expect(codeOf(() => validateFacts({ ...facts, notes: many }))).toBe('BAD_MESSAGE');
  });

  it('rejects __proto__ keys anywhere', () => {
    const json = JSON.stringify(facts);
    const top: unknown = JSON.parse(`{"__proto__":{"polluted":true},${json.slice(1)}`);
    expect(codeOf(() => validateFacts(top))).toBe('BAD_MESSAGE');
    const nested: unknown = JSON.parse(json.replace('"os":{', '"os":{"__proto__":{},'));
    expect(codeOf(() => validateFacts(nested))).toBe('BAD_MESSAGE');
    expect(codeOf(() => validateFacts({ ...facts, facter: { constructor: 1 } }))).toBe(
      'BAD_MESSAGE',
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('diffFacts', () => {
  let facts: Facts;

  beforeEach(async () => {
    facts = await collectFacts({ exec: nixosExec });
  });

  it('is empty for identical facts and for a collectedAt-only change', () => {
    expect(isEmptyPatch(diffFacts(facts, structuredClone(facts)))).toBe(true);
    const later = { ...facts, collectedAt: '2099-01-01T00:00:00.000Z' };
    expect(diffFacts(facts, later)).toEqual([]);
  });

  it('has only the changed field, at its nested path', () => {
    expect(diffFacts(facts, { ...facts, hostname: 'renamed' })).toEqual([
      { op: 'set', path: ['hostname'], value: 'renamed' },
    ]);
    const next = { ...facts, os: { ...facts.os, versionId: '99' } };
    expect(diffFacts(facts, next)).toEqual([{ op: 'set', path: ['os', 'versionId'], value: '99' }]);
    const { nix: _nix, ...noNix } = facts;
    expect(diffFacts(facts, noNix)).toEqual([{ op: 'delete', path: ['nix'] }]);
  });

  it('writes everything but collectedAt first, and patches apply to the next facts', () => {
    const first = diffFacts(undefined, facts);
    expect(first.map((c) => c.path[0])).not.toContain('collectedAt');
    const doc: Record<string, unknown> = {};
    applyFactsPatch(doc, first);
    const next: Facts = { ...facts, hostname: 'renamed', disks: [], nix: { version: '9.9' } };
    applyFactsPatch(doc, diffFacts(facts, next));
    const { collectedAt: _at, ...rest } = next;
    expect(doc).toEqual(rest);
  });
});
