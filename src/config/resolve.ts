// Merges built-in defaults < config file < FLT_* environment < flags against the keys declared in
// src/config-keys.ts and validated by schema.ts. Every value given is validated and every problem
// collected, so one run reports all that is wrong at once. The CLI feeds it parsed flags.

import { readFile } from 'node:fs/promises';
import { parse as parseToml, TomlError } from 'smol-toml';
import { FltError } from '../../sync/errors.js';
import { CONFIG_FILE } from '../config-keys.js';
import {
  describeValue,
  KEY_SPECS,
  type Config,
  type ConfigKey,
  type DefaultContext,
  type KeySpec,
} from './schema.js';

/** Where a resolved value came from. Flag names keep their dashes (`--state-dir`). */
export type Source =
  | { kind: 'default' }
  | { kind: 'file'; path: string }
  | { kind: 'env'; name: string }
  | { kind: 'flag'; name: string };

/** One thing wrong with the configuration. `key` is snake_case, for unknown keys too. */
export interface ConfigProblem {
  readonly key: string;
  readonly source: Source;
  readonly reason: string;
  readonly allowed: string;
}

/** The merged configuration and, for every key, the source that won. */
export interface ResolvedConfig {
  readonly config: Config;
  readonly sources: Readonly<Record<ConfigKey, Source>>;
}

/** What {@link resolveConfig} reads. `flags` holds only config flags, named without dashes. */
export interface ResolveInput {
  flags: Readonly<Record<string, string | string[] | boolean | undefined>>;
  env: Readonly<Record<string, string | undefined>>;
  /** Config file path as the CLI parsed it; wins over `flags.config` and `FLT_CONFIG`. */
  configFile?: string | undefined;
  /** Defaults to the process's uid (root gets system-wide defaults). */
  uid?: number;
  /** Defaults to `env.HOME`. */
  home?: string;
}

/** `default`, `file /etc/flt.toml`, `env FLT_BIND`, `flag --bind`. */
export function formatSource(source: Source): string {
  switch (source.kind) {
    case 'default':
      return 'default';
    case 'file':
      return `file ${source.path}`;
    case 'env':
    case 'flag':
      return `${source.kind} ${source.name}`;
  }
}

/** The one line a person reads for a problem. */
export function formatProblem(p: ConfigProblem): string {
  return `config: ${p.key} from ${formatSource(p.source)}: ${p.reason}; allowed: ${p.allowed}`;
}

/** A BAD_CONFIG error carrying every problem found; its message has one line per problem. */
export class ConfigError extends FltError {
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    super('BAD_CONFIG', problems.map(formatProblem).join('\n'), options);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const CONFIG_FLAG = CONFIG_FILE.flag;
const CONFIG_ENV = CONFIG_FILE.env;
const FILE_ALLOWED = 'a readable TOML (.toml) or JSON (.json) file holding a table of settings';
const DEFAULT: Source = { kind: 'default' };
const BY_KEY = new Map(KEY_SPECS.map((s) => [s.key as string, s]));
const BY_ENV = new Map(KEY_SPECS.map((s) => [s.env, s]));
const BY_FLAG = new Map(KEY_SPECS.map((s) => [s.flag, s]));
const KNOWN_KEYS = [...BY_KEY.keys()];
const KNOWN_ENVS = [CONFIG_ENV, ...BY_ENV.keys()];
const KNOWN_FLAGS = [CONFIG_FLAG, ...BY_FLAG.keys()].map((flag) => `--${flag}`);

/** Problems found so far, and the first underlying error (kept as the thrown error's cause). */
class Problems {
  readonly list: ConfigProblem[] = [];
  cause: unknown;

