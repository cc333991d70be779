// Who is connected to the coordinator, and when each agent was last heard from. Live state stays
// in memory (and is served over rpc); the root document gets `lastSeen` only on a connect or
// disconnect, at most once per agent per LAST_SEEN_INTERVAL_MS, so a flapping agent cannot
// grow the root document's history without bound.
//
// Online means heard from recently: a live sync session AND a ping, heartbeat or connect within
// ONLINE_WINDOW_MS (three of the ping periods the agent was given: pingPeriodFor). A session alone is not enough: a peer cut off without closing keeps its QUIC
// connection for the ~30 s idle timeout, and showed online all that time.

import type { NodeId } from '../../sync/ids.js';
import type { VolatileFacts } from '../facts/index.js';
import { PING_INTERVAL_MAX_MS, PING_INTERVAL_MS } from './liveness.js';

/** 10 minutes: a year of hourly flapping stays a few thousand small changes per agent. */
export const LAST_SEEN_INTERVAL_MS = 10 * 60_000;

/**
 * How recently an agent must have been heard from to count as online: three ping periods (6 s).
 * A healthy agent is heard every PING_INTERVAL_MS (+10 % jitter); one lost ping makes it redial
 * and ping again within the ping deadline, so a live agent never goes this long unheard, and a
 * silent one (partition, stopped process) shows offline within 6 s of its last ping.
 */
export const ONLINE_WINDOW_MS = 3 * PING_INTERVAL_MS;

/**
 * Pings a second the coordinator asks of its whole fleet at most. One ping costs it up to ~1 ms
 * of CPU (bench/README.md, `recover`: 0.97 ms, an upper bound), so this keeps liveness under
 * half a core however large the fleet.
 */
export const PING_BUDGET_PER_S = 500;

/**
 * The ping period the coordinator asks of each agent (`every` in its `agent.ping` answer) with
 * `connected` agents: PING_INTERVAL_MS up to PING_BUDGET_PER_S x 2 s = 1,000 agents, then
 * growing with the fleet (10,000 agents: 20 s), at most PING_INTERVAL_MAX_MS (past 30,000 agents
 * the budget is exceeded). An agent's online window is three of the periods it was given, so
 * "online" means "heard from within 6 s" up to 1,000 agents and coarser beyond.
 */
export function pingPeriodFor(connected: number): number {
  const spread = Math.ceil((connected / PING_BUDGET_PER_S) * 1000);
  return Math.min(PING_INTERVAL_MAX_MS, Math.max(PING_INTERVAL_MS, spread));
}

export class Presence {
  private readonly online = new Set<NodeId>();
  private readonly seen = new Map<NodeId, number>();
  private readonly volatile = new Map<NodeId, VolatileFacts>();
  private readonly written = new Map<NodeId, number>();
  private readonly dirty = new Set<NodeId>();
  /** The ping period each agent was last given, where it is not PING_INTERVAL_MS. */
  private readonly periods = new Map<NodeId, number>();

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
    this.periods.delete(id);
    if (!this.seen.has(id)) this.seen.set(id, this.now());
    this.dirty.add(id);
    this.flush(false, id);
  }

  heartbeat(id: NodeId, facts: VolatileFacts): void {
    this.volatile.set(id, facts);
    this.heard(id);
  }

  /** A ping (or any other sign of life) from the agent; memory only. */
  heard(id: NodeId): void {
    this.seen.set(id, this.now());
  }

  /** A ping: heard from, and told to ping again in `pingPeriodFor` of the agents connected. */
  pinged(id: NodeId): number {
    this.heard(id);
    const period = pingPeriodFor(this.online.size);
    if (period === PING_INTERVAL_MS) this.periods.delete(id);
    else this.periods.set(id, period);
    return period;
  }

  isOnline(id: NodeId): boolean {
    const t = this.seen.get(id);
    const window = 3 * (this.periods.get(id) ?? PING_INTERVAL_MS);
    return this.online.has(id) && t !== undefined && this.now() - t <= window;
  }

  /** When the agent was last heard from (online or not). */
  lastSeen(id: NodeId): string | null {
    const t = this.seen.get(id);
    return t === undefined ? null : new Date(t).toISOString();
  }

  volatileOf(id: NodeId): VolatileFacts | null {
    return this.volatile.get(id) ?? null;
  }

  /**
   * Writes pending lastSeen values whose interval has passed (`all`: every pending one): the
   * coordinator's minute timer and its stop. A connect or disconnect looks at its own agent only
   * (`only`): scanning every pending one each time made a mass disconnect quadratic (10,000
   * agents cut off at once: 50 million checks on the event loop).
   */
  flush(all = false, only?: NodeId): void {
    const due = new Map<NodeId, string>();
    for (const id of only === undefined ? this.dirty : [only]) {
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
    this.flush(false, id);
  }
}
