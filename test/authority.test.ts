// The authorization model (src/trust/authority.ts, tokens.ts, canonical.ts): signed admin
// operations, one-time enrollment tokens, and the audit trail an admin replays offline. Every
// refusal must name its code and change nothing; times are explicit dates, never the clock.

import { describe, expect, it } from 'vitest';
import { thrownCode } from './helpers/errors.js';
import type { NodeId } from '../sync/ids.js';
import { type NodeKey, generateNodeKey } from '../src/identity/index.js';
import { type OpBody, type SignedOp, signOp, verifyOp } from '../src/trust/admin-ops.js';
import { type AuditEntry, Authority } from '../src/trust/authority.js';
import { canonicalJson } from '../src/trust/canonical.js';
import { type DeploymentSpec, partDigest, signDeployment } from '../src/trust/deployment.js';
import { sign } from '../sync/ed25519.js';
import {
  MAX_TOKEN_LENGTH,
  TOKEN_PREFIX,
  issueToken,
  parseToken,
  signToken,
} from '../src/trust/tokens.js';

const FLEET = '4Nq7bP2xYzR1cVw9kLmT3sHdFgJa';
const OTHER_FLEET = '9Zz7bP2xYzR1cVw9kLmT3sHdFgJa';
const T0 = new Date('2030-01-01T00:00:00.000Z');
const HOUR = 3_600_000;
const at = (ms: number) => new Date(T0.getTime() + ms);
/** The identity point: a small-order key whose "signatures" verify for many messages. */
const SMALL_ORDER = `01${'00'.repeat(31)}` as NodeId;

const A = generateNodeKey();
const B = generateNodeKey();
const C = generateNodeKey(); // the coordinator
const N = generateNodeKey(); // never an admin
const X = generateNodeKey().nodeId;
const Y = generateNodeKey().nodeId;

const codeOf = thrownCode;
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));
/** A plain, mutable deep copy of an operation, for tampering. */
const mutable = (op: SignedOp) =>
  viaJson(op) as Record<string, unknown> & { body: Record<string, unknown> };
const flipHex = (hex: string) => (hex[0] === '0' ? '1' : '0') + hex.slice(1);
const snapshot = (auth: Authority, nodes: readonly NodeId[] = [A.nodeId, B.nodeId, X, Y]) => ({
  admins: auth.admins(),
  agents: auth.agents(),
  roles: nodes.map((n) => auth.role(n)),
  entries: auth.entries().length,
});

const op = (body: OpBody, key: NodeKey = A, now = T0) => signOp(body, FLEET, key, now);
const add = (node: NodeId, key?: NodeKey) => op({ op: 'admin.add', node }, key);
const remove = (node: NodeId, key?: NodeKey) => op({ op: 'admin.remove', node }, key);
const approve = (node: NodeId, key?: NodeKey) => op({ op: 'agent.approve', node }, key);
const revoke = (node: NodeId, key?: NodeKey) => op({ op: 'agent.revoke', node }, key);
const newAuthority = () => new Authority(FLEET, [A.nodeId]);
const token = (key: NodeKey = A, fleetId = FLEET) =>
  issueToken({ fleetId, coordinator: C.nodeId, expiresInMs: HOUR, now: T0 }, key);

describe('canonicalJson', () => {
  it('sorts keys at every depth and writes no whitespace', () => {
    const a = canonicalJson({ b: 1, a: { d: [1, { y: 'é"\n', x: true }], c: null } });
    const b = canonicalJson({ a: { c: null, d: [1, { x: true, y: 'é"\n' }] }, b: 1 });
    expect(a).toBe(b);
    expect(a).toBe('{"a":{"c":null,"d":[1,{"x":true,"y":"é\\"\\n"}]},"b":1}');
  });

  it('refuses what JSON cannot represent exactly', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const bad: unknown[] = [
      undefined,
      { a: undefined },
      [undefined],
      () => 1,
      { f: () => 1 },
      NaN,
      Infinity,
      1n,
      Symbol('s'),
      new Date(0),
      new Uint8Array(1),
      new Map(),
      [, 1], // eslint-disable-line no-sparse-arrays
      { [Symbol('k')]: 1 },
      cycle,
    ];
    for (const value of bad) expect(() => canonicalJson(value), String(value)).toThrow(TypeError);
  });
});

