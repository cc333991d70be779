// Drives test/helpers/repo-peer.ts as a child process: send a command, await its answer;
// wait (with a deadline) for the peer's document to reach a state.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

const PEER_BIN = resolve(import.meta.dirname, '../../dist/test/helpers/repo-peer.js');

type Line = {
  event?: string;
  nodeId?: string;
  ok?: { items?: string[]; url?: string };
  error?: string;
  items?: string[];
  addr?: string;
};

export class PeerProcess {
  readonly child: ChildProcess;
  items: string[] = [];
  nodeId = '';
  private answers: ((l: Line) => void)[] = [];
  private lines: Line[] = [];
  private wake: (() => void) | undefined;
  readonly exited: Promise<void>;

  constructor(stateDir: string, secretHex: string, bind: string, dial?: string) {
    this.child = spawn(
      process.execPath,
      [PEER_BIN, stateDir, secretHex, bind, ...(dial ? [dial] : [])],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    this.exited = new Promise((res) => this.child.on('exit', () => res()));
    createInterface({ input: this.child.stdout! }).on('line', (text) =>
      this.onLine(JSON.parse(text) as Line),
    );
  }

  async command(cmd: object): Promise<NonNullable<Line['ok']>> {
    const answer = new Promise<Line>((res) => this.answers.push(res));
    this.child.stdin!.write(JSON.stringify(cmd) + '\n');
    const line = await answer;
    if (line.error !== undefined) throw new Error(`peer: ${line.error}`);
    return line.ok!;
  }

  /** Waits for an event line matching `pred` (or a document state), up to `timeoutMs`. */
  async until(what: string, pred: (p: PeerProcess) => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this)) {
      if (Date.now() > deadline)
        throw new Error(`timeout waiting for ${what}; items=${JSON.stringify(this.items)}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, 200);
        this.wake = () => {
          clearTimeout(t);
          res();
        };
      });
    }
  }

  sawEvent(name: string): boolean {
    return this.lines.some((l) => l.event === name);
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    this.child.kill('SIGTERM');
    await this.exited;
  }

  private onLine(line: Line): void {
    this.lines.push(line);
    if (line.event === 'ready') this.nodeId = line.nodeId!;
    const items = line.items ?? line.ok?.items;
    if (items) this.items = items;
    if (line.ok !== undefined || line.error !== undefined) this.answers.shift()?.(line);
    this.wake?.();
  }
}

/**
 * A UDP port that was free a moment ago on both loopbacks (iroh binds UDP, and a bind to
 * 127.0.0.1:P also takes [::1]:P; see bindPlan in sync/iroh-transport.ts).
 */
export async function freeUdpPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const v4 = createSocket('udp4');
    await new Promise<void>((resolve) => v4.bind(0, '127.0.0.1', resolve));
    const { port } = v4.address();
    const v6 = createSocket('udp6');
    const free = await new Promise<boolean>((resolve) => {
      v6.once('error', () => resolve(false));
      v6.bind(port, '::1', () => resolve(true));
    });
    await Promise.all([v4, v6].map(closeSocket));
    if (free) return port;
  }
  throw new Error('no UDP port free on both loopbacks');
}

/** Closes a socket, also one whose bind failed (close() then throws). */
function closeSocket(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve();
    }
  });
}
