// The coordinator's side of deployments (issue 11): deploy.submit records admin-signed parts in
// the audit trail and places each in its targets' desired documents only; the admins document
// follows admin.add / admin.remove; agents' status heads are verified and summarized into the
// root document (not from a forked agent); labels are mirrored into root records. Agents here are
// test-made peers (their own iroh endpoint and Repo) enrolled the way an agent enrolls, so that
// what they receive is what the coordinator offers. In one process, real endpoints on 127.0.0.1.

import { cpSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as A from '@automerge/automerge';
import { Repo, type DocHandle, type DocumentId, type PeerId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { createLogger } from '../sync/log.js';
import { OwnedDoc, docIdFor, type SignedHeads } from '../sync/owned-doc.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import type { Transport } from '../sync/transport.js';
import {
  ADMINS_KEY,
  STATUS_KEY,
  agentsOf,
  decodeAdmins,
  encodeDesired,
  readDesired,
  statusBase,
  writeDeployment,
  writeSystem,
  type AdminsDoc,
  type DesiredDoc,
  type StatusDoc,
} from '../src/docs/types.js';
import { collectVolatile } from '../src/facts/index.js';
import {
  deriveKeyPair,
  loadOrCreateNodeKey,
  nodeKeyFromSeed,
  type NodeKey,
} from '../src/identity/index.js';
import { Coordinator } from '../src/roles/coordinator.js';
import { REPLACE_STORM } from '../src/roles/fleet.js';
import {
  agentEnroll,
  agentHeartbeat,
  deploySubmit,
  docsHeads,
  fleetAudit,
} from '../src/rpc-methods.js';
import { signDeployment, type SignedPart } from '../src/trust/deployment.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';
import { MemoryStore } from '../stores/memory-store.js';

const log = createLogger('error', 'fleet', () => undefined);
const STORE_A = `/nix/store/${'a'.repeat(32)}-system-a`;
const STORE_B = `/nix/store/${'b'.repeat(32)}-system-b`;
const DAY = 86_400_000;

/** An agent made by the test: its own endpoint and Repo, enrolled with facts and status keys. */
interface FakeAgent {
  key: NodeKey;
  id: NodeId;
  rpc: RpcChannel;
  repo: Repo;
  status: OwnedDoc<StatusDoc>;
  enrolled: Awaited<ReturnType<typeof agentEnroll.response>>;
  /** Sends a heartbeat with the status document's signed heads now. */
  heartbeat(): Promise<SignedHeads>;
  close(): Promise<void>;
}

async function fakeAgent(ticket: string, token: string): Promise<FakeAgent> {
  const key = nodeKeyFromSeed(randomBytes(32));
  const transport = await bindLocal(key.secret);
  const coordinator = parsePeerAddress(ticket);
  const rpc = new RpcChannel(transport, coordinator, { timeoutMs: 10_000 });
  const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  const statusKey = deriveKeyPair(key.secret, STATUS_KEY);
  const enrolled = await rpc.call(agentEnroll, {
    factsDocId: docIdFor(facts.publicKey),
    factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
    statusDocId: docIdFor(statusKey.publicKey),
    statusWriteKey: Buffer.from(statusKey.publicKey).toString('hex'),
    token,
  });
  const adapter = new SyncAdapter({ transport, backoff: { initialMs: 50, maxMs: 200 } });
  new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
  const repo = new Repo({ network: [adapter], peerId: key.nodeId as string as PeerId });
  const status = new OwnedDoc<StatusDoc>(statusKey);
  await status.open(repo, new MemoryStore(), statusBase(key.nodeId));
  adapter.addPeer(coordinator);
  return {
    key,
    id: key.nodeId,
    rpc,
    repo,
    status,
    enrolled,
    async heartbeat() {
      const signed = status.signed();
      await rpc.call(agentHeartbeat, { volatile: await collectVolatile(), statusHeads: signed });
      return signed;
    },
    async close() {
      rpc.close();
      await repo.shutdown();
      await transport.close();
    },
  };
}

/** Writes one status change as the agent does (system + one deployment record). */
function writeStatus(agent: FakeAgent, current: string, id: string, state: 'succeeded' | 'failed') {
  agent.status.opened().change((d) => {
    writeSystem(d, {
      activator: 'command',
      current,
      booted: null,
      profile: null,
      generation: null,
      rebootNeeded: null,
      hwm: 1,
      at: new Date().toISOString(),
    });
    writeDeployment(d, {
      id,
      seq: 1,
      storePath: current,
      action: 'switch',
      signer: null,
      state,
      ...(state === 'failed' ? { code: 'ACTIVATION_FAILED' as const } : {}),
      times: { received: new Date().toISOString() },
    });
  });
}

async function code(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'answered',
    (err: unknown) => (err instanceof FltError ? err.code : String(err)),
  );
}

describe('deployments on the coordinator', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let coordinator: Coordinator;
  let admin: NodeKey;
  /** A second admin (added by the first) calling rpc from its own endpoint. */
  let admin2: NodeKey;
  let adminRpc: RpcChannel;
  let fleetId: string;
  let a1: FakeAgent;
  let a2: FakeAgent;
  const closers: (() => Promise<void>)[] = [];

  const sign = (targets: [NodeId, number][], opts: { storePath?: string; now?: Date } = {}) =>
    signDeployment(
      {
        targets: new Map(targets),
        storePath: opts.storePath ?? STORE_A,
        action: 'switch',
        expiresInMs: DAY,
      },
      fleetId,
      admin,
      opts.now,
    );
  const submit = (parts: readonly SignedPart[]) =>
    adminRpc.call(deploySubmit, { parts: [...parts] });
  const entries = () => coordinator.gate.trail().entries as { kind: string }[];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    coordinator = fleet.coordinator;
    fleetId = coordinator.fleet.root.documentId;
    admin = (await loadOrCreateNodeKey(`${dir.path}/admin`)).key;
    admin2 = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'admin.add', node: admin2.nodeId });
    const transport: Transport = await bindLocal(admin2.secret);
    closers.push(() => transport.close());
    adminRpc = new RpcChannel(transport, parsePeerAddress(coordinator.ticket), {
      timeoutMs: 10_000,
    });
    a1 = await fakeAgent(coordinator.ticket, (await fleet.admin.enrollToken(60_000)).token);
    a2 = await fakeAgent(coordinator.ticket, (await fleet.admin.enrollToken(60_000)).token);
    closers.push(
      () => a1.close(),
      () => a2.close(),
    );
  });

  afterAll(async () => {
    adminRpc?.close();
    await Promise.allSettled(closers.map((c) => c()));
    await fleet?.close();
    await dir?.remove();
  });

  it('enroll records the status document and answers the desired and admins documents', () => {
    for (const a of [a1, a2]) {
      const entry = coordinator.fleet.agent(a.id)!;
      expect(entry.statusDocId).toBe(a.status.docId);
      expect(entry.statusWriteKey).toBe(a.status.writeKey);
      expect(a.enrolled.desiredDocId).toBe(coordinator.deployments.desiredOf(a.id).docId);
      expect(entry.desiredDocId).toBe(a.enrolled.desiredDocId);
      expect(a.enrolled.adminsDocId).toBe(coordinator.gate.adminsDoc.documentId);
      expect(a.enrolled.statusKnown).toBe(false);
    }
    expect(a1.enrolled.desiredDocId).not.toBe(a2.enrolled.desiredDocId);
    // Admins find the admins document through the root document.
    expect(coordinator.fleet.root.doc().adminsDocId?.val).toBe(a1.enrolled.adminsDocId);
  });

  it('an agent enrolled without a status document (before issue 11) gets it on its next enroll', async () => {
    const key = nodeKeyFromSeed(randomBytes(32));
    const transport = await bindLocal(key.secret);
    closers.push(() => transport.close());
    const rpc = new RpcChannel(transport, parsePeerAddress(coordinator.ticket), {
      timeoutMs: 10_000,
    });
    const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
    const old = {
      factsDocId: docIdFor(facts.publicKey),
      factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
    };
    const { token } = await fleet.admin.enrollToken(60_000);
    const first = await rpc.call(agentEnroll, { ...old, token });
    expect(first.statusKnown).toBeUndefined();
    expect(coordinator.fleet.agent(key.nodeId)?.statusDocId).toBeUndefined();
    const status = deriveKeyPair(key.secret, STATUS_KEY);
    const statusDocId = docIdFor(status.publicKey);
    const statusWriteKey = Buffer.from(status.publicKey).toString('hex');
    // Half of the pair, or a key that does not own the id: refused, nothing recorded.
    expect(await code(rpc.call(agentEnroll, { ...old, statusDocId }))).toBe('BAD_ARGUMENT');
    const other = Buffer.from(deriveKeyPair(randomBytes(32), STATUS_KEY).publicKey).toString('hex');
    expect(await code(rpc.call(agentEnroll, { ...old, statusDocId, statusWriteKey: other }))).toBe(
      'BAD_ARGUMENT',
    );
    expect(coordinator.fleet.agent(key.nodeId)?.statusDocId).toBeUndefined();
    const next = await rpc.call(agentEnroll, { ...old, statusDocId, statusWriteKey });
    expect(next).toMatchObject({ desiredDocId: first.desiredDocId, statusKnown: false });
    const entry = coordinator.fleet.agent(key.nodeId)!;
    expect([entry.statusDocId, entry.statusWriteKey]).toEqual([statusDocId, statusWriteKey]);
    expect(entry.enrolledAt).toBe(first.enrolledAt);
    rpc.close();
  });

  it("an agent cannot name the coordinator's documents or another agent's as its own", async () => {
    const key = nodeKeyFromSeed(randomBytes(32));
    const transport = await bindLocal(key.secret);
    closers.push(() => transport.close());
    const rpc = new RpcChannel(transport, parsePeerAddress(coordinator.ticket), {
      timeoutMs: 10_000,
    });
    const asRequest = (k: { publicKey: Uint8Array }) => ({
      docId: docIdFor(k.publicKey),
      writeKey: Buffer.from(k.publicKey).toString('hex'),
    });
    const facts = asRequest(deriveKeyPair(key.secret, 'flt/v1/doc/facts'));
    const status = asRequest(deriveKeyPair(key.secret, STATUS_KEY));
    // The admins document's public key (which agents are never told) and another agent's facts.
    const admins = asRequest(deriveKeyPair(coordinator.node.key.secret, ADMINS_KEY));
    const other = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => other.close());
    const othersFacts = asRequest(deriveKeyPair(other.key.secret, 'flt/v1/doc/facts'));
    const { token } = await fleet.admin.enrollToken(60_000);
    const enroll = (f: typeof facts, st: typeof status) =>
      rpc.call(agentEnroll, {
        factsDocId: f.docId,
        factsWriteKey: f.writeKey,
        statusDocId: st.docId,
        statusWriteKey: st.writeKey,
        token,
      });
    expect(await code(enroll(facts, admins))).toBe('BAD_ARGUMENT');
    expect(await code(enroll(othersFacts, status))).toBe('BAD_ARGUMENT');
    expect(coordinator.fleet.agent(key.nodeId)).toBeUndefined();
    // Refused before the token was spent: the same token enrolls it with its own documents.
    const ok = await enroll(facts, status);
    expect(ok.known).toBe(false);
    expect(coordinator.fleet.agent(key.nodeId)?.statusDocId).toBe(status.docId);
    rpc.close();
  });

  it('admin.add and admin.remove are in the admins document, which agents receive', async () => {
    const extra = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'admin.add', node: extra.nodeId });
    await fleet.admin.submit({ op: 'admin.remove', node: extra.nodeId });
    // Other ops are not membership: not in it.
    await fleet.admin.enrollToken(60_000);
    const content = decodeAdmins(coordinator.gate.adminsDoc.doc());
    expect(content.fleet).toBe(fleetId);
    expect(content.initialAdmins).toEqual([admin.nodeId]);
    const bodies = content.ops.map((o) => (o as { body: { op: string; node: string } }).body);
    expect(bodies).toEqual([
      { op: 'admin.add', node: admin2.nodeId },
      { op: 'admin.add', node: extra.nodeId },
      { op: 'admin.remove', node: extra.nodeId },
    ]);
    expect(coordinator.gate.adminOps).toBe(3);
    // The agent's copy: synced from the coordinator, the same ops.
    const handle = await a1.repo.find<AdminsDoc>(a1.enrolled.adminsDocId as DocumentId);
    await waitFor('3 admin ops at the agent', () => handle.doc().ops.length === 3);
    expect(decodeAdmins(handle.doc()).ops).toEqual(content.ops);
  });

  it('deploy.submit records the part and places it in the targeted agent only', async () => {
    const stranger = nodeKeyFromSeed(randomBytes(32)).nodeId;
    const before = entries().length;
    const parts = sign([
      [a1.id, 10],
      [stranger, 10],
    ]);
    const answer = await submit(parts);
    expect(answer).toEqual({ index: before, placed: [a1.id], stale: [], unknown: [stranger] });
    expect(entries().length).toBe(before + 1);
    expect(entries()[before]).toEqual({ kind: 'deploy', part: parts[0] });
    // The root summaries: a1 has it, a2 nothing.
    const records = new Map(agentsOf(coordinator.fleet.root.doc()).map((e) => [e.nodeId, e]));
    expect(records.get(a1.id)?.desired).toEqual({
      id: parts[0]!.id,
      seq: 10,
      storePath: STORE_A,
      action: 'switch',
    });
    expect(records.get(a2.id)?.desired).toBeUndefined();
    // a1 receives its desired document with the part and the admins op count.
    const mine = await a1.repo.find<DesiredDoc>(a1.enrolled.desiredDocId as DocumentId);
    const got = await waitFor('the part at a1', () => readDesired(mine.doc(), fleetId) ?? false);
    expect(got).toEqual({ part: parts[0], adminOps: 3 });
    // a2's own desired document is empty, and a1's is not given to it.
    const its = await a2.repo.find<DesiredDoc>(a2.enrolled.desiredDocId as DocumentId);
    expect(readDesired(its.doc())).toBeNull();
    await expect(a2.repo.find(a1.enrolled.desiredDocId as DocumentId)).rejects.toThrow();
    expect(coordinator.fleet.offers(a2.id, a1.enrolled.desiredDocId as DocumentId)).toBe(false);
    expect(coordinator.fleet.offers(a2.id, a1.status.docId)).toBe(false);
    expect(coordinator.fleet.offers(a2.id, coordinator.gate.audit.documentId)).toBe(false);
    expect(coordinator.fleet.offers(a2.id, coordinator.fleet.root.documentId)).toBe(false);
    // docs.heads answers what the coordinator holds, null for what it does not.
    const unknownDoc = docIdFor(randomBytes(32));
    const { heads } = await adminRpc.call(docsHeads, {
      docIds: [a1.enrolled.desiredDocId!, unknownDoc],
    });
    expect(heads[a1.enrolled.desiredDocId!]).toEqual(A.getHeads(mine.doc()));
    expect(heads[unknownDoc]).toBeNull();
  });

  it('a resubmitted part records nothing and answers the same; a lower seq is stale', async () => {
    const parts = sign([[a2.id, 20]]);
    const first = await submit(parts);
    const size = entries().length;
    const again = await submit(parts);
    expect(again).toEqual(first);
    expect(again.placed).toEqual([a2.id]);
    expect(entries().length).toBe(size);
    const desired = (await coordinator.deployments.open(a2.id)).doc().current?.val;
    // Another deployment with a lower seq: recorded (admin-signed) but not placed.
    const older = sign([[a2.id, 19]], { storePath: STORE_B });
    expect(await submit(older)).toEqual({ index: size, placed: [], stale: [a2.id], unknown: [] });
    expect((await coordinator.deployments.open(a2.id)).doc().current?.val).toBe(desired);
    expect(coordinator.fleet.agent(a2.id)?.desired?.seq).toBe(20);
  });

  it('refuses, recording nothing: a non-admin caller, a non-admin signer, an expired part', async () => {
    const size = entries().length;
    // An agent calling deploy.submit: the rpc gate refuses it.
    const parts = sign([[a1.id, 30]]);
    expect(await code(a1.rpc.call(deploySubmit, { parts: [...parts] }))).toBe('NOT_ADMIN');
    // A part signed by someone who is not an admin (here an agent's key).
    const forged = signDeployment(
      { targets: new Map([[a1.id, 31]]), storePath: STORE_A, action: 'switch', expiresInMs: DAY },
      fleetId,
      a2.key,
    );
    expect(await code(submit([...parts, ...forged]))).toBe('NOT_ADMIN');
    const expired = sign([[a1.id, 32]], { now: new Date(Date.now() - 2 * DAY) });
    expect(await code(submit(expired))).toBe('DEPLOYMENT_EXPIRED');
    const flipped = {
      ...parts[0]!,
      sig: parts[0]!.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')),
    };
    expect(await code(submit([flipped]))).toBe('BAD_SIGNATURE');
    expect(entries().length).toBe(size);
    expect(coordinator.fleet.agent(a1.id)?.desired?.seq).toBe(10);
  });

  it('a label op is mirrored into the agent root record', async () => {
    await fleet.admin.submit({ op: 'agent.label', node: a1.id, labels: { role: 'web' } });
    const record = () => agentsOf(coordinator.fleet.root.doc()).find((e) => e.nodeId === a1.id);
    expect(record()?.labels).toEqual({ role: 'web' });
    await fleet.admin.submit({ op: 'agent.label', node: a1.id, labels: { role: null } });
    expect(record()?.labels).toBeUndefined();
  });

  it('status heads are recorded and the deploy summary follows the status document', async () => {
    writeStatus(a1, STORE_A, 'aa'.repeat(16), 'succeeded');
    const signed = await a1.heartbeat();
    const entry = await waitFor('status heads recorded', () => {
      const e = coordinator.fleet.agent(a1.id);
      return (e?.statusHeads as SignedHeads | undefined)?.sig === signed.sig && e;
    });
    expect(entry.deploy).toEqual({
      current: STORE_A,
      booted: null,
      rebootNeeded: null,
      last: { id: 'aa'.repeat(16), state: 'succeeded' },
    });
    // Heads whose signature does not verify are refused, and change nothing.
    expect(
      await code(
        a1.rpc.call(agentHeartbeat, {
          volatile: await collectVolatile(),
          statusHeads: {
            ...signed,
            sig: (signed.sig[0] === '0' ? '1' : '0') + signed.sig.slice(1),
          },
        }),
      ),
    ).toBe('BAD_SIGNATURE');
    expect(coordinator.fleet.agent(a1.id)?.statusHeads).toEqual(signed);
  });

  it("a forked agent's status changes are dropped", async () => {
    const id = a1.id;
    for (let i = 0; i < REPLACE_STORM; i++) coordinator.fleet.replaced(id);
    expect(coordinator.fleet.agent(id)?.forked).toBeTruthy();
    const held = coordinator.fleet.agent(id)!;
    const refused = coordinator.fleet.refusedFrom(id);
    writeStatus(a1, STORE_B, 'bb'.repeat(16), 'failed');
    await a1.heartbeat();
    await waitFor('a change refused', () => coordinator.fleet.refusedFrom(id) > refused);
    const now = coordinator.fleet.agent(id)!;
    expect(now.statusHeads).toEqual(held.statusHeads);
    expect(now.deploy).toEqual(held.deploy);
    const copy = coordinator.node.repo!.handles[a1.status.docId] as
      | DocHandle<StatusDoc>
      | undefined;
    expect(copy?.doc().deployments['bb'.repeat(16)]).toBeUndefined();
  });
});

