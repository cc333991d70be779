// Signed deployments (src/trust/deployment.ts): what an admin signs and what every reader checks
// before trusting it. Every malformed field is refused with BAD_DEPLOYMENT, a wrong signature
// with BAD_SIGNATURE, another fleet with WRONG_FLEET; an admin op's signature never passes as a
// deployment's, nor the reverse. Times are explicit dates, never the clock.

import { describe, expect, it } from 'vitest';
import { thrownCode } from './helpers/errors.js';
import type { NodeId } from '../sync/ids.js';
import { sign } from '../sync/ed25519.js';
import { generateNodeKey, nodeKeyFromSeed } from '../src/identity/index.js';
import { signOp, verifyOp } from '../src/trust/admin-ops.js';
import { canonicalJson, signedMessage } from '../src/trust/canonical.js';
import {
  MAX_DEPLOY_VALIDITY_MS,
  MAX_PART_TARGETS,
  assignSeqs,
  isStorePath,
  nextSeq,
  partDigest,
  signDeployment,
  verifyPart,
  type DeploymentSpec,
  type SignedPart,
} from '../src/trust/deployment.js';

const FLEET = '4Nq7bP2xYzR1cVw9kLmT3sHdFgJa';
const OTHER_FLEET = '9Zz7bP2xYzR1cVw9kLmT3sHdFgJa';
const T0 = new Date('2030-01-01T00:00:00.000Z');
const DAY = 86_400_000;
const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-25.05';
const A = generateNodeKey();
const X = generateNodeKey().nodeId;
const Y = generateNodeKey().nodeId;

const spec = (over: Partial<DeploymentSpec> = {}): DeploymentSpec => ({
  targets: new Map([
    [X, 5],
    [Y, 7],
  ]),
  storePath: PATH,
  action: 'switch',
  expiresInMs: 7 * DAY,
  ...over,
});
const one = (over: Partial<DeploymentSpec> = {}) => signDeployment(spec(over), FLEET, A, T0)[0]!;
const mutable = (p: SignedPart) => JSON.parse(JSON.stringify(p)) as Record<string, unknown>;
const flipHex = (hex: string) => (hex[0] === '0' ? '1' : '0') + hex.slice(1);

