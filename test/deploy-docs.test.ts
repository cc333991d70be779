// The documents of deployments (src/docs/{desired,status,outbox}.ts, root record fields) and
// their rpc schemas: readers take them from peers, so garbage is refused or skipped, records
// are bounded, and older records and requests still read.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { thrownCode } from './helpers/errors.js';
import { collectVolatile } from '../src/facts/index.js';
import { generateNodeKey } from '../src/identity/index.js';
import {
  MAX_SENT_IDS,
  MAX_SENT_RECORDS,
  MAX_STATUS_RECORDS,
  decodeAgent,
  decodeDeployment,
  desiredBase,
  encodeAgent,
  encodeDesired,
  outboxBase,
  readDesired,
  readOutbox,
  readStatus,
  rootAdminsDocId,
  statusBase,
  writeDeployment,
  writeQueued,
  writeSent,
  writeSystem,
  type AgentEntry,
  type DeploymentStatus,
  type DesiredDoc,
  type OutboxDoc,
  type StatusDoc,
  type SystemStatus,
} from '../src/docs/types.js';
import { signDeployment } from '../src/trust/deployment.js';
import { agentEnroll, agentHeartbeat, deploySubmit, docsHeads } from '../src/rpc-methods.js';

/** A document from its base (A.from wants an index signature the doc types do not have). */
const fromBase = <T extends object>(base: T) =>
  A.from(base as unknown as Record<string, unknown>) as unknown as A.Doc<T>;
const FLEET = '4Nq7bP2xYzR1cVw9kLmT3sHdFgJa';
const T0 = new Date('2030-01-01T00:00:00.000Z');
const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web';
const ADMIN = generateNodeKey();
const AGENT = generateNodeKey().nodeId;
const part = (seq = 5) =>
  signDeployment(
    { targets: new Map([[AGENT, seq]]), storePath: PATH, action: 'switch', expiresInMs: 3_600_000 },
    FLEET,
    ADMIN,
    T0,
  )[0]!;

describe('desired documents', () => {
  it('hold one verified part and the admin op count', () => {
    const p = part();
    const empty = fromBase<DesiredDoc>(desiredBase(AGENT));
    expect(readDesired(empty, FLEET)).toBeNull();
    const doc = A.change(empty, (d) => void (d.current = encodeDesired({ part: p, adminOps: 3 })));
    const back = readDesired(A.load<DesiredDoc>(A.save(doc)), FLEET);
    expect(back).toEqual({ part: p, adminOps: 3 });
    expect(thrownCode(() => readDesired(doc, 'otherFleet'))).toBe('WRONG_FLEET');
  });

  it('refuse a malformed record with BAD_DEPLOYMENT', () => {
    const p = part();
    const code = (current: unknown) => thrownCode(() => readDesired({ current }, FLEET));
    expect(code('{')).toBe('BAD_DEPLOYMENT');
    expect(code(5)).toBe('BAD_DEPLOYMENT');
    expect(code(JSON.stringify({ part: p }))).toBe('BAD_DEPLOYMENT');
    expect(code(JSON.stringify({ part: p, adminOps: -1 }))).toBe('BAD_DEPLOYMENT');
    expect(code(JSON.stringify({ part: p, adminOps: 0, x: 1 }))).toBe('BAD_DEPLOYMENT');
    expect(code(JSON.stringify({ part: { ...p, v: 2 }, adminOps: 0 }))).toBe('BAD_DEPLOYMENT');
    expect(code('x'.repeat(20_000))).toBe('BAD_DEPLOYMENT');
    expect(code(JSON.stringify({ part: { ...p, sig: '00'.repeat(64) }, adminOps: 0 }))).toBe(
      'BAD_SIGNATURE',
    );
    expect(thrownCode(() => readDesired(null))).toBe('BAD_DEPLOYMENT');
  });
});

