// Identity: OpenSSH key files checked against the real ssh-keygen, node.key lifecycle on real
// files in a temp dir, derived keys against a golden vector, node ids against iroh itself.

import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretKey } from '@number0/iroh/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import {
  DERIVE_PURPOSES,
  deriveKeyPair,
  deriveKeyPairFor,
  deriveSeed,
  deriveSeedFor,
  encodeOpenSshPrivateKey,
  formatOpenSshPublicKey,
  generateNodeKey,
  loadOrCreateNodeKey,
  loadPublicKeyFile,
  loadSecretKeyFile,
  nodeKeyFromSeed,
  parseOpenSshPrivateKey,
  parseOpenSshPublicKey,
  writeKeyPair,
} from '../src/identity/index.js';

const SSH_KEYGEN = '/usr/bin/ssh-keygen';
let dir: string;

function keygen(name: string, args: readonly string[], passphrase = ''): string {
  const path = join(dir, name);
  execFileSync(SSH_KEYGEN, ['-q', ...args, '-N', passphrase, '-C', 'test', '-f', path]);
  return path;
}

/** The 32-byte key inside `ssh-ed25519 <base64> comment`, decoded independently of src/. */
function publicKeyFromPubLine(line: string): Uint8Array {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? '', 'base64');
  const typeLength = blob.readUInt32BE(0);
  expect(blob.subarray(4, 4 + typeLength).toString()).toBe('ssh-ed25519');
  const keyLength = blob.readUInt32BE(4 + typeLength);
  expect(keyLength).toBe(32);
  return new Uint8Array(blob.subarray(8 + typeLength, 8 + typeLength + keyLength));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function codeOfCall(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FltError) return err.code;
    throw err;
  }
  return 'NO_ERROR';
}

