// The table of flt's configuration keys: for each key its names in files, the environment
// and flags, its default, and the zod schema that turns a raw value into a typed one.
// resolve.ts merges the sources against this table; show.ts prints values back in file form.

import path from 'node:path';
import { isIPv6 } from 'node:net';
import { z } from 'zod';
import { hostProblem } from '../../sync/host.js';

/** What a computed default may look at; passed in so resolution stays a function of its input. */
export interface DefaultContext {
  readonly uid: number;
  readonly home: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * How a key is written in the environment and on the command line: `list` is comma-separated
 * in env and repeatable as a flag; `boolean` may be a bare flag; the rest are one string.
 */
export type KeyKind = 'text' | 'list' | 'boolean' | 'duration';

/** A raw default, validated by the key's schema like any other value. */
type RawDefault = string | boolean | readonly string[];

interface KeyShape {
  /** snake_case, as written in a config file. */
  readonly key: string;
  /** camelCase field of {@link Config}. */
  readonly field: string;
  readonly env: string;
  /** Flag name without the leading `--`. */
  readonly flag: string;
  readonly kind: KeyKind;
  readonly description: string;
  /** What is allowed, for error messages. */
  readonly allowed: string;
  /** `undefined` means unset; a function computes it and returns `undefined` when it cannot. */
  readonly default: RawDefault | ((ctx: DefaultContext) => string | undefined) | undefined;
  readonly schema: z.ZodType;
}

// ---- value helpers ---------------------------------------------------------------------------

/** Short description of a raw value for messages: quoted strings, `a list`, `a table`. */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return String(value);
    case 'object':
      if (value === null) return 'null';
      if (value instanceof Date) return 'a date';
      return Array.isArray(value) ? 'a list' : 'a table';
    default:
      return `a ${typeof value}`;
  }
}

const expected = (what: string) => (iss: { input?: unknown }) =>
  `expected ${what}, got ${describeValue(iss.input)}`;

/** A parser's refusal, with a reason a person can act on. */
class Invalid {
  constructor(readonly reason: string) {}
}

/** A string schema whose text is parsed by `parse`; an {@link Invalid} becomes a zod issue. */
function parsedString<T>(what: string, parse: (text: string) => T | Invalid) {
  return z.string({ error: expected(what) }).transform((text, ctx): T => {
    const result = parse(text);
    if (!(result instanceof Invalid)) return result;
    ctx.issues.push({ code: 'custom', message: result.reason, input: text });
    return z.NEVER;
  });
}

const nonEmpty = (what: string) =>
  z.string({ error: expected(what) }).min(1, { error: 'must not be empty' });

// ---- durations -------------------------------------------------------------------------------

const UNIT_MS: ReadonlyMap<string, number> = new Map([
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
]);

/**
 * Milliseconds in a duration: `"500ms"`, `"60s"`, `"5m"`, `"1h30m"`, `"1d"`. A bare number,
 * or a string holding only one, means SECONDS in every source (file, env, flag), so `60`
 * and `"60"` and `"60s"` agree. Returns `undefined` for anything else, negatives included.
 */
export function parseDuration(input: number | string): number | undefined {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  }
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  return text === '' ? undefined : sumUnits(text);
}

function sumUnits(text: string): number | undefined {
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y; // `ms` before `m`: alternation order matters
  let total = 0;
  while (part.lastIndex < text.length) {
    const match = part.exec(text);
    const unit = match?.[2] === undefined ? undefined : UNIT_MS.get(match[2]);
    if (match === null || unit === undefined) return undefined;
    total += Number(match[1]) * unit;
  }
  return Math.round(total);
}

/** The canonical text of a duration, largest units first: 90000 -> `"1m30s"`, 0 -> `"0s"`. */
export function formatDuration(ms: number): string {
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  const parts: string[] = [];
  for (const [unit, size] of UNIT_MS) {
    const count = Math.floor(rest / size);
    if (count > 0) parts.push(`${count}${unit}`);
    rest -= count * size;
  }
  return parts.length === 0 ? '0s' : parts.join('');
}

function durationSchema(minMs: number, maxMs: number) {
  const range = (word: string, limit: number) => (iss: { input?: unknown }) =>
    `${formatDuration(Number(iss.input))} is ${word} than ${formatDuration(limit)}`;
  return z
    .union([z.number(), z.string()], { error: expected('a duration') })
    .transform((raw, ctx): number => {
      const ms = parseDuration(raw);
      if (ms !== undefined) return ms;
      ctx.issues.push({
        code: 'custom',
        message: `not a duration: ${describeValue(raw)}`,
        input: raw,
      });
      return z.NEVER;
    })
    .pipe(
      z
        .number()
        .min(minMs, { error: range('shorter', minMs) })
        .max(maxMs, { error: range('longer', maxMs) }),
    );
}

const durationAllowed = (min: string, max: string) =>
  `a duration from ${min} to ${max}, e.g. 500ms, 60s, 5m, 1h30m (a bare number means seconds)`;

