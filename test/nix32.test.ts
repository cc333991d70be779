// Nix's base-32 against values Nix printed (test/fixtures/narinfo-golden.json: `nix-store -q
// --hash` next to the NAR's sha256 hex), round trips, and the refusals Nix makes too.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { fromNix32, isNix32, nix32, nix32Length } from '../src/artifacts/nix32.js';
import type { FltError } from '../src/errors.js';

interface Golden {
  paths: { narHash: string; narHashHex: string }[];
}
const golden = JSON.parse(
  readFileSync(new URL('fixtures/narinfo-golden.json', import.meta.url), 'utf8'),
) as Golden;

it("encodes a sha256 exactly as Nix prints it, and decodes Nix's text back", () => {
  expect(golden.paths.length).toBeGreaterThan(1);
  for (const p of golden.paths) {
    const bytes = Buffer.from(p.narHashHex, 'hex');
    expect(`sha256:${nix32(bytes)}`).toBe(p.narHash);
    expect(Buffer.from(fromNix32(p.narHash.slice(7), 32)).toString('hex')).toBe(p.narHashHex);
  }
  // A value from the design's measurements (§0), independent of the fixture.
  expect(nix32(new Uint8Array(32))).toBe('0'.repeat(52));
});

it('round-trips every length, with 52 characters for 32 bytes and 32 for 20', () => {
  expect(nix32Length(32)).toBe(52);
  expect(nix32Length(20)).toBe(32);
  for (let n = 0; n <= 40; n++) {
    const b = new Uint8Array(randomBytes(n));
    const text = nix32(b);
    expect(text).toHaveLength(nix32Length(n));
    expect(text).toMatch(/^[0-9abcdfghijklmnpqrsvwxyz]*$/);
    expect(fromNix32(text, n)).toEqual(b);
  }
});

it('refuses a wrong length, a letter outside the alphabet, and bits past the end', () => {
  const ok = nix32(new Uint8Array(randomBytes(32)));
  const cases = [ok.slice(1), `${ok}0`, `e${ok.slice(1)}`, `u${ok.slice(1)}`, `z${ok.slice(1)}`];
  for (const text of cases) {
    expect(isNix32(text, 32)).toBe(false);
    try {
      fromNix32(text, 32);
      expect.fail(`accepted ${text}`);
    } catch (err) {
      expect((err as FltError).code).toBe('BAD_ARGUMENT');
    }
  }
  expect(isNix32(ok, 32)).toBe(true);
});
