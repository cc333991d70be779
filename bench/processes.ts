// Child processes for the fleet benchmarks: a script run to completion under a deadline
// (restart.ts), a script driven step by step over its stdin and stdout (the fan-in agents), and
// the real `flt coordinator` CLI (fanin.ts). Memory and CPU of each are read from /proc, so that
// one process's numbers are not mixed with another's.

import { appendFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The built CLI, as `npm run bench` leaves it (dist/bench/ -> dist/src/cli/main.js). */
export const FLT_BIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface ScriptRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  /** Killed (SIGKILL) at the deadline. */
  readonly timedOut: boolean;
}

/** Calls `onLine` with each whole line of `stream` (a chunk may end inside a line). */
function eachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.on('data', (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
}

/** Resolves once `child` has exited; listens from the moment it is called. */
function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

/**
 * Runs `node script args...` to completion, or kills it after `timeoutMs`. Lines on its stderr
 * that start with `progress ` are passed to `onProgress` as they come.
 */
export async function runScript(
  script: string,
  args: readonly string[],
  timeoutMs: number,
  onProgress: (line: string) => void,
): Promise<ScriptRun> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  eachLine(child.stderr, (line) => {
    if (line.startsWith('progress ')) onProgress(line.slice(9));
  });
  const done = exited(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await done;
  clearTimeout(timer);
  return { stdout, stderr, code, timedOut };
}

/** VmRSS and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status (Linux). */
export async function memoryOf(pid: number): Promise<{ rssKiB: number; peakKiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { rssKiB: field('VmRSS'), peakKiB: field('VmHWM') };
}

/** Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on every Linux port we run on. */
const USER_HZ = 100;

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (Linux). */
export function cpuSecondsOf(pid: number): Promise<number> {
  return ticksOf(`/proc/${pid}/stat`);
}

/**
 * CPU seconds of a process's main thread alone: a node process's JavaScript (and what it calls
 * synchronously), without V8's helper threads, libuv's pool or the binding's Rust runtime.
 */
export function mainThreadCpuSecondsOf(pid: number): Promise<number> {
  return ticksOf(`/proc/${pid}/task/${pid}/stat`);
}

async function ticksOf(file: string): Promise<number> {
  const stat = await readFile(file, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces: state is
  // field 3, utime field 14, stime field 15 (proc(5)).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[14 - 3]) + Number(rest[15 - 3])) / USER_HZ;
}

/** The pids of a process's children, grandchildren... (Linux, /proc/<pid>/task/<tid>/children). */
async function descendantsOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  const visit = async (p: number): Promise<void> => {
    const tasks = await readdir(`/proc/${p}/task`).catch(() => [] as string[]);
    for (const t of tasks) {
      const text = await readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '');
      for (const c of text.split(' ').filter(Boolean).map(Number)) {
        out.push(c);
        await visit(c);
      }
    }
  };
  await visit(pid);
  return out;
}

/** memoryOf summed over a process and its descendants (peaks summed too: an upper bound). */
export async function treeMemoryOf(pid: number): Promise<{ rssKiB: number; peakKiB: number }> {
  const pids = [pid, ...(await descendantsOf(pid))];
  const none = { rssKiB: 0, peakKiB: 0 };
  const all = await Promise.all(
    pids.map((p) => (p === pid ? memoryOf(p) : memoryOf(p).catch(() => none))),
  );
  return {
    rssKiB: all.reduce((a, m) => a + m.rssKiB, 0),
    peakKiB: all.reduce((a, m) => a + m.peakKiB, 0),
  };
}

/** cpuSecondsOf summed over a process and its live descendants. */
export async function treeCpuSecondsOf(pid: number): Promise<number> {
  const pids = [pid, ...(await descendantsOf(pid))];
  const all = await Promise.all(pids.map((p) => cpuSecondsOf(p).catch(() => 0)));
  return all.reduce((a, b) => a + b, 0);
}

