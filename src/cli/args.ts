// Command-line parsing: `flt [global options] <applet> [words] [options]`. Options may appear
// anywhere after `flt`; config options go to the config resolver (flags are its top layer),
// the rest belong to one applet and are refused elsewhere.

import { parseArgs } from 'node:util';
import { FltError } from '../../sync/errors.js';
import { configFlagOptions } from '../config-keys.js';

/** Options that are configuration keys (and `--config`): declared in src/config-keys.ts. */
const CONFIG_OPTIONS = configFlagOptions();

/** Options that belong to one applet, and which applets accept them. */
const APPLET_OPTIONS = {
  out: { type: 'string', applets: ['keygen'] },
  force: { type: 'boolean', applets: ['keygen'] },
  'public-key': { type: 'string', applets: ['id'] },
  count: { type: 'string', short: 'n', applets: ['admin'] },
  size: { type: 'string', applets: ['admin'] },
  once: { type: 'boolean', applets: ['demo'] },
  offline: { type: 'boolean', applets: ['admin'] },
  expires: { type: 'string', applets: ['admin'] },
  help: { type: 'boolean', short: 'h', applets: [] },
  version: { type: 'boolean', short: 'V', applets: [] },
} as const;

export type ConfigFlags = Record<string, string | string[] | boolean | undefined>;

export interface ParsedArgs {
  readonly applet: string | undefined;
  readonly words: readonly string[];
  readonly configFlags: ConfigFlags;
  readonly options: {
    out?: string;
    force?: boolean;
    publicKey?: string;
    count?: string;
    size?: string;
    once?: boolean;
    offline?: boolean;
    expires?: string;
    help?: boolean;
    version?: boolean;
  };
}

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  const options = { ...CONFIG_OPTIONS, ...stripApplets(APPLET_OPTIONS) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new FltError('BAD_ARGUMENT', (err as Error).message.split('\n')[0] ?? 'bad arguments');
  }
  const [applet, ...words] = parsed.positionals;
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  for (const [name, spec] of Object.entries(APPLET_OPTIONS)) {
    const allowed: readonly string[] = spec.applets;
    if (values[name] !== undefined && allowed.length > 0 && !allowed.includes(applet ?? '')) {
      throw new FltError(
        'BAD_ARGUMENT',
        `--${name} is an option of ${allowed.join(', ')}, not of ${applet ?? 'flt'}`,
      );
    }
  }
  const configFlags: ConfigFlags = {};
  for (const name of Object.keys(CONFIG_OPTIONS))
    if (values[name] !== undefined) configFlags[name] = values[name];
  const str = (k: string) => values[k] as string | undefined;
  const bool = (k: string) => values[k] as boolean | undefined;
  return {
    applet,
    words,
    configFlags,
    options: {
      out: str('out'),
      force: bool('force'),
      publicKey: str('public-key'),
      count: str('count'),
      size: str('size'),
      once: bool('once'),
      offline: bool('offline'),
      expires: str('expires'),
      help: bool('help'),
      version: bool('version'),
    },
  };
}

function stripApplets<T extends Record<string, { applets: readonly string[] }>>(specs: T) {
  const out: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const { applets: _applets, ...rest } = spec as unknown as {
      applets: unknown;
      type: 'string' | 'boolean';
      short?: string;
    };
    out[name] = rest;
  }
  return out;
}

/** Parses a positive integer option such as `-n 10`. */
export function positiveInt(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new FltError(
      'BAD_ARGUMENT',
      `--${name} must be an integer from 1 to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** Parses a size such as `1024`, `64k`, `1m` (binary units) up to `max` bytes. */
export function byteSize(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const m = /^(\d+)([kKmM]i?[bB]?)?$/.exec(value.trim());
  const unit = m?.[2]?.[0]?.toLowerCase();
  const n = m ? Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new FltError(
      'BAD_ARGUMENT',
      `--${name} must be a byte size from 0 to ${max} (e.g. 4096, 64k, 1m), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}
