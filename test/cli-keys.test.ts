// `flt keygen` and `flt id` as real processes, against keys made by ssh-keygen.

import { execFileSync } from 'node:child_process';
import { chmod, readFile, stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

/** The node id an OpenSSH `.pub` line stands for: the 32 key bytes at the end of its blob. */
async function idFromPub(file: string): Promise<string> {
  const blob = Buffer.from((await readFile(file, 'utf8')).split(' ')[1]!, 'base64');
  return blob.subarray(blob.length - 32).toString('hex');
}

const sshKeygen = (...args: string[]) =>
  execFileSync('ssh-keygen', ['-q', ...args], { stdio: 'ignore' });

describe('flt keygen / flt id', () => {
  it('keygen --out writes a 0600 OpenSSH key whose id flt id and ssh-keygen agree on', async () => {
    const out = `${dir.path}/k1`;
    const r = await runFlt(['keygen', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect(await idFromPub(`${out}.pub`)).toBe(id);
    expect((await runFlt(['id', '--secret-key', out])).stdout.trim()).toBe(id);
    expect((await runFlt(['id', '--public-key', `${out}.pub`])).stdout.trim()).toBe(id);
    const again = await runFlt(['keygen', '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^flt: BAD_ARGUMENT: /m);
  });

  it('id of an ssh-keygen ed25519 key is its public key', async () => {
    const key = `${dir.path}/ssh_ed25519`;
    sshKeygen('-t', 'ed25519', '-N', '', '-f', key);
    const r = await runFlt(['id', '--secret-key', key]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(await idFromPub(`${key}.pub`));
  });

  it('the state dir key is created once and stays the same', async () => {
    const first = await runFlt(['id', '--state-dir', `${dir.path}/state`]);
    const second = await runFlt(['id', '--state-dir', `${dir.path}/state`]);
    expect(first.code, first.stderr).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    expect((await stat(`${dir.path}/state/node.key`)).mode & 0o777).toBe(0o600);
  });

  it.each([
    ['an encrypted key', ['-t', 'ed25519', '-N', 'secret'], 'KEY_ENCRYPTED'],
    ['an rsa key', ['-t', 'rsa', '-b', '2048', '-N', ''], 'KEY_WRONG_TYPE'],
  ])('%s is refused with its code', async (_what, args, code) => {
    const key = `${dir.path}/bad-${code}`;
    sshKeygen(...args, '-f', key);
    const r = await runFlt(['id', '--secret-key', key]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^flt: ${code}: `, 'm'));
  });

  it('a key file readable by others is refused', async () => {
    const key = `${dir.path}/open`;
    sshKeygen('-t', 'ed25519', '-N', '', '-f', key);
    await chmod(key, 0o644);
    const r = await runFlt(['id', '--secret-key', key]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^flt: KEY_PERMISSIONS: /m);
  });
});
