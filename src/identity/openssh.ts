// OpenSSH ed25519 keys as bytes and text: the private key file (openssh-key-v1, unencrypted only;
// grammar in OpenSSH's PROTOCOL.key) and the one-line public key. Every read is bounded and every
// malformed input is an FltError (BAD_KEY), never a RangeError. File handling is in node-key.ts.

import * as ed from '@noble/ed25519';
import { randomBytes } from 'node:crypto';
import { publicKeyOf } from '../../sync/ed25519.js';
import { FltError } from '../../sync/errors.js';

const KEY_TYPE = 'ssh-ed25519';
const SEED_BYTES = 32;
const PUBLIC_BYTES = 32;
const MAGIC = new TextEncoder().encode('openssh-key-v1\0');
const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PEM_END = '-----END OPENSSH PRIVATE KEY-----';
/** Block size of the "none" cipher (OpenSSH cipher.c); the private section is padded to it. */
const BLOCK_SIZE = 8;
/** OpenSSH wraps the base64 body at 70 columns (sshkey.c, sshkey_private_to_blob2). */
const LINE_WIDTH = 70;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Key type names are short printable ASCII ("ssh-rsa", "sk-ssh-ed25519@openssh.com"). */
const TYPE_NAME_RE = /^[\x21-\x7e]{1,64}$/;

/** An unencrypted ed25519 key read from an OpenSSH private key file. */
export interface OpenSshPrivateKey {
  /** The 32-byte ed25519 seed (RFC 8032 secret key). */
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly comment: string;
}

/**
 * The ed25519 public key of a 32-byte seed (sync/ed25519.ts publicKeyOf, through OpenSSL), with
 * identity's error for a seed of the wrong size.
 */
export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  if (seed.length !== SEED_BYTES) {
    throw new FltError(
      'BAD_KEY',
      `an ed25519 secret key has ${SEED_BYTES} bytes, got ${seed.length}`,
    );
  }
  return publicKeyOf(seed);
}

/**
 * Parses an unencrypted OpenSSH ed25519 private key file.
 * @param source the file name (or another label) used in error messages.
 * @throws FltError KEY_ENCRYPTED, KEY_WRONG_TYPE, or BAD_KEY for anything malformed.
 */
export function parseOpenSshPrivateKey(text: string, source = 'key'): OpenSshPrivateKey {
  const r = new SshReader(dearmor(text, source), source);
  if (!bytesEqual(r.bytes(MAGIC.length), MAGIC)) throw malformed(source, 'bad magic');
  const cipher = r.text();
  const kdf = r.text();
  const kdfOptions = r.string();
  const count = r.u32();
  if (count !== 1) throw malformed(source, `holds ${count} keys, expected 1`);
  // The type is checked before the cipher: decrypting an RSA key would not help.
  const publicKey = readPublicBlob(r.string(), source);
  if (cipher !== 'none') throw encrypted(source);
  if (kdf !== 'none' || kdfOptions.length !== 0) throw malformed(source, 'kdf without cipher');
  const section = r.string();
  r.end();
  return readPrivateSection(section, publicKey, source);
}

/**
 * Serializes a seed as an unencrypted OpenSSH private key file (what `ssh-keygen -t ed25519 -N ''`
 * writes), ending in a newline.
 */
export function encodeOpenSshPrivateKey(seed: Uint8Array, comment = ''): string {
  const publicKey = ed25519PublicKey(seed);
  const w = new SshWriter();
  w.bytes(MAGIC).string('none').string('none').string(new Uint8Array(0)).u32(1);
  w.string(publicBlob(publicKey)).string(privateSection(seed, publicKey, comment));
  return armor(w.finish());
}

/**
 * Parses a public key line (`ssh-ed25519 AAAA... comment`, as in a `.pub` file) into the
 * 32-byte key. Rejects encodings that are not a curve point, and small-order points.
 * @throws FltError KEY_WRONG_TYPE for another key type, BAD_KEY for anything malformed.
 */
export function parseOpenSshPublicKey(text: string, source = 'public key'): Uint8Array {
  if (text.includes('PRIVATE KEY-----')) {
    throw malformed(source, 'is a private key; pass the .pub file');
  }
  const line = text.trim();
  const [type, body] = line.split(/\s+/);
  if (line.includes('\n') || type === undefined || body === undefined) {
    throw malformed(source, 'expected one line "ssh-ed25519 <base64> [comment]"');
  }
  if (type !== KEY_TYPE) {
    throw TYPE_NAME_RE.test(type) ? wrongType(source, type) : malformed(source, 'bad key type');
  }
  const publicKey = readPublicBlob(decodeBase64(body, source), source);
  assertUsablePoint(publicKey, source);
  return publicKey;
}

/** Formats a public key line, `ssh-ed25519 <base64> comment`, without a trailing newline. */
export function formatOpenSshPublicKey(publicKey: Uint8Array, comment = ''): string {
  if (publicKey.length !== PUBLIC_BYTES) {
    throw new FltError('BAD_KEY', `an ed25519 public key has 32 bytes, got ${publicKey.length}`);
  }
  if (/[\r\n]/.test(comment)) throw new FltError('BAD_ARGUMENT', 'a key comment is one line');
  const blob = Buffer.from(publicBlob(publicKey)).toString('base64');
  return comment === '' ? `${KEY_TYPE} ${blob}` : `${KEY_TYPE} ${blob} ${comment}`;
}

function readPublicBlob(blob: Uint8Array, source: string): Uint8Array {
  const r = new SshReader(blob, source);
  const type = r.text();
  if (type !== KEY_TYPE) {
    throw TYPE_NAME_RE.test(type) ? wrongType(source, type) : malformed(source, 'bad key type');
  }
  const publicKey = r.string();
  r.end();
  if (publicKey.length !== PUBLIC_BYTES) throw malformed(source, 'public key is not 32 bytes');
  return publicKey.slice();
}

