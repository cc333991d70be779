// The Nix tools the activation layer needs (nix-store, nix-env), run bounded: a timeout, capped
// output, no shell, and `--option substituters ''` wherever Nix could go to the network (design
// §0: without it every call waits ~5 s for a binary cache). Store-path syntax and Nix profile
// links (`p -> p-N-link -> /nix/store/...`) are read here too; activators build on these.

import { execFile, spawn, type ExecFileException } from 'node:child_process';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { isStorePath } from '../trust/deployment.js';
import { FltError } from '../errors.js';

/** The default store directory, and the one the `nixos` activator always uses. */
export const DEFAULT_STORE_DIR = '/nix/store';
/** One Nix call's deadline: checks answer in ~30 ms, `nix-env --set` in ~100 ms (design §0). */
export const NIX_TIMEOUT_MS = 60_000;
/** Cap on what a Nix tool may print to us (generation lists are a line per generation). */
export const NIX_MAX_BYTES = 256 * 1024;
/** Arguments that keep Nix off the network; passed on every call that could substitute. */
export const NO_SUBSTITUTERS: readonly string[] = ['--option', 'substituters', ''];

/** A finished tool: its exit code (0 or not) and what it printed, capped. */
export interface ToolResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `file args` without a shell, bounded by `timeoutMs` and {@link NIX_MAX_BYTES}; resolves
 * with the exit code (non-zero is not an error here). A missing tool, a timeout or too much
 * output rejects (IO / TIMEOUT).
 */
export function runTool(
  file: string,
  args: readonly string[],
  timeoutMs = NIX_TIMEOUT_MS,
  maxBytes = NIX_MAX_BYTES,
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        encoding: 'utf8',
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: maxBytes,
        env: toolEnv(),
      },
      (err: ExecFileException | null, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        if (typeof err.code === 'number' && err.killed !== true)
          return resolve({ code: err.code, stdout, stderr });
        reject(toolError(file, err, timeoutMs, maxBytes));
      },
    );
  });
}

function toolError(
  file: string,
  err: ExecFileException,
  timeoutMs: number,
  maxBytes: number,
): FltError {
  if (err.code === 'ENOENT') return notInstalled(file, err);
  if (err.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER')
    return new FltError('IO', `${file}: more than ${maxBytes} bytes of output`, {
      cause: err,
    });
  if (err.killed === true)
    return new FltError('TIMEOUT', `${file}: no answer in ${timeoutMs} ms`, { cause: err });
  return new FltError('IO', `${file}: ${err.message}`, { cause: err });
}

function notInstalled(file: string, cause: unknown): FltError {
  return new FltError('IO', `${file}: not installed (Nix's tools must be on PATH)`, { cause });
}

/** Options of {@link spawnTool}. */
export interface SpawnToolOptions {
  /**
   * The tool is killed (TIMEOUT) when it prints nothing for this long while the reader wants
   * more; time the reader spends not reading does not count. Default {@link NIX_TIMEOUT_MS}.
   */
  readonly idleMs?: number;
  /** The error for a non-zero exit, from its code and (capped) stderr; default IO. */
  readonly onFail?: (code: number, stderr: string) => Error;
}

/**
 * Runs `file args` without a shell and streams its stdout, with backpressure: the returned
 * stream ends only once the tool exited 0, and errors (destroyed with the tool's error) when it
 * exits otherwise, is missing (IO), or stalls (TIMEOUT). Destroying the stream kills the tool.
 */
export function spawnTool(
  file: string,
  args: readonly string[],
  opts: SpawnToolOptions = {},
): Readable {
  const idleMs = opts.idleMs ?? NIX_TIMEOUT_MS;
  const out = new PassThrough();
  const child = spawn(file, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: toolEnv() });
  let stderr = '';
  let failed: Error | undefined;
  const fail = (err: Error) => {
    failed ??= err;
    child.kill('SIGKILL');
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < NIX_MAX_BYTES) stderr += d.slice(0, NIX_MAX_BYTES - stderr.length);
  });
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      // A full buffer means the reader is slow, not the tool: wait for the reader.
      if (out.writableNeedDrain || child.stdout.isPaused()) return arm();
      fail(new FltError('TIMEOUT', `${file}: printed nothing for ${idleMs} ms`));
    }, idleMs);
    timer.unref();
  };
  arm();
  child.stdout.on('data', arm);
  child.stdout.pipe(out, { end: false });
  child.on('error', (err: NodeJS.ErrnoException) =>
    fail(
      err.code === 'ENOENT'
        ? notInstalled(file, err)
        : new FltError('IO', `${file}: ${err.message}`),
    ),
  );
  child.on('close', (code) => {
    clearTimeout(timer);
    if (failed !== undefined) return void out.destroy(failed);
    if (code === 0) return void out.end();
    out.destroy(
      opts.onFail?.(code ?? -1, stderr) ??
        new FltError('IO', `${file}: exit ${code ?? 'by signal'}: ${firstLine(stderr)}`),
    );
  });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return out;
}

