// Bounds the documents a Repo keeps loaded: documents that went idle leave it, saved, and come back
// from storage when they are needed again (issue 13).
//
// Why. A coordinator held every agent's documents (facts, status, desired) loaded for as long as it
// ran: ~94-113 KiB each, about 77 KiB of it Automerge's wasm memory (documents built with
// `loadIncremental(A.init())` hold 3-5x what `A.load` holds), for documents that change a few
// times a day. Measured at 100 and 300 agents, eviction takes the V8 heap per agent from 205-224 to
// 61-63 KiB; the wasm part is freed inside wasm memory and reused by later loads, but wasm memory
// never shrinks, so RSS keeps the high-water mark of the live set. An agent's documents are
// written by sync alone (theirs) or by this node at a deployment (desired): both are rare, and a
// document loads again in milliseconds.
//
// When. A document is evicted once it has been idle for `idleMs` (no sync message in or out, no
// change of its heads): 30 s by default, longer than any sync exchange, its retries and the store
// operations behind it, short enough that a fleet at rest holds none of its agents' documents.
// A cap on loaded documents exists (`maxLive`: over it, the least recently active go once quiet for
// `quietMs`) but is off by default, measured (issue 13, one run each on a loaded 2-core machine):
// at 600 it did not keep a storm of 1,000 concurrent facts loads (5,000 enrolled) under the
// slowdown, which starts past ~700 documents with or without it, because wasm memory grows while
// documents load and never shrinks (what is freed is reused by later loads; the slowdown itself
// was V8 collecting at every grow of that memory, now grown in steps: sync/wasm-headroom.ts);
// and evicting documents that were quiet but not idle during a 300-agent fan-in loaded them again (fan-in 153 s
// and once not formed within 180 s with the cap, 106 s without it, 90 s before eviction). After a
// storm the idle delay empties the live set anyway.
//
// How, and why nothing acknowledged is lost. An eviction saves the document (repo.flush, then the
// store's operations on it settled, loads of its sync states included), then checks that nothing
// happened meanwhile (no message about it, same heads, same handle, still evictable: a writer
// that is about to change it says no); only then, in one synchronous
// step, it tells the owners of references to the handle (`onEvict`), drops the listeners of the
// handle, removes the document's synchronizer (sync/peer-scopes.ts ends its scoped peers' sync
// there and begins it again when the document is set up again) and removes the handle from the
// Repo. Anything that arrives after that finds the document in storage: a sync message from a peer
// (automerge-repo's synchronizer finds it), a heartbeat or an admin (repo.find).
//
// automerge-repo 2.5.6's `removeFromCache` alone destroys the stored document (upstream issue 435):
// it unloads the handle, which sets its document to an empty one and emits `heads-changed`, and
// the Repo's throttled save then writes that empty document as a snapshot and deletes the real
// chunks. Removing the handle's `heads-changed` listeners before it is what makes it safe here
// (test/evict.test.ts checks the stored document after eviction). Everything from the first check
// to the handle's removal runs without yielding to other work but the microtasks of
// `removeFromCache` itself (its only await is on a handle that is ready).

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import { silentLogger, type Logger } from './log.js';

/** Idle time after which a document is evicted (see above). */
export const EVICT_IDLE_MS = 30_000;
/** Loaded evictable documents above which quiet ones go before they are idle: none (above). */
export const EVICT_MAX_LIVE = Number.POSITIVE_INFINITY;
/** How long a document must have been quiet to go early, over the cap. */
export const EVICT_QUIET_MS = 2_000;

export interface EvictionOptions {
  readonly repo: Repo;
  /** The Repo's store: settled(doc) resolves once the operations on `doc` running now ended. */
  readonly store: { settled(first?: string): Promise<void> };
  /**
   * Whether `doc` may be evicted (cheap: asked for every message). Asked again right before
   * onEvict, in the same synchronous step: a `false` set by then stops the eviction.
   */
  readonly evictable: (doc: DocumentId) => boolean;
  /**
   * Called synchronously right before `doc` leaves the Repo: every reference to its handle must
   * go (its listeners are dropped anyway); a later use finds it again. `heads` are the heads it
   * was saved with, its store operations settled (sync/stored-heads.ts marks them).
   */
  readonly onEvict?: (doc: DocumentId, heads: readonly string[]) => void;
  readonly idleMs?: number;
  readonly maxLive?: number;
  readonly quietMs?: number;
  /** Between sweeps (default: a quarter of idleMs, between 50 ms and 1 s). */
  readonly sweepMs?: number;
  readonly log?: Logger;
}

interface Live {
  /** Date.now() of the last activity seen. */
  at: number;
  /** Bumped on every activity: an eviction gives up if it moved while it saved. */
  gen: number;
  /** The heads last seen, joined. */
  heads: string;
}

/** What scopePeers and the Repo expose of the synchronizer (automerge-repo internals, pinned). */
interface Synchronizer {
  on(event: 'message', listener: (m: object) => void): void;
  off(event: 'message', listener: (m: object) => void): void;
  removeDocument(doc: DocumentId): void;
}