function readPrivateSection(
  section: Uint8Array,
  publicKey: Uint8Array,
  source: string,
): OpenSshPrivateKey {
  if (section.length % BLOCK_SIZE !== 0) throw malformed(source, 'private section not padded');
  const r = new SshReader(section, source);
  if (r.u32() !== r.u32()) throw malformed(source, 'check numbers differ');
  if (r.text() !== KEY_TYPE) throw malformed(source, 'private key type differs from public');
  if (!bytesEqual(r.string(), publicKey)) throw malformed(source, 'public keys differ');
  const pair = r.string();
  const seed = pair.slice(0, SEED_BYTES);
  if (
    pair.length !== SEED_BYTES + PUBLIC_BYTES ||
    !bytesEqual(pair.subarray(SEED_BYTES), publicKey)
  ) {
    throw malformed(source, 'bad secret key');
  }
  if (!bytesEqual(ed25519PublicKey(seed), publicKey)) {
    throw malformed(source, 'public key does not belong to the secret key');
  }
  const comment = new TextDecoder().decode(r.string());
  checkPadding(r.bytes(r.remaining), source);
  return { seed, publicKey, comment };
}

/** Padding is 1, 2, 3, ... up to the block size (OpenSSH sshkey.c, private2_check_padding). */
function checkPadding(padding: Uint8Array, source: string): void {
  const ok = padding.length < BLOCK_SIZE && padding.every((b, i) => b === i + 1);
  if (!ok) throw malformed(source, 'bad padding');
}

function publicBlob(publicKey: Uint8Array): Uint8Array {
  return new SshWriter().string(KEY_TYPE).string(publicKey).finish();
}

function privateSection(seed: Uint8Array, publicKey: Uint8Array, comment: string): Uint8Array {
  // The check number only detects a wrong passphrase; OpenSSH makes it random, and so do we.
  const check = randomBytes(4);
  const w = new SshWriter().bytes(check).bytes(check).string(KEY_TYPE).string(publicKey);
  w.string(concat(seed, publicKey)).string(comment);
  const body = w.finish();
  const padding = Array.from({ length: (BLOCK_SIZE - (body.length % BLOCK_SIZE)) % BLOCK_SIZE });
  return concat(
    body,
    Uint8Array.from(padding, (_, i) => i + 1),
  );
}

function dearmor(text: string, source: string): Uint8Array {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PEM_BEGIN)) throw notOpenSsh(trimmed, source);
  if (!trimmed.endsWith(PEM_END)) throw malformed(source, 'truncated, no END line');
  const body = trimmed.slice(PEM_BEGIN.length, trimmed.length - PEM_END.length);
  return decodeBase64(body.replace(/\s+/g, ''), source);
}

function armor(bytes: Uint8Array): string {
  const base64 = Buffer.from(bytes).toString('base64');
  const lines = base64.match(new RegExp(`.{1,${LINE_WIDTH}}`, 'g')) ?? [];
  return `${PEM_BEGIN}\n${lines.join('\n')}\n${PEM_END}\n`;
}

/** Node's base64 decoder skips bad characters silently, so the text is checked first. */
function decodeBase64(text: string, source: string): Uint8Array {
  if (!BASE64_RE.test(text)) throw malformed(source, 'bad base64');
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** Names the formats people most often pass by mistake. */
function notOpenSsh(text: string, source: string): FltError {
  const pem = /^-----BEGIN (RSA|EC|DSA) PRIVATE KEY-----/.exec(text);
  if (pem) return wrongType(source, `PEM ${pem[1] ?? ''}`);
  if (/^(ssh-|ecdsa-|sk-)/.test(text)) {
    return malformed(source, 'is a public key; pass the private key file');
  }
  return malformed(source, `does not start with ${PEM_BEGIN}`);
}

function assertUsablePoint(publicKey: Uint8Array, source: string): void {
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(publicKey);
  } catch (err) {
    throw new FltError('BAD_KEY', `${source}: not an ed25519 curve point`, { cause: err });
  }
  if (point.isSmallOrder()) throw malformed(source, 'small-order public key');
}

function malformed(source: string, why: string): FltError {
  return new FltError('BAD_KEY', `${source}: not a valid OpenSSH ed25519 key (${why})`);
}

function wrongType(source: string, type: string): FltError {
  return new FltError(
    'KEY_WRONG_TYPE',
    `${source} is not an ed25519 key (type ${type}); flt needs one: ssh-keygen -t ed25519`,
  );
}

function encrypted(source: string): FltError {
  return new FltError(
    'KEY_ENCRYPTED',
    `${source} is encrypted; flt needs an unencrypted key: ssh-keygen -p -N '' -f ${source}`,
  );
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Bounded reader for the SSH wire encoding (RFC 4251 §5): uint32 and length-prefixed strings. */
class SshReader {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly source: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  bytes(n: number): Uint8Array {
    if (n > this.remaining) throw malformed(this.source, 'truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u32(): number {
    const b = this.bytes(4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
  }

  string(): Uint8Array {
    return this.bytes(this.u32());
  }

  text(): string {
    return new TextDecoder().decode(this.string());
  }

  end(): void {
    if (this.remaining !== 0) throw malformed(this.source, 'trailing bytes');
  }
}

class SshWriter {
  private readonly parts: Uint8Array[] = [];

  bytes(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }

  u32(n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return this.bytes(b);
  }

  string(value: Uint8Array | string): this {
    const b = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    return this.u32(b.length).bytes(b);
  }

  finish(): Uint8Array {
    return this.parts.reduce(concat, new Uint8Array(0));
  }
}