describe('signed admin operations', () => {
  it('round-trip through JSON', () => {
    const signed = add(B.nodeId);
    expect(verifyOp(viaJson(signed), FLEET)).toEqual(signed);
    expect(signed.at).toBe(T0.toISOString());
    expect(signed.signer).toBe(A.nodeId);
    expect(add(B.nodeId).nonce).not.toBe(signed.nonce);
    const issue = token().op;
    expect(verifyOp(viaJson(issue), FLEET)).toEqual(issue);
  });

  it('refuse any tampered field (BAD_SIGNATURE) and another fleet (WRONG_FLEET)', () => {
    const signed = add(B.nodeId);
    const issue = token().op;
    const tampered: [SignedOp, (o: ReturnType<typeof mutable>) => void][] = [
      [signed, (o) => (o.body.node = X)],
      [signed, (o) => (o.body.op = 'admin.remove')],
      [signed, (o) => (o.at = at(1).toISOString())],
      [signed, (o) => (o.nonce = flipHex(o.nonce as string))],
      [signed, (o) => (o.signer = B.nodeId)],
      [signed, (o) => (o.sig = flipHex(o.sig as string))],
      [issue, (o) => (o.body.expires = at(2 * HOUR).toISOString())],
      [issue, (o) => (o.body.tokenId = flipHex(o.body.tokenId as string))],
    ];
    for (const [original, change] of tampered) {
      const o = mutable(original);
      change(o);
      expect(codeOf(() => verifyOp(o, FLEET))).toBe('BAD_SIGNATURE');
    }
    expect(codeOf(() => verifyOp(signed, OTHER_FLEET))).toBe('WRONG_FLEET');
    const moved = { ...mutable(signed), fleet: OTHER_FLEET };
    expect(codeOf(() => verifyOp(moved, FLEET))).toBe('WRONG_FLEET');
    expect(codeOf(() => verifyOp(moved, OTHER_FLEET))).toBe('BAD_SIGNATURE');
  });

  it('refuse malformed records (BAD_MESSAGE)', () => {
    const good = mutable(add(B.nodeId));
    const without = (key: string) =>
      Object.fromEntries(Object.entries(good).filter(([k]) => k !== key));
    const huge = 'a'.repeat(1_000_000);
    const malformed: unknown[] = [
      null,
      'op',
      42,
      [good],
      without('sig'),
      without('nonce'),
      without('body'),
      { ...good, extra: 1 },
      { ...good, body: { ...good.body, extra: 1 } },
      { ...good, body: { op: 'admin.add' } },
      { ...good, body: { op: 'admin.destroy', node: X } },
      { ...good, body: { op: 'token.issue', node: X } },
      { ...good, body: 'admin.add' },
      { ...good, body: { ...good.body, node: X.toUpperCase() } },
      { ...good, v: 2 },
      { ...good, v: '1' },
      { ...good, fleet: 5 },
      { ...good, fleet: '' },
      { ...good, fleet: 'two words' },
      { ...good, fleet: huge },
      { ...good, at: 0 },
      { ...good, at: 'yesterday' },
      { ...good, at: '2030-02-30T00:00:00.000Z' },
      { ...good, at: '2030-01-01T00:00:00Z' },
      { ...good, at: huge },
      { ...good, nonce: 'zz'.repeat(16) },
      { ...good, nonce: 'ab'.repeat(15) },
      { ...good, nonce: huge },
      { ...good, signer: (good.signer as string).toUpperCase() },
      { ...good, signer: 7 },
      { ...good, sig: (good.sig as string).toUpperCase() },
      { ...good, sig: huge },
      { ...good, sig: null },
    ];
    for (const value of malformed) expect(codeOf(() => verifyOp(value, FLEET))).toBe('BAD_MESSAGE');
  });

  it('are not signed from bad input (BAD_ARGUMENT)', () => {
    expect(codeOf(() => signOp({ op: 'admin.add', node: B.nodeId }, '', A))).toBe('BAD_ARGUMENT');
    const body = { op: 'admin.add', node: 'nobody' } as unknown as OpBody;
    expect(codeOf(() => signOp(body, FLEET, A))).toBe('BAD_ARGUMENT');
  });
});