export class Eviction {
  private readonly live = new Map<DocumentId, Live>();
  private readonly idleMs: number;
  private readonly maxLive: number;
  private readonly quietMs: number;
  private readonly timer: NodeJS.Timeout;
  private readonly log: Logger;
  private readonly synchronizer: Synchronizer;
  private sweeping: Promise<void> | undefined;
  private stopped = false;
  private evictedCount = 0;
  private readonly touch = (m: object) => {
    const doc = 'documentId' in m ? (m.documentId as DocumentId | undefined) : undefined;
    if (doc === undefined || !this.opts.evictable(doc)) return;
    const live = this.live.get(doc);
    if (live) {
      live.at = Date.now();
      live.gen++;
    } else this.live.set(doc, { at: Date.now(), gen: 0, heads: '' });
  };

  constructor(private readonly opts: EvictionOptions) {
    this.idleMs = opts.idleMs ?? EVICT_IDLE_MS;
    this.maxLive = opts.maxLive ?? EVICT_MAX_LIVE;
    this.quietMs = opts.quietMs ?? EVICT_QUIET_MS;
    this.log = opts.log ?? silentLogger;
    this.synchronizer = (opts.repo as unknown as { synchronizer: Synchronizer }).synchronizer;
    // Messages in (before the synchronizer sees them) and out (as the synchronizer emits them).
    opts.repo.networkSubsystem.on('message', this.touch);
    this.synchronizer.on('message', this.touch);
    const sweepMs = opts.sweepMs ?? Math.max(50, Math.min(1000, this.idleMs / 4));
    this.timer = setInterval(() => void this.sweep(), sweepMs);
    this.timer.unref();
  }

  /** Documents evicted so far (status, tests). */
  get evicted(): number {
    return this.evictedCount;
  }

  /** Stops sweeping (an eviction under way finishes). Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.opts.repo.networkSubsystem.off('message', this.touch);
    this.synchronizer.off('message', this.touch);
    await this.sweeping;
  }

  /**
   * One pass: evicts idle documents, and quiet ones while over the cap, least recently active
   * first. Runs one at a time (a call during a pass waits for it).
   */
  sweep(): Promise<void> {
    this.sweeping ??= this.pass().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  /**
   * Evicts `doc` now if it is loaded, evictable, and nothing about it happens while it is saved
   * (the idle delay does not apply). Whether it went. For tests and for callers that know.
   */
  async evict(doc: DocumentId): Promise<boolean> {
    const handle = this.opts.repo.handles[doc];
    if (handle === undefined || !handle.isReady() || !this.opts.evictable(doc)) return false;
    return this.evictHandle(doc, handle, this.seen(doc, handle, Date.now()));
  }

  private async pass(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    const candidates: { doc: DocumentId; handle: DocHandle<unknown>; live: Live }[] = [];
    for (const [id, handle] of Object.entries(this.opts.repo.handles)) {
      const doc = id as DocumentId;
      if (!this.opts.evictable(doc) || !handle.isReady()) continue;
      candidates.push({ doc, handle, live: this.seen(doc, handle, now) });
    }
    // Forget documents that left the Repo some other way.
    for (const doc of this.live.keys())
      if (this.opts.repo.handles[doc]?.isReady() !== true) this.live.delete(doc);
    candidates.sort((a, b) => a.live.at - b.live.at);
    let count = candidates.length;
    for (const { doc, handle, live } of candidates) {
      if (this.stopped) return;
      const quiet = now - live.at;
      const due = quiet >= this.idleMs || (count > this.maxLive && quiet >= this.quietMs);
      if (!due) {
        if (count <= this.maxLive) return; // sorted: the rest are more recent
        continue;
      }
      try {
        if (await this.evictHandle(doc, handle, live)) count--;
      } catch (err) {
        this.log.warn('could not evict a document; it stays loaded', {
          doc,
          err: String(err),
        });
      }
    }
  }

  /** Records `doc` as seen now: new, or with heads that moved since the last look. */
  private seen(doc: DocumentId, handle: DocHandle<unknown>, now: number): Live {
    const heads = A.getHeads(handle.doc()).join(',');
    let live = this.live.get(doc);
    if (live === undefined) this.live.set(doc, (live = { at: now, gen: 0, heads }));
    else if (live.heads !== heads) {
      live.heads = heads;
      live.at = now;
      live.gen++;
    }
    return live;
  }

  private async evictHandle(
    doc: DocumentId,
    handle: DocHandle<unknown>,
    live: Live,
  ): Promise<boolean> {
    const { repo, store } = this.opts;
    const gen = live.gen;
    const heads = live.heads;
    await repo.flush([doc]);
    await store.settled(doc);
    // Anything about it while it was being saved (a message, a change, another handle, a
    // stop, or it is no longer evictable: its writer may have begun a write, which must not
    // race onEvict) and it stays: the next pass looks again.
    if (
      this.stopped ||
      !this.opts.evictable(doc) ||
      repo.handles[doc] !== handle ||
      !handle.isReady() ||
      this.live.get(doc) !== live ||
      live.gen !== gen ||
      A.getHeads(handle.doc()).join(',') !== heads
    )
      return false;
    // From here on, synchronous up to removeFromCache's own microtasks: nothing else runs.
    this.live.delete(doc);
    this.opts.onEvict?.(doc, A.getHeads(handle.doc()));
    // The Repo's save listener would store the empty document that unloading leaves (above).
    handle.removeAllListeners('heads-changed');
    handle.removeAllListeners('change');
    // Its synchronizer first (scoped peers' sync ends there: peer-scopes.ts), then the handle.
    this.synchronizer.removeDocument(doc);
    await repo.removeFromCache(doc);
    this.evictedCount++;
    this.log.debug('evicted an idle document', { doc });
    return true;
  }
}
