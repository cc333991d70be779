// The one declaration of each configuration key: its file key, field, flag, environment name,
// default, what is allowed, and its help line. The CLI's flags and `--help` (cli/program.ts) are derived
// from this table, and config/schema.ts adds one zod validator per key for resolution and `config
// show`. It lives outside config/ and imports nothing heavy, so `flt --help` loads no zod.

import path from 'node:path';

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
export type RawDefault = string | boolean | readonly string[];

/** The roles a node runs as; a key may have a default for each (see `perRole`). */
export type Role = 'coordinator' | 'agent' | 'admin';

/** One key as declared in {@link KEY_DECLS}. */
export interface KeyDecl {
  /** snake_case, as written in a config file. */
  readonly key: string;
  /** camelCase field of the resolved `Config`. */
  readonly field: string;
  /** Flag name without the leading `--`, when it is not the key with `-` for `_`. */
  readonly flagName?: string;
  readonly kind: KeyKind;
  /** The value's placeholder in `--help` (`--state-dir DIR`); none for a boolean. */
  readonly metavar?: string;
  /** One line for `--help`, without the default (with `choices`: a note after them). */
  readonly help: string;
  /** The only values allowed, if the key is one of a few words. */
  readonly choices?: readonly string[];
  /** What is allowed, for error messages; derived from `choices` or `range` if absent. */
  readonly allowed?: string;
  /** A duration key's bounds, as duration text (checked by the key's schema). */
  readonly range?: readonly [min: string, max: string];
  /** `undefined` means unset; a function computes it and returns `undefined` when it cannot. */
  readonly default: RawDefault | ((ctx: DefaultContext) => string | undefined) | undefined;
  /** The default as `--help` shows it, when the value alone would not say it. */
  readonly defaultHelp?: string;
  /** A default that depends on the role, applied by the role (the key itself stays unset). */
  readonly perRole?: Readonly<Record<Role, string>>;
}

/** `$XDG_STATE_HOME/flt` (ignored unless absolute, as the XDG spec says), then `~/.local/state/flt`. */
export function defaultStateDir(ctx: DefaultContext): string | undefined {
  if (ctx.uid === 0) return '/var/lib/flt';
  const xdg = ctx.env.XDG_STATE_HOME;
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, 'flt');
  return ctx.home === undefined || ctx.home === ''
    ? undefined
    : path.join(ctx.home, '.local', 'state', 'flt');
}

/**
 * `bind` per role. The coordinator listens on a fixed, documented port so its address survives
 * restarts; agents and admins only dial out, so any free port will do.
 */
export const BIND_PER_ROLE: Readonly<Record<Role, string>> = {
  coordinator: '0.0.0.0:7447',
  agent: '0.0.0.0:0',
  admin: '0.0.0.0:0',
};

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export const DISCOVERY = ['none', 'n0'] as const;
/** How an agent activates a deployment (src/deploy/activator.ts); `none` refuses every one. */
export const DEPLOY_ACTIVATORS = ['none', 'nixos', 'profile', 'command'] as const;

/** Most store paths one push or fetch transfers at once (`artifact_parallel`). */
export const MAX_ARTIFACT_PARALLEL = 16;

