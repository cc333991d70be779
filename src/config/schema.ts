// The zod validator of each configuration key declared in src/config-keys.ts (names, default,
// help), and the value syntaxes they parse: durations, booleans, bind addresses, relays.
// resolve.ts merges the sources against KEY_SPECS; show.ts prints values back in file form.

import { isIPv6 } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { hostProblem } from '../../sync/host.js';
import {
  allowedOf,
  DEPLOY_ACTIVATORS,
  DISCOVERY,
  envOf,
  flagOf,
  KEY_DECLS,
  LOG_LEVELS,
  MAX_ARTIFACT_PARALLEL,
  parseByteSize,
  type ConfigKey,
  type KeyDecl,
} from '../config-keys.js';

export {
  defaultStateDir,
  type ConfigKey,
  type DefaultContext,
  type KeyKind,
} from '../config-keys.js';

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

// ---- integers, sizes, Nix keys ---------------------------------------------------------------

/** An integer `min..max`, from a number (file) or its decimal text (any source). */
function intSchema(min: number, max: number) {
  return z
    .union([z.number(), z.string()], { error: expected(`an integer from ${min} to ${max}`) })
    .transform((raw, ctx): number => {
      const n = typeof raw === 'number' ? raw : /^\d{1,9}$/.test(raw.trim()) ? Number(raw) : NaN;
      if (Number.isInteger(n) && n >= min && n <= max) return n;
      ctx.issues.push({
        code: 'custom',
        message: `${describeValue(raw)} is not an integer from ${min} to ${max}`,
        input: raw,
      });
      return z.NEVER;
    });
}

/** The most `artifact_min_free` may be: 1 TiB. */
export const MAX_MIN_FREE = 2 ** 40;

/** A byte size (parseByteSize: `1g`, `512m`, `4096`) from 0 to `max`, as a number of bytes. */
function byteSizeSchema(max: number) {
  return parsedString('a byte size', (text) => {
    const n = parseByteSize(text);
    if (n === undefined) return new Invalid(`${describeValue(text)} is not a byte size`);
    return n <= max ? n : new Invalid(`${describeValue(text)} is more than 1t`);
  });
}

/** Nix's public key form: `name:` and base64 of 32 bytes (nix-key.ts parsePublicKey). */
const NIX_PUBLIC_KEY = /^[\x21-\x39\x3b-\x7e]{1,128}:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const nixPublicKey = parsedString('a Nix public key', (text) =>
  NIX_PUBLIC_KEY.test(text.trim())
    ? text.trim()
    : new Invalid(`${describeValue(text)} is not a Nix public key (NAME:BASE64 of 32 bytes)`),
);

// ---- the validators --------------------------------------------------------------------------

/** A duration key's schema, bounded by the range its declaration gives. */
function durationOf(key: ConfigKey) {
  const decl: KeyDecl | undefined = KEY_DECLS.find((d) => d.key === key);
  const [min, max] = (decl?.range ?? []).map((text) => parseDuration(text));
  if (min === undefined || max === undefined)
    throw new Error(`config key ${key} declares no duration range`);
  return durationSchema(min, max);
}

/**
 * The zod schema of each key declared in src/config-keys.ts, which turns a raw value from a
 * file, the environment or a flag into a typed one. Add a key there and its validator here.
 */
const VALIDATORS = {
  state_dir: nonEmpty('a path'),
  secret_key: nonEmpty('a path'),
  log_level: z.enum(LOG_LEVELS, {
    error: (iss) => `${describeValue(iss.input)} is not a log level`,
  }),
  relay: parsedString('a string', parseRelay),
  discovery: z.enum(DISCOVERY, {
    error: (iss) => `${describeValue(iss.input)} is not a discovery mode`,
  }),
  bind: parsedString('HOST:PORT', parseHostPort),
  coordinator: nonEmpty('a string'), // syntax is checked where it is dialed
  admins: z.array(nonEmpty('a node id'), { error: expected('a list of node ids') }),
  enroll_token: nonEmpty('a token'),
  facts_interval: durationOf('facts_interval'),
  rpc_timeout: durationOf('rpc_timeout'),
  json: booleanSchema,
  deploy_activator: z.enum(DEPLOY_ACTIVATORS, {
    error: (iss) => `${describeValue(iss.input)} is not an activator`,
  }),
  deploy_profile: parsedString('a path', (text) =>
    path.isAbsolute(text) && path.normalize(text) === text && text !== '/'
      ? text
      : new Invalid(`${describeValue(text)} is not a normalized absolute path`),
  ),
  deploy_command: nonEmpty('a shell command'),
  deploy_check: nonEmpty('a shell command'),
  deploy_health_timeout: durationOf('deploy_health_timeout'),
  deploy_recheck: durationOf('deploy_recheck'),
  nix_store: nonEmpty('a store URI'),
  nix_signing_key: nonEmpty('a path'),
  nix_trusted_keys: z.array(nixPublicKey, { error: expected('a list of Nix public keys') }),
  artifact_parallel: intSchema(1, MAX_ARTIFACT_PARALLEL),
  artifact_gc_grace: durationOf('artifact_gc_grace'),
  artifact_min_free: byteSizeSchema(MAX_MIN_FREE),
} as const satisfies Record<ConfigKey, z.ZodType>;

type Decl = (typeof KEY_DECLS)[number];

/** The resolved configuration: camelCase fields, durations in milliseconds, unset keys `undefined`. */
export type Config = {
  readonly [D in Decl as D['field']]:
    | z.output<(typeof VALIDATORS)[D['key']]>
    | (D['default'] extends undefined ? undefined : never);
};

/** One key as resolution sees it: its declaration, names, allowed text and schema. */
export interface KeySpec extends KeyDecl {
  readonly key: ConfigKey;
  readonly field: keyof Config;
  readonly env: string;
  /** Flag name without the leading `--`. */
  readonly flag: string;
  /** What is allowed, for error messages. */
  readonly allowed: string;
  readonly schema: z.ZodType;
}

/** Every key, in declaration order, with its validator. */
export const KEY_SPECS: readonly KeySpec[] = KEY_DECLS.map((decl) => ({
  ...decl,
  env: envOf(decl),
  flag: flagOf(decl),
  allowed: allowedOf(decl),
  schema: VALIDATORS[decl.key],
}));

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
