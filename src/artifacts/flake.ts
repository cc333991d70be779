// `--flake REF#nixosConfigurations.HOST` (design §5): evaluates and builds the host's system with
// `nix build --json` (Nix 2.8 has no --print-out-paths), passing its stderr (the build log) on,
// and answers the store path that push and deploy then use. Nix's own environment is kept (the
// operator's NIX_CONFIG, NIX_PATH, ...): this is their build, as `nix build` in their shell.

import { spawn } from 'node:child_process';
import { FltError } from '../errors.js';
import { storeArgs } from '../deploy/nix.js';
import { parseStorePath, type StorePath } from './meta.js';

/** The attribute a host's system is built from. */
const TOPLEVEL = 'config.system.build.toplevel';
/** stdout of `nix build --json` kept at most (one result: well under a KB). */
const MAX_STDOUT = 1 << 20;
/** stderr kept for the error line (the rest is passed through). */
const MAX_STDERR = 256 * 1024;

export interface FlakeRef {
  /** The flake reference before `#`. */
  readonly flake: string;
  readonly host: string;
  /** What `nix build` is given. */
  readonly installable: string;
}

/**
 * Parses `REF#nixosConfigurations.HOST`.
 * @throws FltError BAD_ARGUMENT when the word is not of that shape.
 */
export function parseFlakeRef(word: string): FlakeRef {
  const m = /^([^#\s]+)#nixosConfigurations\.("?)([A-Za-z0-9_][A-Za-z0-9_.-]{0,62})\2$/.exec(word);
  if (!m || m[3]!.includes('.') !== (m[2] === '"'))
    throw new FltError(
      'BAD_ARGUMENT',
      `--flake ${JSON.stringify(word)}: expected REF#nixosConfigurations.HOST, e.g. .#nixosConfigurations.web-1`,
    );
  const host = m[3]!;
  return {
    flake: m[1]!,
    host,
    installable: `${m[1]!}#nixosConfigurations.${m[2]!}${host}${m[2]!}.${TOPLEVEL}`,
  };
}

export interface BuildOptions {
  /** `nix_store`: passed as --store. */
  readonly store?: string | undefined;
  /** More arguments for `nix build` (tests: keep Nix off the network, no build users). */
  readonly extraArgs?: readonly string[];
  /** Where Nix's stderr goes; default the process's stderr. */
  readonly onStderr?: (text: string) => void;
  readonly signal?: AbortSignal;
}

/**
 * Builds `ref`'s system: `nix build [--store S] --no-link --json INSTALLABLE`; its out path.
 * @throws FltError BUILD_FAILED with Nix's last error line; IO when nix is missing or answers
 *   something that is not one result with an `out` store path.
 */
export async function buildFlake(ref: FlakeRef, opts: BuildOptions = {}): Promise<StorePath> {
  const args = [
    '--extra-experimental-features',
    'nix-command flakes',
    'build',
    ...storeArgs(opts.store),
    ...(opts.extraArgs ?? []),
    '--no-link',
    '--json',
    ref.installable,
  ];
  const child = spawn('nix', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  let stdout = '';
  let stderr = '';
  const pass = opts.onStderr ?? ((t: string) => void process.stderr.write(t));
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    if (stdout.length < MAX_STDOUT) stdout += d;
  });
  child.stderr.on('data', (d: string) => {
    pass(d);
    stderr = (stderr + d).slice(-MAX_STDERR);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new FltError('IO', "nix: not installed (Nix's tools must be on PATH)", { cause: err })
          : new FltError('IO', `nix build: ${err.message}`, { cause: err }),
      ),
    );
    child.on('close', resolve);
  });
  if (code !== 0)
    throw new FltError('BUILD_FAILED', `nix build ${ref.installable}: ${lastError(stderr)}`);
  return outPath(stdout, ref);
}

/** Nix's last `error:` line (its last non-empty line when none says error). */
export function lastError(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const errors = lines.filter((l) => l.startsWith('error:'));
  return (errors.at(-1) ?? lines.at(-1) ?? 'failed').slice(0, 300);
}

function outPath(stdout: string, ref: FlakeRef): StorePath {
  const bad = (what: string) => new FltError('IO', `nix build ${ref.installable} --json: ${what}`);
  let results: unknown;
  try {
    results = JSON.parse(stdout);
  } catch {
    throw bad('not JSON');
  }
  if (!Array.isArray(results) || results.length !== 1) throw bad('not one result');
  const out = (results[0] as { outputs?: { out?: unknown } } | null)?.outputs?.out;
  if (typeof out !== 'string') throw bad('no outputs.out');
  try {
    return parseStorePath(out);
  } catch {
    throw bad(`${out} is not a store path`);
  }
}
