// Progress of a long transfer on stderr (design §7), for push and fetch alike: on a terminal one
// line redrawn at most every REDRAW_MS (`push  [#####....]  61%  3.9/6.4 MB  5.1 MB/s  ETA 0:01
// (2/3 paths)`); otherwise one plain line per finished item and the summary, so logs and pipes
// get lines that stay readable. With --json the display is silent (stdout holds the summary).

/** Shortest time between two redraws of the terminal line. */
export const REDRAW_MS = 200;
/** Width of the bar between brackets. */
const BAR = 16;

export interface ProgressState {
  readonly bytes: number;
  readonly total: number;
  readonly items: number;
  readonly itemsDone: number;
}

export interface ProgressOptions {
  /** The verb at the start of the line: `push`, `fetch`. */
  readonly verb: string;
  /** What an item is called, plural (`paths`). */
  readonly unit?: string;
  /** A terminal: redraw one line. Default: process.stderr.isTTY. */
  readonly tty?: boolean;
  /** Nothing at all (--json). */
  readonly silent?: boolean;
  readonly write?: (text: string) => void;
  /** Milliseconds, monotonic (tests pass a fake clock). */
  readonly now?: () => number;
}

export class Progress {
  private readonly tty: boolean;
  private readonly write: (text: string) => void;
  private readonly now: () => number;
  private readonly started: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private state: ProgressState = { bytes: 0, total: 0, items: 0, itemsDone: 0 };

  constructor(private readonly opts: ProgressOptions) {
    this.tty = opts.tty ?? process.stderr.isTTY === true;
    this.write = opts.write ?? ((t) => void process.stderr.write(t));
    this.now = opts.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** New numbers: redraws the terminal line if REDRAW_MS passed since the last one. */
  update(state: ProgressState): void {
    this.state = state;
    if (this.opts.silent || !this.tty) return;
    const t = this.now();
    if (t - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = t;
    this.write(`\r${this.line()}\x1b[K`);
    this.drawn = true;
  }

  /** A finished item (`pushed /nix/store/…-lib1 (3.0 MB)`): a plain line, above the bar. */
  item(text: string): void {
    if (this.opts.silent || this.tty) return;
    this.write(`${text}\n`);
  }

  /** An item that failed: shown in every mode but silent (errors are never hidden by a bar). */
  failure(text: string): void {
    if (this.opts.silent) return;
    this.clear();
    this.write(`${text}\n`);
  }

  /** Ends the display: the terminal line is cleared (the command prints its result itself). */
  finish(): void {
    if (this.opts.silent) return;
    this.clear();
  }

  /** Seconds since the display started. */
  get seconds(): number {
    return (this.now() - this.started) / 1000;
  }

  /** The terminal line for the current numbers. */
  line(): string {
    const { bytes, total, items, itemsDone } = this.state;
    const frac = total > 0 ? Math.min(1, bytes / total) : 1;
    const filled = Math.round(frac * BAR);
    const secs = this.seconds;
    const rate = secs > 0 ? bytes / secs : 0;
    const eta = rate > 0 ? formatEta((total - bytes) / rate) : '-:--';
    return (
      `${this.opts.verb}  [${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]  ` +
      `${String(Math.floor(frac * 100)).padStart(3)}%  ${formatSize(bytes, total)}  ` +
      `${formatRate(rate)}  ETA ${eta}  (${itemsDone}/${items} ${this.opts.unit ?? 'paths'})`
    );
  }

  private clear(): void {
    if (this.tty && this.drawn) this.write('\r\x1b[K');
    this.drawn = false;
  }
}

/** Bytes in decimal units, one decimal: `3.0 MB`, `812 B`. */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Bytes in binary units, for sizes kept (the artifact store's figures): `512 B`, `3.1 GiB`, `120 MiB` (one decimal below 10). */
export function formatBinaryBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < BINARY_UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const text = u === 0 || v >= 10 ? String(Math.round(v)) : v.toFixed(1);
  return `${text} ${BINARY_UNITS[u]}`;
}

/** `3.9/6.4 MB`: done and total in the total's unit. */
export function formatSize(done: number, total: number): string {
  const t = formatBytes(total);
  const unit = t.split(' ')[1]!;
  const scale = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 }[unit] ?? 1;
  const d = unit === 'B' ? String(done) : (done / scale).toFixed(1);
  return `${d}/${t}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** `m:ss` (or `h:mm:ss`). */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** A closure fetch's figures as an agent reports them (the status record's `fetch`). */
export interface FetchFigures {
  readonly bytes: number;
  readonly total: number;
  readonly paths: number;
  readonly pathsDone: number;
  /** Bytes per second, the agent's own moving window. */
  readonly rate: number;
}

/** `3.9/6.4 MB, 5.1 MB/s, ETA 0:01 (2/3 paths)`: ETA from the agent's rate (`-:--` at rate 0). */
export function fetchFigures(f: FetchFigures): string {
  const eta = f.rate > 0 ? formatEta(Math.max(0, f.total - f.bytes) / f.rate) : '-:--';
  return (
    `${formatSize(f.bytes, f.total)}, ${formatRate(f.rate)}, ETA ${eta} ` +
    `(${f.pathsDone}/${f.paths} paths)`
  );
}

/**
 * Lines that change in place on a terminal (`deploy --wait`'s fetching targets, design §7): each
 * key's newest text, all on one line redrawn on stderr (cut to the terminal's width); a plain
 * line printed meanwhile goes above it (`above`). Not a terminal: `set` prints the text as a
 * plain line each time it changes, through `plain`.
 */
export class LiveLines {
  private readonly texts = new Map<string, string>();
  private drawn = false;

  constructor(
    private readonly opts: {
      readonly tty: boolean;
      readonly plain: (line: string) => void;
      readonly write?: (text: string) => void;
      readonly columns?: () => number | undefined;
    },
  ) {}

  /** Key `key` now says `text`. */
  set(key: string, text: string): void {
    if (this.texts.get(key) === text) return;
    this.texts.set(key, text);
    if (this.opts.tty) this.draw();
    else this.opts.plain(text);
  }

  /** Key `key` has nothing in place any more (it reached another state). */
  delete(key: string): void {
    if (!this.texts.delete(key) || !this.opts.tty) return;
    this.draw();
  }

  /** A plain line, printed above the redrawn one. */
  above(line: string): void {
    this.clear();
    this.opts.plain(line);
    if (this.opts.tty && this.texts.size > 0) this.draw();
  }

  /** Clears the redrawn line (at the end of the command). */
  finish(): void {
    this.texts.clear();
    this.clear();
  }

  private draw(): void {
    if (this.texts.size === 0) return this.clear();
    const width = Math.max(20, (this.opts.columns?.() ?? process.stderr.columns ?? 80) - 1);
    let line = [...this.texts.values()].join('  |  ');
    if (line.length > width) line = `${line.slice(0, width - 1)}…`;
    this.writeOut(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  private clear(): void {
    if (this.drawn) this.writeOut('\r\x1b[K');
    this.drawn = false;
  }

  private writeOut(text: string): void {
    (this.opts.write ?? ((t: string) => void process.stderr.write(t)))(text);
  }
}
