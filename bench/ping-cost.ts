// Measurement only (issue 13, session 26): what one liveness ping costs each side in the iroh Node
// binding alone, as a message on a stream (what flt's `agent.ping` rpc is underneath: a write and
// a read each way) against a QUIC datagram each way (`sendDatagram` is synchronous in the binding,
// so the sender holds no promise per ping). No flt code is on the path: the floor under either.
//
//   node dist/bench/ping-cost.js [N=300 connections] [pings/s=150] [seconds per round=10]
//
// A server process answers every message on a connection's stream and every datagram; a client
// process holds N connections (one endpoint each, as agents do) and pings round-robin at the given
// rate, in rounds that alternate the two ways (three each, after a warm-up round). Prints each
// round's pings answered and CPU milliseconds per ping of each process (all threads, /proc), then
// the datagram/stream ratio of the medians.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as iroh from '@number0/iroh/index.js';
import { cpuSecondsOf } from './processes.js';
import { median } from './stats.js';
import { rawEndpoint, serveRaw, toArray } from './streams.js';

const ALPN = toArray(Buffer.from('flt-bench/ping-cost/0'));
const READ = 4096;
const PING = toArray(Buffer.alloc(20, 1));
const ROUNDS = ['stream', 'datagram', 'stream', 'datagram', 'stream', 'datagram'] as const;
type Way = (typeof ROUNDS)[number];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Answers every datagram with itself and every message on the stream with a ping. */
async function answer(conn: iroh.Connection): Promise<void> {
  void (async () => {
    for (;;) conn.sendDatagram(await conn.readDatagram());
  })().catch(() => undefined);
  const bi = await conn.acceptBi();
  for (;;) {
    const got = await bi.recv.read(READ);
    if (got.length === 0) return;
    await bi.send.write(PING);
  }
}

interface Peer {
  /** Held: an endpoint the binding's JS object no longer references is dropped, with its connections. */
  readonly ep: iroh.Endpoint;
  readonly conn: iroh.Connection;
  readonly bi: iroh.BiStream;
}

async function ping(peer: Peer, way: Way): Promise<void> {
  if (way === 'datagram') {
    peer.conn.sendDatagram(PING);
    await peer.conn.readDatagram();
  } else {
    await peer.bi.send.write(PING);
    await peer.bi.recv.read(READ);
  }
}

async function clients(ticket: string, n: number, rate: number, seconds: number): Promise<void> {
  const addr = iroh.EndpointTicket.fromString(ticket).endpointAddr();
  const peers: Peer[] = [];
  for (let i = 0; i < n; i++) {
    const ep = await rawEndpoint();
    const conn = await ep.connect(addr, ALPN);
    const peer = { ep, conn, bi: await conn.openBi() };
    await ping(peer, 'stream'); // a stream is announced with its first bytes
    peers.push(peer);
  }
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const way = line as Way;
    let answered = 0;
    const end = Date.now() + seconds * 1000;
    for (let i = 0; Date.now() < end; i++) {
      void ping(peers[i % n]!, way).then(
        () => answered++,
        () => undefined,
      );
      await sleep(1000 / rate);
    }
    await sleep(1000); // the last answers
    process.stdout.write(`${answered}\n`);
  }
}

/** CPU milliseconds (all threads) the process has used so far. */
async function cpuMs(pid: number): Promise<number> {
  return (await cpuSecondsOf(pid)) * 1000;
}

async function main(n: number, rate: number, seconds: number): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const start = (args: string[]) => {
    const child = spawn(process.execPath, [self, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(child);
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const next = async () => String((await lines.next()).value);
    return { child, next };
  };
  try {
    const srv = start(['server']);
    const ticket = await srv.next();
    const cli = start(['clients', ticket, String(n), String(rate), String(seconds)]);
    await cli.next();
    // A warm-up round, not counted: the first round ran 1.5x slower than the ones after it.
    cli.child.stdin.write('stream\n');
    await cli.next();
    const per: Record<Way, { server: number[]; client: number[] }> = {
      stream: { server: [], client: [] },
      datagram: { server: [], client: [] },
    };
    for (const way of ROUNDS) {
      const s0 = await cpuMs(srv.child.pid!);
      const c0 = await cpuMs(cli.child.pid!);
      cli.child.stdin.write(`${way}\n`);
      const answered = Number(await cli.next());
      const server = ((await cpuMs(srv.child.pid!)) - s0) / answered;
      const client = ((await cpuMs(cli.child.pid!)) - c0) / answered;
      per[way].server.push(server);
      per[way].client.push(client);
      console.log(
        `${way.padEnd(8)} ${answered} pings answered over ${n} connections: ` +
          `server ${server.toFixed(3)} ms CPU per ping, clients ${client.toFixed(3)} ms`,
      );
    }
    const ratio = (side: 'server' | 'client') =>
      (median(per.datagram[side]) / median(per.stream[side])).toFixed(2);
    console.log(
      `datagram / stream, CPU per ping: server ${ratio('server')}x, clients ${ratio('client')}x`,
    );
  } finally {
    for (const child of children) child.kill('SIGKILL');
  }
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'server') await serveRaw(ALPN, answer);
else if (role === 'clients')
  await clients(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]));
else await main(Number(role ?? 300), Number(rest[0] ?? 150), Number(rest[1] ?? 10));
