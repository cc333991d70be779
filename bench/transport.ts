// Group `transport`: bulk throughput between two endpoints on 127.0.0.1 in this process, first
// through @number0/iroh directly (the floor our layers sit on), then through IrohTransport +
// FramedStream (sync/), the path every sync message takes. Ratios framed/raw show our overhead.
// The pairs and single transfers are in streams.ts.

import { randomBytes } from 'node:crypto';
import {
  CHUNK,
  framedOnce,
  MiB,
  openFramedPair,
  openRawPair,
  rawOnce,
  toArray,
} from './streams.js';
import {
  median,
  valueOf,
  type BenchOptions,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';
import { closeAll } from './wait.js';

/** 3 repetitions of 32 MiB at about 4 MB/s already take close to two minutes. */
const DEFAULT_REPS = 3;

const RAW_PREBUILT = 'raw (pre-built arrays)';
const RAW_CONVERT = 'raw (Buffer->Array in loop)';
const FRAMED_64K = 'framed 64 KiB frames';
const FRAMED_1M = 'framed 1 MiB frames';

interface Variant {
  readonly name: string;
  readonly run: () => Promise<number>;
  readonly samples: number[];
}

export async function runTransport(opts: BenchOptions): Promise<GroupResult> {
  const total = (opts.quick ? 4 : 32) * MiB;
  const payload = new Uint8Array(randomBytes(total));
  const slices = Array.from({ length: total / CHUNK }, (_, i) =>
    payload.subarray(i * CHUNK, (i + 1) * CHUNK),
  );
  const prebuilt = slices.map(toArray); // outside any timed section
  const raw = await openRawPair();
  const framed = await openFramedPair();
  try {
    const variants: Variant[] = [
      {
        name: RAW_PREBUILT,
        run: () =>
          rawOnce(raw, total, async (s) => {
            for (const c of prebuilt) await s.writeAll(c);
          }),
        samples: [],
      },
      {
        name: RAW_CONVERT,
        run: () =>
          rawOnce(raw, total, async (s) => {
            for (const c of slices) await s.writeAll(toArray(c));
          }),
        samples: [],
      },
      {
        name: FRAMED_64K,
        run: () => framedOnce(framed, payload, 64 * 1024),
        samples: [],
      },
      { name: FRAMED_1M, run: () => framedOnce(framed, payload, MiB), samples: [] },
    ];
    // Warm-up (not counted): JIT, QUIC congestion window, the first stream of each connection.
    await rawOnce(raw, MiB, (s) => s.writeAll(prebuilt[0]!));
    await framedOnce(framed, payload.subarray(0, MiB), 64 * 1024);
    // Repetitions interleave the variants, so drift on a shared machine hits all of them alike.
    const reps = opts.reps ?? DEFAULT_REPS;
    for (let rep = 0; rep < reps; rep++) {
      for (const v of variants) {
        v.samples.push(await v.run());
        opts.progress(
          `transport: ${v.name} rep ${rep + 1}/${reps}: ${v.samples.at(-1)!.toFixed(2)} MB/s`,
        );
      }
    }
    return summarize(variants, total);
  } finally {
    await closeAll([() => raw.close(), () => framed.close()]);
  }
}

function summarize(variants: readonly Variant[], total: number): GroupResult {
  const note = `${total / MiB} MiB per transfer`;
  const measurements: Measurement[] = variants.map((v) => ({
    group: 'transport',
    name: v.name,
    stat: 'median',
    value: median(v.samples),
    unit: 'MB/s',
    samples: v.samples,
    note,
  }));
  const ratios: Ratio[] = [FRAMED_64K, FRAMED_1M].flatMap((framed) =>
    [RAW_PREBUILT, RAW_CONVERT].map((raw) => ({
      group: 'transport',
      name: `${framed} / ${raw}`,
      value: valueOf(measurements, framed) / valueOf(measurements, raw),
      target: { op: '>=', bound: 0.9 },
    })),
  );
  return { measurements, ratios };
}
