// Unit tests for src/config: precedence and sources, file formats, validation that reports
// every problem with its key and source, XDG defaults, and `flt config show` output.
// Config files are real files in a fresh temp dir per test.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  KEY_SPECS,
  formatConfig,
  formatDuration,
  parseDuration,
  resolveConfig,
  type ConfigProblem,
  type ResolveInput,
} from '../src/config/index.js';
import { buildProgram, parseAndRun, type Chosen } from '../src/cli/program.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'flt-config-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const filePath = path.join(dir, name);
  await writeFile(filePath, text);
  return filePath;
}

/** A resolve with a fixed non-root user and no stray environment. */
function resolve(input: Partial<ResolveInput>) {
  return resolveConfig({ flags: {}, env: {}, uid: 1000, home: '/home/u', ...input });
}

/** The problems of a resolve that must fail with BAD_CONFIG. */
async function problemsOf(input: Partial<ResolveInput>): Promise<readonly ConfigProblem[]> {
  const err: unknown = await resolve(input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  expect(err).toMatchObject({ code: 'BAD_CONFIG' });
  return (err as ConfigError).problems;
}

describe('precedence', () => {
  it('flag > env > file > default, each naming its source', async () => {
    const toml = await file('flt.toml', 'log_level = "warn"\n');
    const env = { FLT_LOG_LEVEL: 'error' };
    const flags = { 'log-level': 'debug' };

    const all = await resolve({ configFile: toml, env, flags });
    expect(all.config.logLevel).toBe('debug');
    expect(all.sources.log_level).toEqual({ kind: 'flag', name: '--log-level' });

    const noFlag = await resolve({ configFile: toml, env });
    expect(noFlag.config.logLevel).toBe('error');
    expect(noFlag.sources.log_level).toEqual({ kind: 'env', name: 'FLT_LOG_LEVEL' });

    const fileOnly = await resolve({ configFile: toml });
    expect(fileOnly.config.logLevel).toBe('warn');
    expect(fileOnly.sources.log_level).toEqual({ kind: 'file', path: toml });

    const none = await resolve({});
    expect(none.config.logLevel).toBe('info');
    expect(none.sources.log_level).toEqual({ kind: 'default' });
  });

  it('finds the config file through flags.config or FLT_CONFIG (which is not an unknown variable)', async () => {
    const json = await file('flt.json', '{ "discovery": "none" }');
    const viaEnv = await resolve({ env: { FLT_CONFIG: json } });
    expect(viaEnv.config.discovery).toBe('none');
    const viaFlag = await resolve({
      flags: { config: json },
      env: { FLT_CONFIG: '/nonexistent.toml' },
    });
    expect(viaFlag.sources.discovery).toEqual({ kind: 'file', path: json });
  });
});

describe('config files', () => {
  const toml = [
    'state_dir = "/srv/flt"',
    'relay = "https://relay.example.com"',
    'bind = "[::1]:4433"',
    'admins = ["a1", "a2"]',
    'facts_interval = "1h30m"',
    'rpc_timeout = 90',
    'json = true',
  ].join('\n');
  const json = JSON.stringify({
    state_dir: '/srv/flt',
    relay: 'https://relay.example.com',
    bind: '[::1]:4433',
    admins: ['a1', 'a2'],
    facts_interval: '1h30m',
    rpc_timeout: 90,
    json: true,
  });
  const expected = {
    stateDir: '/srv/flt',
    relay: 'https://relay.example.com',
    bind: { host: '::1', port: 4433 },
    admins: ['a1', 'a2'],
    factsIntervalMs: 5_400_000,
    rpcTimeoutMs: 90_000, // a bare number means seconds
    json: true,
  };

  it.each([
    ['flt.toml', toml],
    ['flt.json', json],
    ['flt.conf', toml],
    ['flt-conf', json],
  ])('reads %s', async (name, text) => {
    const configFile = await file(name, text);
    const { config, sources } = await resolve({ configFile });
    expect(config).toMatchObject(expected);
    expect(sources.bind).toEqual({ kind: 'file', path: configFile });
    expect(sources.log_level).toEqual({ kind: 'default' });
  });

  it('reports a missing file and an unparsable one, naming the file', async () => {
    const missing = path.join(dir, 'absent.toml');
    const [gone] = await problemsOf({ flags: { config: missing } });
    expect(gone).toMatchObject({ key: 'config', source: { kind: 'flag', name: '--config' } });
    expect(gone?.reason).toContain(missing);

    const broken = await file('broken.json', '{ "log_level": ');
    const [bad] = await problemsOf({ env: { FLT_CONFIG: broken } });
    expect(bad).toMatchObject({ key: 'config', source: { kind: 'env', name: 'FLT_CONFIG' } });
    expect(bad?.reason).toContain(broken);

    const brokenToml = await file('broken.toml', 'log_level = \n');
    expect(await problemsOf({ configFile: brokenToml })).toMatchObject([{ key: 'config' }]);
  });
});

describe('validation', () => {
  it('rejects a wrong type in a file', async () => {
    const configFile = await file('flt.toml', 'facts_interval = true\n');
    expect(await problemsOf({ configFile })).toMatchObject([
      { key: 'facts_interval', source: { kind: 'file', path: configFile } },
    ]);
  });

  it('rejects an unknown key in a file, suggesting the closest known key', async () => {
    const configFile = await file('flt.toml', 'loglevel = "debug"\n');
    const [problem] = await problemsOf({ configFile });
    expect(problem).toMatchObject({ key: 'loglevel', source: { kind: 'file', path: configFile } });
    expect(problem?.reason).toContain('log_level');
  });

  it('rejects unknown FLT_* variables and unknown flags, ignoring other variables', async () => {
    const problems = await problemsOf({
      env: { FLT_BOGUS: '1', PATH: '/bin' },
      flags: { 'state-dri': '/x' },
    });
    expect(problems).toMatchObject([
      { key: 'state_dri', source: { kind: 'flag', name: '--state-dri' } },
      { key: 'bogus', source: { kind: 'env', name: 'FLT_BOGUS' } },
    ]);
    expect(problems[0]?.reason).toContain('--state-dir');
  });

  it('rejects out-of-range values', async () => {
    const configFile = await file('flt.json', '{ "facts_interval": "0s" }');
    expect(await problemsOf({ configFile })).toMatchObject([
      { key: 'facts_interval', source: { kind: 'file' } },
    ]);
    expect(await problemsOf({ flags: { bind: '0.0.0.0:70000' } })).toMatchObject([
      { key: 'bind', source: { kind: 'flag', name: '--bind' } },
    ]);
    expect(await problemsOf({ env: { FLT_RPC_TIMEOUT: '11m' } })).toMatchObject([
      { key: 'rpc_timeout' },
    ]);
  });

  it('reports every problem at once, also in values that a higher source overrides', async () => {
    const configFile = await file('flt.toml', 'log_level = "loud"\nrelay = "ftp://x"\n');
    const err: unknown = await resolve({
      configFile,
      env: { FLT_JSON: 'maybe', FLT_ADMINS: 'a,,b' },
      flags: { 'log-level': 'debug', bind: 'nohost', 'facts-interval': 'soon' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    const seen = problems.map((p) => `${p.key}/${p.source.kind}`).sort();
    expect(seen).toEqual([
      'admins/env',
      'bind/flag',
      'facts_interval/flag',
      'json/env',
      'log_level/file',
      'relay/file',
    ]);
    expect((err as ConfigError).message.split('\n')).toHaveLength(problems.length);
  });

  it('accepts the documented boolean and bind forms', async () => {
    for (const [text, value] of [
      ['yes', true],
      ['0', false],
      ['TRUE', true],
      ['no', false],
    ] as const) {
      expect((await resolve({ env: { FLT_JSON: text } })).config.json).toBe(value);
    }
    expect((await resolve({ flags: { json: true } })).config.json).toBe(true);
    for (const bind of ['127.0.0.1:0', 'host.example:65535', '[fe80::1]:1']) {
      await expect(resolve({ flags: { bind } })).resolves.toBeDefined();
    }
    for (const bind of ['::1:80', '1.2.3.999:80', 'host', 'host:', 'bad_host:1']) {
      expect(await problemsOf({ flags: { bind } })).toMatchObject([{ key: 'bind' }]);
    }
  });
});

describe('defaults', () => {
  it('puts root state in /var/lib/flt and others under XDG_STATE_HOME, then HOME', async () => {
    const root = await resolve({ uid: 0, env: { XDG_STATE_HOME: '/xdg' } });
    expect(root.config.stateDir).toBe('/var/lib/flt');
    expect(root.sources.state_dir).toEqual({ kind: 'default' });
    expect((await resolve({ env: { XDG_STATE_HOME: '/xdg' } })).config.stateDir).toBe('/xdg/flt');
    expect((await resolve({})).config.stateDir).toBe('/home/u/.local/state/flt');
    const viaEnvHome = await resolveConfig({ flags: {}, env: { HOME: '/h' }, uid: 5 });
    expect(viaEnvHome.config.stateDir).toBe('/h/.local/state/flt');
  });

  it('reports a state_dir that cannot be worked out, unless one is given', async () => {
    const input = { flags: {}, env: {}, uid: 5 };
    await expect(resolveConfig(input)).rejects.toMatchObject({
      code: 'BAD_CONFIG',
      problems: [{ key: 'state_dir', source: { kind: 'default' } }],
    });
    const given = await resolveConfig({ ...input, flags: { 'state-dir': '/s' } });
    expect(given.config.stateDir).toBe('/s');
  });

  it('has the documented values', async () => {
    const { config } = await resolve({});
    expect(config).toMatchObject({ relay: 'default', discovery: 'n0', admins: [], json: false });
    expect(config).toMatchObject({ factsIntervalMs: 60_000, rpcTimeoutMs: 10_000 });
    expect(config.bind).toBeUndefined();
    expect(config.secretKey).toBeUndefined();
  });
});

describe('artifact keys', () => {
  const pk = 'flt-test-1:' + Buffer.alloc(32, 7).toString('base64');

  it('have the documented defaults', async () => {
    const { config } = await resolve({});
    expect(config).toMatchObject({
      nixTrustedKeys: [],
      artifactParallel: 4,
      artifactGcGraceMs: 14 * 86_400_000,
      artifactMinFree: 2 ** 30,
    });
    expect(config.nixSigningKey).toBeUndefined();
  });

  it('parse integers, sizes and Nix public keys from every source', async () => {
    const configFile = await file(
      'flt.toml',
      `artifact_parallel = 16\nartifact_min_free = "512m"\nnix_trusted_keys = ["${pk}"]\n`,
    );
    const fromFile = await resolve({ configFile });
    expect(fromFile.config).toMatchObject({
      artifactParallel: 16,
      artifactMinFree: 512 * 2 ** 20,
      nixTrustedKeys: [pk],
    });
    const fromEnv = await resolve({
      env: {
        FLT_ARTIFACT_PARALLEL: '1',
        FLT_ARTIFACT_MIN_FREE: '0',
        FLT_NIX_TRUSTED_KEYS: `${pk},other:${Buffer.alloc(32, 1).toString('base64')}`,
        FLT_ARTIFACT_GC_GRACE: '1h',
      },
    });
    expect(fromEnv.config).toMatchObject({
      artifactParallel: 1,
      artifactMinFree: 0,
      artifactGcGraceMs: 3_600_000,
    });
    expect(fromEnv.config.nixTrustedKeys).toHaveLength(2);
    const fromFlags = await resolve({
      flags: { 'artifact-min-free': '1t', 'nix-signing-key': '/k/sk' },
    });
    expect(fromFlags.config).toMatchObject({ artifactMinFree: 2 ** 40, nixSigningKey: '/k/sk' });
  });

  it('refuse values out of range or malformed, naming the key', async () => {
    const cases: [string, string, string][] = [
      ['FLT_ARTIFACT_PARALLEL', '0', 'artifact_parallel'],
      ['FLT_ARTIFACT_PARALLEL', '17', 'artifact_parallel'],
      ['FLT_ARTIFACT_PARALLEL', '2.5', 'artifact_parallel'],
      ['FLT_ARTIFACT_MIN_FREE', '2t', 'artifact_min_free'],
      ['FLT_ARTIFACT_MIN_FREE', '1x', 'artifact_min_free'],
      ['FLT_ARTIFACT_GC_GRACE', '30m', 'artifact_gc_grace'],
      ['FLT_ARTIFACT_GC_GRACE', '366d', 'artifact_gc_grace'],
      ['FLT_NIX_TRUSTED_KEYS', 'nocolon', 'nix_trusted_keys'],
      // 64 bytes: a secret key where a public one belongs.
      ['FLT_NIX_TRUSTED_KEYS', `k:${Buffer.alloc(64, 1).toString('base64')}`, 'nix_trusted_keys'],
      ['FLT_NIX_SIGNING_KEY', '', 'nix_signing_key'],
    ];
    for (const [env, value, key] of cases)
      expect(await problemsOf({ env: { [env]: value } }), `${env}=${value}`).toMatchObject([
        { key },
      ]);
  });
});

describe('admins', () => {
  it('come from a comma-separated variable and from repeated flags', async () => {
    const fromEnv = await resolve({ env: { FLT_ADMINS: 'a1, a2' } });
    expect(fromEnv.config.admins).toEqual(['a1', 'a2']);
    const fromFlags = await resolve({ env: { FLT_ADMINS: 'a1' }, flags: { admin: ['b1', 'b2'] } });
    expect(fromFlags.config.admins).toEqual(['b1', 'b2']);
    expect(fromFlags.sources.admins).toEqual({ kind: 'flag', name: '--admin' });
    expect((await resolve({ flags: { admin: 'c1' } })).config.admins).toEqual(['c1']);
  });
});

describe('durations', () => {
  it('parses units and bare seconds, and formats back', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration(60)).toBe(60_000);
    expect(parseDuration('1.5')).toBe(1500);
    for (const bad of ['', '5 s', 'm', '-1s', '1w']) expect(parseDuration(bad)).toBeUndefined();
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(100)).toBe('100ms');
    expect(formatDuration(0)).toBe('0s');
  });
});

describe('the key table', () => {
  it('follows the naming rule (admins has the flag --admin)', () => {
    for (const spec of KEY_SPECS) {
      expect(spec.env).toBe(`FLT_${spec.key.toUpperCase()}`);
      const flag = spec.key === 'admins' ? 'admin' : spec.key.replaceAll('_', '-');
      expect(spec.flag).toBe(flag);
    }
  });

  it('gives every key a flag the parser passes to the resolver, and a line of --help', async () => {
    const help = buildProgram(() => Promise.resolve()).helpInformation();
    for (const spec of KEY_SPECS) {
      const value = spec.kind === 'boolean' ? [] : ['x'];
      const expected = spec.kind === 'boolean' ? true : spec.kind === 'list' ? ['x'] : 'x';
      // before the command and after it: config flags belong to `flt` itself
      for (const argv of [
        [`--${spec.flag}`, ...value, 'config', 'show'],
        ['admin', 'facts', 'host', `--${spec.flag}`, ...value],
      ]) {
        let chosen: Chosen | undefined;
        await parseAndRun(argv, (c) => {
          chosen = c;
          return Promise.resolve();
        });
        expect(chosen?.configFlags[spec.flag], argv.join(' ')).toEqual(expected);
      }
      expect(help, spec.flag).toMatch(new RegExp(`^  --${spec.flag}\\b`, 'm'));
    }
  });

  it("is README's configuration table: one row per key, with its env and flag", async () => {
    const readme = await readFile(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const rows = readme
      .split('\n')
      .filter((line) => /^\| `[a-z_]+` \| `FLT_/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    expect(rows.map((r) => r[1])).toEqual(KEY_SPECS.map((s) => `\`${s.key}\``));
    for (const [, key, env, flag] of rows) {
      const spec = KEY_SPECS.find((s) => `\`${s.key}\`` === key);
      expect(env, key).toMatch(new RegExp(`^\`${spec?.env}\``));
      expect(flag, key).toMatch(new RegExp(`^\`--${spec?.flag}\``));
    }
  });
});

describe('formatConfig', () => {
  it('shows every key with its value and source', async () => {
    const configFile = await file('flt.toml', 'facts_interval = "90s"\n');
    const resolved = await resolve({ configFile, flags: { bind: '0.0.0.0:4433' } });

    const lines = formatConfig(resolved, { json: false }).split('\n');
    expect(lines).toHaveLength(KEY_SPECS.length);
    const line = (key: string) => lines.find((l) => l.startsWith(`${key} `)) ?? '';
    expect(line('bind')).toMatch(/= 0\.0\.0\.0:4433 +\(flag --bind\)$/);
    expect(line('facts_interval')).toMatch(new RegExp(`= 1m30s +\\(file ${configFile}\\)$`));
    expect(line('secret_key')).toMatch(/= \(unset\) +\(default\)$/);
    expect(new Set(lines.map((l) => l.indexOf('=')))).toHaveProperty('size', 1);

    const json = JSON.parse(formatConfig(resolved, { json: true })) as Record<string, unknown>;
    expect(json.bind).toEqual({ value: '0.0.0.0:4433', source: 'flag --bind' });
    expect(json.facts_interval).toEqual({ value: '1m30s', source: `file ${configFile}` });
    expect(json.secret_key).toEqual({ value: null, source: 'default' });
    expect(json.admins).toEqual({ value: [], source: 'default' });
  });
});
