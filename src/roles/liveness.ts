// An agent's liveness check of its coordinator: a small `agent.ping` rpc every PING_INTERVAL_MS
// while the connection is quiet, independent of --facts-interval. QUIC tells a node that its peer
// is gone only at the idle timeout (about 30 s; the iroh Node binding has no setting for it), and
// a coordinator restarted on the same address does not end its predecessor's connections either.
//
// Quiet pings: QUIC's keep-alives (every 5 s without traffic, from either side, acknowledged by
// the other side's QUIC stack, not its application) keep a live coordinator's connection taking
// in packets, and a killed or restarted one's stops. So, where the coordinator allows it (`quiet`
// in its answer: it then counts packets on the session as hearing from the agent, presence.ts
// scan), the next ping waits while the connection's packet count grows (RpcChannel.packets), up
// to `quiet` after the last answer; it goes once the count stood still for QUIET_MS (or for
// UNANSWERED_MS after the agent's own packets went unacknowledged), with the shortest deadline,
// and if that one fails too the connection is dead: the sync session is redialed at once and the
// next ping waits a little for it (one handshake, not an rpc connection and then a session). At
// rest that is no ping at all on most minutes, which at 1,000 agents was half of the
// coordinator's CPU and most of the agents' (scale log, session 27).
//
// - A ping that fails on its connection drops it (RpcChannel does on any transport failure), and
//   the next ping, after a short bounded backoff, dials again (one dial at a time, see below).
// - Every answer names the coordinator process (`boot`). An answer from a new process means the
//   sync session, if older than that process's first answer, is dead: it is dropped and redialed
//   at once. This is how a restart is found without waiting for anything to time out twice.
// - The sync session is dropped for silence only after SILENCE_DROP_MS without an answered ping
//   (the coordinator is down or cut off), and when pings are answered again any sync dial begun
//   before is restarted.
//
// Why time and an adaptive deadline, not "2 pings of 1.5 s" (as before): a coordinator busy with
// a fan-in of 500 agents blocked its event loop for 2-4 s at a time; every agent's pings missed
// their 1.5 s, all 500 dropped their sync sessions within seconds, and each drop and redial cost
// the coordinator a removePeer and an addPeer over every document and a resync: the churn fed
// itself and no agent got into the table (issue 13, notes in issue13-fanin.md). A slow answer is
// an answer. So:
// - A ping's deadline (connecting included: a blocked coordinator does not accept either) is 4x
//   the slowest of the last RTT_WINDOW answered round trips, at least PING_TIMEOUT_MIN_MS and at
//   most PING_TIMEOUT_MAX_MS. After a ping that timed out, the next one gets at least twice that
//   deadline: a timeout says the answer takes longer, and without it a coordinator whose answers
//   all take 2 s would never answer within 1.5 s and never be measured. Answered pings bring it
//   back down (the window forgets a busy spell after RTT_WINDOW pings, ~16 s).
// - A ping that timed out although its connection took in packets since it was sent (the
//   coordinator's QUIC stack acknowledged it: RpcChannel.lastHeard) says "busy": the connection
//   is kept, it is not silence, nothing is redialed. Before, every slow ping of a 1,000-agent
//   fan-in cost a reconnect, those connects failed for 15 s at a coordinator busy with
//   handshakes, and the agents dropped their sync sessions too (issue 13: 215 slow pings, 154
//   sessions dropped). A process killed or restarted sends nothing on the old connection.
// - Any other missed ping costs an rpc reconnect (the old connection may be dead: a restart), which
//   is how restarts stay fast to find: the first ping after a SIGKILL fails within the deadline
//   (1.5 s for a coordinator that answered quickly), the next ones dial again, and the first
//   answer from the new process (new `boot`) redials the sync session at once, whatever the
//   silence. Only a ping that timed out on a connection grows the deadline: one whose connect did
//   not complete (CONNECT_FAILED: the coordinator is down, or does not accept) keeps it at most
//   PING_TIMEOUT_UNREACHABLE_MS (3 s), so a connect that completes is used within seconds. The
//   dial itself is not renewed with each ping: RpcChannel keeps a connect in flight across
//   pings until the channel's own timeout (rpc_timeout, 10 s). A dial begun while the coordinator
//   is down reaches the new process when QUIC resends its first packet (backoff: ~1, 3, 7 s
//   after the start), or when it is renewed. Renewed with every ping (every 3-4 s, as before),
//   500 agents kept a restarted coordinator busy with handshakes nobody waited for any more (the
//   binding cannot cancel a dial), and 346 of them had no ping answered for 15 s (issue 13).
// - The sync session itself goes only after SILENCE_DROP_MS (15 s) with no answered ping: long
//   enough for several blocked stretches of a saturated coordinator, still half of QUIC's idle
//   timeout, so a coordinator that vanished without restarting (partition, a new address) is
//   redialed well before QUIC would notice.
// The coordinator counts each ping as "heard from" (Presence), and its answer says when to ping
// next (`every`): PING_INTERVAL_MS up to 1,000 connected agents, longer beyond, so that a fleet
// of any size sends it a bounded number of pings a second, and up to 4x longer while the
// coordinator is busy (presence.ts, pingPeriodFor and loadFactor). The silence rule counts from
// when a ping was due, so a long period does not look like silence.

