// Runs an activation (or rollback) command detached from the agent, so that the agent's own
// restart (nixos `switch` restarts flt-agent.service) or a SIGKILL does not take it along (design
// §3 "Own unit restarted by the switch"). The command's output goes to a log file and its exit
// code to an rc file written atomically (`rc.tmp`, then rename), so a restarted agent can adopt
// it from the journal: rc present -> exited; runner alive -> wait; gone without rc -> INTERRUPTED.
//
// As a root systemd service the runner is a transient unit (`systemd-run`: outside the agent's
// cgroup, survives KillMode=control-group); otherwise a `/bin/sh` in its own process group.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FltError } from '../errors.js';
import { LOG_TAIL_MAX } from './outcome.js';
import { runTool, shq } from './nix.js';

/** Where a runner is and where it writes, as the journal keeps it. */
export type RunnerRecord =
  | {
      readonly kind: 'systemd-run';
      readonly unit: string;
      readonly rcFile: string;
      readonly logFile: string;
      readonly bootId: string | null;
    }
  | {
      readonly kind: 'child';
      /** The runner's pid (= its process group); null until known (then the pid file says). */
      readonly pid: number | null;
      readonly pidFile: string;
      readonly rcFile: string;
      readonly logFile: string;
      readonly bootId: string | null;
    };

export type RunnerMode = 'systemd-run' | 'child';

/** What a runner is doing: exited with an rc, gone without one, or still running. */
export type RunnerState =
  | { readonly state: 'exited'; readonly rc: number }
  | { readonly state: 'gone'; readonly why: string }
  | { readonly state: 'running' };

export interface RunSpec {
  /** Unique per run, `[a-z0-9-]`: the unit name's tail and the run directory's name. */
  readonly name: string;
  /** Where the run directory (log, rc, pid files) is made: `<state>/deploy/run`. */
  readonly dir: string;
  readonly argv: readonly string[];
  /** The whole environment of the command (PATH included: systemd-run passes nothing else). */
  readonly env: Readonly<Record<string, string>>;
  /** Overrides the choice of {@link defaultMode} (tests; a host without systemd). */
  readonly mode?: RunnerMode;
}

/**
 * The wrapper: records its pid, runs "$@" with output to the log, then publishes the exit code
 * with a rename so a reader never sees half of it. `$1` log, `$2` rc, `$3` pid file.
 */
const WRAPPER = [
  'log=$1; rc=$2; pidf=$3; shift 3',
  'echo $$ > "$pidf.tmp" && mv -f "$pidf.tmp" "$pidf"',
  '"$@" > "$log" 2>&1 < /dev/null',
  'echo $? > "$rc.tmp" && mv -f "$rc.tmp" "$rc"',
].join('\n');

/**
 * systemd-run when the agent is itself a systemd service (INVOCATION_ID, set by systemd for
 * units) running as root on a systemd host: only then can a switch restart (and its cgroup kill)
 * take the runner along. Anything else (a shell, tests, no systemd): a detached child.
 */
export function defaultMode(env: NodeJS.ProcessEnv = process.env): RunnerMode {
  const service = env.INVOCATION_ID !== undefined && env.INVOCATION_ID !== '';
  return service && process.getuid?.() === 0 && existsSync('/run/systemd/system')
    ? 'systemd-run'
    : 'child';
}

/** This boot's id (Linux), so a pid recorded before a reboot is never taken for a live runner. */
export async function bootId(): Promise<string | null> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim() || null;
  } catch {
    return null;
  }
}

/** The record a run will have, before it starts (journal it first: nothing runs unjournaled). */
export async function planRun(spec: RunSpec): Promise<RunnerRecord> {
  if (!/^[a-z0-9][a-z0-9-]{0,60}$/.test(spec.name))
    throw new TypeError(`runner name ${JSON.stringify(spec.name)}`);
  const runDir = path.join(spec.dir, spec.name);
  const files = { rcFile: path.join(runDir, 'rc'), logFile: path.join(runDir, 'log') };
  const boot = await bootId();
  return (spec.mode ?? defaultMode()) === 'systemd-run'
    ? { kind: 'systemd-run', unit: `flt-${spec.name}`, ...files, bootId: boot }
    : { kind: 'child', pid: null, pidFile: path.join(runDir, 'pid'), ...files, bootId: boot };
}

