// Who gets which document: the coordinator offers an enrolled agent its own facts document only,
// and an agent accepts no other, so N agents cost the coordinator N sync sessions of one document
// each rather than N × N. An admin still receives every document (its replica must be whole).
// In one process, with real iroh endpoints on 127.0.0.1 and real state dirs.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import type { Admin } from '../src/roles/admin.js';
import type { Agent } from '../src/roles/agent.js';
import type { Coordinator } from '../src/roles/coordinator.js';
import type { Store } from '../stores/store.js';
import { tempDir } from './helpers/flt.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const AGENTS = 3;
const log = createLogger('warn', 'test');

/** The documents a store holds chunks of (sync states included). */
async function storedDocs(store: Store): Promise<Set<string>> {
  const chunks = await store.loadRange([]);
  return new Set(chunks.map((c) => c.key[0]!).filter((k) => k !== 'storage-adapter-id'));
}

describe('document sharing between coordinator, agents and admin', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let coordinator: Coordinator;
  const agents: Agent[] = [];
  let admin: Admin;

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    ({ coordinator, admin } = fleet);
    const facts = await collectFacts();
    for (let i = 0; i < AGENTS; i++)
      agents.push(
        await fleet.addAgent(`a${i}`, () => Promise.resolve({ ...facts, hostname: `h${i}` })),
      );
  });

  afterAll(async () => {
    await fleet?.close();
    await dir.remove();
  });

  it('every agent reaches the fleet table', async () => {
    const view = await waitFor('all agents with a hostname', async () => {
      const v = await admin.fleet();
      return v.agents.filter((a) => a.hostname !== null).length === AGENTS && v;
    });
    expect(view.agents.map((a) => a.hostname).sort()).toEqual(['h0', 'h1', 'h2']);
  });

  it('an agent holds and stores its own documents only', async () => {
    // Facts and status; with a coordinator that deploys, also its desired and the admins document.
    for (const agent of agents) {
      await agent.node.repo!.flush();
      const held = Object.keys(agent.node.repo!.handles);
      expect(held).toContain(agent.factsDocId);
      expect(held).toContain(agent.statusDocId);
      expect(agent.documents).toHaveLength(agent.documents.length === 2 ? 2 : 4);
      for (const doc of held) expect(agent.documents).toContain(doc);
      for (const doc of await storedDocs(agent.node.store!)) expect(agent.documents).toContain(doc);
    }
  });

  it("the admin reads every agent's facts", async () => {
    for (let i = 0; i < AGENTS; i++) {
      const r = await admin.facts(`h${i}`);
      expect(r.facts?.hostname).toBe(`h${i}`);
      expect(r.agent.factsDocId).toBe(agents[i]!.factsDocId);
    }
  });

  it('the coordinator offers an agent nothing but its own document', () => {
    const fleet = coordinator.fleet; // the coordinator's, not the test's
    const [a0, a1] = [agents[0]!, agents[1]!];
    expect(fleet.offers(a0.node.key.nodeId, a0.factsDocId)).toBe(true);
    expect(fleet.offers(a0.node.key.nodeId, a1.factsDocId)).toBe(false);
    expect(fleet.offers(a0.node.key.nodeId, coordinator.fleet.root.documentId)).toBe(false);
    // Any other peer is offered nothing by the fleet (admins get everything from the gate).
    const stranger = 'f'.repeat(64) as typeof a0.node.key.nodeId;
    expect(fleet.offers(stranger, a1.factsDocId)).toBe(false);
  });
});
