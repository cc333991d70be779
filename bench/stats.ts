// Statistics and formatting for the benchmarks: the result types every group returns, the
// median / percentile helpers they reduce samples with, and the plain-text table run.ts prints.
// No measuring happens here; transport.ts and sync.ts produce the samples.

/** One reported number: a statistic over `samples` (repetitions or rounds). */
export interface Measurement {
  readonly group: string;
  readonly name: string;
  /** Which statistic `value` is: the median of repetitions, or a percentile of rounds. */
  readonly stat: 'median' | 'p50' | 'p99';
  readonly value: number;
  readonly unit:
    | 'MB/s'
    | 'changes/s'
    | 'ms'
    | 'messages'
    | 's'
    | 'agents/s'
    | 'KiB'
    | 'MiB'
    | 'docs'
    | 'count'
    | '% core';
  /** The raw samples, in the order measured (in `unit`). */
  readonly samples: readonly number[];
  readonly note?: string;
  /** The run was cut off at a deadline: the true value is above `value` (printed `> value`). */
  readonly lowerBound?: boolean;
}

/** A ratio of two measurements, with the target from the issue when there is one. */
export interface Ratio {
  readonly group: string;
  readonly name: string;
  readonly value: number;
  /** `>=`: higher is better and `value` must reach `bound`; `<=`: lower is better. */
  readonly target?: { readonly op: '>=' | '<='; readonly bound: number };
  /** The numerator was cut off at a deadline: the true ratio is above `value`. */
  readonly lowerBound?: boolean;
  /** Without a target, which way is better; `lower` when absent (latency ratios). */
  readonly better?: 'higher' | 'lower';
}

/**
 * One figure of an issue against its target (the scale group): what was measured, at which size,
 * and `ok` or `MISS`. A figure that could not be measured at the size asked for is a MISS with
 * `value` undefined (not measured) or the size reached, and says why in `note`.
 */
export interface Figure {
  readonly figure: string;
  /** Undefined: not measured (see `note`). */
  readonly value: number | undefined;
  readonly unit: string;
  /** Absent only on the line of a part that was not run. */
  readonly target?: { readonly op: '>=' | '<='; readonly bound: number };
  /** Cut off at a deadline: the true value is above `value` (printed `> value`). */
  readonly lowerBound?: boolean;
  readonly result: 'ok' | 'MISS';
  /** The size measured, how far a cut-off run got, or why nothing was measured. */
  readonly note: string;
}

export interface GroupResult {
  readonly measurements: Measurement[];
  readonly ratios: Ratio[];
  /** Figures with targets, printed as their own table (scale.ts). */
  readonly figures?: Figure[];
}

function sorted(xs: readonly number[]): number[] {
  if (xs.length === 0) throw new RangeError('no samples');
  return [...xs].sort((a, b) => a - b);
}

/** The middle value (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = sorted(xs);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Nearest-rank percentile: the smallest sample with at least p% of the samples at or below it.
 * With 50 rounds, p99 is the largest sample; with 10 rounds, p50 is the 5th smallest.
 */
export function percentile(xs: readonly number[], p: number): number {
  const s = sorted(xs);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

/** The value of the measurement called `name` with statistic `stat`; throws when missing. */
export function valueOf(
  ms: readonly Measurement[],
  name: string,
  stat: Measurement['stat'] = 'median',
): number {
  const m = ms.find((x) => x.name === name && x.stat === stat);
  if (!m) throw new Error(`no measurement ${name} (${stat})`);
  return m.value;
}

/** Three significant digits, without exponent notation for the ranges we print. */
export function fmtNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const abs = Math.abs(x);
  if (abs >= 100) return x.toFixed(0);
  if (abs >= 10) return x.toFixed(1);
  if (abs >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

/**
 * `ok`, `MISS` or `-` for a ratio against its target. A lower bound that already reaches a `>=`
 * target is `ok`; one that does not is `unknown` (the cut-off run might have reached it).
 */
export function verdict(r: Ratio): string {
  if (!r.target) return '-';
  const { op, bound } = r.target;
  const ok = op === '>=' ? r.value >= bound : r.value <= bound;
  if (r.lowerBound && op === '>=') return ok ? 'ok' : 'unknown (cut off)';
  return ok ? 'ok' : 'MISS';
}

/** Left-aligned text columns separated by two spaces, with a rule under the header. */
export function renderTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** What run.ts hands every group. */
export interface BenchOptions {
  /** Smaller sizes for a smoke check; the numbers are noisier. */
  readonly quick: boolean;
  /** Repetitions per measurement (the reported value is their median); each group has a default. */
  readonly reps: number | undefined;
  /** One line of progress, printed as the run goes (stderr). */
  readonly progress: (line: string) => void;
}
