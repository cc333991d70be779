// `flt demo --once` (what `npm start` runs, minus --once) and `flt doctor`, as real processes.

import { readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

it('flt demo --once brings up a fleet and exits 0 once both agents are listed', async () => {
  const r = await runFlt(['--state-dir', dir.path, '--json', 'demo', '--once']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain(join(dir.path, 'demo'));
  // A healthy fleet logs no warning (issue 9.3: an admin's empty answer was taken for a write).
  expect(r.stderr).not.toMatch(/\b(WARN|ERROR)\b/);
  // The last JSON table printed lists both agents, online, with their hostname.
  const tables = r.stdout
    .split('\n[')
    .slice(1)
    .map((t) => JSON.parse('[' + t) as { hostname: string | null; online: boolean }[]);
  const last = tables.at(-1)!;
  expect(last).toHaveLength(2);
  for (const a of last)
    expect(a).toMatchObject({ online: true, hostname: expect.any(String) as string });
});

it('flt doctor reports a clean store, then a corrupt chunk with its code, without changing it', async () => {
  const state = join(dir.path, 'demo', 'coordinator');
  const clean = await runFlt(['--state-dir', state, 'doctor']);
  expect(clean.code, clean.stderr).toBe(0);
  expect(clean.stdout).toMatch(/no problems/);

  const chunk = await firstChunk(join(state, 'repo'));
  await truncate(chunk, 10);
  await writeFile(join(state, 'repo', '.left.over.tmp'), 'x');
  const bad = await runFlt(['--state-dir', state, '--json', 'doctor']);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/^flt: STORE_CORRUPT: /m);
  const report = JSON.parse(bad.stdout) as { problems: { code: string; file: string }[] };
  expect(report.problems.map((p) => p.code)).toContain('STORE_CORRUPT');
  expect(report.problems.some((p) => p.file === chunk)).toBe(true);
});

async function firstChunk(dir: string): Promise<string> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !e.name.startsWith('.') && /(snapshot|incremental)$/.test(e.parentPath))
      return join(e.parentPath, e.name);
  }
  throw new Error(`no chunk under ${dir}`);
}
