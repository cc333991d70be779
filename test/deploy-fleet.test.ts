// Twenty agents (real iroh endpoints, in this process with the coordinator) and an operator who
// runs `flt admin deploy --all --wait` as a child process: every agent activates the system once
// with the `command` activator and the command exits 0 only when all have succeeded.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import type { Agent } from '../src/roles/agent.js';
import { LOCAL, runFlt, tempDir } from './helpers/flt.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { nixFixtures, type NixFixtures } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';

const N = 20;
const log = createLogger('error', 'deploy-fleet');

let dir: Awaited<ReturnType<typeof tempDir>>;
let fleet: TestFleet;
let fx: NixFixtures;
const agents: Agent[] = [];

beforeAll(async () => {
  fx = await nixFixtures();
  dir = await tempDir();
  fleet = await testFleet(dir.path, log);
  const facts = await collectFacts();
  for (let i = 0; i < N; i++) {
    const name = `agent${i}`;
    agents.push(
      await fleet.addAgent(name, () => Promise.resolve({ ...facts, hostname: name }), {
        'deploy-activator': 'command',
        'deploy-command': 'go() { "$1/bin/switch-to-configuration" "$2"; }; go',
        'nix-store': fx.store,
      }),
    );
  }
  await waitFor(
    `all ${N} agents enrolled with desired documents`,
    () => agents.every((a) => fleet.coordinator.fleet.agent(a.node.key.nodeId)?.desiredDocId),
    60_000,
  );
}, 120_000);
afterAll(async () => {
  await fleet.close();
  await dir.remove();
});

describe(`${N} agents`, () => {
  it('deploy --all --wait: every agent succeeds, each activates once, exit 0', async () => {
    // The operator is a second admin with a state dir of its own (the first one is in use here).
    const operator = join(dir.path, 'operator');
    const { key } = await loadOrCreateNodeKey(operator);
    await fleet.admin.submit({ op: 'admin.add', node: key.nodeId });
    const r = await runFlt(
      [
        '--state-dir',
        operator,
        ...LOCAL,
        'admin',
        '--coordinator',
        fleet.coordinator.ticket,
        'deploy',
        '--no-push', // the agents share the fixture store: nothing to push
        '--all',
        fx.paths.a,
        '--wait',
        '--timeout',
        '3m',
        '--json',
      ],
      {},
      240_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { targets: { state: string }[] };
    expect(out.targets).toHaveLength(N);
    expect(out.targets.every((t) => t.state === 'succeeded')).toBe(true);
    for (let i = 0; i < N; i++) {
      const logFile = join(dir.path, `agent${i}`, 'activations.log');
      expect((await readFile(logFile, 'utf8')).split('\n').filter(Boolean)).toEqual(['a switch']);
    }
  }, 300_000);
});