  add(problem: ConfigProblem, cause?: unknown): void {
    this.list.push(problem);
    this.cause ??= cause;
  }
}

/** A value one source gives for a key, before validation. */
interface Given {
  readonly raw: unknown;
  readonly source: Source;
}
type Layer = ReadonlyMap<ConfigKey, Given>;

/**
 * Merge defaults, the config file, `FLT_*` variables and flags, in rising precedence.
 * @throws {ConfigError} (code `BAD_CONFIG`) listing every problem, including unknown keys,
 *   unknown `FLT_*` variables and flags, and an unreadable or unparsable config file.
 */
export async function resolveConfig(input: ResolveInput): Promise<ResolvedConfig> {
  const problems = new Problems();
  const ctx: DefaultContext = {
    uid: input.uid ?? process.getuid?.() ?? -1,
    home: input.home ?? input.env.HOME,
    env: input.env,
  };
  const file = await fileLayer(configFileRef(input, problems), problems);
  const layers = [flagLayer(input.flags, problems), envLayer(input.env, problems), file];
  const values = new Map<keyof Config, unknown>();
  const sources = new Map<ConfigKey, Source>();
  for (const spec of KEY_SPECS) {
    const chosen = resolveKey(spec, layers, ctx, problems);
    if (chosen === undefined) continue;
    values.set(spec.field, chosen.value);
    sources.set(spec.key, chosen.source);
  }
  if (problems.list.length > 0) throw new ConfigError(problems.list, { cause: problems.cause });
  // With no problems, the loop set every row of KEY_SPECS, each value having passed its row's
  // schema: the records have the full shapes below, which the compiler cannot see through a Map.
  return {
    config: Object.fromEntries(values) as Config,
    sources: Object.fromEntries(sources) as Record<ConfigKey, Source>,
  };
}

/** Validates every value given for the key (so a bad one is reported even when overridden). */
function resolveKey(
  spec: KeySpec,
  layers: readonly Layer[],
  ctx: DefaultContext,
  problems: Problems,
) {
  const given = layers.flatMap((layer) => layer.get(spec.key) ?? []);
  if (given.length === 0) return resolveDefault(spec, ctx, problems);
  const [top] = given.map((g) => validate(spec, g, problems));
  return top;
}

function resolveDefault(spec: KeySpec, ctx: DefaultContext, problems: Problems) {
  if (typeof spec.default !== 'function') {
    const raw = spec.default;
    return raw === undefined
      ? { value: undefined, source: DEFAULT }
      : validate(spec, { raw, source: DEFAULT }, problems);
  }
  const raw = spec.default(ctx);
  if (raw !== undefined) return validate(spec, { raw, source: DEFAULT }, problems);
  const reason = 'no default can be worked out here (see HOME, XDG_STATE_HOME)';
  const allowed = `${spec.allowed}, set by --${spec.flag}, ${spec.env} or ${spec.key} in the config file`;
  problems.add({ key: spec.key, source: DEFAULT, reason, allowed });
  return undefined;
}

function validate(spec: KeySpec, given: Given, problems: Problems) {
  const result = spec.schema.safeParse(given.raw);
  if (result.success) return { value: result.data, source: given.source };
  for (const issue of result.error.issues) {
    const [index] = issue.path;
    const reason =
      typeof index === 'number' ? `item ${index + 1}: ${issue.message}` : issue.message;
    problems.add({ key: spec.key, source: given.source, reason, allowed: spec.allowed });
  }
  return undefined;
}

// ---- sources ---------------------------------------------------------------------------------

interface FileRef {
  readonly path: string;
  readonly source: Source;
}

function configFileRef(input: ResolveInput, problems: Problems): FileRef | undefined {
  const viaFlag: Source = { kind: 'flag', name: `--${CONFIG_FLAG}` };
  const flag = input.configFile ?? lastFlagValue(input.flags[CONFIG_FLAG]);
  const env = input.env[CONFIG_ENV];
  if (flag !== undefined) return checkRef(flag, viaFlag, problems);
  return env === undefined ? undefined : checkRef(env, { kind: 'env', name: CONFIG_ENV }, problems);
}

function checkRef(
  value: string | boolean,
  source: Source,
  problems: Problems,
): FileRef | undefined {
  if (typeof value === 'string' && value !== '') return { path: value, source };
  problems.add({
    key: CONFIG_FLAG,
    source,
    reason: `expected a file path, got ${describeValue(value)}`,
    allowed: FILE_ALLOWED,
  });
  return undefined;
}

async function fileLayer(ref: FileRef | undefined, problems: Problems): Promise<Layer> {
  const layer = new Map<ConfigKey, Given>();
  const table = ref === undefined ? undefined : await loadTable(ref, problems);
  if (ref === undefined || table === undefined) return layer;
  const source: Source = { kind: 'file', path: ref.path };
  for (const [name, raw] of Object.entries(table)) {
    const spec = BY_KEY.get(name);
    if (spec === undefined) problems.add(unknownName(name, source, KNOWN_KEYS));
    else layer.set(spec.key, { raw, source });
  }
  return layer;
}

async function loadTable(
  ref: FileRef,
  problems: Problems,
): Promise<Record<string, unknown> | undefined> {
  const fail = (reason: string, cause?: unknown) => {
    problems.add({ key: CONFIG_FLAG, source: ref.source, reason, allowed: FILE_ALLOWED }, cause);
    return undefined;
  };
  let text: string;
  try {
    text = await readFile(ref.path, 'utf8');
  } catch (err) {
    return fail(`cannot read ${ref.path}: ${ioReason(err)}`, err);
  }
  const format = formatOf(ref.path, text);
  try {
    const parsed: unknown = format.name === 'JSON' ? JSON.parse(text) : parseToml(text);
    return isTable(parsed) ? parsed : fail(`${ref.path} does not hold a table of settings`);
  } catch (err) {
    return fail(
      `${ref.path} is not valid ${format.name}${format.guessed}: ${parseReason(err)}`,
      err,
    );
  }
}

/** By extension; otherwise a document starting with `{` is JSON and anything else TOML. */
function formatOf(file: string, text: string): { name: 'JSON' | 'TOML'; guessed: string } {
  const lower = file.toLowerCase();
  if (lower.endsWith('.json')) return { name: 'JSON', guessed: '' };
  if (lower.endsWith('.toml')) return { name: 'TOML', guessed: '' };
  const name = text.trimStart().startsWith('{') ? 'JSON' : 'TOML';
  return { name, guessed: ' (format guessed from its content)' };
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function ioReason(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}

/** smol-toml's message carries a multi-line code excerpt; keep one line and the position. */
function parseReason(err: unknown): string {
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
  const message = first.replace(/^Invalid TOML document: /, '');
  return err instanceof TomlError ? `${message} (line ${err.line}, column ${err.column})` : message;
}

function envLayer(env: ResolveInput['env'], problems: Problems): Layer {
  const layer = new Map<ConfigKey, Given>();
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith('FLT_') || name === CONFIG_ENV || text === undefined) continue;
    const source: Source = { kind: 'env', name };
    const spec = BY_ENV.get(name);
    if (spec === undefined)
      problems.add(unknownName(name.slice(4).toLowerCase(), source, KNOWN_ENVS));
    else layer.set(spec.key, { raw: spec.kind === 'list' ? splitList(text) : text, source });
  }
  return layer;
}

