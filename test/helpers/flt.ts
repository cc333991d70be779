// Runs the built `flt` CLI as a real child process and watches its output: tests wait for
// a line to appear (with a deadline), send signals, and read the exit status.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const FLT_BIN = resolve(import.meta.dirname, '../../dist/src/cli/main.js');

/** Options every test node gets: loopback only, no relays, no discovery. */
export const LOCAL = ['--relay', 'disabled', '--discovery', 'none'];

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class FltProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private readonly child: ChildProcess;
  private watchers: (() => void)[] = [];

  /** `as` runs the child as another user (uid and gid; only a root parent may). */
  constructor(
    args: readonly string[],
    env: Record<string, string> = {},
    as?: { readonly uid: number; readonly gid: number },
  ) {
    this.child = spawn(process.execPath, [FLT_BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...as,
    });
    this.child.stdout!.on('data', (d: Buffer) => this.append('stdout', d));
    this.child.stderr!.on('data', (d: Buffer) => this.append('stderr', d));
    this.exited = new Promise((res) =>
      this.child.on('exit', (code, signal) => res({ code, signal })),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.child.kill(signal);
  }

  /** Waits until stdout (or stderr) matches `re`; fails with both outputs on timeout or exit. */
  async waitFor(
    re: RegExp,
    stream: 'stdout' | 'stderr' = 'stdout',
    timeoutMs = 20_000,
  ): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const m = this[stream].match(re);
      if (m) return m;
      if (exited || Date.now() > deadline) {
        throw new Error(
          `no ${String(re)} on ${stream} (${exited ? 'process exited' : 'timeout'})\n--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`,
        );
      }
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, Math.min(200, deadline - Date.now())));
        this.watchers.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  private append(stream: 'stdout' | 'stderr', d: Buffer): void {
    this[stream] += d.toString('utf8');
    for (const w of this.watchers.splice(0)) w();
  }
}

/** Runs `flt` to completion. */
export async function runFlt(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
  as?: { readonly uid: number; readonly gid: number },
) {
  const p = new FltProcess(args, env, as);
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  const exit = await p.exited;
  clearTimeout(timer);
  return { ...exit, stdout: p.stdout, stderr: p.stderr };
}

export async function tempDir(
  prefix = 'flt-test-',
): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** The node id of the key in `stateDir`, creating the key (so an id is known before its node runs). */
export async function nodeIdOf(stateDir: string): Promise<string> {
  const r = await runFlt(['--state-dir', stateDir, 'id']);
  if (r.code !== 0) throw new Error(`flt id failed: ${r.stderr}`);
  return r.stdout.trim();
}