// ---- booleans --------------------------------------------------------------------------------

const BOOLEAN_WORDS: ReadonlyMap<string, boolean> = new Map([
  ['true', true],
  ['yes', true],
  ['1', true],
  ['false', false],
  ['no', false],
  ['0', false],
]);

/** `true/false/yes/no/1/0` (any case) as a boolean; `undefined` for anything else. */
export function parseBoolean(text: string): boolean | undefined {
  return BOOLEAN_WORDS.get(text.trim().toLowerCase());
}

const booleanSchema = z
  .union([z.boolean(), z.string()], { error: expected('true or false') })
  .transform((raw, ctx): boolean => {
    const value = typeof raw === 'boolean' ? raw : parseBoolean(raw);
    if (value !== undefined) return value;
    ctx.issues.push({
      code: 'custom',
      message: `not a boolean: ${describeValue(raw)}`,
      input: raw,
    });
    return z.NEVER;
  });

// ---- bind addresses and relays ---------------------------------------------------------------

/** A socket address to listen on. IPv6 hosts are kept without their brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

function checkHost(host: string): Invalid | undefined {
  if (host.includes(':')) return new Invalid('an IPv6 host must be in brackets, e.g. [::1]:4433');
  const problem = hostProblem(host);
  return problem === undefined ? undefined : new Invalid(problem);
}

function checkPort(text: string): number | Invalid {
  if (!/^\d+$/.test(text)) return new Invalid(`port ${describeValue(text)} is not a number`);
  const port = Number(text);
  return port <= 65535 ? port : new Invalid(`port ${port} is out of range`);
}

/** `HOST:PORT` with an IPv4 address, a `[bracketed]` IPv6 address or a hostname. */
function parseHostPort(text: string): HostPort | Invalid {
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  if (bracketed !== null) {
    const [, host = '', portText = ''] = bracketed;
    if (!isIPv6(host)) return new Invalid(`"[${host}]" is not an IPv6 address`);
    const port = checkPort(portText);
    return port instanceof Invalid ? port : { host, port };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) return new Invalid('missing ":PORT"');
  const host = text.slice(0, colon);
  const port = checkPort(text.slice(colon + 1));
  return checkHost(host) ?? (port instanceof Invalid ? port : { host, port });
}

/** The text form of a {@link HostPort}, bracketing IPv6 hosts. */
export function formatHostPort(address: HostPort): string {
  return address.host.includes(':')
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}

/** Which relay servers iroh uses: none, n0's public ones, or one of our own. */
export type RelaySetting = 'disabled' | 'default' | `http://${string}` | `https://${string}`;

const isHttpUrlText = (text: string): text is `http://${string}` | `https://${string}` =>
  text.startsWith('http://') || text.startsWith('https://');

function parseRelay(text: string): RelaySetting | Invalid {
  if (text === 'disabled' || text === 'default') return text;
  if (!isHttpUrlText(text)) return new Invalid(`${describeValue(text)} is not a relay setting`);
  return URL.canParse(text) ? text : new Invalid(`${describeValue(text)} is not a valid URL`);
}

// ---- the table -------------------------------------------------------------------------------

/** `$XDG_STATE_HOME/flt` (ignored unless absolute, as the XDG spec says), then `~/.local/state/flt`. */
export function defaultStateDir(ctx: DefaultContext): string | undefined {
  if (ctx.uid === 0) return '/var/lib/flt';
  const xdg = ctx.env.XDG_STATE_HOME;
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, 'flt');
  return ctx.home === undefined || ctx.home === ''
    ? undefined
    : path.join(ctx.home, '.local', 'state', 'flt');
}

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
const DISCOVERY = ['none', 'n0'] as const;

/**
 * Every configuration key, lowest-level facts first. Names follow one rule (env = `FLT_` +
 * upper-case key, flag = key with `-` for `_`) except `admins`, whose repeatable flag is
 * `--admin`. Add a key here and resolve/show pick it up.
 */
