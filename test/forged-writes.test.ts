// Forged writes (ARCHITECTURE.md §5.1): only a document's writer may change it. An enrolled agent
// B pushes changes to agent A's facts document, and a peer that is no agent pushes changes to
// the root document; the coordinator refuses both, logs the peer's node id, drops the peer's
// connection, and neither document changes. In one process, with real iroh endpoints.

import { randomBytes } from 'node:crypto';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { createLogger } from '../sync/log.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { resolveConfig, type Config } from '../src/config/index.js';
import { baseDocument, docIdFor } from '../src/docs/doc-id.js';
import { DOC_SCHEMA, storedFacts, type FactsDoc } from '../src/docs/types.js';
import { collectFacts } from '../src/facts/index.js';
import { deriveKeyPair, nodeKeyFromSeed } from '../src/identity/index.js';
import { Agent } from '../src/roles/agent.js';
import { Coordinator } from '../src/roles/coordinator.js';
import { Fleet } from '../src/roles/fleet.js';
import { agentEnroll } from '../src/rpc-methods.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

const lines: string[] = [];
const log = createLogger('warn', 'coordinator', (l) => lines.push(l));

async function config(stateDir: string, flags: Record<string, string> = {}): Promise<Config> {
  const { config } = await resolveConfig({
    flags: {
      'state-dir': stateDir,
      relay: 'disabled',
      discovery: 'none',
      bind: '127.0.0.1:0',
      ...flags,
    },
    env: {},
  });
  return config;
}

/** A misbehaving peer: its own endpoint and Repo, syncing with the coordinator. */
async function rogue(ticket: string, enroll: boolean) {
  const key = nodeKeyFromSeed(randomBytes(32));
  const transport = await IrohTransport.bind({
    secretKey: key.secret,
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });
  const coordinator = parsePeerAddress(ticket);
  if (enroll) {
    const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
    const rpc = new RpcChannel(transport, coordinator, { timeoutMs: 10_000 });
    await rpc.call(agentEnroll, {
      factsDocId: docIdFor(facts.publicKey),
      factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
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
    nodeId: key.nodeId,
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
  let coordinator: Coordinator;
  let agentA: Agent;
  const rogues: Awaited<ReturnType<typeof rogue>>[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    coordinator = await Coordinator.start(await config(`${dir.path}/c`), log);
    const facts = { ...(await collectFacts()), hostname: 'host-a' };
    const c = await config(`${dir.path}/a`, { coordinator: coordinator.ticket });
    agentA = await Agent.start(c, createLogger('error'), () => Promise.resolve(facts));
    await waitFor(
      'A in the fleet with its facts',
      () => coordinator.fleet.agent(agentA.node.key.nodeId)?.summary?.hostname === 'host-a',
    );
  });

  afterAll(async () => {
    await Promise.allSettled(rogues.map((r) => r.close()));
    await agentA?.close();
    await coordinator?.close();
    await dir.remove();
  });

  const refusedFor = (peer: string, docId: string) =>
    lines.some(
      (l) => l.includes('refused a sync message') && l.includes(peer) && l.includes(docId),
    );

  it("an enrolled agent cannot change another agent's facts document", async () => {
    const docA = agentA.factsDocId;
    const repo = coordinator.node.repo!;
    const before = repo.handles[docA]!.heads();
    const b = await rogue(coordinator.ticket, true);
    rogues.push(b);
    const base: FactsDoc = { kind: 'flt/facts', schema: DOC_SCHEMA, owner: agentA.node.key.nodeId };
    b.forge<FactsDoc>(docA, base, (d) => {
      d.facts = { hostname: new A.ImmutableString('forged') };
    });
    b.connect();
    await waitFor('the refusal, logged with B', () => refusedFor(b.nodeId, docA));
    await waitFor('B disconnected', () => b.disconnects() > 0);
    expect(repo.handles[docA]!.heads()).toEqual(before);
    expect(storedFacts(repo.handles[docA]!.doc() as FactsDoc)?.hostname).toBe('host-a');
    expect(coordinator.fleet.agent(agentA.node.key.nodeId)?.summary?.hostname).toBe('host-a');
  });

  it('a peer that is no agent cannot change the root document', async () => {
    const root = coordinator.fleet.root;
    const before = root.heads();
    const agentsBefore = coordinator.fleet.agents();
    const c = await rogue(coordinator.ticket, false);
    rogues.push(c);
    const base = Fleet.base(coordinator.node.key.nodeId);
    c.forge<{ agents: Record<string, unknown> }>(root.documentId, base, (d) => {
      d.agents[c.nodeId] = new A.ImmutableString('{"forged":true}');
    });
    c.connect();
    await waitFor('the refusal, logged with the peer', () => refusedFor(c.nodeId, root.documentId));
    expect(root.heads()).toEqual(before);
    expect(coordinator.fleet.agents()).toEqual(agentsBefore);
    expect(Object.keys(root.doc().agents)).not.toContain(c.nodeId);
  });
});
