// doc.fetch (issue 13): `flt admin agents` brings the root, and `facts` its facts document, to the
// admin's replica in one rpc each (a compacted snapshot, or the changes since the replica's heads)
// instead of automerge-repo's sync; `facts` asks for its one agent's record (fleet.agent) instead
// of the root, and the table's presence comes in short (fleet.online). The same answer as the
// synced path, the same checks, a replica that works offline afterwards, and garbage refused with
// a clear error, changing nothing. The in-process fleet runs real iroh endpoints on 127.0.0.1 and
// real state dirs.

import * as A from '@automerge/automerge';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import { createLogger } from '../sync/log.js';
import type { RpcMethod } from '../sync/rpc-method.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { parsePeerAddress } from '../sync/address.js';
import { collectFacts } from '../src/facts/index.js';
import { Admin, NeedsRepo } from '../src/roles/admin.js';
import { withAdmin } from '../src/cli/commands/with-admin.js';
import type { Invocation } from '../src/cli/invocation.js';
import {
  answerFetch,
  applyFetch,
  snapshotKeyOf,
  storeFetched,
  SnapshotCache,
} from '../src/roles/doc-fetch.js';
import { loadReads, loadReplicaInfo, loadStoredDoc } from '../src/roles/replica.js';
import {
  docFetch,
  fleetAgent,
  fleetInfo,
  fleetOnline,
  fleetPresence,
  presenceOfOnline,
} from '../src/rpc-methods.js';
import { MemoryStore } from '../stores/memory-store.js';
import { FsStore } from '../stores/fs-store.js';
import { thrownCode } from './helpers/errors.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');

type Doc = Record<string, string>;

/** A document with `n` changes, one key each. */
function docWith(n: number, base: A.Doc<Doc> = A.init<Doc>()): A.Doc<Doc> {
  let d = base;
  for (let i = 0; i < n; i++)
    d = A.change(d, (x) => {
      x[`k${Object.keys(x).length}`] = randomBytes(8).toString('hex');
    });
  return d;
}

const heads = (d: A.Doc<unknown>) => [...A.getHeads(d)].sort();

/** The coordinator's `whole` as SnapshotCache gives it. */
const cache = new SnapshotCache();
const whole = (d: A.Doc<unknown>) => () => cache.get('doc1', d);

/** The code of what a promise rejected with ('no error' if it resolved). */
const rejectedCode = (p: Promise<unknown>) =>
  p.then(
    () => 'no error',
    (err: unknown) =>
      thrownCode(() => {
        throw err;
      }),
  );