/**
 * `node NODE_ARGS... script args...`: NODE_ARGS from `nodeArgs` (a space-separated variable:
 * BENCH_COORD_NODE_ARGS, BENCH_CHILD_NODE_ARGS) and `extra`; with `taskset -c CPUS` before it
 * when `cpus` is set (BENCH_COORD_CPUS, BENCH_CHILD_CPUS), which pins the process to some of the
 * cores, so that what it achieves on them can be read apart from the processes on the others.
 */
function nodeCommand(
  env: { cpus: string | undefined; nodeArgs: string | undefined; extra?: readonly string[] },
  script: string,
  args: readonly string[],
): [string, string[]] {
  const nodeArgs = [...(env.nodeArgs ?? '').split(' ').filter(Boolean), ...(env.extra ?? [])];
  const argv = [process.execPath, ...nodeArgs, script, ...args];
  return env.cpus ? ['taskset', ['-c', env.cpus, ...argv]] : [argv[0]!, argv.slice(1)];
}

/**
 * The coordinator's environment: glibc's arenas capped at 2 as the NixOS unit runs it
 * (nix/modules/nixos/coordinator.nix; README "Scale": 1,119 -> 759 KiB per agent at 100).
 * BENCH_COORD_MALLOC_ARENA_MAX sets another value; empty, glibc's default (one arena per thread).
 * BENCH_COORD_TOKIO_WORKER_THREADS sets the binding's Rust runtime threads of the coordinator alone.
 */
function coordinatorEnv(): NodeJS.ProcessEnv {
  const arenas = process.env.BENCH_COORD_MALLOC_ARENA_MAX ?? '2';
  const { MALLOC_ARENA_MAX: _, ...env } = process.env;
  const tokio = process.env.BENCH_COORD_TOKIO_WORKER_THREADS;
  if (tokio) env.TOKIO_WORKER_THREADS = tokio;
  return arenas === '' ? env : { ...env, MALLOC_ARENA_MAX: arenas };
}

/** `flt coordinator` as a child process, on loopback, without relays or discovery. */
export class CoordinatorProcess {
  private constructor(
    private readonly child: ChildProcess,
    private readonly exit: Promise<number | null>,
    readonly ticket: string,
    private readonly output: () => string,
  ) {}

  /** `bind`: 127.0.0.1:0 unless given (the recover group restarts it on one fixed address). */
  static async start(
    stateDir: string,
    timeoutMs: number,
    admin: string,
    bind = '127.0.0.1:0',
  ): Promise<CoordinatorProcess> {
    const args = ['--state-dir', stateDir, '--relay', 'disabled', '--discovery', 'none'];
    const logFile = process.env.BENCH_LOG; // see benchLogger
    args.push('--log-level', logFile ? 'info' : 'warn');
    args.push('coordinator', '--bind', bind, '--admin', admin);
    // Measurement only (issue 13): BENCH_COORD_CPU_PROF=DIR profiles the coordinator (written
    // on its clean exit, SIGTERM in stop()); BENCH_COORD_NODE_ARGS adds node options.
    const profDir = process.env.BENCH_COORD_CPU_PROF;
    const [cmd, argv] = nodeCommand(
      {
        cpus: process.env.BENCH_COORD_CPUS,
        nodeArgs: process.env.BENCH_COORD_NODE_ARGS,
        extra: profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [],
      },
      FLT_BIN,
      args,
    );
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: coordinatorEnv() });
    if (logFile)
      child.stderr.on('data', (d: Buffer) => appendFileSync(`${logFile}.coordinator`, d));
    const exit = exited(child);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const output = () => `--- stdout\n${stdout}--- stderr\n${stderr}`;
    const ticket = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => fail('no ticket in time'), timeoutMs);
      const fail = (why: string) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`flt coordinator: ${why}\n${output()}`));
      };
      void exit.then((code) => fail(`exited with ${code} before printing its ticket`));
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
        const m = /^(endpoint\w+)$/m.exec(stdout);
        if (!m) return;
        clearTimeout(timer);
        resolve(m[1]!);
      });
    });
    return new CoordinatorProcess(child, exit, ticket, output);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Of the script and the processes it started (the fan-in child's agent hosts). */
  memory(): Promise<{ rssKiB: number; peakKiB: number }> {
    return treeMemoryOf(this.pid);
  }

  /** Of the script and the processes it started, while they run. */
  cpuSeconds(): Promise<number> {
    return treeCpuSecondsOf(this.pid);
  }

  /** Of its main thread alone (mainThreadCpuSecondsOf): the part no other core can take. */
  mainThreadCpuSeconds(): Promise<number> {
    return mainThreadCpuSecondsOf(this.pid);
  }

  /** SIGKILL, as a crash: no flush, no goodbye to any peer. Resolves once it has exited. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exit;
  }

  /** SIGTERM (a clean shutdown: flush, close), SIGKILL if it has not exited in `graceMs`. */
  async stop(graceMs = process.env.BENCH_COORD_CPU_PROF ? 120_000 : 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exit;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`flt coordinator exited with ${code}\n${this.output()}`);
  }
}

