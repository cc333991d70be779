// Who is connected to the coordinator, and when each agent was last seen. Live state stays in
// memory (and is served over rpc); the root document gets `lastSeen` only on a connect or
// disconnect, at most once per agent per LAST_SEEN_INTERVAL_MS, so a flapping agent cannot
// grow the root document's history without bound.

import type { NodeId } from '../../sync/ids.js';
import type { VolatileFacts } from '../facts/index.js';

/** 10 minutes: a year of hourly flapping stays a few thousand small changes per agent. */
export const LAST_SEEN_INTERVAL_MS = 10 * 60_000;

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

  disconnected(id: NodeId): void {
    this.online.delete(id);
    this.touch(id);
  }

  heartbeat(id: NodeId, facts: VolatileFacts): void {
    this.volatile.set(id, facts);
    this.seen.set(id, this.now());
  }

  isOnline(id: NodeId): boolean {
    return this.online.has(id);
  }

  lastSeen(id: NodeId): string | null {
    if (this.online.has(id)) return new Date(this.now()).toISOString();
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
