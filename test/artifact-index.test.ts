// ArtifactIndex (src/artifacts/index.ts): entries survive a reopen, a put merges signatures, a
// malformed file is quarantined and reported, closure() orders dependencies first and lists
// what is missing, remove() is durable.

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ArtifactIndex, type IndexEntry } from '../src/artifacts/index.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const S = '/nix/store/';
const p = (c: string, name: string) => `${S}${c.repeat(32)}-${name}`;
const entry = (path: string, references: string[], sigs = ['k1:sig']): IndexEntry => ({
  path,
  narHash: 'sha256:' + 'a'.repeat(52),
  narSize: 100,
  references: references.sort(),
  sigs,
  blob: 'b'.repeat(52),
  pushedAt: 1,
});

describe('ArtifactIndex', () => {
  it('persists, merges sigs, quarantines malformed files, computes closures, removes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flt-art-index-'));
    dirs.push(dir);
    const [lib1, lib2, app, top] = [p('1', 'lib1'), p('2', 'lib2'), p('3', 'app'), p('4', 'top')];
    const idx = await ArtifactIndex.open(dir);
    await idx.put(entry(lib1, []));
    await idx.put(entry(lib2, [lib1]));
    await idx.put(entry(top, [app, lib2]));
    const partial = idx.closure([top]);
    expect(partial.missing).toEqual([app]);
    expect(partial.entries.map((e) => e.path)).toEqual([lib1, lib2, top]);
    await idx.put(entry(app, [lib1, lib2]));
    const order = idx.closure([top]).entries.map((e) => e.path);
    expect(new Set(order)).toEqual(new Set([lib1, lib2, app, top]));
    for (const e of idx.closure([top]).entries)
      for (const r of e.references) expect(order.indexOf(r)).toBeLessThan(order.indexOf(e.path));
    expect((await idx.put(entry(lib1, [], ['k2:sig', 'k1:sig']))).sigs).toEqual([
      'k1:sig',
      'k2:sig',
    ]);

    await writeFile(join(dir, 'index', 'z'.repeat(32) + '.json'), '{"path": 1}');
    const lines: string[] = [];
    const again = await ArtifactIndex.open(dir, { logger: (l) => lines.push(l) });
    expect(again.size).toBe(4);
    expect(again.get(lib1)?.sigs).toEqual(['k1:sig', 'k2:sig']);
    expect(again.problems()).toEqual([expect.objectContaining({ code: 'STORE_CORRUPT' })]);
    expect(lines).toEqual([expect.stringMatching(/^STORE_CORRUPT .*moved to/)]);
    expect(await readdir(join(dir, '.quarantine'))).toHaveLength(1);
    expect(await again.remove(app)).toBe(true);
    expect(await again.remove(app)).toBe(false);
    expect((await ArtifactIndex.open(dir)).closure([top]).missing).toEqual([app]);
  });
});
