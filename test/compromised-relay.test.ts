// Compromised relay (ARCHITECTURE.md §5.2): a coordinator stand-in (here the coordinator itself,
// writing straight into its copy of the document, as a compromised one could) adds a change to
// agent A's facts document that A never signed and serves it to an admin. The admin's trusted
// view leaves it out, online and from its offline replica, and says an unverified change exists.

import * as A from '@automerge/automerge';
import type { PeerId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { storedFacts, type FactsDoc } from '../src/docs/types.js';
import { collectFacts } from '../src/facts/index.js';
import { Admin } from '../src/roles/admin.js';
import type { Agent } from '../src/roles/agent.js';
import type { Coordinator } from '../src/roles/coordinator.js';
import { tempDir } from './helpers/flt.js';
import { localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const lines: string[] = [];
const log = createLogger('warn', 'fleet', (l) => lines.push(l));

describe('compromised relay', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let coordinator: Coordinator;
  let agent: Agent;

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    coordinator = fleet.coordinator;
    const facts = { ...(await collectFacts()), hostname: 'host-a' };
    agent = await fleet.addAgent('a', () => Promise.resolve(facts));
    await waitFor(
      'A in the fleet with its facts',
      () => coordinator.fleet.agent(agent.node.key.nodeId)?.summary?.hostname === 'host-a',
    );
  });

  afterAll(async () => {
    await fleet?.close();
    await dir.remove();
  });

  it("an unsigned change to an agent's facts never reaches the admin's trusted view", async () => {
    const adminConfig = await localConfig(`${dir.path}/admin`, { coordinator: coordinator.ticket });
    const admin = fleet.admin;
    {
      const clean = await admin.facts('host-a');
      expect(clean.facts?.hostname).toBe('host-a');
      expect(clean.unverified).toBe(false);

      // The stand-in writes into A's document: no signature of A covers this change.
      const handle = coordinator.node.repo!.handles[agent.factsDocId]!;
      handle.change((d) => {
        (d as FactsDoc).facts!.hostname = new A.ImmutableString('evil');
      });

      const served = await admin.facts(agent.node.key.nodeId);
      expect(served.unverified).toBe(true);
      expect(served.facts?.hostname).toBe('host-a');
      // The coordinator's own summary comes from the trusted view too.
      expect(coordinator.fleet.agent(agent.node.key.nodeId)?.summary?.hostname).toBe('host-a');
      // A is not offered its own document (it pushes it), so the stand-in sends the change to A
      // itself, in a sync message; A refuses it (it would sign over it otherwise).
      const coordinatorId = coordinator.node.key.nodeId;
      const forged = A.getLastLocalChange(handle.doc())!;
      coordinator.node.sync.send({
        type: 'sync',
        senderId: coordinatorId as string as PeerId,
        targetId: agent.node.key.nodeId as string as PeerId,
        documentId: agent.factsDocId,
        data: A.encodeSyncMessage({
          heads: A.getHeads(handle.doc()),
          need: [],
          have: [],
          changes: [forged],
        }),
      });
      await waitFor('A refusing the change', () =>
        lines.some((l) => l.includes('refused a sync message') && l.includes(coordinatorId)),
      );
      expect(storedFacts(agent.facts!.doc())?.hostname).toBe('host-a');
    }

    // From the admin's replica alone, with nothing running to ask.
    const offline = await Admin.open(adminConfig, log, true);
    try {
      const r = await offline.facts('host-a');
      expect(r.facts?.hostname).toBe('host-a');
      expect(r.unverified).toBe(true);
    } finally {
      await offline.close();
    }
  });
});
