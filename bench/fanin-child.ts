// The fan-in group's agents and admin, in a process of their own (fanin.ts drives it): N agents
// start at once and publish to the coordinator, and the admin polls the fleet table until it is
// complete. Kept out of the bench process so that it can be killed when a graceful close takes
// too long, and so that automerge-repo's leftover timers end with it.
//
//   node dist/bench/fanin-child.js ROOT TICKET N DEADLINE_MS
//
// Talks in lines: JSON steps on stdout (`ready`, `started`, `fleet`, `closed`), commands on stdin
// (`go` starts the agents, `close` closes everything). Exits when stdin closes (parent gone).
// The recover group (recover.ts) also sends, after `fleet`, `online` (wait until every agent is
// online) and `recover MS` (a new admin waits until every agent is online again, at most MS),
// any number of times, before `close`. The deploy group (deploy.ts) passes NIX_STORE
// SYSTEM_PATH: the agents then deploy with the `command` activator, and `deploy` deploys
// SYSTEM_PATH to all of them.
//
// With K = BENCH_AGENT_PROCS (default: one per AGENTS_PER_PROCESS agents) above 1, the agents
// run in K host processes of this script instead
//   node dist/bench/fanin-child.js --host ROOT TICKET FROM TOKENS_FILE [NIX_STORE SYSTEM_PATH]
// each with its share of the tokens, driven by this one (`go`, `stats`, `close`), which keeps the
// admin. One process cannot carry 1,000 agents on 2 cores (its event loop misses their pings);
// spread over K, each loop carries N/K. The parent reads CPU and memory over the whole tree.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin, type AgentRow } from '../src/roles/admin.js';
import { Agent } from '../src/roles/agent.js';
import { repoTimeoutsSeen } from '../sync/repo-timeouts.js';
import { sampleFacts } from './facts-sample.js';
import { childCommands } from './child-commands.js';
import { benchConfig, benchLogger } from './fleet-config.js';
import { POLL_MS, type FanInStep, type HostStep } from './fanin-protocol.js';
import { StepProcess } from './processes.js';
import { closeAll, withDeadline } from './wait.js';

/** At most one progress line (stderr) this often while waiting. */
const PROGRESS_MS = 10_000;
/** Every rpc of agents and admin (default 10 s, too short for a loaded machine). */
const RPC_TIMEOUT = '30s';

const emit = (s: FanInStep | HostStep) => process.stdout.write(JSON.stringify(s) + '\n');
const progress = (line: string) => process.stderr.write(`progress ${line}\n`);

/** Commands from the parent; the parent's exit closes stdin and ends us. */
const nextLine = childCommands(1);

async function command(word: string): Promise<void> {
  await nextCommand([word]);
}

/** The next command that is one of `words`, with any argument after a space (others are skipped). */
function nextCommand(words: readonly string[]): Promise<string> {
  return nextLine((line) => words.includes(line.split(' ')[0]!));
}

/**
 * Polls the fleet table until it holds `n` agents with a hostname, or the deadline passes. A
 * poll that fails (an rpc or sync timeout under load) is reported and retried.
 */
async function untilFleet(
  admin: Admin,
  n: number,
  t0: number,
  deadlineMs: number,
  counts: (a: AgentRow) => boolean = (a) => a.hostname !== null,
) {
  const deadline = t0 + deadlineMs;
  let complete = 0;
  let polls = 0;
  let failedPolls = 0;
  let reportedAt = t0;
  const cutOff = () => ({ at: deadline, complete, cutOff: true, polls, failedPolls });
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) return cutOff();
    try {
      const view = await withDeadline(admin.fleet(), left, 'the fleet table');
      complete = view.agents.filter(counts).length;
      polls++;
    } catch (err) {
      if (performance.now() >= deadline) return cutOff();
      failedPolls++;
      progress(`fleet poll failed, retrying: ${err instanceof Error ? err.message : String(err)}`);
    }
    const at = performance.now();
    if (complete === n) return { at, complete, cutOff: false, polls, failedPolls };
    if (at - reportedAt >= PROGRESS_MS) {
      progress(
        `${complete}/${n} agents in the fleet table after ${((at - t0) / 1000).toFixed(0)} s`,
      );
      reportedAt = at;
    }
    await sleep(POLL_MS);
  }
}

