// ArtifactGc: drops what no deployment needs any more from the coordinator's artifact store
// (design §4). Live = the closures of the roots it is given (every agent's desired store path,
// every deployment part of the audit trail younger than the grace) and of every path pushed
// within the grace. An index entry not live is removed; then a blob no entry names and untouched
// for the grace is removed, and so is a partial upload untouched for the grace. Idempotent: a
// second run right after finds nothing. One run at a time; the Coordinator runs it at start and
// hourly on an unref'd timer.

import type { Logger } from '../../sync/log.js';
import type { BlobStore } from '../../stores/blob-store.js';
import type { ArtifactIndex } from './index.js';

/** `artifact_gc_grace` default: 14 days. */
export const DEFAULT_GC_GRACE_MS = 14 * 24 * 3600 * 1000;
/** How often the coordinator runs it. */
export const GC_INTERVAL_MS = 3600 * 1000;

/** A path a deployment references, and when (ms since the epoch; now for a current one). */
export interface GcRoot {
  readonly path: string;
  readonly at: number;
}

export interface GcResult {
  /** When the run started (ms since the epoch). */
  readonly at: number;
  readonly dryRun: boolean;
  /** Index entries removed (or that would be). */
  readonly paths: readonly string[];
  /** Complete blobs removed, and their bytes. */
  readonly blobs: readonly string[];
  readonly bytes: number;
  /** Partial uploads removed. */
  readonly partials: readonly string[];
}

export interface ArtifactGcOptions {
  readonly index: ArtifactIndex;
  readonly blobs: BlobStore;
  /** The roots now (read at each run, so a deployment placed since counts). */
  roots(): Iterable<GcRoot>;
  /** Default DEFAULT_GC_GRACE_MS. */
  readonly graceMs?: number;
  /** Clock (tests). Default Date.now. */
  now?(): number;
  /** After each finished run that was not dry (the coordinator rewrites its root summary). */
  onRun?(result: GcResult): void;
  readonly log: Logger;
}

export class ArtifactGc {
  private running: Promise<GcResult> | undefined;
  private last: GcResult | undefined;
  private timer: NodeJS.Timeout | undefined;
  readonly graceMs: number;

  constructor(private readonly opts: ArtifactGcOptions) {
    this.graceMs = opts.graceMs ?? DEFAULT_GC_GRACE_MS;
    if (!Number.isSafeInteger(this.graceMs) || this.graceMs < 0)
      throw new RangeError(`gc grace ${this.graceMs} ms`);
  }

  /** The last finished run (not dry), if any. */
  get lastRun(): GcResult | undefined {
    return this.last;
  }

  /** Runs now (after a run in progress, if any); with `dryRun` only says what it would remove. */
  run(options: { dryRun?: boolean } = {}): Promise<GcResult> {
    const prev = this.running ?? Promise.resolve(undefined);
    const next = prev.catch(() => undefined).then(() => this.once(options.dryRun ?? false));
    this.running = next;
    void next
      .finally(() => {
        if (this.running === next) this.running = undefined;
      })
      .catch(() => undefined);
    return next;
  }

  /** Runs now and every `intervalMs` (unref'd) until stop(); a failed run is logged. */
  start(intervalMs = GC_INTERVAL_MS): void {
    if (this.timer) return;
    const tick = () =>
      void this.run().catch((err: unknown) =>
        this.opts.log.error('artifacts gc failed', { msg: String(err) }),
      );
    this.timer = setInterval(tick, intervalMs);
    this.timer.unref();
    tick();
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async once(dryRun: boolean): Promise<GcResult> {
    const now = (this.opts.now ?? Date.now)();
    const cutoff = now - this.graceMs;
    const { index, blobs, log } = this.opts;
    const fresh: string[] = [];
    for (const r of this.opts.roots()) if (r.at >= cutoff) fresh.push(r.path);
    for (const e of index.all()) if (e.pushedAt >= cutoff) fresh.push(e.path);
    const live = new Set(index.closure(fresh).entries.map((e) => e.path));
    const paths: string[] = [];
    for (const e of index.all())
      if (!live.has(e.path)) {
        paths.push(e.path);
        if (!dryRun) {
          await index.remove(e.path);
          log.info('artifacts gc: path removed', { path: e.path });
        }
      }
    const named = new Set(
      index
        .all()
        .filter((e) => !dryRun || live.has(e.path))
        .map((e) => e.blob),
    );
    const removedBlobs: string[] = [];
    const partials: string[] = [];
    let bytes = 0;
    for (const b of await blobs.list()) {
      if (b.mtimeMs >= cutoff) continue;
      if (b.complete && !named.has(b.key)) {
        removedBlobs.push(b.key);
        bytes += b.size;
        if (!dryRun) {
          await blobs.remove(b.key);
          log.info('artifacts gc: blob removed', { blob: b.key, bytes: b.size });
        }
      } else if (!b.complete) {
        partials.push(b.key);
        if (!dryRun) {
          await blobs.removePartial(b.key);
          log.info('artifacts gc: partial removed', { blob: b.key, bytes: b.size });
        }
      }
    }
    const result: GcResult = { at: now, dryRun, paths, blobs: removedBlobs, bytes, partials };
    if (!dryRun) {
      this.last = result;
      this.opts.onRun?.(result);
    }
    return result;
  }
}