export const CONFIG_KEYS = [
  {
    key: 'state_dir',
    field: 'stateDir',
    env: 'FLT_STATE_DIR',
    flag: 'state-dir',
    kind: 'text',
    description: 'Directory for keys, documents and tickets',
    allowed: 'a non-empty path',
    default: defaultStateDir,
    schema: nonEmpty('a path'),
  },
  {
    key: 'secret_key',
    field: 'secretKey',
    env: 'FLT_SECRET_KEY',
    flag: 'secret-key',
    kind: 'text',
    description: 'File holding this node’s secret key (default: inside state_dir)',
    allowed: 'a non-empty path',
    default: undefined,
    schema: nonEmpty('a path'),
  },
  {
    key: 'log_level',
    field: 'logLevel',
    env: 'FLT_LOG_LEVEL',
    flag: 'log-level',
    kind: 'text',
    description: 'How much to log',
    allowed: `one of ${LOG_LEVELS.join(', ')}`,
    default: 'info',
    schema: z.enum(LOG_LEVELS, {
      error: (iss) => `${describeValue(iss.input)} is not a log level`,
    }),
  },
  {
    key: 'relay',
    field: 'relay',
    env: 'FLT_RELAY',
    flag: 'relay',
    kind: 'text',
    description: 'Relay servers: none, n0’s public ones, or our own',
    allowed: '"disabled", "default", or an http:// or https:// URL',
    default: 'default',
    schema: parsedString('a string', parseRelay),
  },
  {
    key: 'discovery',
    field: 'discovery',
    env: 'FLT_DISCOVERY',
    flag: 'discovery',
    kind: 'text',
    description: 'How peers find each other’s addresses',
    allowed: `one of ${DISCOVERY.join(', ')}`,
    default: 'n0',
    schema: z.enum(DISCOVERY, {
      error: (iss) => `${describeValue(iss.input)} is not a discovery mode`,
    }),
  },
  {
    key: 'bind',
    field: 'bind',
    env: 'FLT_BIND',
    flag: 'bind',
    kind: 'text',
    description: 'Address to listen on (each role has its own default)',
    allowed: 'HOST:PORT with an IPv4 address, [IPv6] address or hostname, and a port 0..65535',
    default: undefined,
    schema: parsedString('HOST:PORT', parseHostPort),
  },
  {
    key: 'coordinator',
    field: 'coordinator',
    env: 'FLT_COORDINATOR',
    flag: 'coordinator',
    kind: 'text',
    description: 'Coordinator to join: a ticket or NODE_ID@HOST:PORT',
    allowed: 'a non-empty ticket or NODE_ID@HOST:PORT',
    default: undefined,
    schema: nonEmpty('a string'), // syntax is checked where it is dialed
  },
  {
    key: 'admins',
    field: 'admins',
    env: 'FLT_ADMINS',
    flag: 'admin',
    kind: 'list',
    description: 'Initial admins of a new fleet: node ids or OpenSSH public key files',
    allowed: 'a list of node ids or key files (comma-separated in env, --admin repeated)',
    default: [],
    schema: z.array(nonEmpty('a node id'), { error: expected('a list of node ids') }),
  },
  {
    key: 'enroll_token',
    field: 'enrollToken',
    env: 'FLT_ENROLL_TOKEN',
    flag: 'enroll-token',
    kind: 'text',
    description: 'One-time token an agent enrolls with (from `flt admin enroll-token`)',
    allowed: 'a token as printed by `flt admin enroll-token`',
    default: undefined,
    schema: nonEmpty('a token'),
  },
  {
    key: 'facts_interval',
    field: 'factsIntervalMs',
    env: 'FLT_FACTS_INTERVAL',
    flag: 'facts-interval',
    kind: 'duration',
    description: 'How often an agent collects and publishes facts',
    allowed: durationAllowed('1s', '1d'),
    default: '60s',
    schema: durationSchema(1000, 86_400_000),
  },
  {
    key: 'rpc_timeout',
    field: 'rpcTimeoutMs',
    env: 'FLT_RPC_TIMEOUT',
    flag: 'rpc-timeout',
    kind: 'duration',
    description: 'How long to wait for a remote call',
    allowed: durationAllowed('100ms', '10m'),
    default: '10s',
    schema: durationSchema(100, 600_000),
  },
  {
    key: 'json',
    field: 'json',
    env: 'FLT_JSON',
    flag: 'json',
    kind: 'boolean',
    description: 'Print JSON for scripts instead of text for people',
    allowed: 'true or false (also yes/no, 1/0 in env and flags)',
    default: false,
    schema: booleanSchema,
  },
] as const satisfies readonly KeyShape[];

type Spec = (typeof CONFIG_KEYS)[number];

/** A configuration key as written in files (snake_case). */
export type ConfigKey = Spec['key'];

/** The resolved configuration: camelCase fields, durations in milliseconds, unset keys `undefined`. */
export type Config = {
  readonly [S in Spec as S['field']]:
    | z.output<S['schema']>
    | (S['default'] extends undefined ? undefined : never);
};

/** One row of {@link CONFIG_KEYS}, typed for code that walks the whole table. */
export type KeySpec = KeyShape & { readonly key: ConfigKey; readonly field: keyof Config };

/** {@link CONFIG_KEYS} seen row by row. */
export const KEY_SPECS: readonly KeySpec[] = CONFIG_KEYS;

/** A value as a config file would hold it; `null` for unset. */
export type FileValue = string | boolean | readonly string[] | null;

/** The file form of a resolved value: durations as `"1m30s"`, addresses as `HOST:PORT`. */
export function toFileValue(spec: KeySpec, value: Config[keyof Config]): FileValue {
  if (value === undefined) return null;
  if (typeof value === 'number')
    return spec.kind === 'duration' ? formatDuration(value) : String(value);
  if (typeof value === 'object' && 'host' in value) return formatHostPort(value);
  return value;
}
