// The trust primitives (src/trust): the ed25519 rule everything uses, and signed heads with the
// trusted view they give readers. A relay that adds a change of its own to a single-writer
// document must not get it shown; a forged, misdirected or tampered record must not verify.

import * as A from '@automerge/automerge';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { thrownCode } from './helpers/errors.js';
import { baseDocument, docIdFor } from '../sync/owned-doc.js';
import { deriveKeyPair, generateNodeKey } from '../src/identity/index.js';
import { assertAdmissibleKey, publicKeyOf, sign, verify } from '../sync/ed25519.js';
import {
  newer,
  signHeads,
  trustedView,
  verifySignedHeads,
  type SignedHeads,
} from '../sync/owned-doc.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const codeOf = thrownCode;

/** RFC 8032 §7.1, TEST 1 to TEST 3. */
const RFC8032 = [
  {
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature:
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

/** Encodings of points of small order (the identity, order 2, 4 and 8). */
const SMALL_ORDER = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
];

describe('ed25519', () => {
  it.each(RFC8032.map((v, i) => [i + 1, v] as const))('RFC 8032 TEST %i', (_, v) => {
    const [secret, pub, msg, sig] = [v.secret, v.public, v.message, v.signature].map(hex);
    expect(Buffer.from(publicKeyOf(secret!)).toString('hex')).toBe(v.public);
    expect(Buffer.from(sign(msg!, secret!)).toString('hex')).toBe(v.signature);
    expect(verify(sig!, msg!, pub!)).toBe(true);
    const flipped = Uint8Array.from(sig!);
    flipped[0]! ^= 1;
    expect(verify(flipped, msg!, pub!)).toBe(false);
    expect(verify(sig!, Uint8Array.of(...msg!, 0), pub!)).toBe(false);
  });

  it('malformed input is false, never a throw', () => {
    const v = RFC8032[0]!;
    expect(verify(hex(v.signature).subarray(1), hex(v.message), hex(v.public))).toBe(false);
    expect(verify(hex(v.signature), hex(v.message), new Uint8Array(31))).toBe(false);
    // S >= L (non-canonical) is refused under RFC 8032 rules.
    const big = Uint8Array.from(hex(v.signature));
    big.fill(0xff, 32);
    expect(verify(big, hex(v.message), hex(v.public))).toBe(false);
  });

  it.each(SMALL_ORDER)('refuses the small-order key %s when admitted', (k) => {
    expect(codeOf(() => assertAdmissibleKey(hex(k), 'test key'))).toMatch(
      /^(SMALL_ORDER_KEY|BAD_KEY)$/,
    );
  });

  it('admits real keys and refuses garbage with BAD_KEY', () => {
    for (const v of RFC8032)
      expect(codeOf(() => assertAdmissibleKey(hex(v.public), 'k'))).toBe('no error');
    expect(codeOf(() => assertAdmissibleKey(new Uint8Array(31), 'k'))).toBe('BAD_KEY');
    // Not on the curve (y = 2 has no x).
    expect(codeOf(() => assertAdmissibleKey(hex('02'.padEnd(64, '0')), 'k'))).toBe('BAD_KEY');
    expect(codeOf(() => assertAdmissibleKey(hex(SMALL_ORDER[0]!), 'k'))).toBe('SMALL_ORDER_KEY');
  });
});

/** The order of the ed25519 base point. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (n: bigint) =>
  Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 255n));
const leNum = (b: Uint8Array) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n);
const scalar = () => leNum(randomBytes(32)) % L;

describe("ed25519: the OpenSSL fast path keeps noble's rule", () => {
  const strict = (sig: Uint8Array, msg: Uint8Array, pub: Uint8Array) => {
    try {
      return ed.verify(sig, msg, pub, { zip215: false });
    } catch {
      return false;
    }
  };

  it('signs the same bytes as noble and agrees on 64 random and mutated signatures', () => {
    for (let i = 0; i < 64; i++) {
      const secret = randomBytes(32);
      const msg = randomBytes(i % 50);
      const sig = sign(msg, secret);
      expect(Buffer.from(sig)).toEqual(Buffer.from(ed.sign(msg, secret)));
      const pub = publicKeyOf(secret);
      const bad = Uint8Array.from(sig);
      bad[i % 64]! ^= 1 << i % 8;
      for (const [s, m] of [
        [sig, msg],
        [bad, msg],
        [sig, Uint8Array.of(...msg, 1)],
      ] as const)
        expect(verify(s, m, pub)).toBe(strict(s, m, pub));
    }
  });

  it("derives the same public key as noble from 64 random seeds, and noble's error for a bad seed", () => {
    for (let i = 0; i < 64; i++) {
      const secret = randomBytes(32);
      expect(Buffer.from(publicKeyOf(secret))).toEqual(Buffer.from(ed.getPublicKey(secret)));
    }
    expect(() => publicKeyOf(randomBytes(31))).toThrow();
  });

  it("a signature valid only under the cofactored equation gets noble's answer (true)", () => {
    const a = scalar();
    const pub = ed.Point.BASE.multiply(a).toBytes();
    const r = scalar();
    // R moved by a point of order 8: [S]B - R - [k]A is that point, which [8] clears.
    const R = ed.Point.BASE.multiply(r).add(ed.Point.fromBytes(hex(SMALL_ORDER[4]!), false));
    const msg = Buffer.from('cofactor');
    const Rb = R.toBytes();
    const k = leNum(sha512(Uint8Array.of(...Rb, ...pub, ...msg))) % L;
    const sig = Uint8Array.of(...Rb, ...le((r + k * a) % L));
    expect(strict(sig, msg, pub)).toBe(true);
    expect(verify(sig, msg, pub)).toBe(true);
  });

  it.each(SMALL_ORDER)(
    'a small-order key %s verifies nothing, even a matching "signature"',
    (k) => {
      // With A of small order, [k]A vanishes under [8]: R = [s]B, S = s "verifies" any message.
      const s = scalar();
      const sig = Uint8Array.of(...ed.Point.BASE.multiply(s).toBytes(), ...le(s));
      expect(verify(sig, Buffer.from('any'), hex(k))).toBe(false);
    },
  );

  it('a non-canonical key encoding (y >= p) verifies nothing', () => {
    // y = p + 1 encodes the identity non-canonically.
    const key = hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    const s = scalar();
    const sig = Uint8Array.of(...ed.Point.BASE.multiply(s).toBytes(), ...le(s));
    expect(verify(sig, Buffer.from('any'), key)).toBe(false);
  });
});

type Doc = { value?: A.ImmutableString; kind?: string };

/** A writer's document: the derived base, its key, and a helper to sign its current heads. */
function writer() {
  const key = deriveKeyPair(generateNodeKey().secret, 'flt/v1/doc/facts');
  const docId = docIdFor(key.publicKey);
  let doc = A.load<Doc>(baseDocument(docId, { kind: 'test' }));
  let seq = 0;
  return {
    docId,
    key,
    get doc() {
      return doc;
    },
    write(value: string) {
      doc = A.change(doc, (d) => void (d.value = new A.ImmutableString(value)));
    },
    sign(): SignedHeads {
      return signHeads(docId, ++seq, A.getHeads(doc), key.secret, key.publicKey);
    },
  };
}

describe('signed heads', () => {
  it('a record survives JSON and verifies against its document and writer', () => {
    const w = writer();
    w.write('one');
    const signed = JSON.parse(JSON.stringify(w.sign())) as unknown;
    const ok = verifySignedHeads(signed, { docId: w.docId, writeKey: w.sign().writeKey });
    expect(ok.heads).toEqual(A.getHeads(w.doc));
  });

  it('refuses tampered, misdirected and foreign-key records', () => {
    const [w, other] = [writer(), writer()];
    w.write('one');
    const s = w.sign();
    const expectW = { docId: w.docId };
    const tamper = (over: Partial<SignedHeads>) => () =>
      verifySignedHeads({ ...s, ...over }, expectW);
    expect(codeOf(tamper({ seq: s.seq + 1 }))).toBe('BAD_SIGNATURE');
    expect(codeOf(tamper({ heads: ['00'.repeat(32)] }))).toBe('BAD_SIGNATURE');
    expect(codeOf(tamper({ sig: '00'.repeat(64) }))).toBe('BAD_SIGNATURE');
    // Another writer's valid record, presented for w's document.
    other.write('x');
    expect(codeOf(() => verifySignedHeads(other.sign(), expectW))).toBe('BAD_SIGNATURE');
    // A valid signature by a key that does not own the document it names.
    const forged = signHeads(w.docId, 9, A.getHeads(w.doc), other.key.secret, other.key.publicKey);
    expect(codeOf(() => verifySignedHeads(forged, expectW))).toBe('BAD_SIGNATURE');
    // Expecting a writer key: another key is refused even before the signature.
    expect(codeOf(() => verifySignedHeads(s, { ...expectW, writeKey: 'ab'.repeat(32) }))).toBe(
      'BAD_SIGNATURE',
    );
    expect(codeOf(() => verifySignedHeads({ ...s, heads: 'x' }, expectW))).toBe('BAD_MESSAGE');
    expect(codeOf(() => verifySignedHeads(null, expectW))).toBe('BAD_MESSAGE');
  });

  it('the trusted view hides a change injected by a relay, and says one exists', () => {
    const w = writer();
    w.write('signed value');
    const signed = verifySignedHeads(w.sign(), { docId: w.docId });
    // A relay (a compromised coordinator) adds its own change to the writer's document.
    const relayed = A.change(A.clone(w.doc, { actor: 'ff'.repeat(16) }), (d) => {
      d.value = new A.ImmutableString('injected');
    });
    const view = trustedView(relayed, signed);
    expect(view.unverified).toBe(true);
    expect(view.doc?.value?.val).toBe('signed value');
    // Without any verified record nothing is shown.
    expect(trustedView(relayed, undefined)).toEqual({ doc: undefined, unverified: true });
    // Signed heads whose changes have not arrived yet: nothing to show yet.
    w.write('newer');
    const ahead = verifySignedHeads(w.sign(), { docId: w.docId });
    expect(trustedView(relayed, ahead).doc).toBeUndefined();
    // The writer's own document at its own heads: everything, nothing unverified.
    expect(trustedView(w.doc, ahead)).toMatchObject({ unverified: false });
    expect(newer(signed, ahead)).toBe(ahead);
    expect(newer(ahead, signed)).toBe(ahead);
  });
});
