// The CLI exits only once its output is written: stdout to a pipe takes writes asynchronously,
// and an exit before they drained cut `flt admin agents --json | jq` of a 5,000-agent fleet at
// 128 KiB. Real flt processes in a shell pipeline, the way an operator runs them.

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLT_BIN, tempDir } from './helpers/flt.js';
import { writeReplica } from './helpers/replica.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

/**
 * Runs `flt ARGS | READER` in a shell (a pipe(2), as a pipeline has: Node's own child pipes are
 * socket pairs with far larger buffers); the reader's output and flt's exit code and stderr.
 */
async function piped(
  args: readonly string[],
  reader: string,
): Promise<{ code: number | undefined; out: string; err: string }> {
  const script = `("$@" 2>"$ERR_FILE"; echo "flt exit $?" >&2) | ${reader}`;
  const errFile = join(dir.path, `err-${Math.random().toString(16).slice(2)}`);
  const child = spawn('sh', ['-c', script, 'sh', process.execPath, FLT_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ERR_FILE: errFile },
  });
  let out = '';
  let status = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (status += d.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(deadline);
      resolve();
    });
  });
  const code = /flt exit (\d+)/.exec(status)?.[1];
  const err = await readFile(errFile, 'utf8').catch(() => '');
  return { code: code === undefined ? undefined : Number(code), out, err };
}

describe('flt exits once its output is written', () => {
  it('a large --json answer arrives whole through a pipe', async () => {
    const n = 1_500; // ~300 bytes of JSON each: well past a pipe's 64 KiB and the 128 KiB seen cut
    const stateDir = await writeReplica(join(dir.path, 'big'), { agents: n });
    const r = await piped(
      ['--state-dir', stateDir, 'admin', 'agents', '--offline', '--json'],
      'cat',
    );
    expect(r.code, r.err).toBe(0);
    expect(r.out.length).toBeGreaterThan(256 * 1024);
    const rows = JSON.parse(r.out) as { hostname: string }[];
    expect(rows).toHaveLength(n);
    expect(new Set(rows.map((a) => a.hostname)).size).toBe(n);
  });

  it('a reader that goes away ends it at once, without a stack trace', async () => {
    const stateDir = await writeReplica(join(dir.path, 'gone'), { agents: 1_500 });
    const args = ['--state-dir', stateDir, 'admin', 'agents', '--offline', '--json'];
    const r = await piped(args, 'head -c 1');
    expect(r.out).toBe('[');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
  });
});
