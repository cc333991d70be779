// Marks written as soon as saves settle (sync/stored-heads.ts, issue 13). A coordinator killed
// before its agents' documents went idle (nothing evicted) still holds a mark of each: of the
// facts and status documents once a push of them is saved, of the desired document once
// enrollment saved it. Restarted on the same state dir and address, it answers the agent's
// reconnect from those marks and loads none of the three. The coordinator is a child process
// (SIGKILL), the agent and admin real roles in the test's process; real iroh endpoints on
// 127.0.0.1, real state dirs; waits are on state with deadlines.

import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { loadOrCreateNodeKey } from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import { Agent } from '../src/roles/agent.js';
import { localConfig } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';
import { waitFor } from './helpers/wait.js';

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/coordinator-child.js');
const log = createLogger('warn', 'test');

interface About {
  answered: number;
  docs: { doc: string | null; heads: string | null; mark: string | null }[];
}

/** The coordinator child (test/helpers/coordinator-child.ts): started, asked, killed. */
class CoordinatorChild {
  private readonly answers: ((line: string) => void)[] = [];

  private constructor(
    readonly child: ChildProcess,
    readonly ticket: string,
    private readonly lines: Interface,
  ) {
    lines.on('line', (line) => this.answers.shift()?.(line));
  }

  static async start(stateDir: string, bind: string, adminId: string): Promise<CoordinatorChild> {
    const child = spawn(process.execPath, [CHILD, stateDir, bind, adminId], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout });
    const ticket = await new Promise<string>((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error('coordinator child: no ticket in 30 s')),
        30_000,
      );
      child.once('exit', (code) => rej(new Error(`coordinator child exited (${code})`)));
      lines.once('line', (line) => {
        clearTimeout(timer);
        res((JSON.parse(line) as { ticket: string }).ticket);
      });
    });
    return new CoordinatorChild(child, ticket, lines);
  }

  /** What it holds of `agent`'s facts, status and desired documents. */
  about(agent: string): Promise<About> {
    const answer = new Promise<string>((res) => this.answers.push(res));
    this.child.stdin!.write(agent + '\n');
    return answer.then((line) => {
      const value = JSON.parse(line) as About | { error: string };
      if ('error' in value) throw new Error(`coordinator child: ${value.error}`);
      return value;
    });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((res) => this.child.once('exit', res));
    this.child.kill('SIGKILL');
    await exited;
    this.lines.close();
  }
}

/** An admin in `<dir>/admin` and an agent in `<dir>/agent` enrolled by its token: both open. */
async function enrollOne(dir: string, ticket: string): Promise<{ admin: Admin; agent: Agent }> {
  const join_ = { coordinator: ticket };
  const admin = await Admin.open(await localConfig(join(dir, 'admin'), join_), log, false);
  const { token } = await admin.enrollToken(60_000);
  const facts = await collectFacts();
  const config = await localConfig(join(dir, 'agent'), {
    ...join_,
    'enroll-token': token,
    'facts-interval': '1h',
  });
  const agent = await Agent.start(config, log, () => Promise.resolve(facts));
  await agent.enrolled;
  return { admin, agent };
}

describe('a coordinator killed before its agents’ documents went idle', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let coordinator: CoordinatorChild;
  let admin: Admin | undefined;
  let agent: Agent | undefined;
  let id: string;
  const stateDir = () => join(dir.path, 'coordinator');
  let bind: string;
  let adminId: string;

  beforeAll(async () => {
    dir = await tempDir();
    bind = `127.0.0.1:${await freeUdpPort()}`;
    const adminDir = join(dir.path, 'admin');
    adminId = (await loadOrCreateNodeKey(adminDir)).key.nodeId;
    coordinator = await CoordinatorChild.start(stateDir(), bind, adminId);
    ({ admin, agent } = await enrollOne(dir.path, coordinator.ticket));
    id = agent.node.key.nodeId;
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await admin?.close();
    await coordinator?.kill();
    await dir?.remove();
  }, 60_000);

  it('marks each of the agent’s documents at its heads while it is still loaded', async () => {
    // Facts and status loaded (pushed) and marked at their heads; the desired document is
    // marked from enrollment on, loaded only if an admin's sync found it (then at its mark).
    const about = await waitFor('the three documents marked at their heads', async () => {
      const a = await coordinator.about(id);
      const [facts, status, desired] = a.docs;
      return a.docs.length === 3 &&
        [facts, status].every((d) => d?.heads !== null && d?.mark === d?.heads) &&
        desired?.mark !== null &&
        (desired?.heads === null || desired?.heads === desired?.mark)
        ? a
        : undefined;
    });
    expect(about.docs.map((d) => d.doc)).toEqual([
      agent!.factsDocId,
      agent!.statusDocId,
      expect.any(String),
    ]);
  });

  it('restarted, answers the agent’s reconnect from the marks, loading none of its documents', async () => {
    // The admin syncs every document: it leaves first, so that only the agent reconnects.
    await admin!.close();
    admin = undefined;
    await coordinator.kill();
    coordinator = await CoordinatorChild.start(stateDir(), bind, adminId);
    const about = await waitFor(
      'the agent’s facts, status and desired documents answered from marks',
      async () => {
        const a = await coordinator.about(id);
        return a.answered >= 3 ? a : undefined;
      },
      60_000,
    );
    expect(about.docs.filter((d) => d.heads !== null)).toEqual([]);
    expect(about.docs.every((d) => d.mark !== null)).toBe(true);
  }, 90_000);
});

// An enrollment's answer is an acknowledgement: the agent's record in the root document (and the
// approval its token made) is saved before it. A fleet test once lost 46 of 50 agents this way: a
// coordinator SIGKILLed right after they enrolled came back refusing them.
describe('a coordinator killed right after it answered an enrollment', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let coordinator: CoordinatorChild | undefined;
  let admin: Admin | undefined;
  let agent: Agent | undefined;

  afterAll(async () => {
    await agent?.close();
    await admin?.close();
    await coordinator?.kill();
    await dir?.remove();
  }, 60_000);

  it('still holds the agent when it starts again', async () => {
    dir = await tempDir();
    const stateDir = join(dir.path, 'coordinator');
    const bind = `127.0.0.1:${await freeUdpPort()}`;
    const adminDir = join(dir.path, 'admin');
    const adminId = (await loadOrCreateNodeKey(adminDir)).key.nodeId;
    coordinator = await CoordinatorChild.start(stateDir, bind, adminId);
    ({ admin, agent } = await enrollOne(dir.path, coordinator.ticket));
    await coordinator.kill(); // right after the answer: no debounced save has run yet
    coordinator = await CoordinatorChild.start(stateDir, bind, adminId);
    const about = await coordinator.about(agent.node.key.nodeId);
    expect(about.docs.map((d) => d.doc)).toEqual([
      agent.factsDocId,
      agent.statusDocId,
      expect.any(String),
    ]);
  }, 90_000);
});
