// Nix metadata and signatures against Nix itself: test/fixtures/narinfo-golden.json (made by
// test/fixtures/gen-narinfo.sh with Debian's nix-bin) holds what `nix store sign` wrote for two
// paths; our fingerprint and ed25519 signature must be byte-identical.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeMeta,
  decodeNarMeta,
  fingerprint,
  hashPart,
  narHashName,
  narinfoText,
  type NarMeta,
} from '../src/artifacts/meta.js';
import {
  formatPublicKey,
  parsePublicKey,
  parseSigningKey,
  readSigningKey,
  sign,
  verifySig,
} from '../src/artifacts/nix-key.js';
import type { FltError } from '../src/errors.js';
import { thrownCode } from './helpers/errors.js';

interface GoldenPath {
  path: string;
  narHash: string;
  narSize: number;
  deriver: string;
  references: string[];
  sig: string;
  narSha256: string;
}
const golden = JSON.parse(
  readFileSync(new URL('fixtures/narinfo-golden.json', import.meta.url), 'utf8'),
) as { secretKey: string; publicKey: string; paths: GoldenPath[] };

const metaOf = (p: GoldenPath, sigs: string[] = []): NarMeta =>
  decodeNarMeta({
    path: p.path,
    narHash: p.narHash,
    narSize: p.narSize,
    references: p.references,
    deriver: p.deriver,
    sigs,
  });

describe('golden: what nix store sign wrote', () => {
  it('our key parsing gives the public key Nix wrote, and our signatures are byte-identical', () => {
    const key = parseSigningKey(golden.secretKey);
    expect(key.name).toBe('flt-golden-1');
    expect(formatPublicKey(key)).toBe(golden.publicKey);
    const pub = parsePublicKey(golden.publicKey);
    expect(golden.paths.some((p) => p.references.length > 1)).toBe(true);
    for (const p of golden.paths) {
      const meta = metaOf(p);
      expect(sign(meta, key)).toBe(p.sig);
      expect(verifySig(meta, p.sig, [pub])).toBe('ok');
      expect(fingerprint(meta)).toBe(
        `1;${p.path};${p.narHash};${p.narSize};${[...p.references].sort().join(',')}`,
      );
    }
  });

  it("verifySig: another key of the same name is 'bad', a key of another name 'unknown-key'", () => {
    const [p] = golden.paths;
    const meta = metaOf(p!);
    const other = {
      name: 'flt-golden-1',
      key: parsePublicKey(golden.publicKey).key.map((b) => b ^ 1),
    };
    expect(verifySig(meta, p!.sig, [other])).toBe('bad');
    expect(verifySig(meta, p!.sig, [{ ...other, name: 'elsewhere' }])).toBe('unknown-key');
    // The signature of another path, or of a changed narSize, does not verify.
    const pub = parsePublicKey(golden.publicKey);
    expect(verifySig(meta, golden.paths[1]!.sig, [pub])).toBe('bad');
    expect(verifySig({ ...meta, narSize: meta.narSize + 1 }, p!.sig, [pub])).toBe('bad');
    expect(verifySig(meta, 'flt-golden-1:bm90IGEgc2ln', [pub])).toBe('bad');
  });
});

describe('keys', () => {
  const dir = mkdtemp(join(tmpdir(), 'flt-nixkey-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));

  it('readSigningKey: NO_SIGNING_KEY for a missing file (with the command that makes one)', async () => {
    const err = (await readSigningKey(join(await dir, 'none')).catch(
      (e: unknown) => e,
    )) as FltError;
    expect(err.code).toBe('NO_SIGNING_KEY');
    expect(err.message).toContain('nix-store --generate-binary-cache-key');
  });

  it('readSigningKey reads a file with a trailing newline; BAD_SIGNING_KEY for anything else', async () => {
    const file = join(await dir, 'sk');
    await writeFile(file, `${golden.secretKey}\n`);
    expect((await readSigningKey(file)).name).toBe('flt-golden-1');
    const [name, b64] = golden.secretKey.split(':') as [string, string];
    const raw = Buffer.from(b64, 'base64');
    const wrongHalf = Buffer.concat([raw.subarray(0, 32), randomBytes(32)]).toString('base64');
    const bad = [
      '',
      b64,
      `:${b64}`,
      `${name}:`,
      `${name}:${b64.slice(4)}`,
      `${name}:${wrongHalf}`,
      `${name}:${raw.subarray(0, 32).toString('base64')}`,
      golden.publicKey,
      `a b:${b64}`,
    ];
    for (const text of bad) {
      await writeFile(file, text);
      const err = (await readSigningKey(file).catch((e: unknown) => e)) as FltError;
      expect(err.code, text).toBe('BAD_SIGNING_KEY');
    }
  });

  it('parsePublicKey refuses what is not name:base64(32 bytes) with BAD_KEY', () => {
    for (const text of [
      '',
      'x',
      'x:',
      golden.secretKey,
      'x:AAAA',
      `:${golden.publicKey.split(':')[1]}`,
    ])
      expect(thrownCode(() => parsePublicKey(text))).toBe('BAD_KEY');
  });
});

describe('metadata', () => {
  const p = golden.paths.find((x) => x.references.length > 1)!;
  const key = parseSigningKey(golden.secretKey);
  const full = { ...metaOf(p), sigs: [p.sig], b3: 'ab'.repeat(32), chunks: 1 };

  it('decodeMeta accepts a full record and refuses each bad field with BAD_MESSAGE', () => {
    expect(decodeMeta(full)).toEqual(full);
    const dir = p.path.slice(0, p.path.lastIndexOf('/'));
    const bad: Record<string, unknown>[] = [
      { path: 'relative' },
      { narHash: p.narHash.replace('sha256:', 'sha1:') },
      { narHash: `${p.narHash}0` },
      { narSize: 0 },
      { narSize: 1.5 },
      { narSize: p.narSize * 1_000_000 }, // chunks no longer matches
      { references: [...p.references].reverse() },
      { references: [p.references[0], p.references[0]] },
      { references: [`/elsewhere/${p.path.slice(dir.length + 1)}`] },
      { deriver: p.path },
      { sigs: [] },
      { sigs: [p.sig, p.sig] },
      { sigs: ['no-colon'] },
      { sigs: Array.from({ length: 9 }, (_, i) => `k${i}:${p.sig.split(':')[1]}`) },
      { b3: 'AB'.repeat(32) },
      { chunks: 2 },
    ];
    for (const change of bad)
      expect(thrownCode(() => decodeMeta({ ...full, ...change }))).toBe('BAD_MESSAGE');
    expect(thrownCode(() => decodeMeta('x'))).toBe('BAD_MESSAGE');
    expect(sign(full, key)).toBe(p.sig); // b3/chunks are not part of what Nix signs
  });

  it('narinfoText names the NAR by its nix32 hash and lists basenames, then the sigs', () => {
    const text = narinfoText(full);
    const base = (x: string) => x.slice(x.lastIndexOf('/') + 1);
    expect(text).toBe(
      [
        `StorePath: ${p.path}`,
        `URL: nar/${narHashName(full.narHash)}.nar`,
        'Compression: none',
        `NarHash: ${p.narHash}`,
        `NarSize: ${p.narSize}`,
        `References: ${p.references.map(base).join(' ')}`,
        `Deriver: ${base(p.deriver)}`,
        `Sig: ${p.sig}`,
        '',
      ].join('\n'),
    );
    expect(hashPart(full.path)).toBe(base(p.path).slice(0, 32));
  });
});
