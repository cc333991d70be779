// End to end: coordinator, agent and admin as real `flt` processes over iroh on loopback. The
// admin reads an agent's facts through the coordinator, after the coordinator restarts (from its
// storage alone, the agent being down), and offline from its own replica. Waits poll the admin
// command until it shows the state asked for, each with a bounded number of runs and a deadline.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS } from '../sync/protocols.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { docIdFor } from '../sync/owned-doc.js';
import { deriveKeyPair } from '../src/identity/index.js';
import { agentEnroll } from '../src/rpc-methods.js';
import { FltProcess, LOCAL, nodeIdOf, runFlt, tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';

interface AgentJson {
  nodeId: string;
  hostname: string | null;
  os: string | null;
  nixosVersion: string | null;
  lastSeen: string;
  online: boolean | null;
  factsDocId: string;
}

interface FactsJson {
  nodeId: string;
  asOf: string;
  online: boolean | null;
  lastSeen: string;
  facts: { hostname: string; kernel: { release: string } } | null;
  volatile: unknown;
}

const HOST = hostname();
const KERNEL = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();

/** Every process a test started; afterAll SIGKILLs whatever is still running. */
const running = new Set<FltProcess>();

function spawnFlt(stateDir: string, ...args: string[]): FltProcess {
  const p = new FltProcess(['--state-dir', stateDir, ...LOCAL, ...args]);
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

async function stop(p: FltProcess, signal: NodeJS.Signals): Promise<void> {
  p.kill(signal);
  await p.exited;
}

afterAll(async () => {
  const left = [...running];
  for (const p of left) p.kill('SIGKILL');
  await Promise.all(left.map((p) => p.exited));
});

/**
 * A coordinator whose initial admins are the keys of `admins` (state dirs, named by node id):
 * the bootstrap of a new fleet.
 */
async function startCoordinator(
  stateDir: string,
  port: number,
  admins: readonly string[],
): Promise<FltProcess> {
  const named = await Promise.all(admins.map(async (d) => ['--admin', await nodeIdOf(d)]));
  const c = spawnFlt(stateDir, 'coordinator', '--bind', `127.0.0.1:${port}`, ...named.flat());
  await c.waitFor(/^endpoint\w+$/m); // printed once it listens
  return c;
}

function startAgent(stateDir: string, coordinator: string, ...more: string[]): FltProcess {
  return spawnFlt(stateDir, 'agent', '--coordinator', coordinator, ...more);
}

/**
 * Exit codes that mean "not there yet" while state syncs: NOT_FOUND (the agent or its facts have
 * not reached the coordinator). Any other code fails at once.
 */
const NOT_YET = new Set(['NOT_FOUND']);

/**
 * Runs `flt` until `accept` takes its output: the way to wait for state that arrives by sync.
 * Bounded by `attempts` runs and `timeoutMs`.
 */
async function until<T>(
  what: string,
  args: readonly string[],
  accept: (stdout: string) => T | undefined,
  { attempts = 20, timeoutMs = 40_000 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = 'never ran';
  for (let i = 0; i < attempts && Date.now() < deadline; i++) {
    const r = await runFlt(args, {}, Math.max(1_000, deadline - Date.now()));
    last = `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
    if (r.code === 0) {
      const value = accept(r.stdout);
      if (value !== undefined) return value;
    } else {
      const code = /^flt: ([A-Z_]+): /m.exec(r.stderr)?.[1];
      if (!code || !NOT_YET.has(code)) throw new Error(`${what}: failed: ${last}`);
    }
  }
  throw new Error(`${what}: not seen within ${attempts} runs / ${timeoutMs} ms; last run: ${last}`);
}

function admin(stateDir: string, coordinator: string | undefined, ...args: string[]): string[] {
  const dial = coordinator ? ['--coordinator', coordinator] : [];
  return ['--state-dir', stateDir, ...LOCAL, 'admin', ...dial, ...args];
}

const agentRow = (id: string, pred: (a: AgentJson) => boolean) => (stdout: string) =>
  (JSON.parse(stdout) as AgentJson[]).find((a) => a.nodeId === id && pred(a));

const withFacts = (stdout: string) => {
  const r = JSON.parse(stdout) as FactsJson;
  return r.facts ? r : undefined;
};

describe('fleet: coordinator, agent and admin', () => {
  // The tests run in order on one fleet: enroll, restart the coordinator, then go offline.
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let port: number;
  let coordinator: FltProcess;
  let agent: FltProcess;
  let addr: string;
  let agentId: string;
  const path = (name: string) => `${dir.path}/${name}`;

  beforeAll(async () => {
    dir = await tempDir();
    port = await freeUdpPort();
    const [coordinatorId, id] = await Promise.all([nodeIdOf(path('c')), nodeIdOf(path('ag'))]);
    agentId = id;
    addr = `${coordinatorId}@127.0.0.1:${port}`;
    coordinator = await startCoordinator(path('c'), port, [path('ad'), path('ad2')]);
    // The agent enrolls with a one-time token from the admin.
    const token = await runFlt(admin(path('ad'), addr, 'enroll-token', '--expires', '10m'));
    expect(token.code, token.stderr).toBe(0);
    agent = startAgent(path('ag'), addr, '--enroll-token', token.stdout.trim());
  });

  afterAll(() => dir.remove());

  it('admin_can_get_subscriber_facts_via_coordinator', async () => {
    const r = await until(
      'facts of the agent',
      admin(path('ad'), addr, 'facts', agentId, '--json'),
      withFacts,
    );
    expect(r.nodeId).toBe(agentId);
    expect(r.facts!.hostname).toBe(HOST);
    expect(r.facts!.kernel.release).toBe(KERNEL);

    const row = await until(
      'the agent online in the fleet table',
      admin(path('ad'), addr, 'agents', '--json'),
      agentRow(agentId, (a) => a.online === true && a.hostname !== null),
    );
    expect(row.hostname).toBe(HOST);
    expect(row.online).toBe(true);
  });

  it('an unknown agent is NOT_FOUND', async () => {
    const r = await runFlt(admin(path('ad'), addr, 'facts', 'nosuchagent'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^flt: NOT_FOUND: /m);
  });

  it('admin_can_get_subscriber_facts_via_coordinator_after_coordinator_restart', async () => {
    // The coordinator has the agent's facts (and the summary in its root document)...
    await until(
      'facts at the coordinator',
      admin(path('ad'), addr, 'facts', agentId, '--json'),
      withFacts,
    );
    // ...then both die without a chance to flush or say goodbye, and only the coordinator returns.
    await Promise.all([stop(coordinator, 'SIGKILL'), stop(agent, 'SIGKILL')]);
    coordinator = await startCoordinator(path('c'), port, [path('ad')]);

    // A fresh admin: whatever it shows comes from the restarted coordinator's storage, since
    // the agent is not running. Nothing more can arrive, so few runs: they only cover NOT_YET.
    const once = { attempts: 3 };
    const row = await until(
      'the agent in the restarted coordinator',
      admin(path('ad2'), addr, 'agents', '--json'),
      agentRow(agentId, (a) => a.hostname !== null),
      once,
    );
    expect(row.hostname).toBe(HOST);
    expect(row.online).toBe(false);
    const r = await until(
      'facts from the restarted coordinator',
      admin(path('ad2'), addr, 'facts', agentId, '--json'),
      withFacts,
      once,
    );
    expect(r.facts!.hostname).toBe(HOST);
    expect(r.facts!.kernel.release).toBe(KERNEL);
    expect(r.online).toBe(false);

    // The agent comes back and is online again.
    agent = startAgent(path('ag'), addr);
    const back = await until(
      'the agent online again',
      admin(path('ad2'), addr, 'agents', '--json'),
      agentRow(agentId, (a) => a.online === true),
    );
    expect(back.hostname).toBe(HOST);
  });

  it('admin answers from its replica when every process has stopped', async () => {
    await Promise.all([stop(agent, 'SIGTERM'), stop(coordinator, 'SIGTERM')]);
    expect(running.size).toBe(0);

    const agents = await runFlt(admin(path('ad2'), undefined, 'agents', '--offline', '--json'));
    expect(agents.code, agents.stderr).toBe(0);
    const row = agentRow(agentId, () => true)(agents.stdout);
    expect(row?.hostname).toBe(HOST);
    expect(row?.online).toBeNull(); // offline, nobody can know

    const facts = await runFlt(admin(path('ad2'), undefined, 'facts', HOST, '--offline', '--json'));
    expect(facts.code, facts.stderr).toBe(0);
    const r = JSON.parse(facts.stdout) as FactsJson;
    expect(r.nodeId).toBe(agentId);
    expect(r.facts?.kernel.release).toBe(KERNEL);

    for (const what of [['agents'], ['facts', HOST]]) {
      const human = await runFlt(admin(path('ad2'), undefined, ...what, '--offline'));
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).toMatch(/offline/);
      expect(human.stdout).toMatch(/as of \d{4}-\d\d-\d\dT/);
    }
  });
});

describe('agents that are late or silent', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let addr: string;
  let port: number;
  let coordinatorId: string;
  let coordinator: FltProcess | undefined;
  beforeAll(async () => {
    dir = await tempDir();
    port = await freeUdpPort();
    coordinatorId = await nodeIdOf(`${dir.path}/c`);
    addr = `${coordinatorId}@127.0.0.1:${port}`;
  });
  afterAll(() => dir.remove());

  it('an agent started before its coordinator enrolls once the coordinator appears', async () => {
    const agentId = await nodeIdOf(`${dir.path}/ag`);
    // A short rpc timeout so the first enrollment fails (nobody listens) and the agent retries.
    const agent = startAgent(`${dir.path}/ag`, addr, '--rpc-timeout', '1s');
    await agent.waitFor(/waiting for the coordinator/, 'stderr');
    expect(agent.stderr).not.toMatch(/enrolled/);

    coordinator = await startCoordinator(`${dir.path}/c`, port, [`${dir.path}/ad`]);
    // Now the agent reaches the coordinator but is not approved yet; an admin approves it.
    await agent.waitFor(/not approved yet/, 'stderr', 30_000);
    const approve = await runFlt(admin(`${dir.path}/ad`, addr, 'approve', agentId));
    expect(approve.code, approve.stderr).toBe(0);
    await agent.waitFor(/enrolled/, 'stderr', 30_000);
    const r = await until(
      'facts of the late agent',
      admin(`${dir.path}/ad`, addr, 'facts', agentId, '--json'),
      withFacts,
    );
    expect(r.facts!.hostname).toBe(HOST);
    const row = await until(
      'the late agent online',
      admin(`${dir.path}/ad`, addr, 'agents', '--json'),
      agentRow(agentId, (a) => a.online === true),
    );
    expect(row.hostname).toBe(HOST);
  });

  it('an agent that enrolled but never published is NOT_FOUND, not an internal error', async () => {
    // This process plays an agent that enrolls and dies before its first sync: the coordinator
    // knows the facts document's id but has nothing of it.
    coordinator ??= await startCoordinator(`${dir.path}/c`, port, [`${dir.path}/ad`]);
    const transport = await IrohTransport.bind({
      secretKey: randomBytes(32),
      alpns: ALL_ALPNS,
      bind: '127.0.0.1:0',
      relay: 'disabled',
      discovery: 'none',
    });
    const rpc = new RpcChannel(transport, parsePeerAddress(addr), { timeoutMs: 10_000 });
    try {
      const approve = await runFlt(admin(`${dir.path}/ad`, addr, 'approve', transport.nodeId));
      expect(approve.code, approve.stderr).toBe(0);
      const writeKey = Buffer.from(deriveKeyPair(randomBytes(32), 'flt/v1/doc/facts').publicKey);
      await rpc.call(agentEnroll, {
        factsDocId: docIdFor(writeKey),
        factsWriteKey: writeKey.toString('hex'),
      });
      const r = await runFlt(admin(`${dir.path}/ad`, addr, 'facts', transport.nodeId));
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^flt: NOT_FOUND: /m);
    } finally {
      rpc.close();
      await transport.close();
    }
  });
});

describe('admin without a replica', () => {
  it('agents --offline with an empty state dir fails with a code', async () => {
    const dir = await tempDir();
    try {
      const r = await runFlt(admin(`${dir.path}/empty`, undefined, 'agents', '--offline'));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^flt: BAD_ARGUMENT: /m);
      expect(r.stdout).toBe('');
    } finally {
      await dir.remove();
    }
  });
});