function armor(binary: Uint8Array): string {
  const body = Buffer.from(binary).toString('base64');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${body}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

function dearmor(text: string): Uint8Array {
  const body = text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  return new Uint8Array(Buffer.from(body, 'base64'));
}

let ed25519: string;
let encrypted: string;
let rsa: string;
let ecdsa: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flt-identity-'));
  ed25519 = keygen('ed25519', ['-t', 'ed25519']);
  encrypted = keygen('encrypted', ['-t', 'ed25519'], 'secret');
  rsa = keygen('rsa', ['-t', 'rsa', '-b', '2048']);
  ecdsa = keygen('ecdsa', ['-t', 'ecdsa', '-b', '256']);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('OpenSSH private keys', () => {
  it('parses an ssh-keygen ed25519 key to the node id in its .pub file', async () => {
    const expected = publicKeyFromPubLine(await readFile(`${ed25519}.pub`, 'utf8'));
    const parsed = parseOpenSshPrivateKey(await readFile(ed25519, 'utf8'));
    expect(hex(parsed.publicKey)).toBe(hex(expected));
    expect(parsed.comment).toBe('test');
    const key = await loadSecretKeyFile(ed25519);
    expect(key.nodeId).toBe(hex(expected));
  });

  it('rejects an encrypted key with KEY_ENCRYPTED', async () => {
    const text = await readFile(encrypted, 'utf8');
    expect(codeOfCall(() => parseOpenSshPrivateKey(text))).toBe('KEY_ENCRYPTED');
    await expect(loadSecretKeyFile(encrypted)).rejects.toMatchObject({ code: 'KEY_ENCRYPTED' });
  });

  it('rejects rsa and ecdsa keys with KEY_WRONG_TYPE', async () => {
    for (const path of [rsa, ecdsa]) {
      const text = await readFile(path, 'utf8');
      expect(codeOfCall(() => parseOpenSshPrivateKey(text))).toBe('KEY_WRONG_TYPE');
      await expect(loadSecretKeyFile(path)).rejects.toMatchObject({ code: 'KEY_WRONG_TYPE' });
    }
  });

  it('rejects the text truncated at every offset with BAD_KEY', async () => {
    const text = (await readFile(ed25519, 'utf8')).trimEnd();
    for (let at = 0; at < text.length; at++) {
      expect(codeOfCall(() => parseOpenSshPrivateKey(text.slice(0, at)))).toBe('BAD_KEY');
    }
  });

  it('rejects the decoded bytes truncated at every offset with BAD_KEY', async () => {
    const binary = dearmor(await readFile(ed25519, 'utf8'));
    expect(codeOfCall(() => parseOpenSshPrivateKey(armor(binary)))).toBe('NO_ERROR');
    for (let at = 0; at < binary.length; at++) {
      const code = codeOfCall(() => parseOpenSshPrivateKey(armor(binary.subarray(0, at))));
      expect(code, `truncated at ${at}`).toBe('BAD_KEY');
    }
  });

  it('turns every corrupted byte into an FltError or the same key (comment bytes)', async () => {
    const binary = dearmor(await readFile(ed25519, 'utf8'));
    const seed = parseOpenSshPrivateKey(armor(binary)).seed;
    for (let at = 0; at < binary.length; at++) {
      const corrupt = binary.slice();
      corrupt[at] = (corrupt[at] ?? 0) ^ 0xff;
      try {
        expect(hex(parseOpenSshPrivateKey(armor(corrupt)).seed), `byte ${at}`).toBe(hex(seed));
      } catch (err) {
        expect(err, `byte ${at}`).toBeInstanceOf(FltError);
      }
    }
  });

  it('rejects garbage, trailing bytes, and a public key given as a private key', async () => {
    const binary = dearmor(await readFile(ed25519, 'utf8'));
    const pubLine = await readFile(`${ed25519}.pub`, 'utf8');
    const cases = [
      '',
      'hello',
      '-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n',
      armor(new Uint8Array(500).fill(0xff)),
      armor(Uint8Array.from([...binary, 0])),
      pubLine,
    ];
    for (const text of cases)
      expect(codeOfCall(() => parseOpenSshPrivateKey(text))).toBe('BAD_KEY');
  });

  it('writes keys that ssh-keygen -y accepts, with the same public key', async () => {
    const key = generateNodeKey();
    const path = join(dir, 'ours');
    await writeFile(path, encodeOpenSshPrivateKey(key.secret, 'ours'), { mode: 0o600 });
    const printed = execFileSync(SSH_KEYGEN, ['-y', '-f', path], { encoding: 'utf8' });
    expect(hex(publicKeyFromPubLine(printed))).toBe(key.nodeId);
    expect(printed.trim()).toBe(formatOpenSshPublicKey(key.publicKey, 'ours'));
    const parsed = parseOpenSshPrivateKey(await readFile(path, 'utf8'));
    expect(hex(parsed.seed)).toBe(hex(key.secret));
    expect(parsed.comment).toBe('ours');
  });
});

describe('OpenSSH public keys', () => {
  it('parses and formats the .pub line', async () => {
    const line = await readFile(`${ed25519}.pub`, 'utf8');
    const publicKey = parseOpenSshPublicKey(line);
    expect(hex(publicKey)).toBe(hex(publicKeyFromPubLine(line)));
    expect(formatOpenSshPublicKey(publicKey, 'test')).toBe(line.trim());
    expect(await loadPublicKeyFile(`${ed25519}.pub`)).toBe(hex(publicKey));
  });

  it('rejects other key types with KEY_WRONG_TYPE', async () => {
    for (const path of [rsa, ecdsa]) {
      const line = await readFile(`${path}.pub`, 'utf8');
      expect(codeOfCall(() => parseOpenSshPublicKey(line))).toBe('KEY_WRONG_TYPE');
      await expect(loadPublicKeyFile(`${path}.pub`)).rejects.toMatchObject({
        code: 'KEY_WRONG_TYPE',
      });
    }
  });

  it('rejects malformed lines and small-order keys with BAD_KEY', async () => {
    const line = (await readFile(`${ed25519}.pub`, 'utf8')).trim();
    const [type, body] = line.split(' ');
    const blob = Buffer.from(body ?? '', 'base64');
    const identity = Buffer.concat([blob.subarray(0, blob.length - 32), Buffer.alloc(32)]);
    identity[identity.length - 32] = 1; // y = 1: the identity point, order 1
    const cases = [
      '',
      'ssh-ed25519',
      `ssh-ed25519 ${(body ?? '').slice(0, 20)}`,
      `ssh-ed25519 ${body ?? ''}!`,
      `${type ?? ''} ${blob.subarray(0, blob.length - 1).toString('base64')}`,
      `${type ?? ''} ${identity.toString('base64')}`,
      `${line}\n${line}`,
      await readFile(ed25519, 'utf8'),
    ];
    for (const text of cases) expect(codeOfCall(() => parseOpenSshPublicKey(text))).toBe('BAD_KEY');
  });
});

describe('node key files', () => {
  it('creates a 0600 node.key on first run and returns it again after', async () => {
    const stateDir = join(dir, 'state', 'nested');
    const first = await loadOrCreateNodeKey(stateDir);
    expect(first.created).toBe(true);
    expect((await stat(join(stateDir, 'node.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    const second = await loadOrCreateNodeKey(stateDir);
    expect(second.created).toBe(false);
    expect(second.key.nodeId).toBe(first.key.nodeId);
    expect(hex(second.key.secret)).toBe(hex(first.key.secret));
    // node.key is an OpenSSH key, so it also works as --secret-key and with ssh-keygen.
    const printed = execFileSync(SSH_KEYGEN, ['-y', '-f', join(stateDir, 'node.key')], {
      encoding: 'utf8',
    });
    expect(hex(publicKeyFromPubLine(printed))).toBe(first.key.nodeId);
  });

  it('lets exactly one of many racing callers create the key', async () => {
    const stateDir = join(dir, 'race');
    const results = await Promise.all(
      Array.from({ length: 8 }, () => loadOrCreateNodeKey(stateDir)),
    );
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.key.nodeId)).size).toBe(1);
  });

  it('refuses a key file others can read with KEY_PERMISSIONS', async () => {
    const stateDir = join(dir, 'open');
    await loadOrCreateNodeKey(stateDir);
    await chmod(join(stateDir, 'node.key'), 0o644);
    await expect(loadOrCreateNodeKey(stateDir)).rejects.toMatchObject({ code: 'KEY_PERMISSIONS' });
    const copy = join(dir, 'open-copy');
    await writeFile(copy, await readFile(ed25519), { mode: 0o640 });
    await chmod(copy, 0o640);
    await expect(loadSecretKeyFile(copy)).rejects.toMatchObject({ code: 'KEY_PERMISSIONS' });
    // A .pub passed as --secret-key is named as such, not met with advice to chmod it.
    await expect(loadSecretKeyFile(`${ed25519}.pub`)).rejects.toMatchObject({ code: 'BAD_KEY' });
  });

  it('reports a missing --secret-key file as IO', async () => {
    await expect(loadSecretKeyFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'IO' });
    await expect(loadPublicKeyFile(join(dir, 'missing.pub'))).rejects.toMatchObject({
      code: 'IO',
    });
  });

  it('writes a key pair, refusing to overwrite unless forced', async () => {
    const out = join(dir, 'pair');
    const key = generateNodeKey();
    await writeKeyPair(out, key, { comment: 'pair' });
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect((await loadSecretKeyFile(out)).nodeId).toBe(key.nodeId);
    expect(await loadPublicKeyFile(`${out}.pub`)).toBe(key.nodeId);
    const other = generateNodeKey();
    await expect(writeKeyPair(out, other)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await rm(out);
    await expect(writeKeyPair(out, other)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await writeKeyPair(out, other, { force: true });
    expect((await loadSecretKeyFile(out)).nodeId).toBe(other.nodeId);
    expect(await loadPublicKeyFile(`${out}.pub`)).toBe(other.nodeId);
  });

  it('computes the same node id as iroh', () => {
    for (const seed of [new Uint8Array(32).fill(1), generateNodeKey().secret]) {
      const irohId = SecretKey.fromBytes(Array.from(seed)).public().toString();
      expect(nodeKeyFromSeed(seed).nodeId).toBe(irohId);
    }
  });

  it('rejects a seed of the wrong length with BAD_KEY', () => {
    expect(codeOfCall(() => nodeKeyFromSeed(new Uint8Array(31)))).toBe('BAD_KEY');
  });
});

describe('derived keys', () => {
  const seed = new Uint8Array(32).fill(1);

  it('matches the golden vector (changing it would orphan every document)', () => {
    // HKDF-SHA256(ikm = 32 x 0x01, salt = "flt/v1/derive", info = "flt/v1/doc/facts", L = 32);
    // cross-checked against Python's hmac/hashlib when first computed.
    expect(hex(deriveSeed(seed, 'flt/v1/doc/facts'))).toBe(
      'ad4a82ba1eba2e0863587d32faf999b622a3dfa37f002b652f77b03513029351',
    );
  });

  it('is deterministic, and purposes give distinct keys', () => {
    const seeds = DERIVE_PURPOSES.map((purpose) => hex(deriveSeed(seed, purpose)));
    expect(DERIVE_PURPOSES.map((purpose) => hex(deriveSeed(seed, purpose)))).toEqual(seeds);
    expect(new Set([...seeds, hex(seed)]).size).toBe(DERIVE_PURPOSES.length + 1);
    const other = DERIVE_PURPOSES.map((purpose) => hex(deriveSeed(new Uint8Array(32), purpose)));
    expect(other.filter((s) => seeds.includes(s))).toEqual([]);
  });

  it('derives per-node keys: deterministic, distinct per node and from the node-less key', () => {
    const [x, y] = [generateNodeKey().nodeId, generateNodeKey().nodeId];
    const forX = hex(deriveSeedFor(seed, 'flt/v1/doc/desired', x));
    expect(hex(deriveSeedFor(seed, 'flt/v1/doc/desired', x))).toBe(forX);
    expect(hex(deriveSeedFor(seed, 'flt/v1/doc/desired', y))).not.toBe(forX);
    expect(hex(deriveSeed(seed, 'flt/v1/doc/desired'))).not.toBe(forX);
    expect(hex(deriveSeedFor(seed, 'flt/v1/doc/status', x))).not.toBe(forX);
    expect(hex(deriveSeedFor(new Uint8Array(32), 'flt/v1/doc/desired', x))).not.toBe(forX);
    const pair = deriveKeyPairFor(seed, 'flt/v1/doc/desired', x);
    expect(hex(pair.secret)).toBe(forX);
    expect(hex(nodeKeyFromSeed(pair.secret).publicKey)).toBe(hex(pair.publicKey));
    expect(() => deriveSeedFor(seed, 'flt/v1/doc/desired', 'nope' as NodeId)).toThrow(TypeError);
  });

  it('derives key pairs whose public key matches the seed', () => {
    const pair = deriveKeyPair(seed, 'flt/v1/author');
    expect(hex(nodeKeyFromSeed(pair.secret).publicKey)).toBe(hex(pair.publicKey));
    expect(hex(pair.secret)).toBe(hex(deriveSeed(seed, 'flt/v1/author')));
  });
});