describe('admins and agents', () => {
  it('need a valid fleet and at least one admissible initial admin', () => {
    expect(codeOf(() => new Authority(FLEET, []))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => new Authority('', [A.nodeId]))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => new Authority(FLEET, [A.nodeId, SMALL_ORDER]))).toBe('SMALL_ORDER_KEY');
    expect(newAuthority().admins()).toEqual([A.nodeId]);
  });

  it('follow the trail: a removed admin signs nothing more', () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    expect(auth.role(B.nodeId)).toBe('admin');
    expect(auth.admins()).toEqual([A.nodeId, B.nodeId].sort());
    auth.apply(approve(X, B));
    expect(auth.role(X)).toBe('agent');
    expect(auth.agents()).toEqual([{ node: X, status: 'approved' }]);
    auth.apply(remove(B.nodeId));
    expect(auth.role(B.nodeId)).toBe('revoked');
    expect(auth.admins()).toEqual([A.nodeId]);

    const before = snapshot(auth);
    const late = revoke(X, B);
    expect(codeOf(() => auth.apply(late))).toBe('NOT_ADMIN');
    expect(codeOf(() => auth.apply(add(Y, N)))).toBe('NOT_ADMIN');
    expect(snapshot(auth)).toEqual(before);
    expect(auth.role(X)).toBe('agent');
  });

  it('apply each operation once (OP_REPLAYED)', () => {
    const auth = newAuthority();
    const signed = approve(X);
    const entry = auth.apply(signed);
    expect(entry).toEqual({ kind: 'op', op: signed });
    auth.apply(revoke(X));
    const before = snapshot(auth);
    expect(codeOf(() => auth.apply(signed))).toBe('OP_REPLAYED');
    expect(codeOf(() => auth.apply(viaJson(signed) as SignedOp))).toBe('OP_REPLAYED');
    expect(snapshot(auth)).toEqual(before);
    expect(auth.role(X)).toBe('revoked');
  });

  it('keep at least one admin, and refuse operations that change nothing', () => {
    const auth = newAuthority();
    expect(codeOf(() => auth.apply(remove(A.nodeId)))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => auth.apply(remove(B.nodeId)))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => auth.apply(add(A.nodeId)))).toBe('BAD_ARGUMENT');
    auth.apply(approve(X));
    expect(codeOf(() => auth.apply(approve(X)))).toBe('BAD_ARGUMENT');
    auth.apply(add(B.nodeId));
    auth.apply(remove(A.nodeId, B)); // an admin may leave while another stays
    expect(auth.admins()).toEqual([B.nodeId]);
    expect(codeOf(() => auth.apply(remove(B.nodeId, B)))).toBe('BAD_ARGUMENT');
    expect(auth.admins()).toEqual([B.nodeId]);
  });

  it('never admit a small-order key', () => {
    const auth = newAuthority();
    expect(codeOf(() => auth.apply(add(SMALL_ORDER)))).toBe('SMALL_ORDER_KEY');
    expect(codeOf(() => auth.apply(approve(SMALL_ORDER)))).toBe('SMALL_ORDER_KEY');
    expect(auth.role(SMALL_ORDER)).toBe('unknown');
    expect(auth.entries()).toEqual([]);
  });

  it('revoke and re-approve agents, also pre-emptively', () => {
    const auth = newAuthority();
    auth.apply(approve(X));
    auth.apply(revoke(X));
    expect(auth.role(X)).toBe('revoked');
    auth.apply(approve(X));
    expect(auth.role(X)).toBe('agent');
    auth.apply(revoke(Y));
    expect(auth.role(Y)).toBe('revoked');
    expect(auth.agents()).toEqual(
      [
        { node: X, status: 'approved' },
        { node: Y, status: 'revoked' },
      ].sort((a, b) => (a.node < b.node ? -1 : 1)),
    );
  });

  it('rank admin over agent, and take everything from a removed admin', () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    auth.apply(approve(B.nodeId));
    expect(auth.role(B.nodeId)).toBe('admin');
    auth.apply(remove(B.nodeId));
    expect(auth.role(B.nodeId)).toBe('revoked');
    expect(auth.agents()).toEqual([{ node: B.nodeId, status: 'revoked' }]);
    auth.apply(add(B.nodeId));
    expect(auth.role(B.nodeId)).toBe('admin');
  });

  it('check token.issue: expiry after issue, each id once', () => {
    const auth = newAuthority();
    const id = 'ab'.repeat(16);
    const now = T0.toISOString();
    const stillborn = op({ op: 'token.issue', tokenId: id, expires: now });
    expect(codeOf(() => auth.apply(stillborn))).toBe('BAD_ARGUMENT');
    auth.apply(op({ op: 'token.issue', tokenId: id, expires: at(HOUR).toISOString() }));
    const again = op({ op: 'token.issue', tokenId: id, expires: at(2 * HOUR).toISOString() });
    const before = snapshot(auth);
    expect(codeOf(() => auth.apply(again))).toBe('OP_REPLAYED');
    expect(snapshot(auth)).toEqual(before);
    expect(codeOf(() => auth.apply(signOp(again.body, OTHER_FLEET, A)))).toBe('WRONG_FLEET');
  });
});