/**
 * A script that reports JSON steps (`{"step": ...}`) on stdout, one per line, and takes commands
 * on stdin. Lines on its stderr that start with `progress ` go to `onProgress`.
 */
export class StepProcess<S extends { readonly step: string }> {
  private readonly steps: S[] = [];
  private err = '';
  private wake: (() => void) | undefined;
  private readonly exit: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    onProgress: (line: string) => void,
  ) {
    this.exit = exited(child);
    eachLine(child.stdout!, (line) => {
      if (!line.startsWith('{')) return;
      this.steps.push(JSON.parse(line) as S);
      this.wake?.();
    });
    child.stderr!.on('data', (d: Buffer) => (this.err += d.toString('utf8')));
    eachLine(child.stderr!, (line) => {
      if (line.startsWith('progress ')) onProgress(line.slice(9));
    });
    void this.exit.then(() => this.wake?.());
  }

  static start<S extends { readonly step: string }>(
    script: string,
    args: readonly string[],
    onProgress: (line: string) => void,
  ): StepProcess<S> {
    // BENCH_CHILD_NODE_ARGS: node options for these scripts (e.g. the profile preload).
    const [cmd, argv] = nodeCommand(
      { cpus: process.env.BENCH_CHILD_CPUS, nodeArgs: process.env.BENCH_CHILD_NODE_ARGS },
      script,
      args,
    );
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    return new StepProcess<S>(child, onProgress);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first step named `step` not yet taken; fails on timeout or when the script exits. */
  async next<K extends S['step']>(step: K, timeoutMs: number): Promise<Extract<S, { step: K }>> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const i = this.steps.findIndex((s) => s.step === step);
      if (i >= 0) return this.steps.splice(i, 1)[0] as Extract<S, { step: K }>;
      const left = deadline - performance.now();
      const gone = this.child.exitCode !== null || this.child.signalCode !== null;
      if (gone || left <= 0) {
        const why = gone
          ? `exited with ${this.child.exitCode ?? this.child.signalCode}`
          : 'timed out';
        throw new Error(`waiting for step ${step}: ${why}\n--- stderr\n${this.err}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Everything the script wrote to stderr so far. */
  get stderr(): string {
    return this.err;
  }

  send(command: string): void {
    this.child.stdin!.write(command + '\n');
  }

  /** Closes the script's stdin (scripts that end when their parent goes end then). */
  closeInput(): void {
    this.child.stdin!.end();
  }

  memory(): Promise<{ rssKiB: number; peakKiB: number }> {
    return memoryOf(this.pid);
  }

  /**
   * Of the script and the processes it started, while they run: the fan-in's agents live in host
   * processes of their script (fanin-child.ts), whose CPU was left out before (session 12: "agents
   * process 6 CPU-s" for a 500-agent fan-in whose hosts took 1-2 cores for a minute).
   */
  cpuSeconds(): Promise<number> {
    return treeCpuSecondsOf(this.pid);
  }

  /** Waits up to `graceMs` for the script to exit, then kills it; true if it exited by itself. */
  async end(graceMs: number): Promise<boolean> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exit;
    clearTimeout(timer);
    return code === 0;
  }
}
