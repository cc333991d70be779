// Nix's base-32: the alphabet without e, o, u, t, and the bytes read from the end, so that the
// text is Nix's own (store path hashes, `sha256:` narHashes, narinfo URLs). Checked against
// `nix-store -q --hash` (test/nix32.test.ts).

import { FltError } from '../errors.js';

export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

const DIGIT = new Map([...NIX32_ALPHABET].map((c, i) => [c, i]));

/** Characters of the Nix base-32 text of `bytes` bytes (52 for a SHA-256, 32 for 20 bytes). */
export function nix32Length(bytes: number): number {
  return Math.ceil((bytes * 8) / 5);
}

/** The Nix base-32 text of `bytes`. */
export function nix32(bytes: Uint8Array): string {
  const len = nix32Length(bytes.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = (bytes[i]! >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    out += NIX32_ALPHABET[c & 0x1f];
  }
  return out;
}

/**
 * The `size` bytes that `text` encodes.
 * @throws FltError BAD_ARGUMENT for a wrong length, a character outside the alphabet, or bits
 *   set beyond `size` bytes (Nix refuses those too).
 */
export function fromNix32(text: string, size: number): Uint8Array {
  if (text.length !== nix32Length(size))
    throw new FltError('BAD_ARGUMENT', `nix32: ${text.length} characters for ${size} bytes`);
  const out = new Uint8Array(size);
  for (let n = 0; n < text.length; n++) {
    const digit = DIGIT.get(text[text.length - n - 1]!);
    if (digit === undefined) throw new FltError('BAD_ARGUMENT', 'nix32: not a base-32 character');
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) out[i + 1]! |= carry;
    else if (carry !== 0) throw new FltError('BAD_ARGUMENT', 'nix32: bits beyond the hash');
  }
  return out;
}

/** Whether `text` is the Nix base-32 of exactly `size` bytes. */
export function isNix32(text: unknown, size: number): text is string {
  if (typeof text !== 'string') return false;
  try {
    fromNix32(text, size);
    return true;
  } catch {
    return false;
  }
}
