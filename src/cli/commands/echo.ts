// `flt admin echo [-n N] [--size BYTES] [NODE]`: N timed rounds of a random payload to the
// coordinator (or NODE), each verified by hash. Prints one line per round and a summary;
// any mismatch or timeout ends the command with that error's code.

import { randomBytes } from 'node:crypto';
import { parsePeerAddress } from '../../../sync/address.js';
import { EchoClient, MAX_ECHO_PAYLOAD } from '../../../sync/echo.js';
import { shortId } from '../../../sync/ids.js';
import { ALPN } from '../../../sync/protocols.js';
import { CloseCode } from '../../../sync/transport.js';
import { FltNode, requireCoordinator } from '../../node.js';
import { byteSize, positiveInt, textOption } from '../args.js';
import type { Invocation } from '../invocation.js';

export interface EchoRound {
  readonly round: number;
  readonly rttMs: number;
  /** Payload bytes moved both ways per second of round trip, in MB/s (10^6). */
  readonly mbps: number;
}

export async function runEcho({ args, opts, config, log, out }: Invocation): Promise<void> {
  const rounds = positiveInt('count', textOption(opts, 'count'), 10, 1_000_000);
  const size = byteSize('size', textOption(opts, 'size'), 64 * 1024, MAX_ECHO_PAYLOAD);
  const target = args[0] ? parsePeerAddress(args[0]) : requireCoordinator(config);
  const node = await FltNode.open({ role: 'admin', config, log });
  const results: EchoRound[] = [];
  try {
    const conn = await node.transport.connect(target, ALPN.echo, {
      timeoutMs: config.rpcTimeoutMs,
    });
    const client = await EchoClient.open(conn);
    for (let i = 1; i <= rounds; i++) {
      const rttMs = await client.round(randomBytes(size), config.rpcTimeoutMs);
      const r = { round: i, rttMs, mbps: (2 * size) / (rttMs / 1000) / 1e6 };
      results.push(r);
      if (!config.json)
        out.line(
          `echo ${i}/${rounds}  ${size} B  rtt ${rttMs.toFixed(2)} ms  ${r.mbps.toFixed(2)} MB/s`,
        );
    }
    await client.close();
    conn.close(CloseCode.NORMAL, 'done');
    const summary = summarize(results, size);
    if (config.json) out.json({ target: target.nodeId, size, rounds: results, summary });
    else out.line(formatSummary(summary, target.nodeId));
  } finally {
    await node.close();
  }
}

export interface EchoSummary {
  readonly rounds: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly avgMs: number;
  readonly maxMs: number;
  readonly mbps: number;
}

export function summarize(results: readonly EchoRound[], size: number): EchoSummary {
  const rtts = results.map((r) => r.rttMs).sort((a, b) => a - b);
  const total = rtts.reduce((a, b) => a + b, 0);
  return {
    rounds: rtts.length,
    minMs: rtts[0] ?? 0,
    p50Ms: rtts[Math.floor((rtts.length - 1) / 2)] ?? 0,
    avgMs: rtts.length ? total / rtts.length : 0,
    maxMs: rtts[rtts.length - 1] ?? 0,
    mbps: total > 0 ? (2 * size * rtts.length) / (total / 1000) / 1e6 : 0,
  };
}

function formatSummary(s: EchoSummary, target: string): string {
  const ms = (n: number) => n.toFixed(2);
  return `${s.rounds} rounds ok with ${shortId(target)}: rtt min ${ms(s.minMs)} / p50 ${ms(s.p50Ms)} / avg ${ms(s.avgMs)} / max ${ms(s.maxMs)} ms, ${s.mbps.toFixed(2)} MB/s`;
}
