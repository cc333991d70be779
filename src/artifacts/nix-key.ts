// Nix's binary-cache keys and signatures, the way Nix makes and checks them: key files of
// `nix-store --generate-binary-cache-key` (`name:` + base64 of the 64-byte secret, seed then
// public key; `name:` + base64 of the 32-byte public key), and `Sig: name:base64(ed25519
// signature of the narinfo fingerprint)`. Byte-identical to `nix store sign` (test/narinfo.test.ts).

import { readFile } from 'node:fs/promises';
import { publicKeyOf, sign as edSign, verify } from '../../sync/ed25519.js';
import { FltError } from '../errors.js';
import { fingerprint, type NarMeta } from './meta.js';

export interface SigningKey {
  readonly name: string;
  /** The 32-byte ed25519 seed. */
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface PublicKey {
  readonly name: string;
  readonly key: Uint8Array;
}

const NAME = /^[\x21-\x39\x3b-\x7e]{1,128}$/; // printable, no ':' and no space

/** `name:base64` -> [name, bytes], or undefined when malformed or not `bytes` long. */
function splitKey(text: string, bytes: number): [string, Uint8Array] | undefined {
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  const name = text.slice(0, colon);
  const b64 = text.slice(colon + 1);
  const raw = Buffer.from(b64, 'base64');
  if (!NAME.test(name) || raw.length !== bytes || raw.toString('base64') !== b64) return undefined;
  return [name, new Uint8Array(raw)];
}

/**
 * Reads a secret key file of `nix-store --generate-binary-cache-key NAME sk pk`.
 * @throws FltError NO_SIGNING_KEY when the file does not exist, BAD_SIGNING_KEY when it is not
 *   such a key (or its public half does not belong to its seed), IO for other read errors.
 */
export async function readSigningKey(file: string): Promise<SigningKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT')
      throw new FltError(
        'NO_SIGNING_KEY',
        `no Nix signing key at ${file} (make one: nix-store --generate-binary-cache-key NAME sk pk)`,
        { cause: err },
      );
    throw err;
  }
  return parseSigningKey(text.trim(), file);
}

/**
 * Parses `name:base64(seed ‖ public key)`.
 * @throws FltError BAD_SIGNING_KEY.
 */
export function parseSigningKey(text: string, where = 'the signing key'): SigningKey {
  const parts = splitKey(text, 64);
  const fail = () =>
    new FltError(
      'BAD_SIGNING_KEY',
      `${where} is not a Nix secret key (name:base64 of 64 bytes, as nix-store --generate-binary-cache-key writes)`,
    );
  if (!parts) throw fail();
  const [name, raw] = parts;
  const seed = raw.slice(0, 32);
  const publicKey = publicKeyOf(seed);
  if (Buffer.compare(publicKey, raw.subarray(32)) !== 0) throw fail();
  return { name, seed, publicKey };
}

/**
 * Parses a trusted key `name:base64(32 bytes)` (Nix's trusted-public-keys form).
 * @throws FltError BAD_KEY.
 */
export function parsePublicKey(text: string): PublicKey {
  const parts = splitKey(text.trim(), 32);
  if (!parts)
    throw new FltError('BAD_KEY', `not a Nix public key (name:base64 of 32 bytes): ${text}`);
  return { name: parts[0], key: parts[1] };
}

/** The key's public half as Nix writes it (`name:base64`), for trusted-public-keys. */
export function formatPublicKey(key: SigningKey | PublicKey): string {
  const bytes = 'seed' in key ? key.publicKey : key.key;
  return `${key.name}:${Buffer.from(bytes).toString('base64')}`;
}

/** Nix's signature of `meta` with `key`: `name:base64(64 bytes)`, deterministic. */
export function sign(meta: NarMeta, key: SigningKey): string {
  const sig = edSign(new TextEncoder().encode(fingerprint(meta)), key.seed);
  return `${key.name}:${Buffer.from(sig).toString('base64')}`;
}

/**
 * Checks one `Sig:` value against `keys` as Nix does (the key is chosen by name): 'ok' when a key
 * of that name verifies it, 'unknown-key' when no key has its name, 'bad' otherwise (malformed).
 */
export function verifySig(
  meta: NarMeta,
  sig: string,
  keys: readonly PublicKey[],
): 'ok' | 'unknown-key' | 'bad' {
  const parts = splitKey(sig, 64);
  const name = parts?.[0] ?? sig.slice(0, Math.max(0, sig.indexOf(':')));
  const named = keys.filter((k) => k.name === name);
  if (named.length === 0) return 'unknown-key';
  if (!parts) return 'bad';
  const message = new TextEncoder().encode(fingerprint(meta));
  return named.some((k) => verify(parts[1], message, k.key)) ? 'ok' : 'bad';
}
