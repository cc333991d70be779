// Who is connected to the coordinator, and when each agent was last heard from. Live state stays
// in memory (and is served over rpc); the root document gets `lastSeen` only on a connect or
// disconnect, at most once per agent per LAST_SEEN_INTERVAL_MS (after a restart, counted from the
// value stored), so a flapping agent cannot grow the root document's history without bound.
//
// Online means heard from recently: a live sync session AND, within ONLINE_WINDOW_MS (or three
// of the ping periods the agent was given, when longer: pingPeriodFor), a ping, a heartbeat, a
// connect, or packets taken in on its session (scan: QUIC's keep-alives count, so an agent at rest
// need not ping; a peer cut off or stopped sends none). A session alone is not enough: a peer cut
// off without closing keeps its QUIC connection for the ~30 s idle timeout, and showed online
// all that time.

import { performance } from 'node:perf_hooks';
import type { NodeId } from '../../sync/ids.js';
import type { VolatileFacts } from '../facts/index.js';
import { PING_INTERVAL_MAX_MS, PING_INTERVAL_MS } from './liveness.js';

/** 10 minutes: a year of hourly flapping stays a few thousand small changes per agent. */
export const LAST_SEEN_INTERVAL_MS = 10 * 60_000;

/**
 * How recently an agent must have been heard from to count as online (or three of its ping
 * periods, when longer). A live agent's session takes in a packet at least every ~5 s (QUIC's
 * keep-alives, or its pings: it pings once its connection was quiet for QUIET_MS), seen by the
 * next scan (SCAN_MS): at most ~7 s apart, so a live agent never goes this long unheard, and a
 * silent one (partition, stopped process) shows offline within 10 s.
 */
export const ONLINE_WINDOW_MS = 10_000;
/** How often the coordinator counts each session's packets (scan): ~1 µs an agent each time. */
export const SCAN_MS = 2000;
/**
 * How long an agent may go without pinging while its connection takes in packets (`quiet` in the
 * ping answer; liveness.ts): its presence is kept by scan, and a restart is still found within
 * QUIET_MS of the last packet. At most PING_INTERVAL_MAX_MS, the longest an agent takes.
 */
export const PING_QUIET_MS = PING_INTERVAL_MAX_MS;

/**
 * Pings a second the coordinator asks of its whole fleet at most. One ping costs it up to ~1 ms
 * of CPU (bench/README.md, `recover`: 0.97 ms, an upper bound), so this keeps liveness under
 * half a core however large the fleet.
 */
export const PING_BUDGET_PER_S = 500;

/**
 * Fleets smaller than this are never asked to ping less because the coordinator is busy: their
 * pings cost it little (200 agents: 100 pings a second), and small fleets keep their period.
 */
export const LOAD_SHED_MIN_AGENTS = 200;
/** The coordinator's event-loop utilization above which it asks for longer ping periods. */
export const LOAD_SHED_FROM = 0.5;
/** At full utilization the period is this many times the fleet-size period (8 s up to 1,000). */
export const LOAD_SHED_MAX_FACTOR = 4;
/** The event-loop utilization is read over windows of this length (see LoadGauge). */
const LOAD_WINDOW_MS = 2000;

/**
 * How many times longer than its fleet-size period an agent is asked to wait between pings while
 * the coordinator is busy: 1 up to LOAD_SHED_FROM utilization, then growing linearly to
 * LOAD_SHED_MAX_FACTOR at 1 (a saturated event loop).
 *
 * Why: pings are the one load a coordinator can turn down without losing anything. A ping costs
 * each side ~0.7-1 ms of CPU in the binding alone (`bench/ping-cost.ts`), and in a fan-in of 1,000
 * agents those already in ping on while the rest start and connect. The agents' liveness rules
 * follow the period they are given (silence counts from when a ping was due, the online window
 * is three periods), and the period is long only while the coordinator is busy: back to normal
 * from each agent's next ping once it is not. The price: a restart while agents are on long
 * periods is found up to one period later, and "online" is coarser while the coordinator is busy
 * (1,000 agents on 2 cores: fan-ins 125-170 s against 160-183 s, recoveries no slower; periods
 * long at rest, or in every storm of connects, lost agents at the recovery's cut-off: scale log,
 * session 26).
 */
export function loadFactor(utilization: number, connected: number): number {
  if (connected < LOAD_SHED_MIN_AGENTS || !(utilization > LOAD_SHED_FROM)) return 1;
  const over = Math.min(1, (utilization - LOAD_SHED_FROM) / (1 - LOAD_SHED_FROM));
  return 1 + over * (LOAD_SHED_MAX_FACTOR - 1);
}

