// Agents push their facts and status documents to the coordinator (sync/push.ts) instead of
// syncing them through automerge-repo, and fleets of mixed versions still work both ways (a
// holder that restarts and is sent what it lacks: test/push.test.ts). Real coordinators, agents
// and admins in this process, real iroh endpoints on 127.0.0.1, real state dirs.

import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { collectFacts, type Facts } from '../src/facts/index.js';
import type { Agent } from '../src/roles/agent.js';
import type { Coordinator } from '../src/roles/coordinator.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function fleetIn(
  ...args: Parameters<typeof testFleet> extends [string, unknown, ...infer R] ? R : never
): Promise<{ fleet: TestFleet; root: string; facts: Facts }> {
  const dir = await tempDir();
  cleanups.push(() => dir.remove());
  const fleet = await testFleet(dir.path, log, ...args);
  cleanups.push(() => fleet.close());
  return { fleet, root: dir.path, facts: await collectFacts() };
}

/** The summary's hostname the coordinator holds for `agent`, once it is `want`. */
const summarized = (c: Coordinator, agent: Agent, want: string) =>
  waitFor(`the coordinator summarizes ${want}`, () => {
    const entry = c.fleet.agent(agent.node.key.nodeId);
    return entry?.summary?.hostname === want ? entry : undefined;
  });

describe('agents push their documents', () => {
  it('facts reach the coordinator by push, and each change after', async () => {
    const { fleet, facts } = await fleetIn();
    let host = 'pushed-1';
    const agent = await fleet.addAgent('a', () => Promise.resolve({ ...facts, hostname: host }));
    await summarized(fleet.coordinator, agent, 'pushed-1');
    const first = fleet.coordinator.pushes.taken;
    expect(first).toBeGreaterThan(0);
    host = 'pushed-2';
    await agent.publish(agent.facts!);
    await summarized(fleet.coordinator, agent, 'pushed-2');
    expect(fleet.coordinator.pushes.taken).toBeGreaterThan(first);
  });

  it('pushed documents are held outside the Repo, and an admin reads every change', async () => {
    const { fleet, facts } = await fleetIn();
    let host = 'plain-1';
    const agent = await fleet.addAgent('p', () => Promise.resolve({ ...facts, hostname: host }));
    const c = fleet.coordinator;
    await summarized(c, agent, 'plain-1');
    const doc = agent.factsDocId;
    const inRepo = () => c.node.repo!.handles[doc] !== undefined;
    expect(c.plain.has(doc)).toBe(true);
    expect(inRepo()).toBe(false);
    const id = agent.node.key.nodeId;
    expect((await fleet.admin.facts(id)).facts?.hostname).toBe('plain-1');
    // Wherever the admin's read left it (plain for doc.fetch, the Repo for a sync), it is in
    // one place, and the agent's next change reaches the summary and the admin.
    expect(c.plain.has(doc) && inRepo()).toBe(false);
    host = 'plain-2';
    await agent.publish(agent.facts!);
    await summarized(c, agent, 'plain-2');
    await waitFor('the admin reads the new facts', async () => {
      return (await fleet.admin.facts(id)).facts?.hostname === 'plain-2';
    });
    expect(c.plain.has(doc) && inRepo()).toBe(false);
  });

  it('an agent of an older version (no push) still syncs with this coordinator', async () => {
    const { fleet, facts } = await fleetIn();
    const agent = await fleet.addAgent(
      'old',
      () => Promise.resolve({ ...facts, hostname: 'old-agent' }),
      {},
      { push: false },
    );
    await summarized(fleet.coordinator, agent, 'old-agent');
    expect(fleet.coordinator.pushes.taken).toBe(0);
  });

  it('an agent syncs with a coordinator of an older version (no push)', async () => {
    const { fleet, facts } = await fleetIn(undefined, { push: false });
    const agent = await fleet.addAgent('a', () =>
      Promise.resolve({ ...facts, hostname: 'new-agent' }),
    );
    await summarized(fleet.coordinator, agent, 'new-agent');
    expect(fleet.coordinator.pushes.taken).toBe(0);
  });
});
