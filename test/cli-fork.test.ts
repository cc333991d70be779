// A cloned machine, as a user makes one: an enrolled agent's state dir copied to a second place
// and both started against one coordinator, as real `flt agent` processes. Two live instances of
// one node replace each other's sync connection; they must back off rather than loop, the
// coordinator must flag the agent forked (in `flt admin agents --json`, logged once), and once
// the clone is gone `flt admin reset` must leave the original working.

import { cp } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FltProcess, LOCAL, nodeIdOf, runFlt, tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';

interface Row {
  nodeId: string;
  hostname: string | null;
  online: boolean | null;
  forked: { at: string; reason: string } | null;
}

/** How long the clones' connections are counted. Before backoff they made ~10 a second. */
const WINDOW_MS = 10_000;
/** Connections in WINDOW_MS above which the clones are looping (backing off, they make ~6). */
const MAX_CONNECTIONS = 15;

describe('a cloned agent state dir', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let coordinator: FltProcess;
  let addr: string;
  const started: FltProcess[] = [];
  const flt = (state: string, ...args: string[]) =>
    runFlt(['--state-dir', `${dir.path}/${state}`, ...LOCAL, ...args]);
  const asAdmin = (...args: string[]) =>
    flt('ad', '--secret-key', `${dir.path}/admin.key`, 'admin', '--coordinator', addr, ...args);
  const agent = (state: string, ...more: string[]) => {
    const p = new FltProcess([
      '--state-dir',
      `${dir.path}/${state}`,
      ...LOCAL,
      'agent',
      '--coordinator',
      addr,
      '--facts-interval',
      '1s',
      ...more,
    ]);
    started.push(p);
    return p;
  };

  /** Polls `flt admin agents --json` (bounded) until `pred` holds for the agent's row. */
  async function untilRow(id: string, what: string, pred: (r: Row) => boolean): Promise<Row> {
    let last = '';
    for (let i = 0; i < 40; i++) {
      const r = await asAdmin('agents', '--json');
      last = `${r.code} ${r.stdout} ${r.stderr}`;
      const row = r.code === 0 ? (JSON.parse(r.stdout) as Row[]).find((a) => a.nodeId === id) : undefined;
      if (row && pred(row)) return row;
    }
    throw new Error(`${what}: not seen; last: ${last}`);
  }

  beforeAll(async () => {
    dir = await tempDir();
    const key = await runFlt(['keygen', '--out', `${dir.path}/admin.key`]);
    expect(key.code, key.stderr).toBe(0);
    const port = await freeUdpPort();
    coordinator = new FltProcess([
      '--state-dir',
      `${dir.path}/c`,
      ...LOCAL,
      '--log-level',
      'debug',
      'coordinator',
      '--bind',
      `127.0.0.1:${port}`,
      '--admin',
      `${dir.path}/admin.key.pub`,
    ]);
    started.push(coordinator);
    await coordinator.waitFor(/^endpoint\w+$/m);
    const id = await flt('c', 'id');
    addr = `${id.stdout.trim()}@127.0.0.1:${port}`;
  });

  afterAll(async () => {
    for (const p of started) p.kill('SIGKILL');
    await Promise.all(started.map((p) => p.exited));
    await dir.remove();
  });

  it('is flagged forked, its connections back off, and a reset leaves the original working', async () => {
    const id = await nodeIdOf(`${dir.path}/a`);
    const token = await asAdmin('enroll-token', '--expires', '5m');
    expect(token.code, token.stderr).toBe(0);
    const first = agent('a', '--enroll-token', token.stdout.trim());
    await untilRow(id, 'the agent in the table', (r) => r.hostname !== null && r.online === true);
    first.kill('SIGTERM');
    await first.exited;

    // The clone: the same state dir, in a second place; both run.
    await cp(`${dir.path}/a`, `${dir.path}/b`, { recursive: true });
    const original = agent('a');
    const clone = agent('b');
    await Promise.all([original.waitFor(/enrolled/, 'stderr'), clone.waitFor(/enrolled/, 'stderr')]);

    // They replace each other's connection; count the coordinator's connections of that node.
    const connections = new RegExp(`sync peer (connected|reconnected)[^\\n]*peer=${id.slice(0, 10)}`, 'g');
    const from = coordinator.stderr.length;
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS)); // an observation window
    const seen = coordinator.stderr.slice(from).match(connections)?.length ?? 0;
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(MAX_CONNECTIONS);

    const row = await untilRow(id, 'forked', (r) => r.forked !== null);
    expect(row.forked!.reason).toMatch(/replaced/);
    expect(coordinator.stderr.match(/agent forked/g)).toHaveLength(1);
    const facts = await asAdmin('facts', id, '--json');
    expect(facts.code, facts.stderr).toBe(0);
    expect((JSON.parse(facts.stdout) as { forked: unknown }).forked).toEqual(row.forked);

    // The admin decides: the clone is shut down, and the agent reset.
    clone.kill('SIGKILL');
    await clone.exited;
    const reset = await asAdmin('reset', id);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(/^reset /);
    await untilRow(id, 'the original back', (r) => r.forked === null && r.online === true);
    for (let i = 0; ; i++) {
      const r = await asAdmin('facts', id, '--json');
      if (r.code === 0 && (JSON.parse(r.stdout) as { facts: unknown }).facts !== null) break;
      expect(i, `facts after reset: ${r.stdout} ${r.stderr}`).toBeLessThan(30);
    }
    const again = await asAdmin('reset', id);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^flt: BAD_ARGUMENT: /m);
    const audit = await asAdmin('audit', '--json');
    const ops = (JSON.parse(audit.stdout) as { op?: { body: { op: string } } }[]).map((e) => e.op?.body.op);
    expect(ops.filter((o) => o === 'agent.reset')).toHaveLength(1);
    expect(original.stderr).not.toMatch(/refused a sync message/);
  });
});
