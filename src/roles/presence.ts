// Who is connected to the coordinator, and when each agent was last heard from. Live state stays
// in memory (and is served over rpc); the root document gets `lastSeen` only on a connect or
// disconnect, at most once per agent per LAST_SEEN_INTERVAL_MS, so a flapping agent cannot
// grow the root document's history without bound.
//
// Online means heard from recently: a live sync session AND a ping, heartbeat or connect within
// ONLINE_WINDOW_MS. A session alone is not enough: a peer cut off without closing keeps its QUIC
// connection for the ~30 s idle timeout, and showed online all that time.

import type { NodeId } from '../../sync/ids.js';
import type { VolatileFacts } from '../facts/index.js';
import { PING_INTERVAL_MS } from './liveness.js';

/** 10 minutes: a year of hourly flapping stays a few thousand small changes per agent. */
export const LAST_SEEN_INTERVAL_MS = 10 * 60_000;

/**
 * How recently an agent must have been heard from to count as online: three ping periods (6 s).
 * A healthy agent is heard every PING_INTERVAL_MS (+10 % jitter); one lost ping makes it redial
 * and ping again within the ping deadline, so a live agent never goes this long unheard, and a
 * silent one (partition, stopped process) shows offline within 6 s of its last ping.
 */
export const ONLINE_WINDOW_MS = 3 * PING_INTERVAL_MS;

export class Presence {
  private readonly online = new Set<NodeId>();
  private readonly seen = new Map<NodeId, number>();
  private readonly volatile = new Map<NodeId, VolatileFacts>();
  private readonly written = new Map<NodeId, number>();
  private readonly dirty = new Set<NodeId>();

  constructor(
    private readonly persist: (entries: ReadonlyMap<NodeId, string>) => void,
    private readonly now: () => number = Date.now,
  ) {}

  connected(id: NodeId): void {
    this.online.add(id);
    this.touch(id);
  }

  /**
   * The session ended. That is not hearing from the agent (an idle timeout ends a session 30 s
   * after the last packet), so lastSeen stays the last time it was heard.
   */
  disconnected(id: NodeId): void {
    this.online.delete(id);
    if (!this.seen.has(id)) this.seen.set(id, this.now());
    this.dirty.add(id);
    this.flush();
  }

  heartbeat(id: NodeId, facts: VolatileFacts): void {
    this.volatile.set(id, facts);
    this.heard(id);
  }

  /** A ping (or any other sign of life) from the agent; memory only. */
  heard(id: NodeId): void {
    this.seen.set(id, this.now());
  }

  isOnline(id: NodeId): boolean {
    const t = this.seen.get(id);
    return this.online.has(id) && t !== undefined && this.now() - t <= ONLINE_WINDOW_MS;
  }

  /** When the agent was last heard from (online or not). */
  lastSeen(id: NodeId): string | null {
    const t = this.seen.get(id);
    return t === undefined ? null : new Date(t).toISOString();
  }

  volatileOf(id: NodeId): VolatileFacts | null {
    return this.volatile.get(id) ?? null;
  }

  /** Writes pending lastSeen values whose interval has passed (`all`: every pending one). */
  flush(all = false): void {
    const due = new Map<NodeId, string>();
    for (const id of this.dirty) {
      if (all || this.now() - (this.written.get(id) ?? 0) >= LAST_SEEN_INTERVAL_MS) {
        due.set(id, new Date(this.seen.get(id)!).toISOString());
      }
    }
    if (due.size === 0) return;
    for (const id of due.keys()) {
      this.dirty.delete(id);
      this.written.set(id, this.now());
    }
    this.persist(due);
  }

  private touch(id: NodeId): void {
    this.seen.set(id, this.now());
    this.dirty.add(id);
    this.flush();
  }
}