describe('status documents', () => {
  const record = (i: number, over: Partial<DeploymentStatus> = {}): DeploymentStatus => ({
    id: i.toString(16).padStart(32, '0'),
    seq: 100 + i,
    storePath: PATH,
    action: 'switch',
    signer: ADMIN.nodeId,
    state: 'succeeded',
    times: { received: new Date(T0.getTime() + i * 1000).toISOString() },
    ...over,
  });
  const system: SystemStatus = {
    activator: 'profile',
    current: PATH,
    booted: null,
    profile: PATH,
    generation: 3,
    rebootNeeded: null,
    hwm: 105,
    at: T0.toISOString(),
  };

  it('round-trip records and the system, newest first, keeping the 20 newest', () => {
    let doc = fromBase<StatusDoc>(statusBase(AGENT));
    doc = A.change(doc, (d) => writeSystem(d, system));
    for (let i = 0; i < MAX_STATUS_RECORDS + 5; i++)
      doc = A.change(doc, (d) => writeDeployment(d, record(i)));
    const refused = record(99, {
      state: 'refused',
      code: 'SEQ_NOT_NEWER',
      reason: 'r'.repeat(5000),
      log: 'l'.repeat(10_000),
    });
    doc = A.change(doc, (d) => writeDeployment(d, refused));
    const content = readStatus(A.load<StatusDoc>(A.save(doc)));
    expect(content.system).toEqual(system);
    expect(content.deployments).toHaveLength(MAX_STATUS_RECORDS);
    expect(content.deployments[0]!.id).toBe(refused.id);
    expect(content.deployments[0]!.reason).toHaveLength(1024);
    expect(content.deployments[0]!.log).toHaveLength(4096);
    expect(content.deployments[1]).toEqual(record(MAX_STATUS_RECORDS + 4));
    expect(content.deployments.at(-1)!.id).toBe(record(6).id);
  });

  it('skip garbage and refuse to write an invalid record', () => {
    const good = JSON.stringify(record(1));
    expect(decodeDeployment(good)).toEqual(record(1));
    for (const bad of [
      null,
      '{',
      '[]',
      JSON.stringify({ ...record(1), state: 'done' }),
      JSON.stringify({ ...record(1), code: 'NOPE' }),
      JSON.stringify({ ...record(1), seq: -1 }),
      JSON.stringify({ ...record(1), id: 'X' }),
      JSON.stringify({ ...record(1), signer: 'x' }),
      JSON.stringify({ ...record(1), action: 'reboot' }),
      JSON.stringify({ ...record(1), times: { received: 'yesterday' } }),
      JSON.stringify({ ...record(1), times: { other: T0.toISOString() } }),
      JSON.stringify({ ...record(1), log: 'x'.repeat(5000) }),
      'x'.repeat(10_000),
    ])
      expect(decodeDeployment(bad)).toBeUndefined();
    const doc = fromBase<StatusDoc>(statusBase(AGENT));
    expect(() => A.change(doc, (d) => writeDeployment(d, record(1, { seq: -2 })))).toThrow(
      TypeError,
    );
    // A record under another key than its id, and a bad system, are skipped.
    const content = readStatus({
      system: JSON.stringify({ ...system, hwm: 'x' }),
      deployments: { other: good, [record(1).id]: good, [record(2).id]: 'garbage' },
    });
    expect(content).toEqual({ system: null, deployments: [record(1)] });
    expect(readStatus(null)).toEqual({ system: null, deployments: [] });
  });
});

describe('outbox documents', () => {
  it('queue signed parts, move them to sent, keep lastSeq', () => {
    const p = part();
    let doc = fromBase<OutboxDoc>(outboxBase(ADMIN.nodeId));
    doc = A.change(doc, (d) =>
      writeQueued(d, { id: p.id, parts: [p], queuedAt: T0.toISOString() }, 42),
    );
    let content = readOutbox(A.load<OutboxDoc>(A.save(doc)), FLEET);
    expect(content.lastSeq).toBe(42);
    expect(content.queued).toEqual([{ id: p.id, parts: [p], queuedAt: T0.toISOString() }]);
    doc = A.change(doc, (d) =>
      writeSent(d, {
        id: p.id,
        storePath: PATH,
        action: 'switch',
        targets: 1,
        queuedAt: T0.toISOString(),
        sentAt: T0.toISOString(),
        error: { code: 'NOT_ADMIN', message: 'no' },
      }),
    );
    content = readOutbox(doc, FLEET);
    expect(content.queued).toEqual([]);
    expect(content.sent[0]).toMatchObject({ id: p.id, error: { code: 'NOT_ADMIN' } });
    // A queued record whose part was tampered with is skipped.
    const bad = { queued: { x: JSON.stringify({ id: p.id, parts: [{ ...p, seq: 1 }] }) } };
    expect(readOutbox(bad).queued).toEqual([]);
  });
});

describe('outbox sent records stay bounded', () => {
  it('keeps counts and at most MAX_SENT_IDS ids per list, and only the newest MAX_SENT_RECORDS records', () => {
    const ids = Array.from({ length: 300 }, () => generateNodeKey().nodeId);
    let doc = fromBase<OutboxDoc>(outboxBase(ADMIN.nodeId));
    const total = MAX_SENT_RECORDS + 5;
    for (let i = 0; i < total; i++)
      doc = A.change(doc, (d) =>
        writeSent(d, {
          id: i.toString(16).padStart(32, '0'),
          storePath: PATH,
          action: 'switch',
          targets: ids.length + 1,
          queuedAt: T0.toISOString(),
          sentAt: new Date(T0.getTime() + i * 1000).toISOString(),
          answer: { index: i, placed: ids, stale: [], unknown: [AGENT] },
        }),
      );
    const { sent } = readOutbox(A.load<OutboxDoc>(A.save(doc)), FLEET);
    expect(Object.keys(doc.sent)).toHaveLength(MAX_SENT_RECORDS);
    expect(sent).toHaveLength(MAX_SENT_RECORDS);
    expect(sent[0]!.answer!.index).toBe(total - 1); // newest first; the 5 oldest are gone
    expect(sent.at(-1)!.answer!.index).toBe(5);
    expect(sent[0]!.answer).toEqual({
      index: total - 1,
      placed: ids.slice(0, MAX_SENT_IDS),
      stale: [],
      unknown: [AGENT],
      counts: { placed: ids.length, stale: 0, unknown: 1 },
    });
  });
});

