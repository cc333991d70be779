// The Nix stores of test/helpers/artifacts.ts (design §9): the closure is valid in the admin's
// store B (whose files are elsewhere than its logical dir), shaped as designed, with several MiB
// of random content; the agent's store C at the same logical dir starts empty and takes B's
// paths with equal narHashes; change() adds a new top and nothing else; nixKeys makes Nix keys.

import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  artifactStores,
  copyPaths,
  nixKeys,
  nixStore,
  type ArtifactStores,
} from './helpers/artifacts.js';

let s: ArtifactStores;
beforeAll(async () => {
  s = await artifactStores();
}, 120_000);
afterAll(async () => s?.close());

/** `--dump-db` per path: narHash hex, narSize, references. */
async function dumpDb(store: string, paths: readonly string[]) {
  const lines = (await nixStore(store, '--dump-db', ...paths)).split('\n');
  const out = new Map<string, { hash: string; size: number; refs: string[] }>();
  for (let i = 0; i < lines.length && lines[i] !== ''; ) {
    const path = lines[i]!;
    const hash = lines[i + 1]!;
    const size = Number(lines[i + 2]);
    const n = Number(lines[i + 4]);
    out.set(path, { hash, size, refs: lines.slice(i + 5, i + 5 + n).sort() });
    i += 5 + n;
  }
  return out;
}

describe('artifact fixtures', () => {
  it('B holds the closure lib1 <- lib2 <- app <- top, valid, with its files outside L', async () => {
    const { paths, closure, admin, storeDir, adminReal } = s;
    expect(closure).toEqual([paths.lib1, paths.lib2, paths.app, paths.top]);
    for (const p of closure) {
      expect(p.startsWith(storeDir + '/')).toBe(true);
      await nixStore(admin, '--verify-path', p); // throws on a non-zero exit
    }
    const db = await dumpDb(admin, closure);
    const refs = (p: string) => db.get(p)!.refs;
    expect(refs(paths.lib1)).toEqual([]);
    expect(refs(paths.lib2)).toEqual([paths.lib1]);
    expect(refs(paths.app)).toEqual([paths.lib1, paths.lib2].sort());
    expect(refs(paths.top)).toEqual([paths.app, paths.lib2].sort());
    // Several MiB of random content: NAR sizes just above the file sizes.
    expect(db.get(paths.lib1)!.size).toBeGreaterThan(3 << 20);
    expect(db.get(paths.lib2)!.size).toBeGreaterThan(2 << 20);
    expect(db.get(paths.app)!.size).toBeGreaterThan(1 << 20);
    // Physically in B's real dir; L itself is free (A's files are gone).
    const base = (p: string) => p.slice(storeDir.length + 1);
    expect((await readdir(adminReal)).filter((n) => !n.startsWith('.')).sort()).toEqual(
      closure.map(base).sort(),
    );
    expect(existsSync(storeDir)).toBe(false);
    expect(
      (await stat(join(adminReal, base(paths.top), 'bin/switch-to-configuration'))).mode & 0o111,
    ).not.toBe(0);
  });

  it('C at the same logical dir starts empty and takes B paths with equal narHashes', async () => {
    const { admin, agent, closure, paths } = s;
    const invalid = await nixStore(agent, '--check-validity', '--print-invalid', ...closure);
    expect(invalid.trim().split('\n')).toEqual(closure);
    await copyPaths(admin, agent, [paths.lib1, paths.lib2]);
    for (const p of [paths.lib1, paths.lib2]) await nixStore(agent, '--verify-path', p);
    const inB = await dumpDb(admin, [paths.lib1, paths.lib2]);
    const inC = await dumpDb(agent, [paths.lib1, paths.lib2]);
    expect(inC).toEqual(inB);
    expect(await nixStore(agent, '--check-validity', '--print-invalid', ...closure)).toBe(
      `${paths.app}\n${paths.top}\n`,
    );
  });

  it('change() adds a new top to B, and only it', async () => {
    const { admin, paths } = s;
    const top2 = await s.change();
    expect(top2).not.toBe(paths.top);
    expect(top2).toMatch(/-art-top$/);
    await nixStore(admin, '--verify-path', top2);
    const closure2 = (await nixStore(admin, '-qR', top2)).trim().split('\n');
    expect(closure2).toEqual([paths.lib1, paths.lib2, paths.app, top2]);
    expect((await dumpDb(admin, [top2])).get(top2)!.refs).toEqual([paths.app, paths.lib2].sort());
    const top3 = await s.change();
    expect(new Set([paths.top, top2, top3]).size).toBe(3);
  });

  it('nixKeys makes a key pair in the format nix-store --generate-binary-cache-key writes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flt-art-keys-'));
    try {
      const k = await nixKeys('flt-test-1', dir);
      expect(k.publicKey).toMatch(/^flt-test-1:[A-Za-z0-9+/]{43}=$/);
      expect(Buffer.from(k.secretKey.split(':')[1]!, 'base64')).toHaveLength(64);
      expect(
        Buffer.from(k.secretKey.split(':')[1]!, 'base64').subarray(32).toString('base64'),
      ).toBe(k.publicKey.split(':')[1]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