describe('a deployment the coordinator answered survives its crash', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
  });

  afterAll(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    await fleet?.close();
    await dir?.remove();
  });

  it('its state dir as on disk right after an admin.op answer holds the op (trail, admins doc, labels)', async () => {
    const coordinator = fleet.coordinator;
    const agent = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => agent.close());
    const extra = nodeKeyFromSeed(randomBytes(32)).nodeId;
    await fleet.admin.submit({ op: 'admin.add', node: extra });
    await fleet.admin.submit({ op: 'agent.label', node: agent.id, labels: { role: 'db' } });
    // What a SIGKILL right after the answer would leave (see the test below).
    cpSync(`${dir.path}/coordinator`, `${dir.path}/crashed-op`, { recursive: true });
    const again = await Coordinator.start(await localConfig(`${dir.path}/crashed-op`), log);
    closers.push(() => again.close());
    expect(again.gate.admins()).toContain(extra);
    const lastOp = decodeAdmins(again.gate.adminsDoc.doc()).ops.at(-1) as { body: unknown };
    expect(lastOp.body).toEqual({ op: 'admin.add', node: extra });
    expect(again.fleet.agent(agent.id)?.labels).toEqual({ role: 'db' });
  });

  it('a resubmission saves what it answers for, though the first save never completed', async () => {
    const coordinator = fleet.coordinator;
    const fleetId = coordinator.fleet.root.documentId;
    const admin = (await loadOrCreateNodeKey(`${dir.path}/admin`)).key;
    const agent = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => agent.close());
    const parts = signDeployment(
      { targets: new Map([[agent.id, 3]]), storePath: STORE_B, action: 'switch', expiresInMs: DAY },
      fleetId,
      admin,
    );
    // A first submit whose flush failed (ENOSPC): recorded and placed in memory only.
    const handle = await coordinator.deployments.open(agent.id);
    coordinator.gate.recordDeploy(parts[0]);
    handle.change(
      (d) =>
        void (d.current = encodeDesired({ part: parts[0]!, adminOps: coordinator.gate.adminOps })),
    );
    coordinator.fleet.setDesired(agent.id, {
      id: parts[0]!.id,
      seq: 3,
      storePath: STORE_B,
      action: 'switch',
    });
    // The admin's outbox resubmits; "placed" is an acknowledgement, so it is on disk now.
    const answer = await coordinator.deployments.submit(parts, admin.nodeId);
    expect(answer.placed).toEqual([agent.id]);
    cpSync(`${dir.path}/coordinator`, `${dir.path}/crashed-again`, { recursive: true });
    const again = await Coordinator.start(await localConfig(`${dir.path}/crashed-again`), log);
    closers.push(() => again.close());
    expect(again.gate.trail().entries.at(-1)).toEqual({ kind: 'deploy', part: parts[0] });
    const desired = await again.deployments.open(agent.id);
    expect(readDesired(desired.doc(), fleetId)?.part).toEqual(parts[0]);
    expect(again.fleet.agent(agent.id)?.desired?.seq).toBe(3);
  });

  it("submit reads what a target holds from the root summary, not by verifying its desired document's signature", async () => {
    const coordinator = fleet.coordinator;
    const fleetId = coordinator.fleet.root.documentId;
    const admin = (await loadOrCreateNodeKey(`${dir.path}/admin`)).key;
    const agent = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => agent.close());
    // Placed as is (place checks nothing), its signature broken: verifying it again would fail
    // (and read as nothing placed); the summary says seq 9 was placed.
    const spec = (seq: number) => ({
      targets: new Map([[agent.id, seq]]),
      storePath: STORE_A,
      action: 'switch' as const,
      expiresInMs: DAY,
    });
    const placed = signDeployment(spec(9), fleetId, admin)[0]!;
    const broken = { ...placed, sig: placed.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
    await coordinator.deployments.place(agent.id, broken);
    const answer = await coordinator.deployments.submit(
      signDeployment(spec(5), fleetId, admin),
      admin.nodeId,
    );
    expect(answer).toMatchObject({ placed: [], stale: [agent.id] });
  });

  it('a part recorded already is placed again after its signer was removed (NOT_ADMIN only for new parts)', async () => {
    const coordinator = fleet.coordinator;
    const fleetId = coordinator.fleet.root.documentId;
    const agent = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => agent.close());
    const signer = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'admin.add', node: signer.nodeId });
    const spec = (seq: number) => ({
      targets: new Map([[agent.id, seq]]),
      storePath: STORE_A,
      action: 'switch' as const,
      expiresInMs: DAY,
    });
    const parts = signDeployment(spec(4), fleetId, signer);
    const first = await coordinator.deployments.submit(parts, signer.nodeId);
    await fleet.admin.submit({ op: 'admin.remove', node: signer.nodeId });
    // Its answer was lost; the outbox resubmits after the removal: the same answer.
    expect(await coordinator.deployments.submit(parts, signer.nodeId)).toEqual(first);
    // A new part of the removed signer is refused.
    expect(
      await code(
        coordinator.deployments.submit(signDeployment(spec(6), fleetId, signer), signer.nodeId),
      ),
    ).toBe('NOT_ADMIN');
  });

  it('its state dir as on disk right after the answer holds the desired document and summary', async () => {
    const coordinator = fleet.coordinator;
    const fleetId = coordinator.fleet.root.documentId;
    const admin = (await loadOrCreateNodeKey(`${dir.path}/admin`)).key;
    const agent = await fakeAgent(
      coordinator.ticket,
      (await fleet.admin.enrollToken(60_000)).token,
    );
    closers.push(() => agent.close());
    const parts = signDeployment(
      { targets: new Map([[agent.id, 7]]), storePath: STORE_A, action: 'boot', expiresInMs: DAY },
      fleetId,
      admin,
    );
    // The first admin's own endpoint is in use by fleet.admin: submit through the Deployments
    // the rpc handler calls (the rpc path is covered above).
    const answer = await coordinator.deployments.submit(parts, admin.nodeId);
    expect(answer.placed).toEqual([agent.id]);
    // What a SIGKILL right now would leave: the files as they are, copied before the event loop
    // runs again (nothing more is saved meanwhile).
    cpSync(`${dir.path}/coordinator`, `${dir.path}/crashed`, { recursive: true });
    const again = await Coordinator.start(await localConfig(`${dir.path}/crashed`), log);
    closers.push(() => again.close());
    expect(again.fleet.root.documentId).toBe(fleetId);
    const desired = await again.deployments.open(agent.id);
    expect(readDesired(desired.doc(), fleetId)?.part).toEqual(parts[0]);
    expect(again.fleet.agent(agent.id)?.desired?.seq).toBe(7);
    expect(again.gate.trail().entries.at(-1)).toEqual({ kind: 'deploy', part: parts[0] });
    // The same part again after the restart: nothing recorded twice, still placed.
    const size = again.gate.size;
    expect((await again.deployments.submit(parts, admin.nodeId)).placed).toEqual([agent.id]);
    expect(again.gate.size).toBe(size);
  });
});

