// `flt config show` as a real process: precedence across file, environment and flags, and
// one clear line (key + source) per bad value with a non-zero exit.

import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

type Shown = Record<string, { value: unknown; source: string }>;

async function show(args: string[], env: Record<string, string> = {}) {
  const r = await runFlt(['config', 'show', '--json', '--state-dir', dir.path, ...args], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Shown;
}

describe('flt config show', () => {
  it('resolves one key by precedence: flag > env > file > default, naming the source', async () => {
    const file = `${dir.path}/flt.toml`;
    await writeFile(file, 'log_level = "warn"\nrpc_timeout = "30s"\n');
    const fromFile = await show(['--config', file]);
    expect(fromFile.log_level).toEqual({ value: 'warn', source: `file ${file}` });
    expect(fromFile.facts_interval!.source).toBe('default');

    const fromEnv = await show(['--config', file], { FLT_LOG_LEVEL: 'error' });
    expect(fromEnv.log_level).toEqual({ value: 'error', source: 'env FLT_LOG_LEVEL' });
    expect(fromEnv.rpc_timeout!.source).toBe(`file ${file}`);

    const fromFlag = await show(['--config', file, '--log-level', 'debug'], {
      FLT_LOG_LEVEL: 'error',
    });
    expect(fromFlag.log_level).toEqual({ value: 'debug', source: 'flag --log-level' });
  });

  it('prints a human table with sources', async () => {
    const r = await runFlt(['config', 'show', '--state-dir', dir.path, '--bind', '127.0.0.1:9000']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bind\s+= 127\.0\.0\.1:9000\s+\(flag --bind\)$/m);
    expect(r.stdout).toMatch(/^log_level\s+= info\s+\(default\)$/m);
  });

  it.each([
    ['a wrong type in the file', 'facts_interval = true\n', {}, [], /facts_interval from file /],
    [
      'an unknown key in the file',
      'facts_intervall = "5s"\n',
      {},
      [],
      /facts_intervall from file /,
    ],
    [
      'an out-of-range flag',
      '',
      {},
      ['--facts-interval', '0s'],
      /facts_interval from flag --facts-interval/,
    ],
    [
      'an out-of-range env value',
      '',
      { FLT_BIND: '127.0.0.1:70000' },
      [],
      /bind from env FLT_BIND/,
    ],
    ['an unknown env variable', '', { FLT_BOGUS: '1' }, [], /bogus from env FLT_BOGUS/],
  ] as const)(
    '%s exits 2 with a line naming key and source',
    async (_what, toml, env, flags, line) => {
      const file = `${dir.path}/bad.toml`;
      await writeFile(file, toml);
      const r = await runFlt(
        ['config', 'show', '--state-dir', dir.path, '--config', file, ...flags],
        env,
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^flt: BAD_CONFIG: /m);
      expect(r.stderr).toMatch(line);
      expect(r.stdout).toBe('');
    },
  );

  it('an unknown flag exits 2', async () => {
    const r = await runFlt(['config', 'show', '--no-such-flag']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^flt: BAD_ARGUMENT: /m);
  });
});
