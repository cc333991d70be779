// End to end: a coordinator and an admin as two real `flt` processes over iroh on loopback.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramedStream } from '../sync/framed-stream.js';
import { IrohTransport } from '../sync/iroh-transport.js';
import { ALL_ALPNS, ALPN, MAX_FRAME } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import type { Connection } from '../sync/transport.js';
import { generateNodeKey } from '../src/identity/index.js';
import { FltProcess, LOCAL, nodeIdOf, runFlt, tempDir } from './helpers/flt.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let coordinator: FltProcess;
let ticket: string;

beforeAll(async () => {
  dir = await tempDir();
  coordinator = new FltProcess([
    '--state-dir',
    `${dir.path}/c`,
    ...LOCAL,
    'coordinator',
    '--bind',
    '127.0.0.1:0',
    '--admin',
    await nodeIdOf(`${dir.path}/a`), // only members may echo
  ]);
  ticket = (await coordinator.waitFor(/^(endpoint\w+)$/m))[1]!;
});

afterAll(async () => {
  coordinator.kill('SIGTERM');
  await coordinator.exited;
  await dir.remove();
});

const admin = (...args: string[]) =>
  runFlt([
    '--state-dir',
    `${dir.path}/a`,
    ...LOCAL,
    'admin',
    '--coordinator',
    ticket,
    'echo',
    ...args,
  ]);

describe('echo', () => {
  it('echo_completes_admin_to_coordinator', async () => {
    const r = await admin('-n', '10', '--size', '4096', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      rounds: { rttMs: number }[];
      summary: { rounds: number };
    };
    expect(report.rounds).toHaveLength(10);
    expect(report.summary.rounds).toBe(10);
    for (const round of report.rounds) expect(round.rttMs).toBeGreaterThan(0);
  });

  it('prints one line per round and a summary', async () => {
    const r = await admin('-n', '3');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(/^echo \d\/3 /gm)).toHaveLength(3);
    expect(r.stdout).toMatch(/^3 rounds ok with /m);
  });

  it('a corrupted echo fails with ECHO_MISMATCH', async () => {
    // A test peer that flips one byte of every payload it echoes.
    const peer = await IrohTransport.bind({
      secretKey: randomBytes(32),
      alpns: ALL_ALPNS,
      bind: '127.0.0.1:0',
      relay: 'disabled',
      discovery: 'none',
    });
    new Router(peer).route(ALPN.echo, corruptingEcho).start();
    try {
      const r = await admin('-n', '3', '--size', '100', peer.ticket());
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^flt: ECHO_MISMATCH: /m);
    } finally {
      await peer.close();
    }
  });

  it('a coordinator that is not there fails with a code, not a hang', async () => {
    const r = await runFlt([
      '--state-dir',
      `${dir.path}/a`,
      ...LOCAL,
      '--rpc-timeout',
      '2s',
      'admin',
      '--coordinator',
      `${absentNodeId()}@127.0.0.1:9`,
      'echo',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^flt: (TIMEOUT|CONNECT_FAILED): /m);
  });

  it('a malformed coordinator address exits 2 naming the problem', async () => {
    const r = await runFlt([
      '--state-dir',
      `${dir.path}/a`,
      ...LOCAL,
      'admin',
      '--coordinator',
      'nope',
      'echo',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^flt: BAD_ADDRESS: /m);
  });
});

/** A valid node id that nobody serves. */
function absentNodeId(): string {
  return generateNodeKey().nodeId;
}

async function corruptingEcho(conn: Connection): Promise<void> {
  const stream = await conn.acceptStream();
  if (!stream) return;
  const framed = new FramedStream(stream, MAX_FRAME[ALPN.echo]);
  for (;;) {
    const frame = await framed.readFrame();
    if (frame === null) return;
    const copy = Uint8Array.from(frame);
    copy[copy.length - 1]! ^= 0xff;
    await framed.writeFrame(copy);
  }
}
