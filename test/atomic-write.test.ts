// The crash-safe write (stores/atomic-write.ts) on real files in a temp dir: content and mode, no
// temp file left behind, replacement by rename (never in place), and the no-overwrite mode that
// node.key creation relies on (exactly one of racing writers wins).

import { link, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../stores/atomic-write.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flt-atomic-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const modeOf = async (file: string) => (await stat(file)).mode & 0o777;
const umask = process.umask();

describe('writeFileAtomic', () => {
  it('writes text and bytes with the given mode (0600 by default), leaving no temp file', async () => {
    await writeFileAtomic(join(dir, 'a.txt'), 'hello\n', { mode: 0o640 });
    await writeFileAtomic(join(dir, 'b.bin'), new Uint8Array([0, 1, 2, 255]));
    expect(await readFile(join(dir, 'a.txt'), 'utf8')).toBe('hello\n');
    expect([...(await readFile(join(dir, 'b.bin')))]).toEqual([0, 1, 2, 255]);
    expect(await modeOf(join(dir, 'a.txt'))).toBe(0o640 & ~umask);
    expect(await modeOf(join(dir, 'b.bin'))).toBe(0o600 & ~umask);
    expect((await readdir(dir)).sort()).toEqual(['a.txt', 'b.bin']);
  });

  it('replaces an existing file by rename: a hard link to the old one keeps the old content', async () => {
    const target = join(dir, 'ticket');
    await writeFile(target, 'old content, longer than the new one\n', { mode: 0o600 });
    await link(target, join(dir, 'old-alias'));
    await writeFileAtomic(target, 'new\n', { mode: 0o644 });
    expect(await readFile(target, 'utf8')).toBe('new\n');
    expect(await modeOf(target)).toBe(0o644 & ~umask);
    // An in-place write (truncate and write) would have changed the alias too.
    expect(await readFile(join(dir, 'old-alias'), 'utf8')).toBe(
      'old content, longer than the new one\n',
    );
    expect((await readdir(dir)).sort()).toEqual(['old-alias', 'ticket']);
  });

  it('noOverwrite refuses an existing file with EEXIST, leaving it and no temp file', async () => {
    const target = join(dir, 'node.key');
    await writeFile(target, 'first\n');
    await expect(writeFileAtomic(target, 'second\n', { noOverwrite: true })).rejects.toMatchObject({
      code: 'EEXIST',
    });
    expect(await readFile(target, 'utf8')).toBe('first\n');
    expect(await readdir(dir)).toEqual(['node.key']);
  });

  it('noOverwrite: of writers racing for one path exactly one wins, and its content stays', async () => {
    const target = join(dir, 'node.key');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        writeFileAtomic(target, `writer ${i}\n`, { noOverwrite: true }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'EEXIST' });
    }
    expect(await readFile(target, 'utf8')).toBe(`writer ${winners[0]}\n`);
    expect(await readdir(dir)).toEqual(['node.key']);
  });

  it('a missing directory is an ENOENT error unless createDir is set', async () => {
    const target = join(dir, 'x', 'y', 'file');
    await expect(writeFileAtomic(target, 'z')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(dir)).toEqual([]);
    await writeFileAtomic(target, 'z', { createDir: true });
    expect(await readFile(target, 'utf8')).toBe('z');
    expect(await readdir(join(dir, 'x', 'y'))).toEqual(['file']);
  });

  it('names its temp file in inFlight only while it exists', async () => {
    const inFlight = new Set<string>();
    const seen: string[] = [];
    const original = inFlight.add.bind(inFlight);
    inFlight.add = (value: string) => {
      seen.push(value);
      return original(value);
    };
    await writeFileAtomic(join(dir, 'chunk'), 'c', { inFlight });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/\/\.chunk\.[0-9a-f]{8}\.tmp$/);
    expect(inFlight.size).toBe(0);
  });
});
