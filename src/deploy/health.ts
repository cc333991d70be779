// The health check after an activation (design §4), without the network part: the activator's
// own check (nixos: failed units, parsed here), the optional `deploy_check` command (same argv
// convention as deploy_command), and the agent's `reachable` callback ("the coordinator
// answered again"), in that order, all within one budget. The first failure is the reason. A
// check stopped by its signal (the agent stopping) throws ABORTED: it is no verdict, and the
// next start runs it again.

import { spawn } from 'node:child_process';
import { FltError } from '../errors.js';
import { shellCommand, type Activator, type DeployAction, type Previous } from './activator.js';
import { toolEnv } from './nix.js';

/**
 * The agent's "the coordinator answered a ping sent after this call" test, bounded by
 * `deadlineMs` (epoch ms). Rejects (ABORTED) when `signal` aborts: that is no answer either way.
 */
export type Reachable = (deadlineMs: number, signal?: AbortSignal) => Promise<boolean>;

export interface HealthOptions {
  /** `deploy_check`: run as `/bin/sh -c '<cmd> "$@"' flt STORE_PATH ACTION`, must exit 0. */
  readonly check?: string | undefined;
  /** `deploy_health_timeout` in ms: the whole check's budget. */
  readonly timeoutMs: number;
  /** The coordinator part; absent: not checked (tests of this layer, an agent without one). */
  readonly reachable?: Reachable | undefined;
  /** Extra environment of the check command (FLT_STATE_DIR and the like). */
  readonly env?: Readonly<Record<string, string>> | undefined;
  /** Stops the check (the agent stopping): checkHealth then throws ABORTED, no verdict. */
  readonly signal?: AbortSignal | undefined;
}

/** Cap on what a failing check command's output contributes to the reason. */
const CHECK_OUTPUT_MAX = 1024;

/**
 * Runs the checks in order (activator's, command, coordinator) and resolves to undefined when
 * healthy, else a one-line reason naming the check that failed.
 * @throws FltError ABORTED when `options.signal` aborts (no verdict: run it again later).
 */
export async function checkHealth(
  activator: Activator,
  prev: Previous,
  storePath: string,
  action: DeployAction,
  options: HealthOptions,
): Promise<string | undefined> {
  const { signal } = options;
  const deadline = Date.now() + options.timeoutMs;
  const extra = await activator.healthExtra?.(prev, action);
  throwIfAborted(signal);
  if (extra !== undefined) return extra;
  if (options.check !== undefined) {
    const env = options.env ?? {};
    const r = await runCheck(options.check, storePath, action, deadline, env, signal);
    throwIfAborted(signal);
    if (r !== undefined) return `deploy_check: ${r}`;
  }
  if (options.reachable !== undefined) {
    const answered = await options.reachable(deadline, signal);
    throwIfAborted(signal);
    if (!answered) return `the coordinator did not answer within ${options.timeoutMs} ms`;
  }
  return undefined;
}

/** ABORTED when `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new FltError('ABORTED', 'stopped during the health check');
}

/**
 * Runs the check command until `deadline`; undefined on exit 0, else why not. When `signal`
 * aborts, the check's process group is killed and the result is 'aborted' (the caller throws).
 */
export function runCheck(
  cmd: string,
  storePath: string,
  action: DeployAction,
  deadline: number,
  env: Readonly<Record<string, string>>,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const [file, ...args] = shellCommand(cmd, storePath, action);
  return new Promise((resolve) => {
    const child = spawn(file!, args, {
      env: { ...toolEnv(), ...env, FLT_STORE_PATH: storePath, FLT_ACTION: action },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own group: a timeout kills the whole check
    });
    let out = '';
    const take = (b: Buffer) => {
      if (out.length < CHECK_OUTPUT_MAX) out += b.toString('utf8');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(
      () => {
        timedOut = true;
        killGroup(child.pid);
      },
      Math.max(0, deadline - Date.now()),
    );
    const abort = () => killGroup(child.pid);
    signal?.addEventListener('abort', abort);
    if (signal?.aborted) abort();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    };
    child.on('error', (err) => {
      done();
      resolve(`could not run: ${err.message}`);
    });
    child.on('close', (code, killedBy) => {
      done();
      // The first ~1 KiB of output is kept (take stops appending): the last line of that.
      const tail = out.trim().split('\n').slice(-1)[0]?.slice(0, 200) ?? '';
      if (signal?.aborted) resolve('aborted');
      else if (timedOut) resolve('timed out');
      else if (code === 0) resolve(undefined);
      else resolve(`exit ${code ?? killedBy}${tail === '' ? '' : `: ${tail}`}`);
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Unit names from `systemctl --failed --plain --no-legend` (one unit per line, first column;
 * older systemd prints a `●` marker first even with --plain on some versions).
 */
export function parseFailedUnits(text: string): string[] {
  const units: string[] = [];
  for (const line of text.split('\n')) {
    const words = line
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '●' && w !== '*');
    const unit = words[0];
    if (unit !== undefined && unit !== '' && /^[\w@:.\\-]+\.[a-z]+$/.test(unit)) units.push(unit);
  }
  return units;
}

/** Units failed now that were not failed before, sorted. */
export function newFailures(before: readonly string[], now: readonly string[]): string[] {
  const old = new Set(before);
  return [...new Set(now)].filter((u) => !old.has(u)).sort();
}