/** Starts the planned run; resolves with the record completed (the child's pid). */
export async function startRun(spec: RunSpec, planned: RunnerRecord): Promise<RunnerRecord> {
  const runDir = path.dirname(planned.rcFile);
  await rm(runDir, { recursive: true, force: true }); // a leftover rc must not answer for this run
  await mkdir(runDir, { recursive: true });
  // This boot's id, not the plan's: a run planned before a reboot and started after it (resume
  // of one that never started) would else be judged dead at once, its rollback run beside it.
  planned = { ...planned, bootId: await bootId() };
  const script = scriptOf(planned);
  await writeFile(
    script,
    `set -- ${wrapperArgs(planned, spec.argv).map(shq).join(' ')}\n${WRAPPER}\n`,
    {
      mode: 0o600,
    },
  );
  if (planned.kind === 'systemd-run') {
    const r = await runTool('systemd-run', systemdRunArgs(planned, spec));
    if (r.code !== 0)
      throw new FltError('IO', `systemd-run: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
    return planned;
  }
  const child = spawn('/bin/sh', [script], {
    detached: true,
    stdio: 'ignore',
    env: { ...spec.env },
  });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid!));
    child.once('error', reject);
  });
  child.unref(); // the agent may exit (or be killed) first: the runner goes on
  return { ...planned, pid };
}

/**
 * The run's script, `<runDir>/run.sh`: the wrapper, its arguments (every word quoted) set first.
 * No exec: the runner's pid runs `/bin/sh .../run.sh` from start to end (isAlive reads that).
 * Both modes run `/bin/sh run.sh`, so the command's text is never on a command line that systemd
 * reads (ExecStart expands `$VAR`, `$$` and `%` specifiers: a `deploy_command` with `$$` or
 * `date +%s` would run differently under the agent's unit than anywhere else).
 */
function scriptOf(planned: RunnerRecord): string {
  return path.join(path.dirname(planned.rcFile), 'run.sh');
}

/** The wrapper's arguments: LOG RC PIDFILE ARGV... */
function wrapperArgs(planned: RunnerRecord, argv: readonly string[]): string[] {
  const pidFile = path.join(path.dirname(planned.rcFile), 'pid');
  return [planned.logFile, planned.rcFile, pidFile, ...argv];
}

/**
 * `systemd-run` arguments: a transient oneshot unit `flt-<name>` (own cgroup: survives the
 * agent's unit being stopped or restarted), not waited for, collected even when it failed (so
 * its name is free again), with the whole environment given explicitly (systemd passes none).
 */
export function systemdRunArgs(planned: RunnerRecord, spec: RunSpec): string[] {
  if (planned.kind !== 'systemd-run') throw new TypeError('not a systemd-run record');
  const setenv = Object.entries(spec.env).map(([k, v]) => `--setenv=${k}=${v}`);
  return [
    '--unit',
    planned.unit,
    '--property=Type=oneshot',
    '--no-block',
    '--collect',
    '--quiet',
    ...setenv,
    '/bin/sh',
    scriptOf(planned),
  ];
}

/** One look at a runner: its rc if published, else whether it still runs. */
export async function runnerState(rec: RunnerRecord): Promise<RunnerState> {
  const rc = await readRc(rec.rcFile);
  if (rc !== undefined) return rc;
  if (await isAlive(rec)) return { state: 'running' };
  // It may have published the rc between the two looks.
  return (
    (await readRc(rec.rcFile)) ?? { state: 'gone', why: 'the runner ended without an exit code' }
  );
}

/** Polls until the runner ends or `deadline` (epoch ms): every 20 ms at first, at most 500 ms. */
export async function waitRun(
  rec: RunnerRecord,
  deadline: number,
  signal?: AbortSignal,
): Promise<RunnerState> {
  let interval = 20;
  for (;;) {
    signal?.throwIfAborted();
    const s = await runnerState(rec);
    if (s.state !== 'running' || Date.now() >= deadline) return s;
    await sleep(Math.min(interval, Math.max(1, deadline - Date.now())), signal);
    interval = Math.min(interval * 2, 500);
  }
}

/** A runner recorded before a restart, with its pid filled in from its pid file if need be. */
export async function adoptRun<R extends RunnerRecord>(rec: R): Promise<R> {
  if (rec.kind !== 'child' || rec.pid !== null) return rec;
  const text = await readFile(rec.pidFile, 'utf8').catch(() => '');
  const pid = /^\d+\n?$/.test(text) ? Number(text) : null;
  return { ...rec, pid };
}

/** Kills a runner (its whole group or unit); it then ends without an rc. */
export async function stopRun(rec: RunnerRecord): Promise<void> {
  if (rec.kind === 'systemd-run') {
    await runTool('systemctl', ['kill', '--signal=SIGKILL', rec.unit]).catch(() => undefined);
    return;
  }
  const { pid } = await adoptRun(rec);
  if (pid === null) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** The last {@link LOG_TAIL_MAX} bytes of the run's output (from a line start when cut). */
export async function logTail(rec: RunnerRecord, max = LOG_TAIL_MAX): Promise<string> {
  let handle;
  try {
    handle = await open(rec.logFile, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - max);
    const buf = Buffer.alloc(Math.min(size, max));
    const { bytesRead } = await handle.read(buf, 0, buf.length, start);
    let text = buf.subarray(0, bytesRead).toString('utf8');
    if (start > 0) text = text.slice(text.indexOf('\n') + 1); // drop the cut (partial) first line
    return text;
  } finally {
    await handle.close();
  }
}

async function readRc(file: string): Promise<RunnerState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  // A power loss can leave the renamed file empty (the wrapper does not fsync): not an rc.
  return /^\d{1,3}\n?$/.test(text)
    ? { state: 'exited', rc: Number(text) }
    : { state: 'gone', why: `unreadable exit code file ${JSON.stringify(text.slice(0, 20))}` };
}

async function isAlive(rec: RunnerRecord): Promise<boolean> {
  if (rec.bootId !== null && rec.bootId !== (await bootId())) return false; // rebooted since
  if (rec.kind === 'systemd-run') {
    const r = await runTool('systemctl', ['show', '--property=ActiveState', '--value', rec.unit]);
    return ['active', 'activating', 'deactivating', 'reloading'].includes(r.stdout.trim());
  }
  const { pid } = await adoptRun(rec);
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'EPERM') return false;
  }
  // Linux: a zombie (no reaper in a container) is gone, and a reused pid runs something else.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return existsSync('/proc/self') ? false : true;
  // `/bin/sh <runDir>/run.sh`: its run dir names it.
  return cmdline.includes(path.dirname(rec.rcFile));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new FltError('ABORTED', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