describe('root records with deployment fields', () => {
  const base: AgentEntry = {
    nodeId: AGENT,
    factsDocId: '47FLLd7MwhUDiAJZqFEymnnWN3Xj' as DocumentId,
    factsWriteKey: 'ab'.repeat(32),
    enrolledAt: T0.toISOString(),
    lastSeen: T0.toISOString(),
    summary: null,
    factsHeads: null,
  };

  it('round-trip with every new field, and old records still decode without them', () => {
    const full: AgentEntry = {
      ...base,
      statusDocId: '2x5ZHmQvGvb4hZ8u1s8dq1kMqXY9' as DocumentId,
      statusWriteKey: 'cd'.repeat(32),
      statusHeads: { heads: ['h'] },
      desiredDocId: '3x5ZHmQvGvb4hZ8u1s8dq1kMqXY9' as DocumentId,
      desiredWriteKey: 'ef'.repeat(32),
      labels: { role: 'web', zone: 'eu-1' },
      desired: { id: 'ab'.repeat(16), seq: 7, storePath: PATH, action: 'boot' },
      deploy: {
        current: PATH,
        booted: null,
        rebootNeeded: false,
        last: { id: 'ab'.repeat(16), state: 'refused', code: 'SEQ_NOT_NEWER' },
      },
    };
    expect(decodeAgent(AGENT, encodeAgent(full))).toEqual(full);
    // A record as written before issue 11 (no new fields at all).
    const old = JSON.stringify({ ...base, nodeId: undefined });
    expect(decodeAgent(AGENT, new A.ImmutableString(old))).toEqual(base);
    // A malformed new field is dropped, the agent stays.
    const bent = JSON.stringify({ ...base, labels: { Bad: 'x' }, statusWriteKey: 'zz' });
    expect(decodeAgent(AGENT, new A.ImmutableString(bent))).toEqual(base);
    const worst = {
      ...full,
      labels: Object.fromEntries(
        Array.from({ length: 32 }, (_, i) => [`${i}`.padEnd(63, 'k'), 'v'.repeat(128)]),
      ),
    };
    expect(decodeAgent(AGENT, encodeAgent(worst))).toEqual(worst);
    expect(rootAdminsDocId({ adminsDocId: new A.ImmutableString('4x5ZHmQ') })).toBe('4x5ZHmQ');
    expect(rootAdminsDocId({})).toBeUndefined();
  });
});

describe('rpc schemas of deployments', () => {
  it('still take requests of older agents, and the new optional fields', async () => {
    const enroll = { factsDocId: 'x', factsWriteKey: '0'.repeat(64) };
    expect(agentEnroll.request(enroll)).toEqual(enroll);
    const withStatus = { ...enroll, statusDocId: 'y', statusWriteKey: '1'.repeat(64) };
    expect(agentEnroll.request(withStatus)).toEqual(withStatus);
    expect(thrownCode(() => agentEnroll.request({ ...enroll, statusWriteKey: 'x' }))).toBe(
      'BAD_MESSAGE',
    );
    const answer = { rootDocId: 'r', enrolledAt: T0.toISOString(), known: false };
    expect(agentEnroll.response(answer)).toEqual(answer);
    expect(
      agentEnroll.response({ ...answer, desiredDocId: 'd', adminsDocId: 'a', statusKnown: true }),
    ).toMatchObject({ desiredDocId: 'd' });
    const volatile = await collectVolatile();
    expect(thrownCode(() => agentHeartbeat.request({ volatile }))).toBe('no error');
    expect(thrownCode(() => agentHeartbeat.request({ volatile, statusHeads: {} }))).toBe(
      'no error',
    );
    expect(thrownCode(() => agentHeartbeat.request({ volatile, other: 1 }))).toBe('BAD_MESSAGE');
  });

  it('bound deploy.submit and docs.heads', () => {
    expect(deploySubmit.request({ parts: [part()] }).parts).toHaveLength(1);
    expect(thrownCode(() => deploySubmit.request({ parts: [] }))).toBe('BAD_MESSAGE');
    expect(thrownCode(() => deploySubmit.request({ parts: new Array(1025).fill(0) }))).toBe(
      'BAD_MESSAGE',
    );
    expect(deploySubmit.allow).toEqual(['admin']);
    expect(docsHeads.allow).toEqual(['admin']);
    expect(docsHeads.request({ docIds: ['a', 'b'] })).toEqual({ docIds: ['a', 'b'] });
    expect(thrownCode(() => docsHeads.request({ docIds: new Array(10_001).fill('a') }))).toBe(
      'BAD_MESSAGE',
    );
    expect(docsHeads.response({ heads: { a: ['h'], b: null } })).toEqual({
      heads: { a: ['h'], b: null },
    });
  });
});