/** `"a, b"` -> `["a", "b"]`; an empty variable is an empty list (to override a file's list). */
function splitList(text: string): string[] {
  return text.trim() === '' ? [] : text.split(',').map((item) => item.trim());
}

function flagLayer(flags: ResolveInput['flags'], problems: Problems): Layer {
  const layer = new Map<ConfigKey, Given>();
  for (const [name, value] of Object.entries(flags)) {
    if (name === CONFIG_FLAG || value === undefined) continue;
    const source: Source = { kind: 'flag', name: `--${name}` };
    const spec = BY_FLAG.get(name);
    const raw = spec === undefined ? undefined : flagRaw(spec, value);
    if (spec === undefined)
      problems.add(unknownName(name.replaceAll('-', '_'), source, KNOWN_FLAGS));
    else if (raw !== undefined) layer.set(spec.key, { raw, source });
  }
  return layer;
}

/** A flag's value as the schema takes it; `undefined` for an empty repeated flag (not given). */
function flagRaw(spec: KeySpec, value: string | string[] | boolean): unknown {
  if (typeof value === 'object' && value.length === 0) return undefined;
  if (spec.kind === 'list') return typeof value === 'string' ? [value] : value;
  return lastFlagValue(value);
}

/** A repeated scalar flag: the last one wins, as in most CLIs, so an alias can be overridden. */
function lastFlagValue(
  value: string | string[] | boolean | undefined,
): string | boolean | undefined {
  return typeof value === 'object' ? value.at(-1) : value;
}

// ---- unknown names ---------------------------------------------------------------------------

/** `key` is snake_case; the name shown and matched is the one the source used. */
function unknownName(key: string, source: Source, known: readonly string[]): ConfigProblem {
  const name = source.kind === 'env' || source.kind === 'flag' ? source.name : key;
  const what = { default: 'key', file: 'key', env: 'variable', flag: 'flag' }[source.kind];
  const near = closest(name, known);
  const hint = near === undefined ? '' : ` (did you mean ${near}?)`;
  return {
    key,
    source,
    reason: `unknown ${what} ${name}${hint}`,
    allowed: `one of ${known.join(', ')}`,
  };
}

/** The known name within edit distance 2 of `name` (typos, a missing `_`), if any. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (
      distance <= 2 &&
      distance < name.length &&
      (best === undefined || distance < best.distance)
    ) {
      best = { name: candidate, distance };
    }
  }
  return best?.name;
}

/** Levenshtein distance, two rows at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(substitute, (previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
