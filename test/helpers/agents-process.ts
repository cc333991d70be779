// Drives test/helpers/agents-child.ts (built): N real agents in one child process, enrolled with
// tokens its admin issues, through the bench's StepProcess. The test reads what the fleet looks
// like from the coordinator side (CliFleet.until); this side only starts the agents, keeps their
// stderr, and stops them.

import { resolve } from 'node:path';
import { StepProcess } from '../../bench/processes.js';
import type { AgentsStarted } from './agents-child.js';

const CHILD = resolve(import.meta.dirname, '../../dist/test/helpers/agents-child.js');

export class AgentsProcess {
  private constructor(
    private readonly child: StepProcess<AgentsStarted>,
    readonly ids: readonly string[],
  ) {}

  /** The agents' warnings, errors and liveness lines so far. */
  get stderr(): string {
    return this.child.stderr;
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
    const args = [root, adminDir, coordinator, String(n)];
    const child = StepProcess.start<AgentsStarted>(CHILD, args, () => undefined);
    try {
      return new AgentsProcess(child, (await child.next('started', timeoutMs)).ids);
    } catch (err) {
      await child.end(0);
      throw err;
    }
  }

  /** Closes stdin (the agents close), SIGKILL if the child is still up after `graceMs`. */
  async stop(graceMs = 25_000): Promise<void> {
    this.child.closeInput();
    await this.child.end(graceMs);
  }
}
