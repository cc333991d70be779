// The admins an agent trusts (src/trust/admin-set.ts), from its own verification of the admins
// document (src/docs/admins.ts): the anchor (configured admins), the pinned prefix (a rewritten
// trail is UNTRUSTED_TRAIL), and the signer rule (admin now and when it signed).

import * as A from '@automerge/automerge';
import { describe, expect, it } from 'vitest';
import { thrownCode } from './helpers/errors.js';
import type { NodeId } from '../sync/ids.js';
import { generateNodeKey, type NodeKey } from '../src/identity/index.js';
import { signOp, type OpBody } from '../src/trust/admin-ops.js';
import { AdminSet, checkAnchor, checkPin, decodePin, opsDigest } from '../src/trust/admin-set.js';
import {
  adminsBase,
  appendAdminOp,
  decodeAdmins,
  writeAdminsStart,
  type AdminsDoc,
} from '../src/docs/admins.js';

/** A document from its base (A.from wants an index signature the doc types do not have). */
const fromBase = <T extends object>(base: T) =>
  A.from(base as unknown as Record<string, unknown>) as unknown as A.Doc<T>;
const FLEET = '4Nq7bP2xYzR1cVw9kLmT3sHdFgJa';
const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms);
const iso = (ms: number) => at(ms).toISOString();
const [K1, K2, K3] = [generateNodeKey(), generateNodeKey(), generateNodeKey()];
const COORD = generateNodeKey().nodeId;

const op = (body: OpBody, key: NodeKey, ms: number) => signOp(body, FLEET, key, at(ms));

/** An admins document as the gate writes it: K1 begins; K2 added at 10; K1 removed at 20. */
function history() {
  const ops = [
    op({ op: 'admin.add', node: K2.nodeId }, K1, 10),
    op({ op: 'admin.remove', node: K1.nodeId }, K2, 20),
  ];
  return { ops, doc: docOf([K1.nodeId], ops) };
}

function docOf(initial: NodeId[], ops: readonly unknown[], fleet = FLEET): A.Doc<AdminsDoc> {
  return A.change(fromBase<AdminsDoc>(adminsBase(COORD)), (d) => {
    writeAdminsStart(d, fleet, initial);
    for (const o of ops) appendAdminOp(d, o);
  });
}

