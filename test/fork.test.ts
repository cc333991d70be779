// Forks of an agent's facts document (README, "Forks"): a second instance of an agent (a cloned
// machine, a copied state dir) that writes its own history is flagged `forked` in the root
// document, its changes are refused until an admin revokes the agent; and an agent restored from an older backup of its own state catches up with the
// history it signed itself instead of forking it. In one process, with real iroh endpoints on
// 127.0.0.1 and real state dirs; the clone is a Repo of its own holding the agent's key.

import { cp, rm } from 'node:fs/promises';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { factsPatch, writeFactsPatch } from '../src/docs/facts-doc.js';
import type { FactsDoc } from '../src/docs/types.js';
import { collectFacts, collectVolatile, type Facts } from '../src/facts/index.js';
import { deriveKeyPair, loadOrCreateNodeKey, type NodeKey } from '../src/identity/index.js';
import { Agent } from '../src/roles/agent.js';
import { agentHeartbeat } from '../src/rpc-methods.js';
import { signHeads, verifySignedHeads } from '../sync/owned-doc.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const lines: string[] = [];
const log = createLogger('info', 'fork', (l) => lines.push(l));

describe('forks of an agent facts document', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let base: Facts;
  const running = new Set<Agent>();
  const facts = (hostname: string) => () => Promise.resolve({ ...base, hostname });

  /** Starts an agent on an existing state dir (already enrolled: no token). */
  async function restart(name: string, hostname: string): Promise<Agent> {
    const config = await localConfig(`${dir.path}/${name}`, {
      coordinator: fleet.coordinator.ticket,
    });
    const agent = await Agent.start(config, log, facts(hostname));
    running.add(agent);
    return agent;
  }

  async function stop(agent: Agent): Promise<void> {
    running.delete(agent);
    await agent.close();
  }

  /** The coordinator's copy of a facts document, once it holds one. */
  const coordinatorDoc = (docId: DocumentId) => {
    const handle = fleet.coordinator.node.repo!.handles[docId];
    return handle?.isReady() ? handle.doc() : undefined;
  };

  const hostnameOf = (id: string) =>
    fleet.coordinator.fleet.agent(id as never)?.summary?.hostname ?? null;

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    base = await collectFacts();
  });

  afterAll(async () => {
    if (process.env.FORK_LOG)
      (await import('node:fs')).writeFileSync(process.env.FORK_LOG, lines.join('\n'));
    await Promise.allSettled([...running].map((a) => a.close()));
    await fleet?.close();
    await dir.remove();
  });

  it('two histories that neither contains mark the agent forked; its changes are refused until an admin revokes it', async () => {
    const first = await fleet.addAgent('a', facts('orig-1'));
    const id = first.node.key.nodeId;
    const docId = first.factsDocId;
    await waitFor('orig-1 at the coordinator', () => hostnameOf(id) === 'orig-1');
    // The clone's machine image: the agent's document as of now.
    const image = A.save(first.facts!.doc());
    await first.close();

    // The original moves on alone...
    const original = await restart('a', 'orig-2');
    await waitFor('orig-2 at the coordinator', () => hostnameOf(id) === 'orig-2');
    await stop(original);

    // ...and the clone, started from the image with the same key, writes its own history.
    const { key } = await loadOrCreateNodeKey(`${dir.path}/a`);
    const clone = await cloneOf(fleet.coordinator.ticket, key, docId, image);
    try {
      clone.write({ ...base, hostname: 'clone' });
      clone.connect();
      await clone.heartbeat();
      const forked = await waitFor(
        'forked',
        () => fleet.coordinator.fleet.agent(id)?.forked ?? false,
      );
      expect(forked.reason).toMatch(/two histories/);
      expect(lines.filter((l) => l.includes('agent forked')).length).toBe(1);
      expect(hostnameOf(id)).toBe('orig-2'); // the clone's facts were never taken

      // From now on its changes are refused, whoever sends them.
      const refused = fleet.coordinator.fleet.refusedFrom(id);
      clone.write({ ...base, hostname: 'clone-2' });
      await waitFor('a refused change', () => fleet.coordinator.fleet.refusedFrom(id) > refused);
      expect(A.hasHeads(coordinatorDoc(docId)!, clone.heads())).toBe(false);
      await clone.heartbeat(); // its signed heads are not taken either
      expect(hostnameOf(id)).toBe('orig-2');

      // The admin sees it in the table's JSON...
      const view = await fleet.admin.fleet();
      expect(view.agents.find((a) => a.nodeId === id)?.forked?.reason).toMatch(/two histories/);
      // ...and decides: revoke. Both instances are cut off and refused from then on.
      await fleet.admin.submit({ op: 'agent.revoke', node: id });
      await waitFor(
        'the clone disconnected',
        () => !fleet.coordinator.node.sync.connectedPeers().includes(id),
      );
      await expect(clone.heartbeat()).rejects.toBeDefined();
      expect(A.hasHeads(coordinatorDoc(docId)!, clone.heads())).toBe(false);
    } finally {
      await clone.close();
    }
  });

  it('an agent restored from an older backup of its state catches up and is not forked', async () => {
    const agent = await fleet.addAgent('r', facts('r-1'));
    const id = agent.node.key.nodeId;
    const docId = agent.factsDocId;
    await waitFor('r-1 at the coordinator', () => hostnameOf(id) === 'r-1');
    await agent.close();
    await cp(`${dir.path}/r`, `${dir.path}/r-backup`, { recursive: true });

    const later = await restart('r', 'r-2');
    await waitFor('r-2 signed at the coordinator', () => {
      const held = fleet.coordinator.fleet.agent(id)?.factsHeads;
      return hostnameOf(id) === 'r-2' && held !== null && held;
    });
    const signedLater = verifySignedHeads(fleet.coordinator.fleet.agent(id)!.factsHeads, { docId });
    await stop(later);

    // The machine is restored from the backup, and its facts have changed again meanwhile.
    await rm(`${dir.path}/r`, { recursive: true });
    await cp(`${dir.path}/r-backup`, `${dir.path}/r`, { recursive: true });
    const restored = await restart('r', 'r-3');
    await waitFor('r-3 at the coordinator', () => hostnameOf(id) === 'r-3', 30_000);
    // It took its own later history (r-2) before writing r-3 on top of it: one line of history.
    expect(A.hasHeads(restored.facts!.doc(), [...signedLater.heads])).toBe(true);
    expect(A.getHeads(coordinatorDoc(docId)!)).toHaveLength(1);
    expect(fleet.coordinator.fleet.agent(id)?.forked ?? null).toBeNull();
    expect(lines.filter((l) => l.includes('sent changes to our own document'))).toEqual([]);
    await stop(restored);
  });
});