describe('signed deployments', () => {
  it('round-trip through JSON and verify as the same part', () => {
    const parts = signDeployment(spec(), FLEET, A, T0);
    expect(parts).toHaveLength(1);
    const p = parts[0]!;
    expect(p).toMatchObject({ v: 1, fleet: FLEET, part: 0, parts: 1, signer: A.nodeId });
    expect(p.targets).toEqual({ [X]: 5, [Y]: 7 });
    expect(p.at).toBe(T0.toISOString());
    expect(p.expires).toBe(new Date(T0.getTime() + 7 * DAY).toISOString());
    const back = verifyPart(JSON.parse(JSON.stringify(p)), FLEET);
    expect(back).toEqual(p);
    expect(Object.isFrozen(back)).toBe(true);
    expect(partDigest(back)).toBe(partDigest(p));
    // Without a fleet to compare, the fleet is not checked (the caller pins it later).
    expect(verifyPart(p)).toEqual(p);
  });

  it('split sorted targets into parts of at most 64 sharing one id', () => {
    const keys = Array.from({ length: 2 * MAX_PART_TARGETS + 1 }, () => generateNodeKey().nodeId);
    const targets = new Map(keys.map((k, i) => [k, i + 1]));
    const parts = signDeployment(spec({ targets }), FLEET, A, T0);
    expect(parts.map((p) => Object.keys(p.targets).length)).toEqual([64, 64, 1]);
    expect(parts.map((p) => [p.part, p.parts])).toEqual([
      [0, 3],
      [1, 3],
      [2, 3],
    ]);
    expect(new Set(parts.map((p) => p.id)).size).toBe(1);
    const all = parts.flatMap((p) => Object.keys(p.targets));
    expect(all).toEqual([...keys].sort());
    for (const p of parts) {
      verifyPart(p, FLEET);
      for (const [t, seq] of Object.entries(p.targets)) expect(seq).toBe(targets.get(t as NodeId));
    }
    // A given id is kept.
    const id = 'ab'.repeat(16);
    expect(one({ id }).id).toBe(id);
  });

  it('are not signed from bad input (BAD_ARGUMENT)', () => {
    const code = (over: Partial<DeploymentSpec>) => thrownCode(() => one(over));
    expect(code({ targets: new Map() })).toBe('BAD_ARGUMENT');
    expect(code({ targets: new Map([[X, 0]]) })).toBe('BAD_ARGUMENT');
    expect(code({ storePath: '/nix/store/short-name' })).toBe('BAD_ARGUMENT');
    expect(code({ action: 'reboot' as 'switch' })).toBe('BAD_ARGUMENT');
    expect(code({ expiresInMs: 0 })).toBe('BAD_ARGUMENT');
    expect(code({ expiresInMs: MAX_DEPLOY_VALIDITY_MS + 1 })).toBe('BAD_ARGUMENT');
    expect(code({ id: 'not-hex' })).toBe('BAD_ARGUMENT');
    expect(code({ expiresInMs: MAX_DEPLOY_VALIDITY_MS })).toBe('no error');
  });

  it('refuse every malformed field (BAD_DEPLOYMENT), before the signature is looked at', () => {
    const p = one();
    const tampered: [string, (r: Record<string, unknown>) => void][] = [
      ['extra field', (r) => (r.extra = 1)],
      ['missing field', (r) => delete r.storePath],
      ['version', (r) => (r.v = 2)],
      ['fleet', (r) => (r.fleet = '')],
      ['fleet with space', (r) => (r.fleet = 'a b')],
      ['id not hex', (r) => (r.id = 'zz'.repeat(16))],
      ['id short', (r) => (r.id = 'ab'.repeat(15))],
      ['id upper case', (r) => (r.id = 'AB'.repeat(16))],
      ['part >= parts', (r) => (r.part = 1)],
      ['part negative', (r) => (r.part = -1)],
      ['part fraction', (r) => (r.part = 0.5)],
      ['parts 0', (r) => (r.parts = 0)],
      ['parts too many', (r) => ((r.parts = 1025), (r.part = 0))],
      ['parts string', (r) => (r.parts = '1')],
      ['targets empty', (r) => (r.targets = {})],
      ['targets array', (r) => (r.targets = [X])],
      ['target not a node id', (r) => (r.targets = { abc: 1 })],
      ['target upper-case id', (r) => (r.targets = { [X.toUpperCase()]: 1 })],
      ['seq 0', (r) => (r.targets = { [X]: 0 })],
      ['seq fraction', (r) => (r.targets = { [X]: 1.5 })],
      ['seq unsafe', (r) => (r.targets = { [X]: 2 ** 53 })],
      ['seq string', (r) => (r.targets = { [X]: '1' })],
      [
        'too many targets',
        (r) =>
          (r.targets = Object.fromEntries(
            Array.from({ length: 65 }, () => [generateNodeKey().nodeId, 1]),
          )),
      ],
      ['store path relative', (r) => (r.storePath = PATH.slice(1))],
      ['store path trailing slash', (r) => (r.storePath = `${PATH}/`)],
      ['store path subpath', (r) => (r.storePath = `${PATH}/bin`)],
      ['store path dot-dot', (r) => (r.storePath = `/nix/store/../store/${PATH.slice(11)}`)],
      ['store path double slash', (r) => (r.storePath = PATH.replace('/store/', '/store//'))],
      ['store path at root', (r) => (r.storePath = PATH.slice(10))],
      ['store path short hash', (r) => (r.storePath = PATH.replace('0123', '012'))],
      ['store path bad char', (r) => (r.storePath = `${PATH}!`)],
      ['store path space', (r) => (r.storePath = PATH.replace('/nix/', '/ni x/'))],
      ['store path newline', (r) => (r.storePath = `${PATH}\n`)],
      ['store path long', (r) => (r.storePath = `/${'a'.repeat(1000)}${PATH}`)],
      ['action', (r) => (r.action = 'dry-activate')],
      ['at not iso', (r) => (r.at = '2030-01-01T00:00:00Z')],
      ['expires not iso', (r) => (r.expires = 'tomorrow')],
      ['expires before at', (r) => (r.expires = r.at)],
      [
        'expires beyond 30 days',
        (r) => (r.expires = new Date(T0.getTime() + MAX_DEPLOY_VALIDITY_MS + 1).toISOString()),
      ],
      ['signer', (r) => (r.signer = 'nobody')],
    ];
    for (const [what, change] of tampered) {
      const r = mutable(p);
      change(r);
      expect([what, thrownCode(() => verifyPart(r, FLEET))]).toEqual([what, 'BAD_DEPLOYMENT']);
    }
    for (const garbage of [null, 1, 'x', [], [p], new Date(), Object.create({ ...p }) as unknown])
      expect(thrownCode(() => verifyPart(garbage, FLEET))).toBe('BAD_DEPLOYMENT');
  });

  it('refuse a bad or missing signature (BAD_SIGNATURE) and another fleet (WRONG_FLEET)', () => {
    const p = one();
    const flipped = { ...mutable(p), sig: flipHex(p.sig) };
    expect(thrownCode(() => verifyPart(flipped, FLEET))).toBe('BAD_SIGNATURE');
    const { sig: _, ...unsigned } = mutable(p);
    expect(thrownCode(() => verifyPart(unsigned, FLEET))).toBe('BAD_SIGNATURE');
    expect(thrownCode(() => verifyPart({ ...unsigned, sig: 'ab' }, FLEET))).toBe('BAD_SIGNATURE');
    // Any field changed after signing breaks the signature.
    const other = { ...mutable(p), targets: { [X]: 6, [Y]: 7 } };
    expect(thrownCode(() => verifyPart(other, FLEET))).toBe('BAD_SIGNATURE');
    // A coordinator re-signing an admin's part with its own key, under the admin's name.
    const C = generateNodeKey();
    const forged = {
      ...unsigned,
      sig: Buffer.from(sign(signedMessage('flt/v1/deployment\0', unsigned), C.secret)).toString(
        'hex',
      ),
    };
    expect(thrownCode(() => verifyPart(forged, FLEET))).toBe('BAD_SIGNATURE');
    // Properly signed for another fleet: named as such.
    const elsewhere = signDeployment(spec(), OTHER_FLEET, A, T0)[0]!;
    expect(thrownCode(() => verifyPart(elsewhere, FLEET))).toBe('WRONG_FLEET');
    expect(verifyPart(elsewhere, OTHER_FLEET).fleet).toBe(OTHER_FLEET);
    // A signature over a small-order "key" is a bad signature, not a trusted one.
    const small = `01${'00'.repeat(31)}` as NodeId;
    expect(thrownCode(() => verifyPart({ ...mutable(p), signer: small }, FLEET))).toBe(
      'BAD_SIGNATURE',
    );
  });

  it('never pass as an admin operation, nor an operation as a deployment (domains)', () => {
    const p = one();
    const { sig, ...unsigned } = mutable(p);
    // The same bytes signed under the admin-op domain do not verify as a deployment...
    const asOp = Buffer.from(sign(signedMessage('flt/v1/admin-op\0', unsigned), A.secret)).toString(
      'hex',
    );
    expect(thrownCode(() => verifyPart({ ...unsigned, sig: asOp }, FLEET))).toBe('BAD_SIGNATURE');
    // ...and a deployment's signature on an op's fields does not verify as an op.
    const op = signOp({ op: 'admin.add', node: X }, FLEET, A, T0);
    const opFields = { ...op } as Record<string, unknown>;
    delete opFields.sig;
    const depSig = Buffer.from(
      sign(signedMessage('flt/v1/deployment\0', opFields), A.secret),
    ).toString('hex');
    expect(thrownCode(() => verifyOp({ ...op, sig: depSig }, FLEET))).toBe('BAD_SIGNATURE');
    // A real part's signature moved onto an op, and back, fails too.
    expect(thrownCode(() => verifyOp({ ...op, sig }, FLEET))).toBe('BAD_SIGNATURE');
    expect(thrownCode(() => verifyPart({ ...unsigned, sig: op.sig }, FLEET))).toBe('BAD_SIGNATURE');
  });

  it('sign the canonical JSON the golden fixture pins (changing it breaks every signature)', () => {
    // Inputs fixed; ed25519 is deterministic. Computed once from these inputs; never edit.
    const key = nodeKeyFromSeed(new Uint8Array(32).fill(7));
    const target = nodeKeyFromSeed(new Uint8Array(32).fill(8)).nodeId;
    const [p] = signDeployment(
      {
        targets: new Map([[target, 1893456000000]]),
        storePath: PATH,
        action: 'boot',
        expiresInMs: DAY,
        id: '00112233445566778899aabbccddeeff',
      },
      FLEET,
      key,
      T0,
    );
    const { sig, ...unsigned } = p!;
    expect(canonicalJson(unsigned)).toBe(GOLDEN_JSON);
    expect(sig).toBe(GOLDEN_SIG);
    expect(partDigest(p!)).toBe(GOLDEN_DIGEST);
  });
});

