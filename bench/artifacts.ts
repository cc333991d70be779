// Group `artifacts` (issue 12): one closure of about 256 MiB (artifact-closure.ts: 16 paths,
// 1 KiB .. 64 MiB) moved from the admin's Nix store into an agent's, three ways, in one run:
// - flt: `push` to a coordinator, then the agent's fetcher into a fresh store (Nix checks every
//   signature on the way in), over real iroh on 127.0.0.1, all in this process;
// - `nix copy` to a local `file://` binary cache and from it into a fresh store: the Nix floor on
//   this machine (no network at all; `--no-check-sigs`, as there is no key);
// - the raw iroh stream: the same number of bytes through @number0/iroh directly, Buffer ->
//   Array<number> in the loop as any user of the bindings must (streams.ts), once per direction.
// Reported: MB/s of each (NAR bytes over the time of both directions), flt / raw (target >= 0.8)
// and flt / nix copy, and the bytes a second push sends after one path of the closure changed.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { closureMetas } from '../src/artifacts/nix-query.js';
import { benchClosure, type BenchClosure } from './artifact-closure.js';
import { CHUNK, openRawPair, rawOnce, toArray } from './streams.js';
import {
  median,
  valueOf,
  type BenchOptions,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';
import { fltOnce, fltOneChange } from './artifacts-flt.js';

const run = promisify(execFile);
const NIX_COPY = ['--extra-experimental-features', 'nix-command', 'copy'];

const FLT = 'flt push + fetch';
const NIX = 'nix copy via file:// cache';
const RAW = 'raw iroh stream x2';
const PUSH = 'flt push alone';
const FETCH = 'flt fetch alone';
const ROWS = [FLT, PUSH, FETCH, NIX, RAW];

/** MB/s (10^6 bytes) of `bytes` moved in `ms`. */
const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000);

async function nixCopyOnce(c: BenchClosure, rep: number): Promise<number> {
  const cache = `file://${c.root}/cache-${rep}?compression=none&store=${c.storeDir}`;
  const to = c.emptyStore(`nix-copy-${rep}`);
  const t0 = performance.now();
  await run('nix', [...NIX_COPY, '--from', c.store, '--to', cache, c.top]);
  await run('nix', [...NIX_COPY, '--no-check-sigs', '--from', cache, '--to', to, c.top]);
  const ms = performance.now() - t0;
  await run('nix-store', ['--store', to, '--verify-path', c.top]);
  return ms;
}

/** The same bytes through raw iroh, once each way (two transfers on one pair). */
async function rawTwiceMs(total: number): Promise<number> {
  const pair = await openRawPair();
  try {
    const piece = new Uint8Array(randomBytes(CHUNK));
    const write = async (s: { writeAll(b: number[]): Promise<void> }) => {
      for (let sent = 0; sent < total; sent += CHUNK) {
        await s.writeAll(toArray(piece.subarray(0, Math.min(CHUNK, total - sent))));
      }
    };
    await rawOnce(pair, CHUNK, (s) => s.writeAll(toArray(piece))); // warm-up, not counted
    let ms = 0;
    for (let i = 0; i < 2; i++) ms += (total / 1e6 / (await rawOnce(pair, total, write))) * 1000;
    return ms;
  } finally {
    await pair.close();
  }
}

export async function runArtifacts(opts: BenchOptions): Promise<GroupResult> {
  opts.progress('artifacts: building the closure');
  const closure = await benchClosure(opts.quick);
  try {
    const metas = await closureMetas([closure.top], closure.store);
    const narBytes = metas.reduce((a, m) => a + m.narSize, 0);
    opts.progress(
      `artifacts: ${metas.length} paths, ${(narBytes / 2 ** 20).toFixed(1)} MiB of NARs`,
    );
    const reps = opts.reps ?? 1;
    const samples = new Map<string, number[]>(ROWS.map((name) => [name, []]));
    const add = (name: string, v: number) => samples.get(name)!.push(v);
    for (let rep = 0; rep < reps; rep++) {
      const f = await fltOnce(closure, rep, opts.progress);
      const flt = f.pushMs + f.fetchMs;
      add(FLT, mbps(narBytes, flt));
      add(PUSH, mbps(narBytes, f.pushMs));
      add(FETCH, mbps(narBytes, f.fetchMs));
      const nix = await nixCopyOnce(closure, rep);
      add(NIX, mbps(narBytes, nix));
      const raw = await rawTwiceMs(narBytes);
      add(RAW, mbps(narBytes, raw));
      opts.progress(
        `artifacts rep ${rep + 1}/${reps}: flt ${(flt / 1000).toFixed(1)} s, nix copy ` +
          `${(nix / 1000).toFixed(1)} s, raw ${(raw / 1000).toFixed(1)} s`,
      );
    }
    const note = `${metas.length} paths, ${(narBytes / 2 ** 20).toFixed(1)} MiB; both directions`;
    const measurements: Measurement[] = ROWS.map((name) => ({
      group: 'artifacts',
      name,
      stat: 'median',
      value: median(samples.get(name)!),
      unit: 'MB/s',
      samples: samples.get(name)!,
      note: name === PUSH || name === FETCH ? `${note.split(';')[0]}; this direction alone` : note,
    }));
    const change = await fltOneChange(closure, opts.progress);
    measurements.push({
      group: 'artifacts',
      name: 'second push, one path changed: bytes sent',
      stat: 'median',
      value: change.bytesSent / 1024,
      unit: 'KiB',
      samples: [change.bytesSent / 1024],
      note: `the changed path's NAR is ${(change.narSize / 1024).toFixed(1)} KiB; ${change.present} paths already there`,
    });
    const ratios: Ratio[] = [
      {
        group: 'artifacts',
        name: `${FLT} / ${RAW}`,
        value: valueOf(measurements, FLT) / valueOf(measurements, RAW),
        target: { op: '>=', bound: 0.8 },
      },
      {
        group: 'artifacts',
        name: `${FLT} / ${NIX}`,
        value: valueOf(measurements, FLT) / valueOf(measurements, NIX),
        better: 'higher',
      },
    ];
    return { measurements, ratios };
  } finally {
    await closure.close();
  }
}
