// Eviction of idle documents from the coordinator's Repo (sync/evict.ts, issue 13). First the
// reason for its care: automerge-repo 2.5.6's removeFromCache alone replaces the stored document
// with an empty one. Then a real fleet (coordinator, admin, agent on 127.0.0.1, real state dirs)
// whose coordinator evicts after a short idle delay: a heartbeat with unchanged signed heads loads
// nothing, an evicted agent's next change still reaches the coordinator's summary and the admin,
// an admin with an empty replica is served an evicted document, eviction attempts while a change
// is in flight lose nothing, a coordinator restarted after evictions holds everything, and a late
// copy of a held signed record is no fork without the document. Waits are on state with deadlines.

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { readJournal } from '../stores/journal.js';
import { Eviction } from '../sync/evict.js';
import { createLogger } from '../sync/log.js';
import { isStored, signHeads, type SignedHeads } from '../sync/owned-doc.js';
import type { NodeId } from '../sync/ids.js';
import { deriveKeyPair, loadOrCreateNodeKey } from '../src/identity/index.js';
import type { DesiredDoc, FactsDoc } from '../src/docs/types.js';
import { signDeployment, type SignedPart } from '../src/trust/deployment.js';
import { collectFacts, type Facts } from '../src/facts/index.js';
import { Admin } from '../src/roles/admin.js';
import type { Agent } from '../src/roles/agent.js';
import { Coordinator } from '../src/roles/coordinator.js';
import { localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');

describe('evicting a document from a Repo', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());

  /** A Repo on a fresh FsStore with one saved document {n: 1} and a change {n: 2} on top. */
  async function oneDoc(name: string) {
    const store = await FsStore.open(join(dir.path, name));
    const repo = new Repo({ storage: store, saveDebounceRate: 20 });
    const handle = repo.create<{ n: number }>({ n: 1 });
    handle.change((d) => void (d.n = 2));
    const heads = A.getHeads(handle.doc());
    return { store, repo, handle, heads };
  }

  /** What a fresh Repo on `store` finds of `doc`. */
  async function reread(store: FsStore, doc: DocumentId) {
    const again = new Repo({ storage: store });
    const handle = await again.find<{ n: number }>(doc, {
      allowableStates: ['ready', 'unavailable'],
    });
    return handle.isReady() ? { n: handle.doc().n, heads: A.getHeads(handle.doc()) } : undefined;
  }

  it("automerge-repo's removeFromCache alone empties the stored document (the control)", async () => {
    const { store, repo, handle, heads } = await oneDoc('control');
    await repo.flush([handle.documentId]);
    await store.settled();
    await repo.removeFromCache(handle.documentId);
    // Its throttled save of the unloaded (empty) document runs after it: wait for the store.
    await waitFor('the empty snapshot', async () => {
      await store.idle();
      const now = await reread(store, handle.documentId);
      return now?.heads.length === 0 && now;
    });
    expect(heads.length).toBe(1);
  });

  it('Eviction saves first and leaves the stored document whole; find() loads it again', async () => {
    const { store, repo, handle, heads } = await oneDoc('evict');
    const doc = handle.documentId;
    const eviction = new Eviction({ repo, store, evictable: (d) => d === doc, idleMs: 60_000 });
    try {
      // Not saved yet (the change is younger than the save throttle): evict() saves it.
      expect(await eviction.evict(doc)).toBe(true);
      expect(repo.handles[doc]).toBeUndefined();
      await store.idle();
      await new Promise((r) => setTimeout(r, 100)); // past the throttle a save of the empty doc would use
      await store.idle();
      expect(await reread(store, doc)).toEqual({ n: 2, heads });
      const back = await repo.find<{ n: number }>(doc);
      expect(back.doc().n).toBe(2);
      expect(A.getHeads(back.doc())).toEqual(heads);
    } finally {
      await eviction.stop();
    }
  });

  it('an eviction gives up when the document stops being evictable while it is saved', async () => {
    const { store, repo, handle } = await oneDoc('recheck');
    const doc = handle.documentId;
    let evictable = true;
    let reached!: () => void;
    const atGate = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The real store, with the eviction's wait for its operations held at a gate.
    const held = {
      settled: async (first?: string) => {
        await store.settled(first);
        reached();
        await gate;
      },
    };
    const evicted: DocumentId[] = [];
    const eviction = new Eviction({
      repo,
      store: held,
      evictable: () => evictable,
      onEvict: (d) => void evicted.push(d),
      idleMs: 60_000,
    });
    try {
      const attempt = eviction.evict(doc);
      await atGate;
      evictable = false; // its writer begins a change (roles/deployments.ts)
      release();
      expect(await attempt).toBe(false);
      expect(evicted).toEqual([]);
      expect(repo.handles[doc]).toBe(handle);
    } finally {
      await eviction.stop();
    }
  });
});

