// Agent records reach the root document in batches (src/roles/fleet.ts, ROOT_BATCH_MS): each
// root change costs in proportion to everything ever written to it, so agents joining together
// share one change. What is staged is already served (the lookup map), and every read of the
// root document through the fleet sees it.

import * as A from '@automerge/automerge';
import { Repo } from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { agentsOf, rootBase, type RootDoc } from '../src/docs/types.js';
import { deriveKeyPair, generateNodeKey } from '../src/identity/index.js';
import { Fleet } from '../src/roles/fleet.js';
import { createLogger } from '../sync/log.js';
import { docIdFor, OwnedDoc } from '../sync/owned-doc.js';
import type { NodeId } from '../sync/ids.js';
import { waitFor } from './helpers/wait.js';
import { MemoryStore } from '../stores/memory-store.js';

const empty = new MemoryStore();
const log = createLogger('error', 'test');

async function openFleet(): Promise<{ fleet: Fleet; committed: () => A.Doc<RootDoc> }> {
  const coordinator = generateNodeKey();
  const root = new OwnedDoc<RootDoc>(deriveKeyPair(coordinator.secret, 'flt/v1/doc/root'));
  const repo = new Repo({});
  await root.open(repo, empty, rootBase(coordinator.nodeId));
  // Straight from the handle: what the root document holds, without committing staged records.
  return { fleet: new Fleet(root, repo, log), committed: () => root.opened().doc() };
}

function enrollSome(fleet: Fleet, n: number): NodeId[] {
  return Array.from({ length: n }, () => {
    const agent = generateNodeKey();
    const facts = deriveKeyPair(agent.secret, 'flt/v1/doc/facts').publicKey;
    const id = agent.nodeId;
    fleet.enroll(id, docIdFor(facts), Buffer.from(facts).toString('hex'));
    return id;
  });
}

describe('root document batches', () => {
  it('records put together land in one change; a read through the fleet writes them first', async () => {
    const { fleet, committed } = await openFleet();
    const before = A.getHistory(committed()).length;
    const ids = enrollSome(fleet, 5);
    // Served at once from the lookup map, not yet in the document.
    expect(
      fleet
        .agents()
        .map((a) => a.nodeId)
        .sort(),
    ).toEqual([...ids].sort());
    expect(A.getHistory(committed())).toHaveLength(before);
    // Reading the root through the fleet writes them, in one change.
    expect(
      agentsOf(fleet.root.doc())
        .map((a) => a.nodeId)
        .sort(),
    ).toEqual([...ids].sort());
    expect(A.getHistory(committed())).toHaveLength(before + 1);
  });

  it('without a read, the records are written within the batch window', async () => {
    const { fleet, committed } = await openFleet();
    const before = A.getHistory(committed()).length;
    const ids = enrollSome(fleet, 3);
    await waitFor('the staged records written', () => agentsOf(committed()).length === 3);
    expect(
      agentsOf(committed())
        .map((a) => a.nodeId)
        .sort(),
    ).toEqual([...ids].sort());
    expect(A.getHistory(committed())).toHaveLength(before + 1);
  });

  it('signed root heads cover every record put before they were asked for', async () => {
    const { fleet, committed } = await openFleet();
    enrollSome(fleet, 2);
    const signed = fleet.signedRoot();
    expect([...signed.heads].sort()).toEqual(A.getHeads(committed()).sort());
    expect(agentsOf(committed())).toHaveLength(2);
  });
});
