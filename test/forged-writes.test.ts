// Forged writes (ARCHITECTURE.md §5.1): only a document's writer may change it. An enrolled agent
// B pushes changes to agent A's facts document, and an admin C (who may read everything) pushes
// changes to the root document; the coordinator refuses both, logs the peer's node id, drops
// the peer's connection, and neither document changes. In one process, with real iroh endpoints.

import { randomBytes } from 'node:crypto';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { baseDocument, docIdFor } from '../sync/owned-doc.js';
import { factsBase, rootBase, storedFacts, type FactsDoc } from '../src/docs/types.js';
import { collectFacts } from '../src/facts/index.js';
import { deriveKeyPair, nodeKeyFromSeed, type NodeKey } from '../src/identity/index.js';
import type { Agent } from '../src/roles/agent.js';
import type { Coordinator } from '../src/roles/coordinator.js';
import { agentEnroll } from '../src/rpc-methods.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const lines: string[] = [];
const log = createLogger('warn', 'fleet', (l) => lines.push(l));

/** A misbehaving peer: its own endpoint and Repo, syncing with the coordinator. */
async function rogue(ticket: string, key: NodeKey, token?: string) {
  const transport = await bindLocal(key.secret);
  const coordinator = parsePeerAddress(ticket);
  if (token) {
    const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
    const rpc = new RpcChannel(transport, coordinator, { timeoutMs: 10_000 });
    await rpc.call(agentEnroll, {
      factsDocId: docIdFor(facts.publicKey),
      factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
      token,
    });
    rpc.close();
  }
  const adapter = new SyncAdapter({ transport, backoff: { initialMs: 50, maxMs: 200 } });
  new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
  const repo = new Repo({ network: [adapter], peerId: key.nodeId as string as PeerId });
  let disconnects = 0;
  adapter.on('peer-disconnected', () => disconnects++);
  /** Writes into our copy of `docId` (rebuilt from its deterministic first change). */
  const forge = <T>(docId: DocumentId, base: object, change: (d: T) => void) => {
    repo.import<T>(baseDocument(docId, base), { docId }).change(change);
  };
  return {
    forge,
    connect: () => adapter.addPeer(coordinator),
    disconnects: () => disconnects,
    close: async () => {
      await repo.shutdown();
      await transport.close();
    },
  };
}

describe('forged writes', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let coordinator: Coordinator;
  let agentA: Agent;
  const rogues: Awaited<ReturnType<typeof rogue>>[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    coordinator = fleet.coordinator;
    const facts = { ...(await collectFacts()), hostname: 'host-a' };
    agentA = await fleet.addAgent('a', () => Promise.resolve(facts));
    await waitFor(
      'A in the fleet with its facts',
      () => coordinator.fleet.agent(agentA.node.key.nodeId)?.summary?.hostname === 'host-a',
    );
  });

  afterAll(async () => {
    await Promise.allSettled(rogues.map((r) => r.close()));
    await fleet?.close();
    await dir.remove();
  });

  const refusedFor = (peer: string, docId: string) =>
    lines.some(
      (l) => l.includes('refused a sync message') && l.includes(peer) && l.includes(docId),
    );

  it("an enrolled agent cannot change another agent's facts document", async () => {
    const docA = agentA.factsDocId;
    const repo = coordinator.node.repo!;
    // The coordinator's copy: a plain document (pushes, sync/plain-docs.ts) or a Repo handle.
    const held = () =>
      (coordinator.plain.get(docA) ?? repo.handles[docA]?.doc()) as FactsDoc | undefined;
    const before = A.getHeads(held()!);
    const key = nodeKeyFromSeed(randomBytes(32));
    const { token } = await fleet.admin.enrollToken(60_000);
    const b = await rogue(coordinator.ticket, key, token);
    rogues.push(b);
    const base: FactsDoc = factsBase(agentA.node.key.nodeId);
    b.forge<FactsDoc>(docA, base, (d) => {
      d.facts = { hostname: new A.ImmutableString('forged') };
    });
    b.connect();
    await waitFor('the refusal, logged with B', () => refusedFor(key.nodeId, docA));
    await waitFor('B disconnected', () => b.disconnects() > 0);
    expect(A.getHeads(held()!)).toEqual(before);
    expect(storedFacts(held()!)?.hostname).toBe('host-a');
    expect(coordinator.fleet.agent(agentA.node.key.nodeId)?.summary?.hostname).toBe('host-a');
  });

  it('an admin, who reads every document, cannot change the root document', async () => {
    const root = coordinator.fleet.root;
    const before = root.heads();
    const agentsBefore = coordinator.fleet.agents();
    const key = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'admin.add', node: key.nodeId });
    const c = await rogue(coordinator.ticket, key);
    rogues.push(c);
    c.forge<{ agents: Record<string, unknown> }>(
      root.documentId,
      rootBase(coordinator.node.key.nodeId),
      (d) => {
        d.agents[key.nodeId] = new A.ImmutableString('{"forged":true}');
      },
    );
    c.connect();
    await waitFor('the refusal, logged with C', () => refusedFor(key.nodeId, root.documentId));
    expect(root.heads()).toEqual(before);
    expect(coordinator.fleet.agents()).toEqual(agentsBefore);
    expect(Object.keys(root.doc().agents)).not.toContain(key.nodeId);
  });
});
