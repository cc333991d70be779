// `flt demo --once` (what `npm start` runs, minus --once) and `flt doctor`, as real processes.

import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
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

  // The coordinator's chunks are in its chunk log (stores/chunk-log.ts): a flipped byte in the
  // first record of its first segment; an agent's are files: one cut short.
  const segment = join(
    state,
    'repo',
    '.flt-log',
    (await readdir(join(state, 'repo', '.flt-log')))[0]!,
  );
  const bytes = await readFile(segment);
  bytes[12] = bytes[12]! ^ 0xff;
  await writeFile(segment, bytes);
  const agentState = join(dir.path, 'demo', 'agent1');
  const chunk = await firstChunk(join(agentState, 'repo'));
  await truncate(chunk, 10);
  await writeFile(join(state, 'repo', '.left.over.tmp'), 'x');
  for (const [stateDir, file] of [
    [state, segment],
    [agentState, chunk],
  ] as const) {
    const bad = await runFlt(['--state-dir', stateDir, '--json', 'doctor']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^flt: STORE_CORRUPT: /m);
    const report = JSON.parse(bad.stdout) as { problems: { code: string; file: string }[] };
    expect(report.problems.map((p) => p.code)).toContain('STORE_CORRUPT');
    expect(report.problems.some((p) => p.file === file)).toBe(true);
  }
  expect(await readFile(segment)).toEqual(bytes); // doctor changes nothing
});

async function firstChunk(dir: string): Promise<string> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !e.name.startsWith('.') && /(snapshot|incremental)$/.test(e.parentPath))
      return join(e.parentPath, e.name);
  }
  throw new Error(`no chunk under ${dir}`);
}