/** PATH and HOME only: Nix tools behave the same whatever else the agent's environment holds. */
export function toolEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin',
  };
  if (process.env.HOME !== undefined) env.HOME = process.env.HOME;
  return env;
}

/** `--store S` when a store URI is configured, else nothing (Nix's default store). */
export function storeArgs(nixStore?: string): string[] {
  return nixStore === undefined ? [] : ['--store', nixStore];
}

/**
 * The store directory of a store URI: `/nix/store` by default, or the `store=` parameter of a
 * `local?store=...` URI (the per-run test store of design §0). Any other URI keeps the default.
 */
export function storeDirOf(nixStore?: string): string {
  if (nixStore === undefined) return DEFAULT_STORE_DIR;
  const q = nixStore.indexOf('?');
  if (q < 0) return DEFAULT_STORE_DIR;
  const dir = new URLSearchParams(nixStore.slice(q + 1)).get('store');
  return dir !== null && path.isAbsolute(dir)
    ? path.normalize(dir).replace(/(.)\/$/, '$1')
    : DEFAULT_STORE_DIR;
}

/** True when `p` is a store path (trust/deployment.ts) exactly in `storeDir`, not inside one. */
export function isStorePathIn(p: string, storeDir: string): boolean {
  return isStorePath(p) && path.dirname(p) === storeDir;
}

/** Whether `storePath` is valid (present, registered) in the store: `nix-store --check-validity`. */
export async function isValidPath(storePath: string, nixStore?: string): Promise<boolean> {
  const r = await runTool('nix-store', [
    ...storeArgs(nixStore),
    ...NO_SUBSTITUTERS,
    '--check-validity',
    storePath,
  ]);
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  throw new FltError('IO', `nix-store --check-validity: exit ${r.code}: ${firstLine(r.stderr)}`);
}

/** `nix-env [--store S] --option substituters '' -p PROFILE`: the head of every profile call. */
export function nixEnvArgs(profile: string, nixStore?: string): string[] {
  return [...storeArgs(nixStore), ...NO_SUBSTITUTERS, '-p', profile];
}

/** Points `profile` at `storePath` as a new generation (`nix-env --set`). */
export async function setProfile(profile: string, storePath: string, nixStore?: string) {
  await nixEnv([...nixEnvArgs(profile, nixStore), '--set', storePath]);
}

/** Makes generation `n` of `profile` current (`nix-env --switch-generation N`). */
export async function switchGeneration(profile: string, n: number, nixStore?: string) {
  await nixEnv([...nixEnvArgs(profile, nixStore), '--switch-generation', String(n)]);
}

async function nixEnv(args: string[]): Promise<void> {
  const r = await runTool('nix-env', args);
  if (r.code !== 0)
    throw new FltError('IO', `nix-env ${args.slice(-2).join(' ')}: ${firstLine(r.stderr)}`);
}

/** One generation of a profile: its number and the store path its link points at. */
export interface Generation {
  readonly generation: number;
  readonly path: string;
}

const LINK = /^(.+)-(\d{1,9})-link$/;

/**
 * The current generation of `profile`, read from its two links (`p -> p-N-link -> path`);
 * null when the profile does not exist. A profile that is not such a pair is an IO error.
 */
export async function currentGeneration(profile: string): Promise<Generation | null> {
  let first: string;
  try {
    first = await readlink(profile);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return null;
    throw err;
  }
  const m = LINK.exec(path.basename(first));
  if (m === null || m[1] !== path.basename(profile))
    throw new FltError('IO', `${profile}: not a Nix profile (points at ${first})`);
  const link = path.resolve(path.dirname(profile), first);
  return { generation: Number(m[2]), path: await readlink(link) };
}

/** Every generation of `profile`, oldest first (the `p-N-link` entries beside it). */
export async function listGenerations(profile: string): Promise<Generation[]> {
  const dir = path.dirname(profile);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return [];
    throw err;
  }
  const out: Generation[] = [];
  for (const name of names) {
    const m = LINK.exec(name);
    if (m === null || m[1] !== path.basename(profile)) continue;
    out.push({ generation: Number(m[2]), path: await readlink(path.join(dir, name)) });
  }
  return out.sort((a, b) => a.generation - b.generation);
}

/** Quotes `s` for /bin/sh: one word, whatever it holds. */
export function shq(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The first non-blank line of a tool's output, trimmed and capped (for one-line errors). */
export function firstLine(text: string): string {
  return (text.split('\n').find((l) => l.trim() !== '') ?? '').trim().slice(0, 200);
}