describe('enrollment tokens', () => {
  /** A fleet whose audit trail has recorded a fresh token of A's, valid for an hour from T0. */
  const withToken = () => {
    const auth = newAuthority();
    const issued = token();
    auth.apply(issued.op);
    return { auth, ...issued };
  };
  const tokenParts = (text: string) => {
    const [json = '', sig = ''] = text.slice(TOKEN_PREFIX.length).split('.');
    return { json: Buffer.from(json, 'base64url'), sig: Buffer.from(sig, 'base64url') };
  };
  const assemble = (json: string | Buffer, sig: Uint8Array) =>
    `${TOKEN_PREFIX}${Buffer.from(json).toString('base64url')}.${Buffer.from(sig).toString('base64url')}`;
  const signRaw = (json: string, key: NodeKey) =>
    assemble(json, sign(new TextEncoder().encode(`flt/v1/enroll-token\0${json}`), key.secret));

  it('are short text that parses back to what was signed', () => {
    const { token: text, payload } = token();
    expect(text.startsWith(TOKEN_PREFIX)).toBe(true);
    expect(text.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
    expect(parseToken(text)).toEqual({ payload, signatureValid: true });
    expect(payload).toMatchObject({ v: 1, fleet: FLEET, coordinator: C.nodeId, issuer: A.nodeId });
    expect(payload.expires).toBe(at(HOUR).toISOString());
    expect(codeOf(() => signToken(payload, B))).toBe('BAD_ARGUMENT');
    const lifetime = (expiresInMs: number) => () =>
      issueToken({ fleetId: FLEET, coordinator: C.nodeId, expiresInMs, now: T0 }, A);
    for (const ms of [0, -1, 1.5, NaN, 1e300, 9e15, 3e14])
      expect(codeOf(lifetime(ms))).toBe('BAD_ARGUMENT');
  });

  it('enroll an agent once (TOKEN_REUSED)', () => {
    const { auth, token: text, payload } = withToken();
    const entry = auth.useToken(text, X, at(60_000));
    expect(entry).toEqual({
      kind: 'enroll',
      agent: X,
      tokenId: payload.id,
      issuer: A.nodeId,
      at: at(60_000).toISOString(),
      token: text,
    });
    expect(auth.role(X)).toBe('agent');
    expect(auth.entries().at(-1)).toEqual(entry);
    const before = snapshot(auth);
    expect(codeOf(() => auth.useToken(text, Y, at(120_000)))).toBe('TOKEN_REUSED');
    expect(snapshot(auth)).toEqual(before);
  });

  it('enroll until the expiry instant, not after (TOKEN_EXPIRED)', () => {
    const late = withToken();
    expect(codeOf(() => late.auth.useToken(late.token, X, at(HOUR + 1)))).toBe('TOKEN_EXPIRED');
    expect(late.auth.role(X)).toBe('unknown');
    const onTime = withToken();
    onTime.auth.useToken(onTime.token, X, at(HOUR));
    expect(onTime.auth.role(X)).toBe('agent');
  });

  it('refuse forged, misdirected and garbage tokens, changing nothing', () => {
    const { auth, token: text, payload } = withToken();
    const { json, sig } = tokenParts(text);
    const flipped = Buffer.from(sig);
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    const notIssued = token(); // validly signed by an admin, but its token.issue was never applied
    const byStranger = token(N);
    const otherFleet = token(A, OTHER_FLEET);
    const extra = canonicalJson({ ...payload, extra: 1 });
    const lastChar = text.at(-1) ?? 'A';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const padBitsSet = text.slice(0, -1) + alphabet[alphabet.indexOf(lastChar) ^ 1];
    const cases: [string, unknown][] = [
      ['TOKEN_FORGED', assemble(json, flipped)],
      ['TOKEN_FORGED', notIssued.token],
      ['TOKEN_FORGED', byStranger.token],
      ['TOKEN_FORGED', signRaw(json.toString(), N)], // A's payload, N's signature
      ['TOKEN_OTHER_FLEET', otherFleet.token],
      ['BAD_MESSAGE', ''],
      ['BAD_MESSAGE', 'hello'],
      ['BAD_MESSAGE', TOKEN_PREFIX],
      ['BAD_MESSAGE', `${TOKEN_PREFIX}a.b`],
      ['BAD_MESSAGE', `${text}.${text}`],
      ['BAD_MESSAGE', text.replace(TOKEN_PREFIX, 'flt-enroll-2.')],
      ['BAD_MESSAGE', `${TOKEN_PREFIX}${'A'.repeat(MAX_TOKEN_LENGTH)}.${'A'.repeat(86)}`],
      ['BAD_MESSAGE', `${text}=`],
      ['BAD_MESSAGE', padBitsSet],
      ['BAD_MESSAGE', signRaw(extra, A)],
      ['BAD_MESSAGE', signRaw(JSON.stringify(payload, null, 1), A)],
      ['BAD_MESSAGE', signRaw('not json', A)],
      ['BAD_MESSAGE', assemble(json, sig.subarray(1))],
    ];
    const before = snapshot(auth);
    for (const [code, bad] of cases) {
      expect(
        codeOf(() => auth.useToken(bad as string, X, at(60_000))),
        String(bad),
      ).toBe(code);
    }
    expect(codeOf(() => auth.apply(byStranger.op))).toBe('NOT_ADMIN');
    expect(snapshot(auth)).toEqual(before);
    auth.useToken(text, X, at(60_000)); // the genuine token still works
    expect(auth.role(X)).toBe('agent');
  });

  it('die with their issuer’s admin rights (TOKEN_FORGED)', () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    const issued = token(B);
    auth.apply(issued.op);
    auth.apply(remove(B.nodeId));
    const before = snapshot(auth);
    expect(codeOf(() => auth.useToken(issued.token, X, at(60_000)))).toBe('TOKEN_FORGED');
    expect(snapshot(auth)).toEqual(before);
  });

  it('do not undo a revocation or enroll a bad key, and stay unused when refused', () => {
    const { auth, token: text } = withToken();
    auth.apply(revoke(Y));
    auth.apply(approve(X));
    const before = snapshot(auth);
    expect(codeOf(() => auth.useToken(text, Y, at(60_000)))).toBe('REVOKED');
    expect(codeOf(() => auth.useToken(text, X, at(60_000)))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => auth.useToken(text, A.nodeId, at(60_000)))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => auth.useToken(text, SMALL_ORDER, at(60_000)))).toBe('SMALL_ORDER_KEY');
    expect(codeOf(() => auth.useToken(text, 'x' as NodeId, at(60_000)))).toBe('BAD_ARGUMENT');
    expect(snapshot(auth)).toEqual(before);
    const Z = generateNodeKey().nodeId;
    auth.useToken(text, Z, at(60_000));
    expect(auth.role(Z)).toBe('agent');
  });
});

