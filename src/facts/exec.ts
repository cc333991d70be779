// Running external tools for the collectors: execFile (never a shell), a timeout, bounded
// output and an environment of PATH alone, so a tool behaves the same whatever the agent's
// environment holds. tools.ts and nixos.ts use it; tests pass their own ExecFn.

import { execFile, type ExecFileException } from 'node:child_process';
import { FltError, messageOf } from '../../sync/errors.js';

/** How long one tool may run (the brief's 5 s; `nix --version` answers in milliseconds). */
export const EXEC_TIMEOUT_MS = 5_000;
/** Default cap on a tool's stdout; version strings are tiny, facter asks for more. */
export const EXEC_MAX_BYTES = 64 * 1024;
/** PATH for tools when the agent runs without one: NixOS system profile, then the usual. */
const FALLBACK_PATH = '/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin';

/** Per-call options of an {@link ExecFn}. */
export interface ExecOptions {
  /** Largest stdout accepted; more is an error. */
  readonly maxBytes?: number;
  readonly signal?: AbortSignal;
}

/**
 * Runs `file` with `args` and resolves to its stdout. Rejects when the tool is missing (an error
 * whose `code` is `ENOENT`), fails, runs too long or prints too much.
 */
export type ExecFn = (
  file: string,
  args: readonly string[],
  options?: ExecOptions,
) => Promise<string>;

/** The production {@link ExecFn}: execFile, no shell, {@link EXEC_TIMEOUT_MS}, env PATH only. */
export const execTool: ExecFn = (file, args, options = {}) => {
  const maxBytes = options.maxBytes ?? EXEC_MAX_BYTES;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        encoding: 'utf8',
        timeout: EXEC_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: maxBytes,
        env: { PATH: process.env.PATH ?? FALLBACK_PATH },
        signal: options.signal,
      },
      (err, stdout, stderr) => {
        if (err === null) resolve(stdout);
        else reject(toExecError(file, err, stderr, maxBytes));
      },
    );
  });
};

function toExecError(file: string, err: ExecFileException, stderr: string, max: number): Error {
  if (err.code === 'ENOENT') return err;
  if (err.name === 'AbortError') return new FltError('ABORTED', `${file}: aborted`, { cause: err });
  if (err.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
    return new FltError('IO', `${file}: output larger than ${max} bytes`, { cause: err });
  }
  if (err.killed === true) {
    return new FltError('TIMEOUT', `${file}: no answer in ${EXEC_TIMEOUT_MS} ms`, { cause: err });
  }
  const why = firstLine(stderr) || `exit code ${String(err.code)}`;
  return new FltError('IO', `${file} failed: ${why}`, { cause: err });
}

/** The first non-blank line of `text`, trimmed and clipped, for notes and version strings. */
export function firstLine(text: string, max = 200): string {
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.trim().slice(0, max);
}

/** One short line describing any thrown value, for a note. */
export function describeError(err: unknown): string {
  return firstLine(messageOf(err)) || 'unknown error';
}
