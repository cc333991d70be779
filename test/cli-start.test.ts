// What the CLI loads to start: `--version` and `--help` load no command, and an offline read
// loads neither iroh nor automerge-repo, yet still reads the replica through its signed heads.
// Every module a run resolves is recorded by a module hook (node:module register) in the child.

import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { UNVERIFIED_NOTE } from '../src/cli/table.js';
import { baseDocument, docIdFor } from '../sync/owned-doc.js';
import { encodeAgent, rootBase, type AgentEntry, type RootDoc } from '../src/docs/types.js';
import { deriveKeyPair, generateNodeKey } from '../src/identity/index.js';
import { saveReplicaInfo } from '../src/roles/replica.js';
import { signHeads } from '../sync/owned-doc.js';
import { runFlt, tempDir } from './helpers/flt.js';

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

const AGENT_FIELDS = { enrolledAt: '2026-01-01T00:00:00.000Z', factsHeads: null };

function agent(hostname: string): AgentEntry {
  const key = generateNodeKey();
  const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  return {
    nodeId: key.nodeId,
    factsDocId: docIdFor(facts.publicKey),
    factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
    lastSeen: AGENT_FIELDS.enrolledAt,
    summary: { hostname, os: 'NixOS', nixosVersion: '25.05', kernel: '6.12', arch: 'x86_64' },
    ...AGENT_FIELDS,
  };
}

/**
 * An admin's replica as `admin agents` leaves it: the root document (two agents) as a snapshot
 * in the store, replica.json with its heads signed by `signer` (the root write key unless told),
 * and optionally a third agent added later as an incremental chunk no signature covers.
 */
async function replica(name: string, opts: { wrongSigner?: boolean; unsigned?: boolean } = {}) {
  const stateDir = join(dir.path, name);
  const coordinator = generateNodeKey();
  const rootKey = deriveKeyPair(coordinator.secret, 'flt/v1/doc/root');
  const rootDocId = docIdFor(rootKey.publicKey);
  let root = A.load<RootDoc>(baseDocument(rootDocId, rootBase(coordinator.nodeId)));
  for (const host of ['host-a', 'host-b']) {
    const entry = agent(host);
    root = A.change(root, (d) => void (d.agents[entry.nodeId] = encodeAgent(entry)));
  }
  const signer = opts.wrongSigner
    ? deriveKeyPair(generateNodeKey().secret, 'flt/v1/doc/root')
    : rootKey;
  const signed = signHeads(rootDocId, 1, A.getHeads(root), signer.secret, rootKey.publicKey);
  const store = await FsStore.open(join(stateDir, 'repo'));
  const hash = (doc: A.Doc<unknown>) =>
    createHash('sha256').update(A.getHeads(doc).join('')).digest('hex');
  await store.save([rootDocId, 'snapshot', hash(root)], A.save(root));
  if (opts.unsigned) {
    const entry = agent('host-c');
    const later = A.change(root, (d) => void (d.agents[entry.nodeId] = encodeAgent(entry)));
    const chunk = A.saveSince(later, A.getHeads(root));
    // An incremental chunk is named by the SHA-256 of its bytes (the store checks it).
    const name = createHash('sha256').update(chunk).digest('hex');
    await store.save([rootDocId, 'incremental', name], chunk);
  }
  await store.close();
  await saveReplicaInfo(stateDir, {
    coordinator: coordinator.nodeId,
    rootDocId,
    rootSigned: signed,
    asOf: new Date().toISOString(),
    presence: [],
  });
  return stateDir;
}

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
      await replica('ok'),
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
      await replica('forged', { wrongSigner: true }),
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
      await replica('unsigned', { unsigned: true }),
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