describe('replaying the audit trail', () => {
  /** A trail with every kind of entry, and the authority that wrote it. */
  const history = () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    auth.apply(approve(X, B));
    const issued = token(B);
    auth.apply(issued.op);
    auth.useToken(issued.token, Y, at(60_000));
    auth.apply(remove(B.nodeId));
    auth.apply(revoke(X));
    auth.apply(approve(X));
    auth.apply(revoke(Y));
    return { auth, trail: viaJson(auth.entries()) as AuditEntry[] };
  };
  const replayCode = (trail: readonly unknown[]) =>
    codeOf(() => Authority.replay(FLEET, [A.nodeId], trail));

  it('rebuilds the same state from a JSON copy', () => {
    const { auth, trail } = history();
    const replayed = Authority.replay(FLEET, [A.nodeId], trail);
    expect(snapshot(replayed)).toEqual(snapshot(auth));
    expect(replayed.entries()).toEqual(auth.entries());
    expect(replayed.role(Y)).toBe('revoked');
    expect(replayed.role(B.nodeId)).toBe('revoked');
    expect(replayCode(trail)).toBe('no error');
    expect(codeOf(() => Authority.replay(OTHER_FLEET, [A.nodeId], trail))).toBe('WRONG_FLEET');
    expect(codeOf(() => Authority.replay(FLEET, [B.nodeId], trail))).toBe('NOT_ADMIN');
  });

  it('refuses a tampered operation (BAD_SIGNATURE)', () => {
    const { trail } = history();
    const first = trail[1] as { op: { body: { node: NodeId } } };
    first.op.body.node = Y;
    expect(replayCode(trail)).toBe('BAD_SIGNATURE');
  });

  it('refuses an inserted operation of a non-admin (NOT_ADMIN)', () => {
    const { trail } = history();
    const inserted: AuditEntry = { kind: 'op', op: approve(N.nodeId, N) };
    expect(replayCode([...trail.slice(0, 2), inserted, ...trail.slice(2)])).toBe('NOT_ADMIN');
    const late: AuditEntry = { kind: 'op', op: approve(N.nodeId, B) }; // after B's removal
    expect(replayCode([...trail, late])).toBe('NOT_ADMIN');
  });

  it('re-checks enrollments: issued, unused, issuer an admin then', () => {
    const { trail } = history();
    const enroll = trail[3] as Extract<AuditEntry, { kind: 'enroll' }>;
    expect(enroll.kind).toBe('enroll');
    expect(replayCode([...trail.slice(0, 2), ...trail.slice(3)])).toBe('TOKEN_FORGED');
    expect(replayCode([...trail.slice(0, 4), enroll, ...trail.slice(4)])).toBe('TOKEN_REUSED');
    const moved = [...trail.slice(0, 3), trail[4], enroll, ...trail.slice(5)];
    expect(replayCode(moved)).toBe('TOKEN_FORGED'); // used after its issuer was removed
    const mismatched = { ...enroll, tokenId: 'ab'.repeat(16) };
    expect(replayCode([...trail.slice(0, 3), mismatched])).toBe('BAD_MESSAGE');
    // Expiry was the coordinator's call at use time; the trail does not re-judge it.
    const lateAt = { ...enroll, at: at(10 * HOUR).toISOString() };
    expect(replayCode([...trail.slice(0, 3), lateAt])).toBe('no error');
  });

  it('refuses malformed entries (BAD_MESSAGE)', () => {
    const { trail } = history();
    for (const entry of [
      null,
      'op',
      { kind: 'other' },
      { ...trail[0], extra: 1 },
      { kind: 'enroll' },
    ])
      expect(replayCode([entry])).toBe('BAD_MESSAGE');
  });
});

