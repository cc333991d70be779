// A node's identity: its ed25519 key, kept on disk as an OpenSSH private key so that
// `<state-dir>/node.key` and `--secret-key FILE` are interchangeable. This module owns the file
// rules (0600, crash-safe creation, refusing keys others can read); openssh.ts owns the bytes.

import { randomBytes } from 'node:crypto';
import { type FileHandle, constants, lstat, mkdir, open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { errnoOf } from '../../stores/fs-io.js';
import { FltError } from '../../sync/errors.js';
import { type NodeId, nodeIdFromBytes } from '../../sync/ids.js';
import {
  ed25519PublicKey,
  encodeOpenSshPrivateKey,
  formatOpenSshPublicKey,
  parseOpenSshPrivateKey,
  parseOpenSshPublicKey,
} from './openssh.js';

/** A node's ed25519 key; `nodeId` is its iroh EndpointId. */
export type NodeKey = {
  /** The 32-byte ed25519 seed. */
  readonly secret: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly nodeId: NodeId;
};

/** The key's file name inside the state directory. */
export const NODE_KEY_FILE = 'node.key';

/** An ed25519 key file is ~400 bytes and an RSA-16384 one ~12 KiB; anything bigger is no key. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** Builds a NodeKey from a 32-byte ed25519 seed (BAD_KEY for another length). */
export function nodeKeyFromSeed(seed: Uint8Array): NodeKey {
  const publicKey = ed25519PublicKey(seed);
  return { secret: seed.slice(), publicKey, nodeId: nodeIdFromBytes(publicKey) };
}

/** A fresh random node key. */
export function generateNodeKey(): NodeKey {
  return nodeKeyFromSeed(new Uint8Array(randomBytes(32)));
}

/**
 * Loads `<stateDir>/node.key`, creating the directory (0700) and a new key (0600) on first run.
 * Creation is crash-safe and race-safe: when two processes start together, both end up with the
 * key of the one that linked its file first.
 * @throws FltError KEY_PERMISSIONS, BAD_KEY, KEY_WRONG_TYPE, KEY_ENCRYPTED, IO.
 */
export async function loadOrCreateNodeKey(
  stateDir: string,
): Promise<{ key: NodeKey; created: boolean }> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw ioError(stateDir, err);
  });
  const path = join(stateDir, NODE_KEY_FILE);
  const existing = await readKeyFile(path);
  if (existing !== undefined) return { key: secretKeyFromFile(existing, path), created: false };
  const key = generateNodeKey();
  const text = encodeOpenSshPrivateKey(key.secret, `flt@${hostname()}`);
  if (await writeKeyFile(path, text, 0o600, false)) {
    return { key, created: true };
  }
  return { key: await loadSecretKeyFile(path), created: false };
}

/**
 * Loads an OpenSSH ed25519 private key given with `--secret-key`, e.g. a host key.
 * @throws FltError IO (missing or unreadable), KEY_PERMISSIONS, BAD_KEY, KEY_WRONG_TYPE,
 *   KEY_ENCRYPTED.
 */
export async function loadSecretKeyFile(path: string): Promise<NodeKey> {
  const file = await readKeyFile(path);
  if (file === undefined) throw new FltError('IO', `${path}: no such file`);
  return secretKeyFromFile(file, path);
}

/**
 * Reads a `.pub` file (`ssh-ed25519 AAAA... comment`) and returns the node id it names.
 * @throws FltError IO, BAD_KEY, KEY_WRONG_TYPE.
 */
export async function loadPublicKeyFile(path: string): Promise<NodeId> {
  const file = await readKeyFile(path);
  if (file === undefined) throw new FltError('IO', `${path}: no such file`);
  return nodeIdFromBytes(parseOpenSshPublicKey(file.text, path));
}

/**
 * Writes `outPath` (OpenSSH private key, 0600) and `outPath.pub` (0644), each crash-safely.
 * @throws FltError BAD_ARGUMENT if either exists and `force` is not set; IO.
 */
export async function writeKeyPair(
  outPath: string,
  key: NodeKey,
  options: { force?: boolean; comment?: string } = {},
): Promise<void> {
  const force = options.force ?? false;
  const comment = options.comment ?? `flt@${hostname()}`;
  const pubPath = `${outPath}.pub`;
  if (!force) await assertAbsent([outPath, pubPath]);
  const pubLine = `${formatOpenSshPublicKey(key.publicKey, comment)}\n`;
  await writeOrRefuse(outPath, encodeOpenSshPrivateKey(key.secret, comment), 0o600, force);
  await writeOrRefuse(pubPath, pubLine, 0o644, force);
}

/**
 * Parses before checking the mode, so that a `.pub` or RSA file passed by mistake gets the error
 * that names the real problem rather than advice to chmod it.
 */
function secretKeyFromFile(file: KeyFile, path: string): NodeKey {
  const { seed } = parseOpenSshPrivateKey(file.text, path);
  assertPrivateMode(path, file.mode);
  return nodeKeyFromSeed(seed);
}

type KeyFile = { readonly text: string; readonly mode: number };

/** The file's text and mode, or undefined when it does not exist. */
async function readKeyFile(path: string): Promise<KeyFile | undefined> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK so that a FIFO passed by mistake fails instead of hanging.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw ioError(path, err);
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw new FltError('IO', `${path} is not a regular file`);
    return { text: (await readBounded(fh, path)).toString('utf8'), mode: stat.mode };
  } finally {
    await fh.close();
  }
}

function assertPrivateMode(path: string, mode: number): void {
  if ((mode & 0o077) === 0) return;
  const octal = (mode & 0o7777).toString(8).padStart(4, '0');
  throw new FltError(
    'KEY_PERMISSIONS',
    `${path} is readable by others (mode ${octal}); run: chmod 600 ${path}`,
  );
}

async function readBounded(fh: FileHandle, path: string): Promise<Buffer> {
  const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
  let length = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, length, buf.length - length, length);
    if (bytesRead === 0) return buf.subarray(0, length);
    length += bytesRead;
    if (length > MAX_KEY_FILE_BYTES) {
      throw new FltError('BAD_KEY', `${path} is over ${MAX_KEY_FILE_BYTES} bytes; not a key file`);
    }
  }
}

async function assertAbsent(paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const exists = await lstat(path).then(
      () => true,
      (err: unknown) => {
        if (errnoOf(err) === 'ENOENT') return false;
        throw ioError(path, err);
      },
    );
    if (exists) throw alreadyExists(path);
  }
}

async function writeOrRefuse(path: string, text: string, mode: number, force: boolean) {
  if (!(await writeKeyFile(path, text, mode, force))) throw alreadyExists(path);
}

/**
 * Writes `path` crash-safely (stores/atomic-write.ts). Without `force` the write refuses an existing
 * file, so when two processes race for the same path only one wins: false for the loser.
 */
async function writeKeyFile(path: string, text: string, mode: number, force: boolean) {
  try {
    await writeFileAtomic(path, text, { mode, noOverwrite: !force });
    return true;
  } catch (err) {
    if (!force && errnoOf(err) === 'EEXIST') return false;
    throw ioError(path, err);
  }
}

function alreadyExists(path: string): FltError {
  return new FltError('BAD_ARGUMENT', `${path} already exists; pass --force to overwrite it`);
}

function ioError(path: string, err: unknown): FltError {
  return new FltError('IO', `${path}: ${ioReason(err)}`, { cause: err });
}

function ioReason(err: unknown): string {
  switch (errnoOf(err)) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
      return 'permission denied (run flt as the owner of the file, e.g. root for host keys)';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}