describe('a coordinator that evicts its idle agents’ documents', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let agent: Agent;
  let facts: Facts;
  let host = 'one';
  let id: string;
  let factsDoc: DocumentId;
  let statusDoc: DocumentId;
  let desiredDoc: DocumentId;
  let restarted: Coordinator | undefined;
  let second: Admin | undefined;

  beforeAll(async () => {
    dir = await tempDir();
    facts = await collectFacts();
    fleet = await testFleet(dir.path, log, { idleMs: 400, quietMs: 100 });
    // Facts collected once an hour: the test publishes itself.
    agent = await fleet.addAgent('ag', () => Promise.resolve({ ...facts, hostname: host }), {
      'facts-interval': '1h',
    });
    await agent.enrolled;
    id = agent.node.key.nodeId;
    factsDoc = agent.factsDocId;
    statusDoc = agent.statusDocId;
    desiredDoc = fleet.coordinator.deployments.desiredOf(id as never).docId;
  });

  afterAll(async () => {
    await second?.close();
    await fleet?.close();
    await restarted?.close();
    await dir?.remove();
  });

  const coordinator = () => fleet.coordinator;
  /** In the Repo, or in the table of plain documents that pushes are taken into. */
  const loaded = (doc: DocumentId) =>
    coordinator().node.repo!.handles[doc] !== undefined || coordinator().plain.has(doc);
  const summaryHost = () => coordinator().fleet.agent(id as never)?.summary?.hostname;
  const waitEvicted = (what: string) =>
    waitFor(`${what}: the agent's documents evicted at the coordinator`, () =>
      [factsDoc, statusDoc, desiredDoc].every((d) => !loaded(d)),
    );

  it('an enrolled agent begins its desired document from the base stored at enrollment, which is never loaded here', async () => {
    const copy = await waitFor('the agent holds its desired document', () => {
      const h = agent.node.repo!.handles[desiredDoc];
      return h?.isReady() === true ? h : undefined;
    });
    const heads = A.getHeads(copy.doc()).join(',');
    await waitFor('its mark stored at the agent’s heads', async () => {
      const journal = await readJournal(coordinator().marks.file);
      return journal?.entries.get(desiredDoc) === heads;
    });
    // Its first sync was answered from the mark: the coordinator never loaded the document.
    expect(coordinator().node.repo!.handles[desiredDoc]).toBeUndefined();
  });

  it("evicts an idle agent's documents, saved", async () => {
    await waitFor('the first facts in the root summary', () => summaryHost() === 'one');
    await waitEvicted('idle');
    // Facts and status; the desired document was never loaded (stored and marked at enrollment).
    expect(coordinator().eviction.evicted + coordinator().plain.evicted).toBeGreaterThanOrEqual(2);
    const store = coordinator().node.store!;
    for (const doc of [factsDoc, statusDoc, desiredDoc])
      expect(await isStored(store, doc)).toBe(true);
    // Its sync session goes on without the documents.
    expect(coordinator().node.sync.connectedPeers()).toContain(id);
  });

  it('a heartbeat whose signed heads did not change loads nothing', async () => {
    await waitEvicted('before the heartbeat');
    const before = coordinator().fleet.presence.volatileOf(id as never);
    await agent.publish(agent.facts!); // same facts: no change, a heartbeat with the same heads
    expect(coordinator().fleet.presence.volatileOf(id as never)).not.toBe(before);
    expect(loaded(factsDoc) || loaded(statusDoc)).toBe(false);
  });

  /** The agent redials; its three documents' first messages are answered from their marks. */
  const reconnectAnswered = async () => {
    const sync = coordinator().node.sync;
    const answered = coordinator().fleet.answered;
    const opened = sync.sessionOpenedAt(id as never);
    agent.node.sync.redial(coordinator().node.key.nodeId, 'test: reconnect');
    await waitFor('a new sync session', () => {
      const at = sync.sessionOpenedAt(id as never);
      return at !== undefined && at !== opened;
    });
    // Its facts, status and desired documents (marked when they were evicted).
    await waitFor('all three answered', () => coordinator().fleet.answered >= answered + 3);
    expect([factsDoc, statusDoc, desiredDoc].some(loaded)).toBe(false);
  };

  it('a reconnecting agent that is in sync is answered without loading its documents', async () => {
    await waitEvicted('before the reconnect');
    await reconnectAnswered();
  });

  /** The desired document's mark in the coordinator's marks file (durable). */
  const storedMark = async () =>
    (await readJournal(coordinator().marks.file))?.entries.get(desiredDoc);
  /** Waits for the desired document's stored mark to be `heads`. */
  const markedAt = (heads: string[]) =>
    waitFor(`the mark at ${heads.join(',')}`, async () => {
      const mark = await storedMark();
      return mark === [...heads].sort().join(',') ? mark : undefined;
    });
  const coordinatorDesired = async () =>
    A.getHeads((await coordinator().deployments.open(id as NodeId)).doc());
  /** The agent's copy of its desired document holds `heads`. */
  const agentHolds = (heads: string[]) =>
    waitFor('the placed part at the agent', async () => {
      const mine = await agent.node.repo!.find<DesiredDoc>(desiredDoc);
      return A.hasHeads(mine.doc(), heads);
    });
  let strangerParts = 0;
  /** A part for the agent (signed by a node that is no admin: the agent refuses to run it). */
  const strangerPart = async (): Promise<SignedPart> => {
    const key = (await loadOrCreateNodeKey(join(dir.path, 'stranger'))).key;
    const spec = {
      targets: new Map([[id as NodeId, Date.now() + strangerParts++]]),
      storePath: `/nix/store/${'0'.repeat(32)}-evict-test`,
      action: 'switch' as const,
      expiresInMs: 3_600_000,
    };
    return signDeployment(spec, coordinator().fleet.root.documentId, key)[0]!;
  };

  it('a part placed while the desired document is evicted and marked reaches the agent', async () => {
    await waitEvicted('before the deployment');
    const before = await waitFor('the desired document marked', storedMark);
    await coordinator().deployments.place(id as NodeId, await strangerPart());
    const heads = await coordinatorDesired();
    expect(heads.join(',')).not.toBe(before);
    // The old mark went before the write (next test); the new one comes once the write is saved.
    await markedAt(heads);
    await agentHolds(heads);
    // Evicted again, it is marked with the new heads, and the agent is answered from that mark.
    await waitEvicted('after the deployment');
    await markedAt(heads);
    await reconnectAnswered();
  });

  it('a write of the desired document keeps any eviction of it off until it is saved', async () => {
    await waitEvicted('before the write');
    await waitFor('the desired document marked', storedMark);
    const marks = coordinator().marks;
    const set = marks.set.bind(marks);
    let reached!: () => void;
    const atGate = new Promise<void>((resolve) => (reached = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // The mark's removal (the write's first step after its flag) held at a gate.
    marks.set = async (key, value) => {
      if (key === desiredDoc && value === undefined) {
        reached();
        await gate;
      }
      return set(key, value);
    };
    try {
      // Loaded and idle: what an eviction would take.
      await coordinator().deployments.open(id as NodeId);
      const placing = coordinator().deployments.place(id as NodeId, await strangerPart());
      await atGate;
      expect(coordinator().deployments.writing(desiredDoc)).toBe(true);
      expect(await coordinator().eviction.evict(desiredDoc)).toBe(false);
      expect(loaded(desiredDoc)).toBe(true);
      release();
      await placing;
    } finally {
      release();
      marks.set = set;
    }
    expect(coordinator().deployments.writing(desiredDoc)).toBe(false);
    // Marked again once saved: at the heads of the write, never at those before it.
    const heads = await coordinatorDesired();
    await markedAt(heads);
    await agentHolds(heads);
    await waitEvicted('after the write');
  });

  it("an evicted agent's next change reaches the coordinator and the admin", async () => {
    host = 'two';
    await agent.publish(agent.facts!);
    await waitFor('the new facts in the root summary', () => summaryHost() === 'two');
    await waitFor('the new facts at the admin', async () => {
      const r = await fleet.admin.facts(id);
      return r.facts?.hostname === 'two';
    });
    await waitEvicted('idle again');
  });

  it('an admin with an empty replica is served an evicted document', async () => {
    await waitEvicted('before the admin asks');
    const adminDir = join(dir.path, 'admin');
    const key = join(adminDir, 'node.key');
    // The same admin key in a fresh state dir: its replica holds nothing yet.
    await fleet.admin.close();
    second = await Admin.open(
      await localConfig(join(dir.path, 'admin2'), {
        coordinator: coordinator().ticket,
        'secret-key': key,
      }),
      log,
      false,
    );
    const r = await second.facts(id);
    expect(r.facts?.hostname).toBe('two');
  });

  it('eviction attempts while a change is in flight lose nothing', async () => {
    await waitEvicted('before the change');
    const repo = coordinator().node.repo!;
    const attempts: Promise<boolean>[] = [];
    // On every message about the facts document, try to evict it at once and a moment later.
    const onMessage = (m: object) => {
      if (!('documentId' in m) || m.documentId !== factsDoc) return;
      attempts.push(coordinator().eviction.evict(factsDoc));
      setImmediate(() => attempts.push(coordinator().eviction.evict(factsDoc)));
    };
    repo.networkSubsystem.on('message', onMessage);
    try {
      for (const h of ['three', 'four', 'five']) {
        host = h;
        await agent.publish(agent.facts!);
      }
      await waitFor('the last facts in the root summary', () => summaryHost() === 'five');
      await waitFor('the last facts at the admin', async () => {
        const r = await second!.facts(id);
        return r.facts?.hostname === 'five';
      });
    } finally {
      repo.networkSubsystem.off('message', onMessage);
    }
    await Promise.all(attempts);
    expect(attempts.length).toBeGreaterThan(0);
    // The coordinator's stored copy (evicted, then found again) holds every change the agent made.
    await waitEvicted('after the changes');
    const ours = await repo.find<FactsDoc>(factsDoc);
    expect(A.hasHeads(ours.doc(), A.getHeads(agent.facts!.doc()))).toBe(true);
  });

  it('a coordinator restarted after evictions holds everything', async () => {
    await waitEvicted('before the restart');
    // Each of the agent's documents as the agent has it (the status document is small: the
    // empty snapshot of an unguarded eviction would replace it).
    const desired = await agent.node.repo!.find<unknown>(desiredDoc);
    const docs = [agent.facts!, agent.status!, desired].map((h) => ({
      doc: h.documentId,
      heads: A.getHeads(h.doc()),
    }));
    const stateDir = join(dir.path, 'coordinator');
    await second?.close();
    second = undefined;
    await fleet.close();
    restarted = await Coordinator.start(await localConfig(stateDir), log);
    expect(restarted.fleet.agent(id as never)?.summary?.hostname).toBe('five');
    for (const { doc, heads } of docs) {
      expect(heads.length).toBeGreaterThan(0);
      const again = await restarted.node.repo!.find<unknown>(doc);
      expect(A.hasHeads(again.doc(), heads)).toBe(true);
    }
  });

  it('a late copy of the held signed record is not a fork while the document is not loaded', async () => {
    const fleetNow = restarted!.fleet;
    const held = fleetNow.agent(id as never)!.factsHeads as SignedHeads;
    await waitFor('the facts document evicted', () => restarted!.eviction.evict(factsDoc));
    expect(restarted!.node.repo!.handles[factsDoc]).toBeUndefined();
    // Newer signed heads (their changes never arrive), then the held record again.
    const key = deriveKeyPair(agent.node.key.secret, 'flt/v1/doc/facts');
    const newer = signHeads(factsDoc, held.seq + 1, ['ab'.repeat(32)], key.secret, key.publicKey);
    fleetNow.recordHeads(id as never, newer);
    fleetNow.recordHeads(id as never, held);
    expect(fleetNow.agent(id as never)?.forked ?? null).toBeNull();
  });
});