describe('a revoked agent is no target', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
  });

  afterAll(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    await fleet?.close();
    await dir?.remove();
  });

  it('revoking one of 3 agents: deploy --all and --label leave it out; naming it is BAD_ARGUMENT', async () => {
    const coordinator = fleet.coordinator;
    const agents: FakeAgent[] = [];
    for (let i = 0; i < 3; i++) {
      const a = await fakeAgent(coordinator.ticket, (await fleet.admin.enrollToken(60_000)).token);
      closers.push(() => a.close());
      agents.push(a);
      await fleet.admin.submit({ op: 'agent.label', node: a.id, labels: { role: 'web' } });
    }
    const [kept1, kept2, gone] = agents as [FakeAgent, FakeAgent, FakeAgent];
    await fleet.admin.submit({ op: 'agent.revoke', node: gone.id });
    expect(coordinator.fleet.agent(gone.id)?.revoked).toBe(true);
    const kept = [kept1.id, kept2.id].sort();
    const deploy = (q: { words?: string[]; all?: boolean; labels?: [string, string][] }) =>
      fleet.admin.deploy({
        words: q.words ?? [],
        all: q.all ?? false,
        labels: q.labels ?? [],
        storePath: STORE_A,
        action: 'switch',
        expiresInMs: DAY,
      });
    const all = await deploy({ all: true });
    expect(all.targets).toEqual(kept);
    expect(all.sent?.answer).toMatchObject({ placed: kept, stale: [], unknown: [] });
    const web = await deploy({ labels: [['role', 'web']] });
    expect(web.targets).toEqual(kept);
    expect(await code(deploy({ words: [gone.id] }))).toBe('BAD_ARGUMENT');
    // approve undoes it: the mark goes.
    await fleet.admin.submit({ op: 'agent.approve', node: gone.id });
    expect(coordinator.fleet.agent(gone.id)?.revoked).toBeUndefined();
  });
});