const SIZE_UNITS: Readonly<Record<string, number>> = {
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/**
 * Bytes in a size such as `4096`, `64k`, `1m`, `2GiB`, `1t` (binary units, any case): the
 * parser of `artifact_min_free` and of `flt admin echo --size`. `undefined` when `text` is not one.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+)(?:([kmgt])(?:i?b)?)?$/i.exec(text.trim());
  if (m === null) return undefined;
  const n = Number(m[1]) * (m[2] === undefined ? 1 : (SIZE_UNITS[m[2].toLowerCase()] ?? NaN));
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Every configuration key, lowest-level facts first. Names follow one rule (env = `FLT_` +
 * upper-case key, flag = key with `-` for `_`) except `admins`, whose repeatable flag is
 * `--admin`. Add a key here and its validator in config/schema.ts; flags, env, help,
 * resolution and `config show` pick it up.
 */
export const KEY_DECLS = [
  {
    key: 'state_dir',
    field: 'stateDir',
    kind: 'text',
    metavar: 'DIR',
    help: 'state directory',
    allowed: 'a non-empty path',
    default: defaultStateDir,
    defaultHelp: '~/.local/state/flt, /var/lib/flt for root',
  },
  {
    key: 'secret_key',
    field: 'secretKey',
    kind: 'text',
    metavar: 'FILE',
    help: 'node key: an unencrypted OpenSSH ed25519 key',
    allowed: 'a non-empty path',
    default: undefined,
    defaultHelp: '<state-dir>/node.key',
  },
  {
    key: 'log_level',
    field: 'logLevel',
    kind: 'text',
    metavar: 'L',
    help: 'logs go to stderr',
    choices: LOG_LEVELS,
    default: 'info',
  },
  {
    key: 'relay',
    field: 'relay',
    kind: 'text',
    metavar: 'R',
    help: 'iroh relays: disabled | default | https://relay.example',
    allowed: '"disabled", "default", or an http:// or https:// URL',
    default: 'default',
  },
  {
    key: 'discovery',
    field: 'discovery',
    kind: 'text',
    metavar: 'D',
    help: 'iroh address discovery',
    choices: DISCOVERY,
    default: 'n0',
  },
  {
    key: 'bind',
    field: 'bind',
    kind: 'text',
    metavar: 'HOST:PORT',
    help: 'socket to bind',
    allowed: 'HOST:PORT with an IPv4 address, [IPv6] address or hostname, and a port 0..65535',
    default: undefined,
    perRole: BIND_PER_ROLE,
  },
  {
    key: 'coordinator',
    field: 'coordinator',
    kind: 'text',
    metavar: 'ADDR',
    help: 'coordinator to join: a ticket or NODE_ID@HOST:PORT',
    allowed: 'a non-empty ticket or NODE_ID@HOST:PORT',
    default: undefined,
  },
  {
    key: 'admins',
    field: 'admins',
    flagName: 'admin',
    kind: 'list',
    metavar: 'NODE_ID|FILE',
    help: 'initial admin of a new fleet: node id or OpenSSH .pub',
    allowed: 'a list of node ids or key files (comma-separated in env, --admin repeated)',
    default: [],
  },
  {
    key: 'enroll_token',
    field: 'enrollToken',
    kind: 'text',
    metavar: 'TOKEN',
    help: 'one-time enrollment token (agent)',
    allowed: 'a token as printed by `flt admin enroll-token`',
    default: undefined,
  },
  {
    key: 'facts_interval',
    field: 'factsIntervalMs',
    kind: 'duration',
    metavar: 'D',
    help: 'how often agents publish facts',
    range: ['1s', '1d'],
    default: '60s',
  },
  {
    key: 'rpc_timeout',
    field: 'rpcTimeoutMs',
    kind: 'duration',
    metavar: 'D',
    help: 'deadline of one request or echo round',
    range: ['100ms', '10m'],
    default: '10s',
  },
  {
    key: 'json',
    field: 'json',
    kind: 'boolean',
    help: 'machine-readable output',
    allowed: 'true or false (also yes/no, 1/0 in env and flags)',
    default: false,
  },
  {
    key: 'deploy_activator',
    field: 'deployActivator',
    kind: 'text',
    metavar: 'A',
    help: 'how the agent activates deployments (none refuses them)',
    choices: DEPLOY_ACTIVATORS,
    default: 'none',
  },
  {
    key: 'deploy_profile',
    field: 'deployProfile',
    kind: 'text',
    metavar: 'PATH',
    help: 'Nix profile the profile activator sets (agent)',
    allowed: 'an absolute path (its directory is created)',
    default: undefined,
  },
  {
    key: 'deploy_command',
    field: 'deployCommand',
    kind: 'text',
    metavar: 'CMD',
    help: 'shell command run with STORE_PATH ACTION (command activator; after the profile one)',
    allowed: 'a non-empty shell command line',
    default: undefined,
  },
  {
    key: 'deploy_check',
    field: 'deployCheck',
    kind: 'text',
    metavar: 'CMD',
    help: 'health check after activation: shell command run with STORE_PATH ACTION, must exit 0',
    allowed: 'a non-empty shell command line',
    default: undefined,
  },
  {
    key: 'deploy_health_timeout',
    field: 'deployHealthTimeoutMs',
    kind: 'duration',
    metavar: 'D',
    help: 'how long the health check after an activation may take',
    range: ['1s', '1h'],
    default: '2m',
  },
  {
    key: 'deploy_recheck',
    field: 'deployRecheckMs',
    kind: 'duration',
    metavar: 'D',
    help: 'how often a missing store path is looked for again',
    range: ['100ms', '1h'],
    default: '30s',
  },
  {
    key: 'nix_store',
    field: 'nixStore',
    kind: 'text',
    metavar: 'URI',
    help: 'Nix store URI passed as --store (not with the nixos activator)',
    allowed: 'a non-empty Nix store URI, e.g. local?store=/x/nix/store&state=/x/nix/var',
    default: undefined,
  },
  {
    key: 'nix_signing_key',
    field: 'nixSigningKey',
    kind: 'text',
    metavar: 'FILE',
    help: 'Nix secret key that signs the paths an admin pushes',
    allowed: 'path of a secret key made by nix-store --generate-binary-cache-key NAME sk pk',
    default: undefined,
  },
  {
    key: 'nix_trusted_keys',
    field: 'nixTrustedKeys',
    kind: 'list',
    metavar: 'KEY',
    help: 'Nix public keys whose signatures delivered paths need (agent, coordinator)',
    allowed: 'a list of Nix public keys NAME:BASE64 (32 bytes), as in trusted-public-keys',
    default: [],
    defaultHelp:
      "none: the agent's Nix configuration decides; the coordinator takes any valid signature",
  },
  {
    key: 'artifact_parallel',
    field: 'artifactParallel',
    kind: 'text',
    metavar: 'N',
    help: 'store paths transferred at once by push and fetch',
    allowed: `an integer from 1 to ${MAX_ARTIFACT_PARALLEL}`,
    default: '4',
  },
  {
    key: 'artifact_gc_grace',
    field: 'artifactGcGraceMs',
    kind: 'duration',
    metavar: 'D',
    help: 'how long the coordinator keeps paths no deployment references any more',
    range: ['1h', '365d'],
    default: '14d',
  },
  {
    key: 'artifact_min_free',
    field: 'artifactMinFree',
    kind: 'text',
    metavar: 'SIZE',
    help: 'free space artifacts leave on their disk (coordinator, agent)',
    allowed: 'a byte size from 0 to 1t, e.g. 512m, 1g (binary units: k, m, g, t)',
    default: '1g',
  },
] as const satisfies readonly KeyDecl[];

/** A configuration key as written in files (snake_case). */
export type ConfigKey = (typeof KEY_DECLS)[number]['key'];

/** The config file itself: a flag and a variable, but not a key (a file cannot name a file). */
export const CONFIG_FILE = {
  flag: 'config',
  env: 'FLT_CONFIG',
  metavar: 'FILE',
  help: 'TOML or JSON configuration file',
} as const;

/** `--state-dir`'s name without dashes; `admins` is the one key whose flag differs. */
export function flagOf(decl: KeyDecl): string {
  return decl.flagName ?? decl.key.replaceAll('_', '-');
}

export function envOf(decl: KeyDecl): string {
  return `FLT_${decl.key.toUpperCase()}`;
}

/** What is allowed, as error messages say it. */
export function allowedOf(decl: KeyDecl): string {
  if (decl.allowed !== undefined) return decl.allowed;
  if (decl.choices !== undefined) return `one of ${decl.choices.join(', ')}`;
  if (decl.range !== undefined) {
    const [min, max] = decl.range;
    return `a duration from ${min} to ${max}, e.g. 500ms, 60s, 5m, 1h30m (a bare number means seconds)`;
  }
  throw new Error(`config key ${decl.key} declares neither allowed, choices nor range`);
}

/** What `--help` says a key defaults to, if anything. */
function defaultText(decl: KeyDecl): string | undefined {
  if (decl.defaultHelp !== undefined) return decl.defaultHelp;
  if (decl.perRole !== undefined) {
    const { coordinator, agent, admin } = decl.perRole;
    return agent === admin ? `coordinator ${coordinator}; others ${agent}` : undefined;
  }
  return typeof decl.default === 'string' && decl.default !== '' ? decl.default : undefined;
}

/** The `--help` line's text for a key: its choices or help, then notes and its default. */
export function helpText(decl: KeyDecl): string {
  const fallback = defaultText(decl);
  const notes = [
    decl.choices === undefined ? undefined : decl.help,
    decl.kind === 'list' ? 'repeatable' : undefined,
    fallback === undefined ? undefined : `default: ${fallback}`,
  ].filter((note) => note !== undefined);
  const main = decl.choices === undefined ? decl.help : decl.choices.join(' | ');
  return notes.length === 0 ? main : `${main} (${notes.join('; ')})`;
}