describe('labels (agent.label)', () => {
  const label = (labels: Record<string, string | null>, node = X, key: NodeKey = A) =>
    op({ op: 'agent.label', node, labels }, key);

  it('set and remove labels of approved agents, replayed like any op', () => {
    const auth = newAuthority();
    auth.apply(approve(X));
    auth.apply(label({ role: 'web', 'site/zone': 'eu-1' }));
    expect(auth.labels(X)).toEqual({ role: 'web', 'site/zone': 'eu-1' });
    auth.apply(label({ role: null, tier: 'a b' }));
    expect(auth.labels(X)).toEqual({ 'site/zone': 'eu-1', tier: 'a b' });
    expect(Object.keys(auth.labels(X))).toEqual(['site/zone', 'tier']);
    expect(auth.labels(Y)).toEqual({});
    const replayed = Authority.replay(FLEET, [A.nodeId], viaJson(auth.entries()) as unknown[]);
    expect(replayed.labels(X)).toEqual(auth.labels(X));
  });

  it('refuse non-admins, unapproved agents, no-ops and too many labels, changing nothing', () => {
    const auth = newAuthority();
    auth.apply(approve(X));
    expect(codeOf(() => auth.apply(label({ role: 'web' }, X, N)))).toBe('NOT_ADMIN');
    expect(codeOf(() => auth.apply(label({ role: 'web' }, Y)))).toBe('BAD_ARGUMENT');
    expect(codeOf(() => auth.apply(label({ role: null })))).toBe('BAD_ARGUMENT');
    const many = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, 'v']));
    auth.apply(label(many));
    expect(codeOf(() => auth.apply(label({ extra: 'v' })))).toBe('BAD_ARGUMENT');
    expect(Object.keys(auth.labels(X))).toHaveLength(32);
    auth.apply(label({ k0: null, extra: 'v' }));
    expect(auth.labels(X).extra).toBe('v');
  });

  it('are malformed (BAD_MESSAGE) with bad keys, values or counts', () => {
    const good = label({ role: 'web' });
    for (const labels of [
      {},
      { Role: 'web' },
      { '-role': 'web' },
      { ['r'.repeat(64)]: 'web' },
      JSON.parse('{"__proto__":"x"}') as unknown,
      { role: '' },
      { role: 'w\neb' },
      { role: 'é' },
      { role: 'x'.repeat(129) },
      { role: 1 },
      Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
      ['role'],
    ]) {
      const tampered = mutable(good);
      tampered.body.labels = labels;
      expect(codeOf(() => verifyOp(tampered, FLEET))).toBe('BAD_MESSAGE');
    }
    expect(codeOf(() => verifyOp(JSON.parse('{}'), FLEET))).toBe('BAD_MESSAGE');
    expect(codeOf(() => op({ op: 'agent.label', node: X, labels: {} }))).toBe('BAD_ARGUMENT');
  });
});