/** Starts every agent at once; keeps those that started even when another one failed. */
async function startAgents(
  tokens: readonly string[],
  root: string,
  ticket: string,
  into: Agent[],
  deploy: Record<string, string>,
  from = 0,
) {
  const configs = await Promise.all(
    tokens.map((token, j) =>
      // Default facts interval (60 s), as deployed agents run.
      benchConfig(join(root, `agent-${from + j}`), {
        coordinator: ticket,
        'rpc-timeout': RPC_TIMEOUT,
        'enroll-token': token,
        ...deploy,
      }),
    ),
  );
  const settled = await Promise.allSettled(
    configs.map((config, j) =>
      Agent.start(config, benchLogger(`agent-${from + j}`), () =>
        Promise.resolve(sampleFacts(from + j)),
      ),
    ),
  );
  for (const r of settled) if (r.status === 'fulfilled') into.push(r.value);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Deploys `system` to every agent and waits until each status says how it ended. */
async function deployAll(admin: Admin, system: string, t0: number, deadlineMs: number) {
  const q = { words: [], all: true, labels: [], storePath: system, action: 'switch' as const };
  const r = await admin.deploy({ ...q, expiresInMs: 3600_000 });
  const signal = AbortSignal.timeout(deadlineMs);
  const answer = r.sent?.answer;
  const done = await admin
    .wait(r.id, r.targets, { signal, pollMs: POLL_MS, ...(answer ? { answer } : {}) })
    .catch(() => []);
  const succeeded = done.filter((p) => p.state === 'succeeded').length;
  return {
    step: 'deployed' as const,
    ms: performance.now() - t0,
    succeeded,
    targets: r.targets.length,
  };
}

/** Closes agents in parallel (each waits on its own endpoint and store), reporting failures. */
async function closeAgents(agents: readonly Agent[]): Promise<void> {
  const settled = await Promise.allSettled(agents.map((a) => a.close()));
  const errors: unknown[] = settled.flatMap((r) =>
    r.status === 'rejected' ? [r.reason as unknown] : [],
  );
  if (errors.length > 0)
    throw new AggregateError(errors, `${errors.length} agent(s) failed to close`);
}

const SELF = fileURLToPath(import.meta.url);
/**
 * Agents per process unless BENCH_AGENT_PROCS says otherwise: one process with more than ~125
 * spends more per ping than the coordinator answering it (an idle ping cost its process 0.7 ms
 * of main-thread CPU with 50 agents in it, 2.3 ms with 200: the binding's per-call cost grows
 * with the calls pending in the process), and at 1,000 it missed its own pings.
 */
const AGENTS_PER_PROCESS = 125;
/** How long a host may take to close its agents (then it is killed). */
const HOST_CLOSE_MS = 30_000;
/** For a host to be ready, and to start or report on its agents beyond the deadline. */
const HOST_STEP_MS = 60_000;

/** The agents' processes of one fleet (BENCH_AGENT_PROCS > 1), or none. */
class Hosts {
  private constructor(private readonly procs: StepProcess<HostStep>[]) {}

  /** K hosts, each with its slice of `tokens`, ready for `go`. */
  static async start(
    k: number,
    tokens: readonly string[],
    root: string,
    ticket: string,
    extra: readonly string[],
  ): Promise<Hosts> {
    const procs: StepProcess<HostStep>[] = [];
    const hosts = new Hosts(procs);
    try {
      for (let h = 0; h < k; h++) {
        const from = Math.floor((h * tokens.length) / k);
        const to = Math.floor(((h + 1) * tokens.length) / k);
        const file = join(root, `tokens-${h}.json`);
        await writeFile(file, JSON.stringify(tokens.slice(from, to)));
        const args = ['--host', root, ticket, String(from), file, ...extra];
        procs.push(StepProcess.start<HostStep>(SELF, args, (l) => progress(`host ${h}: ${l}`)));
      }
      await Promise.all(procs.map((p) => p.next('ready', HOST_STEP_MS)));
      return hosts;
    } catch (err) {
      await hosts.close();
      throw err;
    }
  }

  async go(deadlineMs: number): Promise<void> {
    for (const p of this.procs) p.send('go');
    await Promise.all(this.procs.map((p) => p.next('started', deadlineMs + HOST_STEP_MS)));
  }

  async stats(): Promise<{ docs: number[]; repoTimeouts: number }> {
    for (const p of this.procs) p.send('stats');
    const all = await Promise.all(this.procs.map((p) => p.next('stats', HOST_STEP_MS)));
    return {
      docs: all.flatMap((s) => s.docs),
      repoTimeouts: all.reduce((a, s) => a + s.repoTimeouts, 0),
    };
  }

  async close(): Promise<void> {
    for (const p of this.procs) p.send('close');
    await Promise.all(
      this.procs.map(async (p) => {
        await p.next('closed', HOST_CLOSE_MS).catch(() => undefined);
        await p.end(5_000);
      }),
    );
  }
}

/** Host mode (see the header): runs its share of the agents for the main child. */
async function host(args: readonly string[]): Promise<void> {
  const [root, ticket, fromText, tokensFile, nixStore] = args;
  if (root === undefined || ticket === undefined || tokensFile === undefined)
    throw new Error('usage: fanin-child.js --host ROOT TICKET FROM TOKENS_FILE [NIX_STORE ...]');
  const tokens = JSON.parse(await readFile(tokensFile, 'utf8')) as string[];
  const deploy = deployConfig(nixStore);
  const agents: Agent[] = [];
  emit({ step: 'ready' });
  await command('go');
  const t0 = performance.now();
  try {
    await startAgents(tokens, root, ticket, agents, deploy, Number(fromText));
    emit({ step: 'started', ms: performance.now() - t0 });
    for (;;) {
      const next = await nextCommand(['stats', 'close']);
      if (next === 'close') break;
      const docs = agents.map((a) => Object.keys(a.node.repo!.handles).length);
      emit({ step: 'stats', docs, repoTimeouts: repoTimeoutsSeen() });
    }
  } finally {
    const c0 = performance.now();
    await closeAll([() => closeAgents(agents)]);
    emit({ step: 'closed', ms: performance.now() - c0 });
  }
}

function deployConfig(nixStore: string | undefined): Record<string, string> {
  return nixStore === undefined
    ? {}
    : { 'deploy-activator': 'command', 'deploy-command': 'true', 'nix-store': nixStore };
}

async function main(): Promise<void> {
  const [root, ticket, nText, deadlineText, nixStore, system] = process.argv.slice(2);
  if (root === undefined || ticket === undefined || deadlineText === undefined)
    throw new Error('usage: fanin-child.js ROOT TICKET N DEADLINE_MS [NIX_STORE SYSTEM_PATH]');
  const deploy = deployConfig(nixStore);
  const n = Number(nText);
  const k = Number(process.env.BENCH_AGENT_PROCS ?? Math.ceil(n / AGENTS_PER_PROCESS));
  let hosts: Hosts | undefined;
  const adminConfig = await benchConfig(join(root, 'admin'), {
    coordinator: ticket,
    'rpc-timeout': RPC_TIMEOUT,
  });
  // The table is polled as `flt admin agents` reads it (AdminOptions.reads: the root document
  // by doc.fetch, no replica of every document). Until issue 13's session 10 a full admin polled
  // it, staying connected all along: the coordinator then synced it every agent's documents as
  // they came (three per agent), and at 1,000 agents that admin fell behind and its polls timed
  // out, so the figure measured the admin's replica, not the fleet. A full admin issues the
  // tokens before the clock starts and deploys (the deploy group), each time only for that.
  const fullAdmin = () => Admin.open(adminConfig, benchLogger('bench-admin'), false);
  const reader = () => Admin.open(adminConfig, benchLogger('bench-admin'), false, { reads: true });
  const tokens: string[] = [];
  const issuer = await fullAdmin();
  try {
    await issuer.fleet(); // connected and synced before the clock starts
    // One enrollment token per agent, issued (and recorded) before the clock starts.
    for (let i = 0; i < n; i++) tokens.push((await issuer.enrollToken(3600_000)).token);
  } finally {
    await issuer.close();
  }
  let admin = await reader();
  const agents: Agent[] = [];
  try {
    await admin.fleet();
    if (k > 1) {
      const extra = nixStore === undefined ? [] : [nixStore, system!];
      hosts = await Hosts.start(k, tokens, root, ticket, extra);
    }
    emit({ step: 'ready' });
    await command('go');
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    if (hosts) await hosts.go(Number(deadlineText));
    else await startAgents(tokens, root, ticket, agents, deploy);
    emit({ step: 'started', ms: performance.now() - t0 });
    const seen = await untilFleet(admin, n, t0, Number(deadlineText));
    const hostStats = await hosts?.stats();
    const docs = hostStats?.docs ?? agents.map((a) => Object.keys(a.node.repo!.handles).length);
    emit({
      step: 'fleet',
      ms: seen.at - t0,
      complete: seen.complete,
      cutOff: seen.cutOff,
      polls: seen.polls,
      failedPolls: seen.failedPolls,
      docsPerAgent: docs.reduce((a, b) => a + b, 0) / docs.length,
      heapDelta: process.memoryUsage().heapUsed - heap0,
      repoTimeouts: repoTimeoutsSeen() + (hostStats?.repoTimeouts ?? 0),
    });
    const online = (a: AgentRow) => a.online === true;
    for (;;) {
      // `recover MS` has its own deadline: the fan-in's is minutes, a recovery's a minute.
      const [next, arg] = (await nextCommand(['online', 'recover', 'deploy', 'close'])).split(' ');
      if (next === 'close') break;
      const t1 = performance.now();
      if (next === 'deploy') {
        const deployer = await fullAdmin();
        try {
          emit(await deployAll(deployer, system!, t1, Number(deadlineText)));
        } finally {
          await deployer.close();
        }
        continue;
      }
      if (next === 'recover') {
        // The old admin's connections died with the coordinator: a new one, as a CLI run is.
        await withDeadline(admin.close(), 10_000, 'closing the old admin').catch(() => undefined);
        admin = await reader();
      }
      const r = await untilFleet(admin, n, t1, Number(arg ?? deadlineText), online);
      emit({
        step: next === 'online' ? 'online' : 'recovered',
        ms: r.at - t1,
        complete: r.complete,
        cutOff: r.cutOff,
        polls: r.polls,
        failedPolls: r.failedPolls,
      });
    }
  } finally {
    const c0 = performance.now();
    await closeAll([
      () => closeAgents(agents),
      async () => await hosts?.close(),
      () => admin.close(),
    ]);
    emit({ step: 'closed', ms: performance.now() - c0 });
  }
}

if (process.argv[2] === '--host') await host(process.argv.slice(3));
else await main();
// automerge-repo's 60 s and 120 s timers (above) would keep the process up that long for nothing.
process.exit(0);
