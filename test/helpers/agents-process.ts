// Drives test/helpers/agents-child.ts (built): N real agents in one child process, enrolled with
// tokens its admin issues. The test reads what the fleet looks like from the coordinator side
// (CliFleet.until); this side only starts the agents, keeps their stderr, and stops them.

import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { AgentsStarted } from './agents-child.js';

const CHILD = resolve(import.meta.dirname, '../../dist/test/helpers/agents-child.js');

export class AgentsProcess {
  stderr = '';
  readonly exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    readonly ids: readonly string[],
  ) {
    this.exited = new Promise((res) => {
      if (child.exitCode !== null || child.signalCode !== null) res(child.exitCode);
      else child.on('exit', (code) => res(code));
    });
  }

  /**
   * Starts N agents in ROOT/agent-I against `coordinator`, the admin in `adminDir` issuing their
   * tokens; resolves once all have started (their node ids), rejects if the child exits or
   * `timeoutMs` passes first (with its stderr).
   */
  static async start(
    root: string,
    adminDir: string,
    coordinator: string,
    n: number,
    timeoutMs = 60_000,
  ): Promise<AgentsProcess> {
    const child = spawn(process.execPath, [CHILD, root, adminDir, coordinator, String(n)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    let timer: NodeJS.Timeout | undefined;
    try {
      const started = await new Promise<AgentsStarted>((res, rej) => {
        timer = setTimeout(
          () => rej(new Error(`agents not started in ${timeoutMs} ms`)),
          timeoutMs,
        );
        child.on('exit', (code) => rej(new Error(`agents child exited (${code})`)));
        createInterface({ input: child.stdout }).once('line', (l) => {
          try {
            res(JSON.parse(l) as AgentsStarted);
          } catch (err) {
            rej(err instanceof Error ? err : new Error(String(err)));
          }
        });
      });
      const p = new AgentsProcess(child, started.ids);
      p.stderr = stderr;
      child.stderr.on('data', (d: Buffer) => (p.stderr += d.toString('utf8')));
      return p;
    } catch (err) {
      child.kill('SIGKILL');
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- stderr\n${stderr}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes stdin (the agents close), SIGKILL if the child is still up after `graceMs`. */
  async stop(graceMs = 25_000): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