describe('deployments in the audit trail', () => {
  const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web';
  const deploy = (over: Partial<DeploymentSpec> = {}, key: NodeKey = A, now = T0) =>
    signDeployment(
      {
        targets: new Map([[X, 10]]),
        storePath: PATH,
        action: 'switch',
        expiresInMs: HOUR,
        ...over,
      },
      FLEET,
      key,
      now,
    );

  it('are recorded once per (id, part): the same part again is a no-op with its index', () => {
    const auth = newAuthority();
    auth.apply(approve(X));
    const [p] = deploy();
    const first = auth.recordDeploy(p, T0);
    expect(first).toMatchObject({ index: 1, fresh: true });
    expect(first.entry).toEqual({ kind: 'deploy', part: p });
    const again = auth.recordDeploy(viaJson(p), at(1000));
    expect(again).toMatchObject({ index: 1, fresh: false });
    expect(auth.entries()).toHaveLength(2);
    const replayed = Authority.replay(FLEET, [A.nodeId], viaJson(auth.entries()) as unknown[]);
    expect(replayed.entries()).toEqual(auth.entries());
    expect(replayed.recordDeploy(p, T0)).toMatchObject({ index: 1, fresh: false });
  });

  it('refuse the same (id, part) with other content, and parts that disagree (OP_REPLAYED)', () => {
    const auth = newAuthority();
    const id = 'cd'.repeat(16);
    const [p] = deploy({ id });
    auth.recordDeploy(p, T0);
    const [other] = deploy({ id, targets: new Map([[Y, 3]]) });
    expect(codeOf(() => auth.recordDeploy(other, T0))).toBe('OP_REPLAYED');
    expect(auth.entries()).toHaveLength(1);
    // The same id as a 2-part deployment: part 1 disagrees on the part count.
    const keys = Array.from({ length: 65 }, () => generateNodeKey().nodeId);
    const two = deploy({ id, targets: new Map(keys.map((k) => [k, 1])) });
    expect(codeOf(() => auth.recordDeploy(two[1], T0))).toBe('OP_REPLAYED');
    // Replayed: a part recorded twice, identical or not, is refused.
    const entry = { kind: 'deploy', part: p };
    expect(replayCodeOf([entry, entry])).toBe('OP_REPLAYED');
    expect(replayCodeOf([entry, { kind: 'deploy', part: other }])).toBe('OP_REPLAYED');
    expect(partDigest(other!)).not.toBe(partDigest(p!));
  });

  it('need an admin signer now (NOT_ADMIN) and an unexpired part (DEPLOYMENT_EXPIRED)', () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    const [byB] = deploy({}, B);
    auth.apply(remove(B.nodeId));
    expect(codeOf(() => auth.recordDeploy(byB, T0))).toBe('NOT_ADMIN');
    expect(codeOf(() => auth.recordDeploy(deploy({}, N)[0], T0))).toBe('NOT_ADMIN');
    const [p] = deploy();
    expect(codeOf(() => auth.recordDeploy(p, at(HOUR + 1)))).toBe('DEPLOYMENT_EXPIRED');
    expect(codeOf(() => auth.recordDeploy(p, at(HOUR)))).toBe('no error');
    expect(codeOf(() => auth.recordDeploy(deploy({}, A, T0)[0], T0))).toBe('no error');
    const elsewhere = signDeployment(
      { targets: new Map([[X, 1]]), storePath: PATH, action: 'boot', expiresInMs: HOUR },
      OTHER_FLEET,
      A,
      T0,
    )[0];
    expect(codeOf(() => auth.recordDeploy(elsewhere, T0))).toBe('WRONG_FLEET');
    expect(codeOf(() => auth.recordDeploy({ ...byB, sig: '00'.repeat(64) }, T0))).toBe(
      'BAD_SIGNATURE',
    );
    expect(auth.entries().filter((e) => e.kind === 'deploy')).toHaveLength(2);
  });

  it("are re-checked on replay: a removed admin's part after the removal is refused", () => {
    const auth = newAuthority();
    auth.apply(add(B.nodeId));
    const [byB] = deploy({}, B);
    auth.recordDeploy(byB, T0);
    auth.apply(remove(B.nodeId));
    const trail = viaJson(auth.entries()) as unknown[];
    expect(replayCodeOf(trail)).toBe('no error');
    // The same part moved after the removal (a coordinator rewriting history) fails.
    expect(replayCodeOf([trail[0], trail[2], trail[1]])).toBe('NOT_ADMIN');
    // Expiry is not re-judged on replay.
    expect(codeOf(() => Authority.replay(FLEET, [A.nodeId], trail))).toBe('no error');
    // Malformed deploy entries.
    expect(replayCodeOf([{ kind: 'deploy' }])).toBe('BAD_MESSAGE');
    expect(replayCodeOf([{ kind: 'deploy', part: byB, extra: 1 }])).toBe('BAD_MESSAGE');
    expect(replayCodeOf([{ kind: 'deploy', part: { ...byB, v: 2 } }])).toBe('BAD_DEPLOYMENT');
  });
});

const replayCodeOf = (trail: readonly unknown[]) =>
  codeOf(() => Authority.replay(FLEET, [A.nodeId], trail));