describe('doc.fetch: answers and how the replica takes them', () => {
  it('a cold replica gets a snapshot and ends at the same heads and content', async () => {
    const source = docWith(20);
    const answer = await answerFetch(source, [], whole(source));
    expect(answer.snapshot).toBeInstanceOf(Uint8Array);
    expect(answer.changes).toBeUndefined();
    const doc = applyFetch<Doc>(undefined, answer, 'doc1')!;
    expect(heads(doc)).toEqual(heads(source));
    expect(A.toJS(doc)).toEqual(A.toJS(source));
  });

  it("a cold replica takes the coordinator's stored chunks (snapshot, then incrementals) whole", async () => {
    const v1 = docWith(10);
    const v2 = docWith(4, A.clone(v1));
    const v3 = docWith(2, A.clone(v2));
    const chunks = Buffer.concat([
      A.save(v1),
      A.saveSince(v2, A.getHeads(v1)),
      A.saveSince(v3, A.getHeads(v2)),
    ]);
    const answer = await answerFetch(v3, [], () => chunks);
    expect(answer.snapshot).toBe(chunks);
    const doc = applyFetch<Doc>(undefined, answer, 'doc1')!;
    expect(heads(doc)).toEqual(heads(v3));
    expect(A.toJS(doc)).toEqual(A.toJS(v3));
    const store = new MemoryStore();
    await storeFetched(store, 'doc1', doc, answer, true);
    const stored = await loadStoredDoc<Doc>(store as unknown as FsStore, 'doc1' as never);
    expect(heads(stored)).toEqual(heads(v3));
  });

  it('a replica behind gets only the changes since its heads', async () => {
    const old = docWith(5);
    const source = docWith(3, A.clone(old));
    const answer = await answerFetch(source, A.getHeads(old), whole(source));
    expect(answer.snapshot).toBeUndefined();
    expect(answer.changes!.length).toBeLessThan(A.save(source).length);
    const doc = applyFetch(old, answer, 'doc1')!;
    expect(heads(doc)).toEqual(heads(source));
    expect(A.toJS(doc)).toEqual(A.toJS(source));
  });

  it('a replica at the heads gets no bytes and keeps its document', async () => {
    const source = docWith(4);
    const answer = await answerFetch(source, A.getHeads(source), whole(source));
    expect(answer).toEqual({ heads: A.getHeads(source) });
    expect(applyFetch(source, answer, 'doc1')).toBe(source);
  });

  it('a replica holding changes the coordinator lacks merges the snapshot and loses nothing', async () => {
    const common = docWith(3);
    const source = docWith(2, A.clone(common));
    const local = docWith(1, A.clone(common));
    const answer = await answerFetch(source, A.getHeads(local), whole(source));
    expect(answer.snapshot).toBeDefined();
    const doc = applyFetch(local, answer, 'doc1')!;
    expect(A.hasHeads(doc, A.getHeads(source))).toBe(true);
    expect(A.hasHeads(doc, A.getHeads(local))).toBe(true);
  });

  it('a document too large to send is answered with its heads alone: sync it instead', async () => {
    const source = docWith(10);
    const answer = await answerFetch(source, [], whole(source), 16);
    expect(answer).toEqual({ heads: A.getHeads(source) });
    expect(applyFetch(undefined, answer, 'doc1')).toBeUndefined();
    expect(applyFetch(docWith(1), answer, 'doc1')).toBeUndefined();
  });

  it('a document the coordinator does not hold is heads null', async () => {
    expect(await answerFetch(undefined, [], whole(A.init()))).toEqual({ heads: null });
  });

  it('garbage or bytes that do not lead to the named heads are BAD_MESSAGE, the replica untouched', () => {
    const local = docWith(3);
    const before = heads(local);
    const other = docWith(2);
    const cases = [
      { heads: A.getHeads(other), snapshot: randomBytes(200) },
      { heads: A.getHeads(other), changes: randomBytes(64) },
      // A real document, but not the one whose heads are named.
      { heads: A.getHeads(other), snapshot: A.save(docWith(2)) },
    ];
    for (const answer of cases) {
      expect(thrownCode(() => applyFetch(undefined, answer, 'doc1'))).toBe('BAD_MESSAGE');
      expect(thrownCode(() => applyFetch(local, answer, 'doc1'))).toBe('BAD_MESSAGE');
      expect(heads(local)).toEqual(before);
    }
  });

  it('the wire refuses malformed requests and answers', () => {
    const bytes = new Uint8Array(4);
    expect(thrownCode(() => docFetch.request({ docId: 'x', have: [], more: 1 }))).toBe(
      'BAD_MESSAGE',
    );
    expect(thrownCode(() => docFetch.request({ docId: 'x', have: 'h' }))).toBe('BAD_MESSAGE');
    expect(thrownCode(() => docFetch.request({ docId: '', have: [] }))).toBe('BAD_MESSAGE');
    expect(thrownCode(() => docFetch.response({ heads: null, snapshot: bytes }))).toBe(
      'BAD_MESSAGE',
    );
    expect(
      thrownCode(() => docFetch.response({ heads: ['a'], snapshot: bytes, changes: bytes })),
    ).toBe('BAD_MESSAGE');
    expect(thrownCode(() => docFetch.response({ heads: ['a'], snapshot: 'text' }))).toBe(
      'BAD_MESSAGE',
    );
    expect(docFetch.response({ heads: ['a'], changes: bytes }).changes).toBe(bytes);
  });

  it("the replica keeps an answer in automerge-repo's layout and compacts as it does", async () => {
    const store = new MemoryStore();
    const v1 = docWith(30);
    const a1 = await answerFetch(v1, [], whole(v1));
    await storeFetched(store, 'doc1', applyFetch(undefined, a1, 'doc1')!, a1);
    expect((await store.loadRange(['doc1'])).map((c) => c.key)).toEqual([
      ['doc1', 'snapshot', snapshotKeyOf(A.getHeads(v1))],
    ]);
    // Small steps: incremental chunks, until they outgrow the snapshot and are compacted.
    let local = await loadStoredDoc<Doc>(store as unknown as FsStore, 'doc1' as never);
    let source = v1;
    let compacted = false;
    for (let i = 0; i < 200 && !compacted; i++) {
      source = docWith(3, A.clone(source));
      const answer = await answerFetch(source, A.getHeads(local), whole(source));
      expect(answer.changes).toBeDefined();
      local = applyFetch(local, answer, 'doc1')!;
      await storeFetched(store, 'doc1', local, answer);
      const chunks = await store.loadRange(['doc1']);
      compacted = chunks.length === 1;
      const stored = await loadStoredDoc<Doc>(store as unknown as FsStore, 'doc1' as never);
      expect(heads(stored)).toEqual(heads(source));
    }
    expect(compacted).toBe(true);
    expect((await store.loadRange(['doc1'])).map((c) => c.key)).toEqual([
      ['doc1', 'snapshot', snapshotKeyOf(A.getHeads(source))],
    ]);
  });
});

