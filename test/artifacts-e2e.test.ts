// Delivery to the agent end to end (issue 12, design §6, §9): a random-content closure (lib1
// 3 MiB <- lib2 2 MiB <- app 1 MiB <- top, shared references) built into the admin's store B and
// pushed to an in-process coordinator (real iroh on 127.0.0.1); a deployment of top to an agent
// whose own store C lacks all of it: the Deployer writes `fetching` (with bytes), the agent
// fetches the closure over flt/blobs/0, hands it to Nix through a file:// cache with
// require-sigs and nix_trusted_keys = K, and activates it once. Every path then verifies in C
// (`nix-store --verify-path`) with the narHash B has.

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import type { DeploymentStatus } from '../src/docs/status.js';
import { readStatus } from '../src/docs/status.js';
import { artifactFleet, expectSameInStores, type ArtifactFleet } from './helpers/artifact-fleet.js';
import { nixStore } from './helpers/artifacts.js';

const log = createLogger('error', 'artifacts-e2e', () => undefined);
let af: ArtifactFleet;

beforeAll(async () => {
  af = await artifactFleet(log);
}, 240_000);
afterAll(async () => af?.close());

describe('delivery to the agent', () => {
  it('a deployment of a missing closure goes fetching -> succeeded, activates once, every path verifies in C', async () => {
    const { fx } = af;
    // C has nothing of the closure.
    const invalid = await nixStore(fx.agent, '--check-validity', '--print-invalid', ...fx.closure);
    expect(invalid.trim().split('\n').sort()).toEqual([...fx.closure].sort());
    const nars = await af.push(fx.closure);
    const total = fx.closure.reduce((n, p) => n + nars.get(p)!.meta.narSize, 0);
    expect(total).toBeGreaterThan(6 * 2 ** 20);
    const agent = await af.agent('agent1', {
      'nix-trusted-keys': [af.publicKey],
      'artifact-parallel': '2',
    });
    const seen: DeploymentStatus[] = [];
    agent.status!.on('change', ({ doc }) => seen.push(...readStatus(doc).deployments));
    const id = await af.deploy(agent, fx.paths.top);
    const done = await af.until(agent, id, (r) => r.state === 'succeeded', 'succeeded');
    expect(done.code).toBeUndefined();
    const states = seen.filter((r) => r.id === id).map((r) => r.state);
    expect(states).toContain('fetching');
    expect(states.indexOf('fetching')).toBeLessThan(states.indexOf('activating'));
    expect(states).not.toContain('refused');
    expect(await af.activations('agent1')).toEqual(['top switch']);
    for (const r of await expectSameInStores(fx, fx.closure)) {
      expect(r.ok, `verify-path ${r.path}`).toBe(true);
      expect(r.agent).toBe(r.admin);
    }
    // Nothing left behind: the cache and the partials are empty, the want list gone.
    const art = join(af.dir, 'fleet', 'agent1', 'artifacts');
    expect((await readdir(join(art, 'cache'))).filter((f) => f.endsWith('.narinfo'))).toEqual([]);
    expect(await readdir(join(art, 'cache', 'nar'))).toEqual([]);
    expect(await readdir(join(art, 'partial'))).toEqual([]);
    expect(await readdir(join(art, 'want'))).toEqual([]);
  }, 240_000);
});
