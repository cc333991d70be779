// RpcChannel over real iroh endpoints: a peer that takes a call but does not answer it in time
// (busy) keeps its connection; a peer that was killed loses it, and the next call reaches the
// process restarted on the same address (issue 13: agents redialing a busy coordinator on every
// slow ping made a 1,000-agent fan-in storm of handshakes).

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { FltError } from '../sync/errors.js';
import { ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { RpcServer } from '../sync/rpc.js';
import type { Connection, PeerAddr, Transport } from '../sync/transport.js';
import { bindLocal } from './helpers/fleet.js';
import { hang, inc } from './helpers/rpc-methods.js';

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/rpc-server-child.js');

const transports: Transport[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

async function client(): Promise<Transport> {
  const t = await bindLocal(randomBytes(32));
  transports.push(t);
  return t;
}

/**
 * The rpc server child on `bind`; resolves with its address and a count of its connections. With
 * `blockMs`, it accepts nothing for that long after it started.
 */
async function serverChild(
  secretHex: string,
  bind: string,
  blockMs = 0,
): Promise<{ addr: PeerAddr; conns: () => number }> {
  const child = spawn(process.execPath, [CHILD, secretHex, bind, String(blockMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let conns = 0;
  const addr = await new Promise<PeerAddr>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error('rpc server child did not start in 20 s')),
      20_000,
    );
    child.on('exit', (code) => rej(new Error(`rpc server child exited (${code})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { addr?: PeerAddr; conn?: number };
      if (msg.conn !== undefined) conns = msg.conn;
      if (msg.addr !== undefined) {
        clearTimeout(timer);
        res(msg.addr);
      }
    });
  });
  return { addr, conns: () => conns };
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'answered',
    (err: unknown) => (err instanceof FltError ? err.code : String(err)),
  );

describe('RpcChannel: busy or gone', () => {
  it('a call acknowledged but not answered in time keeps the connection: the next call uses it', async () => {
    const server = await client();
    const accepted: Connection[] = [];
    const rpc = new RpcServer()
      .register(inc, (req) => Promise.resolve({ n: req.n + 1 }))
      .register(hang, () => new Promise(() => undefined));
    new Router(server)
      .route(ALPN.rpc, (c) => {
        accepted.push(c);
        return rpc.serve(c);
      })
      .start();
    const channel = new RpcChannel(await client(), server.addr(), { timeoutMs: 5000 });
    expect(await channel.call(inc, { n: 1 })).toEqual({ n: 2 });
    const sent = Date.now();
    expect(await code(channel.call(hang, { n: 0 }, { timeoutMs: 500 }))).toBe('TIMEOUT');
    expect(channel.lastHeard).toBeGreaterThanOrEqual(sent); // acknowledged: heard
    expect(await channel.call(inc, { n: 2 }, { timeoutMs: 5000 })).toEqual({ n: 3 });
    expect(accepted).toHaveLength(1);
    channel.close();
  });

  it('a killed peer: the call times out unheard, and a later one reaches the restarted process', async () => {
    const secret = randomBytes(32).toString('hex');
    const first = await serverChild(secret, '127.0.0.1:0');
    const channel = new RpcChannel(await client(), first.addr, { timeoutMs: 5000 });
    expect(await channel.call(inc, { n: 1 })).toEqual({ n: 2 });
    const heard = channel.lastHeard;
    children.pop()!.kill('SIGKILL');
    const second = await serverChild(secret, first.addr.direct[0]!);
    // The old connection's call goes to a process that no longer knows it: nothing comes back.
    expect(await code(channel.call(inc, { n: 2 }, { timeoutMs: 1500 }))).toBe('TIMEOUT');
    expect(channel.lastHeard).toBe(heard);
    let answer = 'none';
    for (let i = 0; i < 10 && answer !== 'answered'; i++)
      answer = await code(channel.call(inc, { n: 3 }, { timeoutMs: 3000 }));
    expect(answer).toBe('answered');
    expect(second.conns()).toBeGreaterThanOrEqual(1);
    channel.close();
  });

  it('a peer too busy to accept: calls that give up on connecting leave the connect to the next call, so the peer accepts one connection', async () => {
    const server = await serverChild(randomBytes(32).toString('hex'), '127.0.0.1:0', 4000);
    // The channel's own timeout (which bounds a connect) is longer than the peer's busy spell.
    const channel = new RpcChannel(await client(), server.addr, { timeoutMs: 15_000 });
    const outcomes: string[] = [];
    for (let i = 0; i < 20 && outcomes.at(-1) !== 'answered'; i++)
      outcomes.push(await code(channel.call(inc, { n: i }, { timeoutMs: 700 })));
    expect(outcomes.at(-1)).toBe('answered');
    expect(outcomes.filter((o) => o === 'CONNECT_FAILED').length).toBeGreaterThanOrEqual(2);
    // Every earlier call gave up while connecting; had each dialed afresh, the peer would accept
    // one connection per call once free.
    expect(await code(channel.call(inc, { n: 0 }, { timeoutMs: 5000 }))).toBe('answered');
    expect(server.conns()).toBe(1);
    channel.close();
  });
});