/**
 * The ping period the coordinator asks of each agent (`every` in its `agent.ping` answer) with
 * `connected` agents: PING_INTERVAL_MS up to PING_BUDGET_PER_S x 2 s = 1,000 agents, then
 * growing with the fleet (10,000 agents: 20 s), at most PING_INTERVAL_MAX_MS (past 30,000 agents
 * the budget is exceeded); times loadFactor while the coordinator is busy (`utilization`, 0-1).
 * An agent's online window is three of the periods it was given when longer than
 * ONLINE_WINDOW_MS, so "online" means "heard from within 10 s" up to ~1,700 agents and coarser
 * beyond, or while a busy coordinator sheds pings.
 */
export function pingPeriodFor(connected: number, utilization = 0): number {
  const spread = Math.ceil((connected / PING_BUDGET_PER_S) * 1000);
  const base = Math.max(PING_INTERVAL_MS, spread);
  return Math.min(PING_INTERVAL_MAX_MS, Math.round(base * loadFactor(utilization, connected)));
}

/**
 * The main thread's event-loop utilization (0-1) over the last window of LOAD_WINDOW_MS or more,
 * read lazily (on pings): no timer of its own.
 */
export class LoadGauge {
  private last = performance.eventLoopUtilization();
  private lastAt = performance.now();
  private value = 0;

  utilization(): number {
    const now = performance.now();
    if (now - this.lastAt >= LOAD_WINDOW_MS) {
      const current = performance.eventLoopUtilization();
      this.value = performance.eventLoopUtilization(current, this.last).utilization;
      this.last = current;
      this.lastAt = now;
    }
    return this.value;
  }
}

export class Presence {
  private readonly online = new Set<NodeId>();
  private readonly seen = new Map<NodeId, number>();
  private readonly volatile = new Map<NodeId, VolatileFacts>();
  private readonly written = new Map<NodeId, number>();
  private readonly dirty = new Set<NodeId>();
  /** The ping period each agent was last given, where it is not PING_INTERVAL_MS. */
  private readonly periods = new Map<NodeId, number>();
  /** Packets each connected agent's session had taken in at the last scan. */
  private readonly packets = new Map<NodeId, number>();

  constructor(
    private readonly persist: (entries: ReadonlyMap<NodeId, string>) => void,
    private readonly now: () => number = Date.now,
    /** The coordinator's event-loop utilization (0-1): see loadFactor. */
    private readonly load: Pick<LoadGauge, 'utilization'> = new LoadGauge(),
    /**
     * The lastSeen the root document holds for an agent (ms), if any: a restarted coordinator
     * counts the interval from it. Without it, every agent's reconnect after a restart rewrote
     * its record, ~3 ms of a 1,000-agent root each (7 % of the coordinator's CPU in a recovery).
     */
    private readonly stored: (id: NodeId) => number | undefined = () => undefined,
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
    this.packets.delete(id);
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

  /**
   * A ping: heard from, and told to ping again in `pingPeriodFor` of the agents connected and
   * the coordinator's load.
   */
  pinged(id: NodeId): number {
    this.heard(id);
    const period = pingPeriodFor(this.online.size, this.load.utilization());
    if (period === PING_INTERVAL_MS) this.periods.delete(id);
    else this.periods.set(id, period);
    return period;
  }

  /**
   * Counts packets taken in on each connected agent's session since the last scan as hearing from
   * it (`received`: SyncAdapter.received): the coordinator's SCAN_MS timer. A count that grew says
   * the agent's process is there, whether it pinged or not.
   */
  scan(received: (id: NodeId) => number | undefined): void {
    for (const id of this.online) {
      const count = received(id);
      if (count === undefined || count === this.packets.get(id)) continue;
      this.packets.set(id, count);
      this.heard(id);
    }
  }

  isOnline(id: NodeId): boolean {
    const t = this.seen.get(id);
    const window = Math.max(ONLINE_WINDOW_MS, 3 * (this.periods.get(id) ?? PING_INTERVAL_MS));
    return this.online.has(id) && t !== undefined && this.now() - t <= window;
  }

  /** When the agent was last heard from (online or not). */
  lastSeen(id: NodeId): string | null {
    const t = this.seenAt(id);
    return t === undefined ? null : new Date(t).toISOString();
  }

  /** lastSeen in ms since the epoch; undefined when not heard from since this process began. */
  seenAt(id: NodeId): number | undefined {
    return this.seen.get(id);
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
      if (all || this.now() - this.writtenAt(id) >= LAST_SEEN_INTERVAL_MS) {
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

  /** When the root last got `id`'s lastSeen: here, else as stored (not from the future). */
  private writtenAt(id: NodeId): number {
    const here = this.written.get(id);
    if (here !== undefined) return here;
    const stored = this.stored(id);
    return stored !== undefined && stored <= this.now() ? stored : 0;
  }

  private touch(id: NodeId): void {
    this.seen.set(id, this.now());
    this.dirty.add(id);
    this.flush(false, id);
  }
}