import { backoffDelay, type BackoffPolicy } from '../../sync/backoff.js';
import { FltError, NO_ANSWER, isProgrammingError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import type { RpcChannel } from '../../sync/rpc-channel.js';
import type { PacketCounts } from '../../sync/transport.js';
import type { SyncAdapter } from '../../sync/sync-adapter.js';
import { agentPing } from '../rpc-methods.js';

/**
 * Between two pings of a healthy coordinator (plus up to 10 % jitter, so that a fleet started
 * at once does not ping in step). At 5,000 agents that is ~2,400 empty rpcs a second at the
 * coordinator.
 */
export const PING_INTERVAL_MS = 2000;
/**
 * The longest ping period a coordinator may ask for (`every` in its answer, see pingPeriodFor in
 * presence.ts): a larger value from a coordinator is taken as this, a smaller one as
 * PING_INTERVAL_MS.
 */
export const PING_INTERVAL_MAX_MS = 60_000;
/**
 * The shortest ping deadline, connecting included: generous against a round trip (loopback: under
 * 1 ms; relayed across continents: a few hundred ms), short against the 30 s idle timeout. With
 * PING_INTERVAL_MS, a restart of a coordinator that answered quickly is noticed within 3.7 s.
 */
export const PING_TIMEOUT_MIN_MS = 1500;
/** The longest ping deadline (see the header): a coordinator blocked for 2-4 s gets its pings in. */
export const PING_TIMEOUT_MAX_MS = 10_000;
/**
 * The longest deadline while the coordinator cannot be reached (a ping's connect did not
 * complete, or failed): the next ping, which waits for the same connect (RpcChannel), follows
 * soon, so a connect that completes is used within seconds. Twice the floor: room for a slow
 * (relayed) handshake.
 */
export const PING_TIMEOUT_UNREACHABLE_MS = 2 * PING_TIMEOUT_MIN_MS;
/** The deadline is this many times the slowest recent answer. */
const RTT_FACTOR = 4;
/** How many answered pings count as "recent" (about 16 s at PING_INTERVAL_MS). */
const RTT_WINDOW = 8;
/**
 * Retries while the coordinator does not answer: 100 ms doubling to 1 s, so that a connection
 * that is back (or a connect that completed) is used within about a second.
 */
const RETRY: BackoffPolicy = { initialMs: 100, maxMs: 1000 };

/**
 * A connection that took in no packet for this long gets a ping, whatever the coordinator allows
 * (`quiet`). QUIC's keep-alives (every 5 s in the binding, from either side, each acknowledged)
 * keep a live coordinator's connection from going quieter than ~5 s plus a round trip; a
 * coordinator killed or restarted sends nothing more on it.
 */
export const QUIET_MS = 6000;
/**
 * Sooner than QUIET_MS, a connection that sent UNANSWERED_PACKETS packets since it last took one
 * in, and took none for this long, gets a ping: its own keep-alive (or more) went unacknowledged.
 * A live peer acknowledges within a round trip; an agent at rest sends one packet for each it
 * takes in (an acknowledgement of the coordinator's keep-alive, or a keep-alive of its own).
 */
export const UNANSWERED_MS = 1500;
const UNANSWERED_PACKETS = 2;
/** How often a deferred ping looks at the connection's packet counts. */
const QUIET_SAMPLE_MS = 1000;
/** How often a ping waiting for a new sync session looks for it. */
const SESSION_POLL_MS = 100;

/**
 * Without an answered ping for this long (the coordinator is down or cut off), the sync session
 * is dropped and redialed. Not a count of failed pings: deadlines grow (above), and a coordinator
 * that is only slow must not lose every agent's session at once.
 */
export const SILENCE_DROP_MS = 15_000;

/**
 * A ping's deadline from the round trips of recent answered pings (see the header). Pure state,
 * no clock: `answered` and `missed` are told each outcome.
 */
export class PingDeadline {
  private readonly rtts: number[] = [];
  /** The deadline of the previous ping if it went unanswered, else 0. */
  private missedAfter = 0;
  /** The previous ping could not connect: the coordinator is unreachable, not slow. */
  private unreached = false;

  /** The deadline for the next ping, ms. */
  current(): number {
    const slowest = this.rtts.reduce((a, b) => Math.max(a, b), 0);
    const wanted = Math.max(RTT_FACTOR * slowest, 2 * this.missedAfter, PING_TIMEOUT_MIN_MS);
    const cap = this.unreached ? PING_TIMEOUT_UNREACHABLE_MS : PING_TIMEOUT_MAX_MS;
    return Math.min(cap, Math.ceil(wanted));
  }

  answered(rttMs: number): void {
    this.rtts.push(Math.max(0, rttMs));
    if (this.rtts.length > RTT_WINDOW) this.rtts.shift();
    this.missedAfter = 0;
    this.unreached = false;
  }

  /** Connected, but no answer within `deadlineMs`: slow (or gone), the next one waits longer. */
  missed(deadlineMs: number): void {
    this.missedAfter = deadlineMs;
    this.unreached = false;
  }

  /**
   * Not connected within the deadline, or the connect failed: a longer deadline would only keep
   * a stale dial waiting, so the next ones stay at most PING_TIMEOUT_UNREACHABLE_MS.
   */
  unreachable(): void {
    this.unreached = true;
  }
}

export class Liveness {
  /** The coordinator process that answered last. */
  private boot: string | undefined;
  /** When the current run of failed pings began (Date.now()); 0 while pings are answered. */
  private silentSince = 0;
  /** When the newest answer arrived (Date.now()); the start of run() before the first. */
  private lastAnswer = 0;
  /** The next ping's deadline, from recent round trips. */
  private readonly deadline = new PingDeadline();
  /** When the newest answered ping was sent (Date.now()); 0 before the first answer. */
  private answeredSent = 0;
  /** Who waits for an answer (answeredAfter), told on each one. */
  private readonly waiters = new Set<() => void>();
  /** Set by answeredAfter: the next ping goes out now, not after the pause. */
  private pingSoon = false;
  /** Ends the pause between two pings early (set while pausing). */
  private wakePause: (() => void) | undefined;
  /** Between two answered pings: what the coordinator asked for last (`every`). */
  private period = PING_INTERVAL_MS;
  /** How long pings may be deferred while the connection takes in packets (`quiet`; 0: never). */
  private quiet = 0;
  /** Set by whileHeard when it ended for a connection gone quiet. */
  private wentQuiet = false;
  /** The connection's packet counts (RpcChannel.packets) when `received` last changed, and when. */
  private seen: { counts: PacketCounts | undefined; at: number } = { counts: undefined, at: 0 };

  constructor(
    private readonly rpc: RpcChannel,
    private readonly sync: SyncAdapter,
    private readonly peer: NodeId,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
    /**
     * Told when the coordinator answers again after failed pings, or a new coordinator process
     * answers (the agent's deployer retries a fetch that found it unreachable).
     */
    private readonly onReconnect?: () => void,
  ) {
    signal.addEventListener('abort', () => this.wakePause?.(), { once: true });
  }

  /** Pings until `signal` aborts. Rejects only on a programming error. */
  async run(): Promise<void> {
    let failures = 0;
    /** Pings in a row that timed out but were acknowledged: a busy coordinator, not a gone one. */
    let slow = 0;
    /** Whether the sync session was dropped in this run of failed pings. */
    let dropped = false;
    /** After a quiet connection failed its ping: wait this long for the new sync session. */
    let sessionAfter = 0;
    this.lastAnswer = Date.now(); // enrolled: the coordinator has just answered
    while (!this.signal.aborted) {
      // (Not while answeredAfter wants a ping: pause() would not wait, and this would spin.)
      if (
        !this.pingSoon &&
        Date.now() < sessionAfter + PING_TIMEOUT_UNREACHABLE_MS &&
        !this.sessionSince(sessionAfter)
      ) {
        await this.pause(SESSION_POLL_MS);
        continue;
      }
      this.pingSoon = false;
      const sent = Date.now();
      // A connection gone quiet (whileHeard) has lost QUIC's keep-alives too: the coordinator is
      // most likely gone, and the answers of a busy spell long ago say nothing about that.
      const quiet = this.wentQuiet;
      const timeoutMs = quiet ? PING_TIMEOUT_MIN_MS : this.deadline.current();
      this.wentQuiet = false;
      const answer = await this.ping(timeoutMs);
      if (this.signal.aborted) return;
      if (typeof answer === 'object') {
        this.lastAnswer = Date.now();
        this.deadline.answered(this.lastAnswer - sent);
        this.answered(answer.boot, failures, sent);
        this.period = periodOf(answer.every);
        this.quiet = quietOf(answer.quiet);
        this.seen = { counts: this.rpc.packets(), at: this.lastAnswer };
        failures = 0;
        slow = 0;
        dropped = false;
        await this.pause(this.period * (1 + 0.1 * Math.random()));
        await this.whileHeard(this.lastAnswer + this.quiet);
        continue;
      }
      if (answer === 'TIMEOUT' && this.rpc.lastHeard >= sent) {
        // Acknowledged but not answered (RpcChannel kept the connection): the coordinator is
        // there and busy. Not silence, and nothing to redial; only a longer deadline.
        this.deadline.missed(timeoutMs);
        if (slow++ === 0) this.log.debug('the coordinator is slow to answer pings (busy)');
        await this.pause(backoffDelay(RETRY, slow - 1));
        continue;
      }
      slow = 0;
      // Only a timeout on a connection says "slow"; a lost connection says nothing about the
      // time; a connect that did not complete says "unreachable" (down, or not accepting).
      if (answer === 'TIMEOUT') this.deadline.missed(timeoutMs);
      else if (answer === 'CONNECT_FAILED') this.deadline.unreachable();
      if (failures++ === 0) {
        this.silentSince = sent;
        this.log.info(`the coordinator did not answer a ping (${answer}); reconnecting`);
      }
      // Counted from the answer before, less the part of a longer period the coordinator asked
      // for: silence is what passes after a ping was due.
      const heard = Math.max(this.lastAnswer, this.rpc.lastHeard, this.seen.at);
      const silentMs = Date.now() - heard - (this.period - PING_INTERVAL_MS);
      if (!dropped && quiet) {
        // No packet in for QUIET_MS (or UNANSWERED_MS after ours went unacknowledged), then no
        // answer: the connection is dead (the coordinator was killed, restarted, or cut off). The
        // sync session goes now, and the next ping waits for its successor (at most
        // PING_TIMEOUT_UNREACHABLE_MS) instead of dialing a connection of its own: one handshake
        // per agent after a restart, not two.
        dropped = true;
        sessionAfter = Date.now();
        this.sync.redial(this.peer, `the connection went quiet: ${answer}`);
      } else if (!dropped && silentMs >= SILENCE_DROP_MS) {
        dropped = true;
        const s = Math.round(silentMs / 1000);
        this.sync.redial(this.peer, `no ping answered for ${s} s: ${answer}`);
      }
      await this.pause(backoffDelay(RETRY, failures - 1));
    }
  }

  /**
   * Defers the next ping while the connection keeps taking in packets, until `until` at the
   * latest: a count that grew within QUIET_MS says the process that answered the last ping is
   * there (a restarted coordinator cannot answer on its predecessor's connection), as an answer
   * would. Packets of ours left unacknowledged for UNANSWERED_MS end the wait sooner. Returns at
   * once without a count to look at, or when answeredAfter wants a ping.
   */
  private async whileHeard(until: number): Promise<void> {
    for (;;) {
      if (this.signal.aborted || this.pingSoon) return;
      const now = Date.now();
      const counts = this.rpc.packets();
      if (counts === undefined) return;
      if (counts.received !== this.seen.counts?.received) this.seen = { counts, at: now };
      if (now >= until) return;
      const quietMs = now - this.seen.at;
      const unanswered = counts.sent - (this.seen.counts?.sent ?? Infinity) >= UNANSWERED_PACKETS;
      if (quietMs >= QUIET_MS || (unanswered && quietMs >= UNANSWERED_MS)) {
        this.wentQuiet = true;
        return;
      }
      await this.pause(Math.min(QUIET_SAMPLE_MS, until - now));
    }
  }

  /** Whether a sync session with the coordinator opened after `t` (Date.now()) is up. */
  private sessionSince(t: number): boolean {
    return (this.sync.sessionOpenedAt(this.peer) ?? -Infinity) > t;
  }

  /**
   * Sleeps `ms` between pings, or less when answeredAfter wants a ping sent after its call: a
   * health budget shorter than PING_INTERVAL_MS (deploy_health_timeout may be 1 s) would else
   * often see no ping at all and fail a healthy deployment.
   */
  private pause(ms: number): Promise<void> {
    if (this.pingSoon || this.signal.aborted) return Promise.resolve();
    // A timer alone (the stop reaches it through wakePause, see the constructor): an agent at
    // rest pauses once a second, and an AbortController with its listeners per pause cost more
    // than the timer (a profile of the bench's agents in a recovery of 1,000, session 28).
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.wakePause === wake) this.wakePause = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakePause = wake;
    });
  }

  /**
   * Resolves true once a ping sent at or after `since` (epoch ms) has been answered, false at
   * `deadlineMs`: the health check's "the coordinator answers again after the activation". A new
   * process's first answers count (a restarted agent has no older ones). Rejects (ABORTED) when
   * pinging stops or `signal` aborts: stopping is no answer either way.
   */
  answeredAfter(since: number, deadlineMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.answeredSent >= since) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const done = (ok: boolean | Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        this.signal.removeEventListener('abort', stop);
        signal?.removeEventListener('abort', stop);
        if (ok instanceof Error) reject(ok);
        else resolve(ok);
      };
      const check = () => {
        if (this.answeredSent >= since) done(true);
      };
      const stop = () => done(new FltError('ABORTED', 'stopped waiting for the coordinator'));
      const timer = setTimeout(() => done(false), Math.max(0, deadlineMs - Date.now()));
      if (this.signal.aborted || signal?.aborted) return stop();
      this.signal.addEventListener('abort', stop);
      signal?.addEventListener('abort', stop);
      this.waiters.add(check);
      this.pingSoon = true;
      this.wakePause?.();
    });
  }

  private answered(boot: string | undefined, failures: number, sent: number): void {
    this.answeredSent = Math.max(this.answeredSent, sent);
    for (const check of [...this.waiters]) check();
    const previous = this.boot;
    const opened = this.sync.sessionOpenedAt(this.peer);
    if (boot !== undefined && previous !== undefined && boot !== previous) {
      this.log.info('the coordinator restarted; reconnecting');
      // A session opened once the old process had gone silent is already the new one's.
      if (opened === undefined || failures === 0 || opened <= this.silentSince)
        this.sync.redial(this.peer, 'the coordinator restarted');
    } else if (failures > 0) {
      this.log.info('the coordinator answers again', { after: failures });
    }
    // A sync dial begun while the coordinator was away may wait seconds more for QUIC to resend:
    // after failures, any dial older than this ping is such a dial. Without failures there is
    // none: the coordinator was reachable all along (a restart between two pings is the `boot`
    // case above), and a dial in flight is only slow. Giving those up on every answered ping
    // (older than one deadline, 1.5 s) kept all 500 agents of a fan-in from ever opening their
    // sync sessions while the coordinator took seconds to accept connections (issue 13).
    if (failures > 0) this.sync.dialNow(this.peer, sent);
    const restarted = boot !== undefined && previous !== undefined && boot !== previous;
    if (boot !== undefined) this.boot = boot;
    this.silentSince = 0;
    if (failures > 0 || restarted) this.onReconnect?.();
  }

  /** The answer (an empty one from an error answer: alive), or the failure's code. */
  private async ping(timeoutMs: number): Promise<Partial<PingAnswer> | string> {
    try {
      return await this.rpc.call(agentPing, {}, { timeoutMs });
    } catch (err) {
      // Any answer but silence, even an error, proves it alive.
      if (err instanceof FltError && NO_ANSWER.has(err.code)) return err.code;
      if (isProgrammingError(err)) throw err;
      return {}; // an error answer (unknown method, not enrolled): alive
    }
  }
}

type PingAnswer = ReturnType<typeof agentPing.response>;

/** The pause a coordinator asked for, within bounds; PING_INTERVAL_MS from one that did not say. */
function periodOf(every: number | undefined): number {
  if (every === undefined) return PING_INTERVAL_MS;
  return Math.min(PING_INTERVAL_MAX_MS, Math.max(PING_INTERVAL_MS, every));
}

/** How long a coordinator lets pings be deferred (`quiet`), bounded; 0 from one that did not say. */
function quietOf(quiet: number | undefined): number {
  return Math.min(PING_INTERVAL_MAX_MS, Math.max(0, quiet ?? 0));
}
