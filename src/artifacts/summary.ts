// The coordinator's artifact store in short, kept in the root document (design §4 "Status") so
// that `flt admin status` shows it offline too: the same figures as rpc `artifacts.stats`,
// rewritten whole as one small record. Writes are throttled: after a change (a put, a
// quarantine) at most one per `intervalMs` (default 60 s, the last change always written), at
// once after each GC run, and only when a figure differs from what the root holds, so the root's
// history grows by a few records a day, not one per push.
//
// `lastGc` alone counts as a change only once the recorded one is LAST_GC_SLACK_MS old: a GC that
// removed nothing (every restart runs one) then leaves the root as it was. Every change to the
// root is one more that every admin's replica fetches and applies after a restart (issue 13), and
// an hourly figure that says "gc 20m ago" when a GC ran a minute ago is close enough: the exact
// time is in rpc `artifacts.stats`.

import type { Logger } from '../../sync/log.js';
import type { ArtifactsSummary } from '../docs/root.js';
import { GC_INTERVAL_MS } from './gc.js';

/** How old the recorded `lastGc` must be for a newer one alone to be written. */
export const LAST_GC_SLACK_MS = GC_INTERVAL_MS / 2;

/** Default throttle of summary writes after changes. */
export const SUMMARY_INTERVAL_MS = 60_000;

export interface SummaryWriterOptions {
  /** The figures now (rpc `artifacts.stats`). */
  stats(): Promise<ArtifactsSummary>;
  /** What the root document holds now (undefined: none, or malformed). */
  current(): ArtifactsSummary | undefined;
  /** Writes the record into the root document. */
  write(summary: ArtifactsSummary): void;
  readonly intervalMs?: number;
  /** Clock (tests). Default Date.now. */
  now?(): number;
  readonly log: Logger;
}

export class SummaryWriter {
  private last = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly intervalMs: number;

  constructor(private readonly opts: SummaryWriterOptions) {
    this.intervalMs = opts.intervalMs ?? SUMMARY_INTERVAL_MS;
  }

  /** Something changed: written now if the last write is `intervalMs` old, else when it is. */
  changed(): void {
    if (this.closed || this.timer) return;
    const wait = this.last + this.intervalMs - this.clock();
    if (wait <= 0) {
      void this.flush();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
    this.timer.unref();
  }

  /** Writes now (after GC, at start), replacing a pending throttled write. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const next = this.chain.then(async () => {
      if (this.closed) return;
      this.last = this.clock();
      const summary = await this.opts.stats();
      if (same(summary, this.opts.current())) return;
      this.opts.write(summary);
    });
    this.chain = next.catch((err: unknown) =>
      this.opts.log.warn('artifacts: the root summary was not written', { msg: String(err) }),
    );
    return this.chain;
  }

  /** Writes a pending change, then stops. */
  async close(): Promise<void> {
    const pending = this.timer !== undefined;
    if (pending) await this.flush();
    this.closed = true;
    await this.chain;
  }

  private clock(): number {
    return (this.opts.now ?? Date.now)();
  }
}

const FIELDS = ['paths', 'blobs', 'bytes', 'partialBytes', 'quarantined', 'lastGc'] as const;

/** Whether `now` says nothing the root's `held` does not (lastGc: to within LAST_GC_SLACK_MS). */
function same(now: ArtifactsSummary, held: ArtifactsSummary | undefined): boolean {
  if (held === undefined) return false;
  return FIELDS.every((f) =>
    f === 'lastGc' ? sameGc(now.lastGc, held.lastGc) : now[f] === held[f],
  );
}

function sameGc(now: string | null, held: string | null): boolean {
  if (now === null || held === null) return now === held;
  const newer = Date.parse(now) - Date.parse(held);
  return newer >= 0 && newer < LAST_GC_SLACK_MS; // a clock set back: written
}
