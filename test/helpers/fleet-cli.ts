// A fleet of real `flt` processes on loopback for end-to-end tests: a coordinator on a fixed
// port (so that it can be killed and restarted on the same address), agents enrolled with
// one-time tokens, and an admin command run until its output shows the state asked for.

import { FltProcess, LOCAL, nodeIdOf, runFlt } from './flt.js';

export interface AgentJson {
  nodeId: string;
  hostname: string | null;
  lastSeen: string;
  online: boolean | null;
}

export class CliFleet {
  /** Every process started; stopAll() SIGKILLs whatever is still running. */
  private readonly running = new Set<FltProcess>();
  coordinator: FltProcess | undefined;

  private constructor(
    readonly root: string,
    readonly port: number,
    readonly addr: string,
  ) {}

  static async create(root: string, port: number): Promise<CliFleet> {
    const id = await nodeIdOf(`${root}/c`);
    return new CliFleet(root, port, `${id}@127.0.0.1:${port}`);
  }

  spawn(stateDir: string, ...args: string[]): FltProcess {
    const p = new FltProcess(['--state-dir', stateDir, ...LOCAL, ...args]);
    this.running.add(p);
    void p.exited.then(() => this.running.delete(p));
    return p;
  }

  /** Starts the coordinator (admin: `root/ad`); resolves once it listens (its ticket printed). */
  async startCoordinator(): Promise<FltProcess> {
    const admin = await nodeIdOf(`${this.root}/ad`);
    const c = this.spawn(
      `${this.root}/c`,
      'coordinator',
      '--bind',
      `127.0.0.1:${this.port}`,
      '--admin',
      admin,
    );
    await c.waitFor(/^endpoint\w+$/m);
    this.coordinator = c;
    return c;
  }

  /** Starts an agent in `root/NAME` with a fresh enrollment token; returns it and its node id. */
  async startAgent(name: string, ...more: string[]): Promise<{ p: FltProcess; id: string }> {
    const token = await runFlt(this.admin('enroll-token', '--expires', '10m'));
    if (token.code !== 0) throw new Error(`enroll-token failed: ${token.stderr}`);
    const dir = `${this.root}/${name}`;
    const id = await nodeIdOf(dir);
    const p = this.spawn(
      dir,
      'agent',
      '--coordinator',
      this.addr,
      '--enroll-token',
      token.stdout.trim(),
      ...more,
    );
    return { p, id };
  }

  /** Arguments of an admin command (state dir `root/ad`) against the coordinator. */
  admin(...args: string[]): string[] {
    return [
      '--state-dir',
      `${this.root}/ad`,
      ...LOCAL,
      'admin',
      '--coordinator',
      this.addr,
      ...args,
    ];
  }

  /** The admin's fleet table (`agents --json`); throws with the output if the command failed. */
  async agents(): Promise<AgentJson[]> {
    const r = await runFlt(this.admin('agents', '--json'));
    if (r.code !== 0) throw new Error(`admin agents failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as AgentJson[];
  }

  /**
   * Runs `agents --json` until `accept` holds for the table: bounded by `attempts` runs and
   * `timeoutMs`. A run that fails (a TIMEOUT on a loaded machine) is tried again; the last
   * failure is in the error. Returns the accepted table and when it was seen (performance.now()).
   */
  async until(
    what: string,
    accept: (agents: AgentJson[]) => boolean,
    { attempts = 60, timeoutMs = 30_000 } = {},
  ): Promise<{ agents: AgentJson[]; at: number }> {
    const deadline = performance.now() + timeoutMs;
    let last = 'never ran';
    for (let i = 0; i < attempts && performance.now() < deadline; i++) {
      const left = Math.max(1_000, deadline - performance.now());
      const r = await runFlt(this.admin('agents', '--json'), {}, left);
      if (r.code !== 0) {
        last = `exit ${r.code}: ${r.stderr}`;
        continue;
      }
      const agents = JSON.parse(r.stdout) as AgentJson[];
      if (accept(agents)) return { agents, at: performance.now() };
      last = r.stdout;
    }
    throw new Error(`${what}: not seen in ${timeoutMs} ms; last run: ${last}`);
  }

  async stopAll(): Promise<void> {
    const left = [...this.running];
    for (const p of left) p.kill('SIGKILL');
    await Promise.all(left.map((p) => p.exited));
  }
}

/** Whether every id in `ids` is in the table and online. */
export const allOnline = (ids: readonly string[]) => (agents: AgentJson[]) =>
  ids.every((id) => agents.some((a) => a.nodeId === id && a.online === true));