describe('fleet.audit pages', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let rpc: RpcChannel;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    const extra = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'admin.add', node: extra.nodeId });
    const transport = await bindLocal(extra.secret);
    closers.push(() => transport.close());
    rpc = new RpcChannel(transport, parsePeerAddress(fleet.coordinator.ticket), {
      timeoutMs: 10_000,
    });
  });

  afterAll(async () => {
    rpc?.close();
    await Promise.allSettled(closers.map((c) => c()));
    await fleet?.close();
    await dir?.remove();
  });

  it('answers {from, limit} pages with the total; the admin keeps the trail and fetches what follows', async () => {
    const gate = fleet.coordinator.gate;
    for (let i = 0; i < 4; i++) await fleet.admin.enrollToken(60_000);
    const all = gate.trail().entries;
    expect(all.length).toBeGreaterThanOrEqual(5);
    const page = await rpc.call(fleetAudit, { from: 1, limit: 2 });
    expect(page.entries).toEqual(all.slice(1, 3));
    expect(page.total).toBe(all.length);
    expect((await rpc.call(fleetAudit, { from: all.length })).entries).toEqual([]);
    // A page ends at its byte bound, with one entry at least.
    expect(gate.trailPage(0, 100, 1).entries).toEqual(all.slice(0, 1));
    // Without either field: all of it (admins before paging).
    expect((await rpc.call(fleetAudit, {})).entries).toEqual(all);
    const kept = () =>
      (JSON.parse(readFileSync(`${dir.path}/admin/audit.json`, 'utf8')) as { entries: unknown[] })
        .entries;
    await fleet.admin.deployments();
    expect(kept()).toEqual(all);
    await fleet.admin.enrollToken(60_000);
    await fleet.admin.deployments();
    expect(kept()).toEqual(gate.trail().entries);
    expect((await fleet.admin.audit()).entries).toHaveLength(gate.size);
  });
});