describe('AdminSet', () => {
  it('replays the admins document and answers who is an admin now', () => {
    const { doc } = history();
    const set = AdminSet.fromDoc(A.load<AdminsDoc>(A.save(doc)), FLEET);
    expect(set.fleet).toBe(FLEET);
    expect(set.size).toBe(2);
    expect(set.admins()).toEqual([K2.nodeId]);
    expect(set.isAdminNow(K2.nodeId)).toBe(true);
    expect(set.isAdminNow(K1.nodeId)).toBe(false);
    expect(set.isAdminNow(K3.nodeId)).toBe(false);
  });

  it('answers who was an admin at a time: before an add, after a removal', () => {
    const set = AdminSet.fromDoc(history().doc);
    expect(set.isAdminAt(K2.nodeId, iso(5))).toBe(false); // before it was added
    expect(set.isAdminAt(K2.nodeId, iso(10))).toBe(true);
    expect(set.isAdminAt(K1.nodeId, iso(15))).toBe(true);
    expect(set.isAdminAt(K1.nodeId, iso(20))).toBe(false); // removed
    expect(set.isAdminAt(K1.nodeId, 'not a time')).toBe(false);
    // Signer rule: admin now and when it signed.
    const part = (signer: NodeId, ms: number) => ({ signer, at: iso(ms), id: 'ab'.repeat(16) });
    expect(thrownCode(() => set.checkSigner(part(K2.nodeId, 15)))).toBe('no error');
    expect(thrownCode(() => set.checkSigner(part(K2.nodeId, 5)))).toBe('SIGNER_NOT_ADMIN');
    expect(thrownCode(() => set.checkSigner(part(K1.nodeId, 15)))).toBe('SIGNER_NOT_ADMIN');
    expect(thrownCode(() => set.checkSigner(part(K3.nodeId, 15)))).toBe('SIGNER_NOT_ADMIN');
    expect(thrownCode(() => set.checkSigner(part(COORD, 15)))).toBe('SIGNER_NOT_ADMIN');
  });

  it('refuses a document that does not replay, or is another fleet (UNTRUSTED_TRAIL)', () => {
    const { ops } = history();
    const code = (v: unknown, fleet?: string) => thrownCode(() => AdminSet.fromDoc(v, fleet));
    // An op by a non-admin inserted before the others.
    const forged = op({ op: 'admin.add', node: K3.nodeId }, K3, 5);
    expect(code(docOf([K1.nodeId], [forged, ...ops]))).toBe('UNTRUSTED_TRAIL');
    // The removal dropped and an op of another kind (only add/remove belong here).
    const approve = op({ op: 'agent.approve', node: K3.nodeId }, K1, 5);
    expect(code(docOf([K1.nodeId], [approve]))).toBe('UNTRUSTED_TRAIL');
    // A tampered signature, garbage, and a fleet mismatch.
    const tampered = { ...ops[0]!, sig: '00'.repeat(64) };
    expect(code(docOf([K1.nodeId], [tampered]))).toBe('UNTRUSTED_TRAIL');
    expect(code(docOf([K1.nodeId], ops), 'otherFleet')).toBe('UNTRUSTED_TRAIL');
    for (const garbage of [null, 1, {}, { kind: 'flt/admins' }, adminsBase(COORD)])
      expect(code(garbage)).toBe('UNTRUSTED_TRAIL');
    const bigOp = { kind: 'flt/admins', fleet: FLEET, initialAdmins: '[]', ops: [] };
    expect(code(bigOp)).toBe('UNTRUSTED_TRAIL');
  });

  it('checks the anchor: configured admins must be where the trail begins', () => {
    const set = AdminSet.fromDoc(history().doc);
    expect(thrownCode(() => checkAnchor(set, [K1.nodeId]))).toBe('no error');
    expect(thrownCode(() => checkAnchor(set, []))).toBe('no error'); // trust on first use
    expect(thrownCode(() => checkAnchor(set, [K2.nodeId]))).toBe('UNTRUSTED_TRAIL');
    expect(thrownCode(() => checkAnchor(set, [K1.nodeId, K3.nodeId]))).toBe('UNTRUSTED_TRAIL');
    // A coordinator presenting a trail of its own (begun by its own key).
    const own = AdminSet.fromDoc(docOf([COORD], []));
    expect(thrownCode(() => checkAnchor(own, [K1.nodeId]))).toBe('UNTRUSTED_TRAIL');
  });

  it('detects a rewritten prefix against the pin, accepts growth', () => {
    const { ops, doc } = history();
    const pin = AdminSet.fromDoc(docOf([K1.nodeId], ops.slice(0, 1))).pin();
    expect(pin).toEqual({
      fleet: FLEET,
      initialAdmins: [K1.nodeId],
      opsSeen: 1,
      opsDigest: opsDigest(ops.slice(0, 1)),
    });
    expect(decodePin(JSON.parse(JSON.stringify(pin)))).toEqual(pin);
    // Grown by one op: fine.
    expect(thrownCode(() => checkPin(AdminSet.fromDoc(doc), pin))).toBe('no error');
    // An op inserted before the pinned one (an Automerge insert ahead of a removal): rewritten,
    // though the new trail replays fine on its own.
    const K4 = generateNodeKey();
    const inserted = op({ op: 'admin.add', node: K4.nodeId }, K1, 5);
    const rewritten = AdminSet.fromDoc(docOf([K1.nodeId], [inserted, ...ops]));
    expect(thrownCode(() => checkPin(rewritten, pin))).toBe('UNTRUSTED_TRAIL');
    // Shorter than pinned (the removal withheld after it was seen), other beginning, other fleet.
    const full = AdminSet.fromDoc(doc).pin();
    const shorter = AdminSet.fromDoc(docOf([K1.nodeId], ops.slice(0, 1)));
    expect(thrownCode(() => checkPin(shorter, full))).toBe('UNTRUSTED_TRAIL');
    const otherStart = AdminSet.fromDoc(docOf([K1.nodeId, K3.nodeId], ops));
    expect(thrownCode(() => checkPin(otherStart, pin))).toBe('UNTRUSTED_TRAIL');
    expect(thrownCode(() => checkPin(AdminSet.fromDoc(doc), { ...pin, fleet: 'x' }))).toBe(
      'UNTRUSTED_TRAIL',
    );
    for (const bad of [null, {}, { ...pin, opsSeen: -1 }, { ...pin, opsDigest: 'x' }])
      expect(thrownCode(() => decodePin(bad))).toBe('STORE_CORRUPT');
  });

  it('decodes the stored form, bounded', () => {
    const { doc } = history();
    const content = decodeAdmins(doc);
    expect(content.fleet).toBe(FLEET);
    expect(content.initialAdmins).toEqual([K1.nodeId]);
    expect(content.ops).toHaveLength(2);
    const tooLong = A.change(doc, (d) => void d.ops.push(new A.ImmutableString('x'.repeat(5000))));
    expect(thrownCode(() => decodeAdmins(tooLong))).toBe('BAD_MESSAGE');
    const notJson = A.change(A.clone(doc), (d) => void d.ops.push(new A.ImmutableString('{')));
    expect(thrownCode(() => decodeAdmins(notJson))).toBe('BAD_MESSAGE');
  });
});
