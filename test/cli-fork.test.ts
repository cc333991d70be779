// A cloned machine, as a user makes one: an enrolled agent's state dir copied to a second place
// and both started against one coordinator, as real `flt agent` processes. Two live instances of
// one node replace each other's sync connection; they must back off rather than loop, and the
// coordinator must flag the agent forked (in `flt admin agents --json` and `admin facts`, logged
// once). Resetting is tested in fork.test.ts.

import { cp } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shortId } from '../sync/ids.js';
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
      const row =
        r.code === 0 ? (JSON.parse(r.stdout) as Row[]).find((a) => a.nodeId === id) : undefined;
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

  it('is flagged forked, and the two instances back off instead of looping', async () => {
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
    await Promise.all([
      original.waitFor(/enrolled/, 'stderr'),
      clone.waitFor(/enrolled/, 'stderr'),
    ]);

    // They replace each other's connection; count the coordinator's connections of that node.
    const connections = new RegExp(
      `sync peer (connected|reconnected)[^\\n]*peer=${shortId(id)}`,
      'g',
    );
    const from = coordinator.stderr.length;
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS)); // an observation window
    const seen = coordinator.stderr.slice(from).match(connections)?.length ?? 0;
    console.info(`connections of the cloned node in ${WINDOW_MS} ms: ${seen}`);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(MAX_CONNECTIONS);

    const row = await untilRow(id, 'forked', (r) => r.forked !== null);
    expect(row.forked!.reason).toMatch(/replaced/);
    expect(coordinator.stderr.match(/agent forked/g)).toHaveLength(1);
    const facts = await asAdmin('facts', id, '--json');
    expect(facts.code, facts.stderr).toBe(0);
    expect((JSON.parse(facts.stdout) as { forked: unknown }).forked).toEqual(row.forked);

    // The original took nothing of the clone's (it refused nothing either: same history).
    expect(original.stderr).not.toMatch(/refused a sync message/);
  });
});