describe('doc.fetch in a fleet: reads without a Repo', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    const facts = await collectFacts();
    for (let i = 0; i < 2; i++)
      await fleet.addAgent(`a${i}`, () => Promise.resolve({ ...facts, hostname: `h${i}` }));
    await waitFor('both agents with facts in the fleet table', async () => {
      const v = await fleet.admin.fleet();
      return v.agents.filter((a) => a.hostname !== null).length === 2;
    });
  });

  afterAll(async () => {
    await fleet?.close();
    await dir.remove();
  });

  it('gives the answers of the synced admin, and the replica answers them offline after', async () => {
    const config = await localConfig(`${dir.path}/admin2`, {
      coordinator: fleet.coordinator.ticket,
    });
    // A second admin, approved by the first, with a fresh state dir: a cold replica.
    const { loadOrCreateNodeKey } = await import('../src/identity/index.js');
    const id = (await loadOrCreateNodeKey(config.stateDir)).key.nodeId;
    await fleet.admin.submit({ op: 'admin.add', node: id });

    const strip = <T extends { agents: { online: boolean | null; lastSeen: string }[] }>(v: T) =>
      v.agents.map((a) => ({ ...a, online: null, lastSeen: '' }));
    for (let round = 0; round < 2; round++) {
      // Round 0: cold (snapshots); round 1: warm (nothing or changes).
      const reader = await Admin.open(config, log, false, { reads: true });
      let view, facts;
      try {
        view = await reader.fleet();
        facts = await reader.facts('h1');
      } finally {
        await reader.close();
      }
      const synced = await fleet.admin.fleet();
      const syncedFacts = await fleet.admin.facts('h1');
      expect(view.offline).toBe(false);
      expect(view.unverified).toBe(false);
      expect(strip(view)).toEqual(strip(synced));
      expect(facts.facts).toEqual(syncedFacts.facts);
      expect(facts.unverified).toBe(false);
      expect(facts.agent.factsDocId).toBe(syncedFacts.agent.factsDocId);
    }

    // The reads-only admin opened no Repo: its store holds the fetched documents and nothing
    // else (no outbox, no sync states).
    const store = await FsStore.open(`${config.stateDir}/repo`);
    try {
      const docs = new Set((await store.loadRange([])).map((c) => c.key[0]));
      docs.delete('storage-adapter-id');
      const h1 = (await fleet.admin.facts('h1')).agent.factsDocId;
      expect([...docs].sort()).toEqual([fleet.coordinator.fleet.root.documentId, h1].sort());
    } finally {
      await store.close();
    }

    const offline = await Admin.open(config, log, true);
    try {
      const view = await offline.fleet();
      expect(view.offline).toBe(true);
      expect(view.agents.map((a) => a.hostname).sort()).toEqual(['h0', 'h1']);
      const r = await offline.facts('h1');
      expect(r.facts?.hostname).toBe('h1');
      expect(r.unverified).toBe(false);
      // Fetched for h1 only: h0's facts were never asked for.
      expect(await rejectedCode(offline.facts('h0'))).toBe('NOT_FOUND');
    } finally {
      await offline.close();
    }
  });

  it('a full admin (with its Repo) takes over the replica the reads-only admin left', async () => {
    const config = await localConfig(`${dir.path}/admin2`, {
      coordinator: fleet.coordinator.ticket,
    });
    const full = await Admin.open(config, log, false);
    try {
      const view = await full.fleet();
      expect(view.agents.map((a) => a.hostname).sort()).toEqual(['h0', 'h1']);
      expect((await full.facts('h0')).facts?.hostname).toBe('h0');
    } finally {
      await full.close();
    }
  });

  it('a read the coordinator cannot serve by doc.fetch (NeedsRepo) is asked again of a full admin', async () => {
    const config = await localConfig(`${dir.path}/admin2`, {
      coordinator: fleet.coordinator.ticket,
    });
    const inv = { args: [], opts: {}, config, log } as unknown as Invocation;
    const modes: string[] = [];
    const hostnames = await withAdmin(
      inv,
      async (a) => {
        // What the reads-only admin throws for an old coordinator or a document too large.
        const full = (a as unknown as { repo?: unknown }).repo !== undefined;
        modes.push(full ? 'full' : 'reads');
        if (!full) throw new NeedsRepo('doc.fetch unknown');
        return (await a.fleet()).agents.map((r) => r.hostname).sort();
      },
      { reads: true },
    );
    expect(modes).toEqual(['reads', 'full']);
    expect(hostnames).toEqual(['h0', 'h1']);
  });

  it('facts asks the coordinator for its one agent (fleet.agent) and reads no root; offline it answers what it read; an older coordinator is asked the root', async () => {
    const config = await localConfig(`${dir.path}/admin3`, {
      coordinator: fleet.coordinator.ticket,
    });
    const { loadOrCreateNodeKey } = await import('../src/identity/index.js');
    await fleet.admin.submit({
      op: 'admin.add',
      node: (await loadOrCreateNodeKey(config.stateDir)).key.nodeId,
    });
    /** One reads-only command and the rpc methods it called. */
    const command = async <T>(
      read: (a: Admin) => Promise<T>,
      refuse: readonly string[] = [],
    ): Promise<{ result: T; called: string[] }> => {
      const reader = await Admin.open(config, log, false, { reads: true });
      const called: string[] = [];
      const rpc = (reader as unknown as { rpc: RpcChannel }).rpc;
      const call = rpc.call.bind(rpc);
      rpc.call = ((method: RpcMethod<unknown, unknown>, req: unknown) => {
        called.push(method.name);
        if (refuse.includes(method.name))
          return Promise.reject(
            new FltError('RPC_UNKNOWN_METHOD', `${method.name} (older coordinator)`),
          );
        return call(method, req);
      }) as typeof rpc.call;
      try {
        return { result: await read(reader), called };
      } finally {
        await reader.close();
      }
    };
    const offline = async <T>(read: (a: Admin) => Promise<T>): Promise<T> => {
      const a = await Admin.open(config, log, true);
      try {
        return await read(a);
      } finally {
        await a.close();
      }
    };
    const rootId = fleet.coordinator.fleet.root.documentId;

    const h1Row = (await fleet.admin.fleet()).agents.find((a) => a.hostname === 'h1')!;
    const presence = fleet.coordinator.fleet.presence;
    await waitFor('h1 volatile facts at the coordinator', () =>
      Promise.resolve(presence.volatileOf(h1Row.nodeId) !== null),
    );
    const first = await command((a) => a.facts('h1'));
    // Its volatile facts come with it (the table's presence carries none).
    expect(first.result.volatile?.load).toHaveLength(3);
    expect(first.called.sort()).toEqual([docFetch.name, fleetAgent.name]);
    const h1 = first.result.agent.nodeId;
    expect(first.result.agent.online).toBe(true);
    expect(first.result.agent.hostname).toBe('h1');
    expect(first.result.facts?.hostname).toBe('h1');
    expect(first.result.unverified).toBe(false);
    // No root in the replica, no table: the agent read is kept in reads.json.
    const store = await FsStore.open(`${config.stateDir}/repo`);
    try {
      const docs = new Set((await store.loadRange([])).map((c) => c.key[0]));
      expect(docs.has(rootId)).toBe(false);
      expect(docs.has(first.result.agent.factsDocId)).toBe(true);
    } finally {
      await store.close();
    }
    expect(await rejectedCode(loadReplicaInfo(config.stateDir))).toBe('BAD_ARGUMENT');
    const reads = await loadReads(config.stateDir);
    expect(reads?.rootDocId).toBe(rootId);
    expect(reads?.agents.map((r) => [r.presence.nodeId, r.asOf])).toEqual([
      [h1, first.result.asOf],
    ]);

    // Offline: what was read, and only that (no table to list).
    const kept = await offline((a) => a.facts(h1.slice(0, 12)));
    expect(kept.facts).toEqual(first.result.facts);
    expect(kept.asOf).toBe(first.result.asOf);
    expect(kept.agent.online).toBeNull();
    expect(kept.volatile).toEqual(first.result.volatile);
    expect(await rejectedCode(offline((a) => a.facts('h0')))).toBe('NOT_FOUND');
    expect(await rejectedCode(offline((a) => a.fleet()))).toBe('BAD_ARGUMENT');

    // The table, then h1 again: offline, the newer of the two answers for h1.
    const table = await command((a) => a.fleet());
    expect(table.called).toContain(fleetInfo.name);
    const again = await command((a) => a.facts('h1'));
    expect(again.called).not.toContain(fleetInfo.name);
    const replica = await loadReplicaInfo(config.stateDir);
    expect(again.result.asOf > replica.asOf).toBe(true);
    expect((await offline((a) => a.facts('h1'))).asOf).toBe(again.result.asOf);
    expect((await offline((a) => a.fleet())).asOf).toBe(replica.asOf);

    // A coordinator before fleet.agent and fleet.online: the root and all presence, as before.
    const older = await command((a) => a.facts('h1'), [fleetAgent.name, fleetOnline.name]);
    expect(older.called).toContain(fleetInfo.name);
    expect(older.called).toContain(fleetPresence.name);
    expect(older.result.agent.online).toBe(true);
    expect(older.result.facts?.hostname).toBe('h1');

    // The coordinator resolves the name as facts always did; errors come back as they are.
    expect(await rejectedCode(command((a) => a.facts('no-such-host')))).toBe('NOT_FOUND');

    // Another root under the same coordinator than the state dir pinned: refused, nothing kept.
    const other = await localConfig(`${dir.path}/admin4`, {
      coordinator: fleet.coordinator.ticket,
    });
    await fleet.admin.submit({
      op: 'admin.add',
      node: (await loadOrCreateNodeKey(other.stateDir)).key.nodeId,
    });
    const pinned = { coordinator: fleet.coordinator.node.key.nodeId, rootDocId: 'elsewhere' };
    await writeFile(`${other.stateDir}/reads.json`, JSON.stringify({ ...pinned, agents: [] }));
    const reader = await Admin.open(other, log, false, { reads: true });
    try {
      expect(await rejectedCode(reader.facts('h1'))).toBe('WRONG_FLEET');
    } finally {
      await reader.close();
    }
    expect((await loadReads(other.stateDir))?.rootDocId).toBe('elsewhere');

    // For admins only.
    const stranger = await bindLocal(randomBytes(32));
    const rpc = new RpcChannel(stranger, parsePeerAddress(fleet.coordinator.ticket), {
      timeoutMs: 10_000,
    });
    try {
      expect(await rejectedCode(rpc.call(fleetAgent, { query: 'h1' }))).toBe('NOT_ADMIN');
    } finally {
      rpc.close();
      await stranger.close();
    }
  });

  it("the table's presence comes by fleet.online: what fleet.presence says, without volatile facts, agents with nothing beyond their record left out", async () => {
    const reader = await Admin.open(
      await localConfig(`${dir.path}/admin3`, { coordinator: fleet.coordinator.ticket }),
      log,
      false,
      { reads: true },
    );
    try {
      const rpc = (reader as unknown as { rpc: RpcChannel }).rpc;
      // One after the other: fleet.presence's answer is the later one.
      const short = await rpc.call(fleetOnline, {});
      const full = await rpc.call(fleetPresence, {});
      const seen = new Map(full.agents.map((p) => [p.nodeId, p]));
      const told = presenceOfOnline(short);
      expect(told.length).toBeGreaterThan(0);
      for (const p of told) {
        const same = seen.get(p.nodeId)!;
        expect(p.online).toBe(same.online);
        expect(p.volatile).toBeNull();
        // fleet.presence answered later: it heard the agent then or since.
        expect(p.lastSeen === null || p.lastSeen <= same.lastSeen!).toBe(true);
      }
      const left = full.agents.filter((p) => !told.some((t) => t.nodeId === p.nodeId));
      for (const p of left) expect(p.online).toBe(false);
      // A `now` that is no time is the coordinator's BAD_MESSAGE, not a crash.
      const bad = { now: 'yesterday', agents: [[told[0]!.nodeId, true, 5, false]] };
      expect(thrownCode(() => presenceOfOnline(bad as typeof short))).toBe('BAD_MESSAGE');
    } finally {
      await reader.close();
    }
  });

  it('doc.fetch is for admins only', async () => {
    const stranger = await bindLocal(randomBytes(32));
    const rpc = new RpcChannel(stranger, parsePeerAddress(fleet.coordinator.ticket), {
      timeoutMs: 10_000,
    });
    try {
      const docId = fleet.coordinator.fleet.root.documentId;
      expect(await rejectedCode(rpc.call(docFetch, { docId, have: [] }))).toBe('NOT_ADMIN');
    } finally {
      rpc.close();
      await stranger.close();
    }
  });
});