describe('sequence numbers', () => {
  it('are above the clock, the admin counter and what the replica knows', () => {
    expect(nextSeq(0, 0, 1000)).toBe(1000);
    expect(nextSeq(5000, 0, 1000)).toBe(5001);
    expect(nextSeq(5000, 9000, 1000)).toBe(9001);
    expect(nextSeq(0, 0, 0)).toBe(1);
    expect(() => nextSeq(-1, 0, 0)).toThrow(RangeError);
    expect(() => nextSeq(0, 0.5, 0)).toThrow(RangeError);
  });

  it('assign every target its seq and give the new counter', () => {
    const known = new Map([[Y, 9000]]);
    const { seqs, lastSeq } = assignSeqs([X, Y], 2000, (t) => known.get(t) ?? 0, 1000);
    expect(seqs.get(X)).toBe(2001);
    expect(seqs.get(Y)).toBe(9001);
    expect(lastSeq).toBe(9001);
    // The next deployment lands above both.
    const next = assignSeqs([X], lastSeq, () => 0, 1000);
    expect(next.seqs.get(X)).toBe(9002);
  });
});

describe('store paths', () => {
  it('accept store paths of any store dir, nothing else', () => {
    expect(isStorePath(PATH)).toBe(true);
    expect(isStorePath(`/tmp/flt-test/nix/store/${PATH.slice(11)}`)).toBe(true);
    for (const bad of ['', '/', PATH.slice(1), `${PATH}/`, `${PATH}/bin`, 42, null])
      expect(isStorePath(bad)).toBe(false);
  });
});

const GOLDEN_JSON =
  '{"action":"boot","at":"2030-01-01T00:00:00.000Z","expires":"2030-01-02T00:00:00.000Z",' +
  '"fleet":"4Nq7bP2xYzR1cVw9kLmT3sHdFgJa","id":"00112233445566778899aabbccddeeff","part":0,' +
  '"parts":1,"signer":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","storePath":"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-' +
  'system-web-25.05","targets":{"1398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93ca"' +
  ':1893456000000},"v":1}';
const GOLDEN_SIG =
  '528c2b532c8a63fe70873497cf1bb7339f57e4b97f07fea69a5d416a67e76d03' +
  'a9d135c6d5683af837acfdb25667a6cb439a48df2ce55a72357132df98c9a00a';
const GOLDEN_DIGEST = 'f636423c4e2769d3ea3e67762c0daf3fc0b7c723e4703b05884d954cb879e76c';
