// What the CLI loads to start: `--version` and `--help` load no command, and an offline read
// loads neither iroh nor automerge-repo, yet still reads the replica through its signed heads.
// Every module a run resolves is recorded by a module hook (node:module register) in the child.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNVERIFIED_NOTE } from '../src/cli/table.js';
import { runFlt, tempDir } from './helpers/flt.js';
import { writeReplica } from './helpers/replica.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let hooks: string;

beforeAll(async () => {
  dir = await tempDir();
  // The hook runs in the loader's thread and appends each resolved URL to $LOADS_LOG.
  await writeFile(
    join(dir.path, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.LOADS_LOG, r.url + '\\n');
  return r;
}
`,
  );
  hooks = join(dir.path, 'register.mjs');
  await writeFile(
    hooks,
    `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${dir.path}/hooks.mjs`)});\n`,
  );
});
afterAll(() => dir.remove());

let runs = 0;
/** Runs flt; returns its result and every module URL it resolved. */
async function runRecorded(args: readonly string[]) {
  const log = join(dir.path, `loads-${runs++}.txt`);
  await writeFile(log, '');
  const r = await runFlt(args, { NODE_OPTIONS: `--import=${hooks}`, LOADS_LOG: log });
  const loaded = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
  return { ...r, loaded };
}

const loading = (urls: readonly string[], part: string) => urls.filter((u) => u.includes(part));

describe('flt start-up loads only what the command needs', () => {
  it.each([['--version'], ['--help']])(
    '%s loads no command, configuration or Automerge',
    async (flag) => {
      const r = await runRecorded([flag]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.length).toBeGreaterThan(0);
      expect(loading(r.loaded, '/src/cli/main.js')).toHaveLength(1); // the hook saw the CLI load
      for (const part of [
        '/commands/',
        '/src/config/',
        '/node_modules/zod/',
        '/node_modules/@automerge/',
        '/node_modules/@number0/iroh/',
      ])
        expect(loading(r.loaded, part), part).toEqual([]);
    },
  );

  it('admin agents --offline reads the signed replica without iroh, automerge-repo or the roles that sync', async () => {
    const r = await runRecorded([
      '--state-dir',
      await writeReplica(join(dir.path, 'ok')),
      'admin',
      'agents',
      '--offline',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 agents \(offline: from the local replica/);
    expect(r.stdout).toMatch(/host-a/);
    expect(r.stdout).toMatch(/host-b/);
    expect(loading(r.loaded, '/node_modules/@automerge/automerge/').length).toBeGreaterThan(0);
    for (const part of [
      '/node_modules/@number0/iroh/',
      '/node_modules/@automerge/automerge-repo/',
      '/node_modules/cbor-x/',
      '/src/node.js',
      '/src/roles/agent.js',
      '/src/roles/coordinator.js',
      '/sync/iroh-transport.js',
    ])
      expect(loading(r.loaded, part), part).toEqual([]);
  });

  it('an offline read still refuses a replica whose heads the root key did not sign', async () => {
    const r = await runFlt([
      '--state-dir',
      await writeReplica(join(dir.path, 'forged'), { wrongSigner: true }),
      'admin',
      'agents',
      '--offline',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^flt: BAD_SIGNATURE: /m);
  });

  it('an offline read shows the signed heads only: a later unsigned change is left out and noted', async () => {
    const r = await runFlt([
      '--state-dir',
      await writeReplica(join(dir.path, 'unsigned'), { unsigned: true }),
      'admin',
      'agents',
      '--offline',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^2 agents \(offline/);
    expect(r.stdout).not.toMatch(/host-c/);
    expect(r.stdout).toContain(UNVERIFIED_NOTE);
  });
});
