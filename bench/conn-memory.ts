// Measurement only (issue 13, point 1): what an idle agent's QUIC connection costs the accepting
// process in the iroh Node binding alone, with flt's pattern per agent since session 19: one
// connection, two bidirectional streams (sync and rpc), a 4 KiB read pending on each at the server
// (FramedStream's IDLE_READ), and a small ping answered every ~2 s on one of them. No flt code is
// on the path (the raw binding, as bench/streams.ts uses it), so the figure is the floor under the
// coordinator's memory per agent that flt itself cannot lower.
//
//   node dist/bench/conn-memory.js [N=1000] [client processes=4] [streams per connection=2]
//
// With 1 stream per connection (sync and rpc on one), the figure says what the second stream
// costs: 107-108 KiB per connection against 113-114 with two (session 25), so merging them is no
// lever for point 1.
//
// Prints the server's RSS with its endpoint bound and no connection, with N connections after
// 20 s of pings, and the difference per connection. Roles: the same file runs as `server` and
// `clients` children.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as iroh from '@number0/iroh/index.js';
import { rawEndpoint, serveRaw, toArray } from './streams.js';

const ALPN = toArray(Buffer.from('flt-bench/conn-memory/0'));
/** FramedStream's read size between frames (sync/framed-stream.ts). */
const IDLE_READ = 4096;
const PING_MS = 2000;
const SETTLE_MS = 20_000;
const PING = toArray(Buffer.alloc(20, 1));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers every read on `recv` with a ping on `send`, until the stream ends. */
async function answer(bi: iroh.BiStream): Promise<void> {
  for (;;) {
    const got = await bi.recv.read(IDLE_READ);
    if (got.length === 0) return;
    await bi.send.write(PING);
  }
}

function server(streams: number): Promise<void> {
  return serveRaw(ALPN, async (conn) => {
    for (let i = 0; i < streams; i++) void answer(await conn.acceptBi()).catch(() => undefined);
  });
}

async function clients(ticket: string, n: number, count: number): Promise<void> {
  const addr = iroh.EndpointTicket.fromString(ticket).endpointAddr();
  const pingers: (() => Promise<void>)[] = [];
  for (let i = 0; i < n; i++) {
    const ep = await rawEndpoint();
    const conn = await ep.connect(addr, ALPN);
    const streams: iroh.BiStream[] = [];
    for (let s = 0; s < count; s++) streams.push(await conn.openBi());
    // A stream is announced to the peer with its first bytes: one ping on each, answered.
    for (const bi of streams) {
      await bi.send.write(PING);
      await bi.recv.read(IDLE_READ);
    }
    const [sync] = streams;
    pingers.push(async () => {
      await sync!.send.write(PING);
      await sync!.recv.read(IDLE_READ);
    });
  }
  process.stdout.write('ready\n');
  for (;;) {
    // Spread over the period, as a fleet's jittered pings are.
    for (const ping of pingers) {
      void ping().catch(() => undefined);
      await sleep(PING_MS / pingers.length);
    }
  }
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** The first line `child` prints. */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => resolve(line));
    child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
}

async function main(n: number, procs: number, streams: number): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const env = { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' };
  const children: ChildProcess[] = [];
  const start = (args: string[]) => {
    const child = spawn(process.execPath, [self, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    return child;
  };
  try {
    const srv = start(['server', String(streams)]);
    const ticket = await firstLine(srv);
    await sleep(2000);
    const before = rssMiB(srv.pid!);
    const per = Math.ceil(n / procs);
    const groups = Array.from({ length: procs }, (_, i) =>
      start(['clients', ticket, String(Math.min(per, n - i * per)), String(streams)]),
    );
    await Promise.all(groups.map(firstLine));
    const formed = rssMiB(srv.pid!);
    await sleep(SETTLE_MS);
    const after = rssMiB(srv.pid!);
    const kib = ((after - before) * 1024) / n;
    console.log(
      `iroh binding alone, ${n} connections (${streams} stream(s) each, 4 KiB reads pending, a ping every ` +
        `${PING_MS / 1000} s): server RSS ${before.toFixed(0)} -> ${formed.toFixed(0)} MiB formed, ` +
        `${after.toFixed(0)} MiB after ${SETTLE_MS / 1000} s: ${kib.toFixed(0)} KiB per connection`,
    );
  } finally {
    for (const child of children) child.kill('SIGKILL');
  }
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'server') await server(Number(rest[0] ?? 2));
else if (role === 'clients') await clients(rest[0]!, Number(rest[1]), Number(rest[2] ?? 2));
else await main(Number(role ?? 1000), Number(rest[0] ?? 4), Number(rest[1] ?? 2));