/**
 * A second instance of an agent: the agent's key and a copy of its document (`image`), with a
 * Repo, endpoint and rpc channel of its own, as on a cloned machine.
 */
async function cloneOf(ticket: string, key: NodeKey, docId: DocumentId, image: Uint8Array) {
  const transport = await bindLocal(key.secret);
  const coordinator = parsePeerAddress(ticket);
  const adapter = new SyncAdapter({ transport });
  new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
  const repo = new Repo({ network: [adapter], peerId: key.nodeId as string as PeerId });
  const handle = repo.import<FactsDoc>(image, { docId });
  const rpc = new RpcChannel(transport, coordinator, { timeoutMs: 10_000 });
  const writeKey = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  return {
    connect: () => adapter.addPeer(coordinator),
    heads: () => A.getHeads(handle.doc()),
    write(facts: Facts) {
      handle.change((d) => writeFactsPatch(d, factsPatch(d, facts), facts.collectedAt));
    },
    async heartbeat() {
      const factsHeads = signHeads(
        docId,
        Date.now(),
        A.getHeads(handle.doc()),
        writeKey.secret,
        writeKey.publicKey,
      );
      await rpc.call(agentHeartbeat, { volatile: await collectVolatile(), factsHeads });
    },
    async close() {
      rpc.close();
      await repo.shutdown();
      await transport.close();
    },
  };
}
