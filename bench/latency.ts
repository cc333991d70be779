// Group `latency`: one Automerge change on repo A at a time, timed until repo B's handle emits
// the 'change' that contains it, over each transport of peers.ts. automerge-repo's outbound sync
// throttle (100 ms per document) is left as it is; the two modes show when it matters. `push`
// (flt's path for a single-writer document) has no throttle: one push in flight, the next waits
// for its answer.

import { setTimeout as sleep } from 'node:timers/promises';
import { closePairs, freshDoc, openPairs, seenOnB, type RepoPair } from './peers.js';
import {
  percentile,
  valueOf,
  type BenchOptions,
  type GroupResult,
  type Measurement,
  type Ratio,
} from './stats.js';

/** DocSynchronizer.syncDebounceRate in automerge-repo 2.5.6. */
const SYNC_THROTTLE_MS = 100;
/** Idle time before each change in the `idle` mode: longer than the throttle window. */
const IDLE_GAP_MS = SYNC_THROTTLE_MS + 20;
const WARMUP_ROUNDS = 3;
const ROUND_TIMEOUT_MS = 10_000;

type Mode = 'back-to-back' | 'idle';
const MODES = ['back-to-back', 'idle'] as const;
const MODE_LABEL: Record<Mode, string> = {
  'back-to-back': 'back-to-back',
  idle: `after ${IDLE_GAP_MS} ms idle`,
};

/** One timed change on A: milliseconds until B's 'change' event shows it. */
type Round = () => Promise<number>;

async function prober(pair: RepoPair): Promise<Round> {
  const { ha, hb } = await freshDoc(pair);
  let next = 0;
  return async () => {
    const v = next++;
    const arrived = seenOnB(hb, `B to see change ${v}`, (d) => d.counter === v, ROUND_TIMEOUT_MS);
    const t0 = performance.now();
    ha.change((d) => {
      d.counter = v;
    });
    return (await arrived) - t0;
  };
}

/**
 * `rounds` single changes per transport and mode; samples[transport index][round].
 *
 * back-to-back: each round starts as soon as B saw the previous one, all rounds of one transport
 * in a row. Whether a change waits for A's throttle (up to 100 ms after A's last send) or rides
 * on A's immediate answer to B's acknowledgement depends on how soon that acknowledgement comes
 * back, so this mode must not interleave transports (the others' rounds would age the throttle).
 *
 * idle: each round first waits out A's throttle window (a deliberate pause, not a wait for
 * state), so the sync message leaves at once and only the path is left; rounds rotate over the
 * transports so drift on the machine hits all of them alike.
 */
async function latencySamples(probes: readonly Round[], rounds: number, mode: Mode) {
  const samples = probes.map((): number[] => []);
  if (mode === 'back-to-back') {
    for (const [k, probe] of probes.entries()) {
      for (let i = 0; i < rounds; i++) samples[k]!.push(await probe());
    }
    return samples;
  }
  for (let i = 0; i < rounds; i++) {
    for (const [k, probe] of probes.entries()) {
      await sleep(IDLE_GAP_MS);
      samples[k]!.push(await probe());
    }
  }
  return samples;
}

export async function runLatency(opts: BenchOptions): Promise<GroupResult> {
  const rounds = opts.quick ? 10 : 50;
  const pairs = await openPairs();
  const measurements: Measurement[] = [];
  try {
    const probes = await Promise.all(pairs.map(prober));
    for (const probe of probes) for (let i = 0; i < WARMUP_ROUNDS; i++) await probe();
    for (const mode of MODES) {
      const samples = await latencySamples(probes, rounds, mode);
      for (const [k, pair] of pairs.entries()) {
        const s = samples[k]!;
        opts.progress(`latency: ${pair.kind} ${mode}: p50 ${percentile(s, 50).toFixed(2)} ms`);
        for (const stat of ['p50', 'p99'] as const) {
          measurements.push({
            group: 'latency',
            name: `${pair.kind}, ${MODE_LABEL[mode]}`,
            stat,
            value: percentile(s, stat === 'p50' ? 50 : 99),
            unit: 'ms',
            samples: s,
          });
        }
      }
    }
  } finally {
    await closePairs(pairs);
  }
  return { measurements, ratios: latencyRatios(measurements) };
}

/**
 * push / websocket and iroh / websocket for p50 and p99 of each mode: lower is better, no target
 * here (the scale group judges point 5 on push's p50).
 */
function latencyRatios(ms: readonly Measurement[]): Ratio[] {
  return MODES.flatMap((mode) =>
    (['push', 'iroh'] as const).flatMap((kind) =>
      (['p50', 'p99'] as const).map((stat) => ({
        group: 'latency',
        name: `${kind} / websocket ${stat}, ${MODE_LABEL[mode]}`,
        value:
          valueOf(ms, `${kind}, ${MODE_LABEL[mode]}`, stat) /
          valueOf(ms, `websocket, ${MODE_LABEL[mode]}`, stat),
      })),
    ),
  );
}
