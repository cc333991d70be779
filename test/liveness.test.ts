// The agent's liveness rule (src/roles/liveness.ts) against a coordinator that is slow, silent or
// restarted, in virtual time: the coordinator is a fake RpcChannel whose answers come after a
// delay the test sets (or never), the sync adapter a fake that records every redial. Real
// coordinators and agents are in test/fleet-liveness.test.ts and test/fleet-restart.test.ts;
// here the point is the rule itself over minutes of (virtual) time, which a real fleet cannot show
// in a test's running time.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FltError } from '../sync/errors.js';
import type { NodeId } from '../sync/ids.js';
import { createLogger } from '../sync/log.js';
import type { RpcChannel } from '../sync/rpc-channel.js';
import type { SyncAdapter } from '../sync/sync-adapter.js';
import type { PacketCounts } from '../sync/transport.js';
import {
  Liveness,
  PING_INTERVAL_MAX_MS,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MAX_MS,
  PING_TIMEOUT_MIN_MS,
  PING_TIMEOUT_UNREACHABLE_MS,
  PingDeadline,
  QUIET_MS,
  SILENCE_DROP_MS,
  UNANSWERED_MS,
} from '../src/roles/liveness.js';

const PEER = 'c'.repeat(64) as NodeId;

/** A coordinator behind a fake RpcChannel: answers `agent.ping` after `delayMs`, or never. */
class FakeCoordinator {
  delayMs = 1;
  silent = false;
  /**
   * Down (killed, not restarted yet): a ping dials and its connect never completes, even if the
   * coordinator is back meanwhile (QUIC resends the first packet late); RpcChannel then fails it
   * with CONNECT_FAILED at the deadline.
   */
  down = false;
  boot = 'boot-1';
  /** The ping period the answers ask for (`every`); undefined: not said, as before it existed. */
  every: number | undefined;
  /** How long the answers let pings be deferred (`quiet`); undefined: not said. */
  quiet: number | undefined;
  /**
   * The connection's packet count (RpcChannel.packets().received), QUIC as the binding runs it: a
   * keep-alive taken in every 5 s from `quicFrom` until the process dies (`quicUntil`), and each
   * answer. Undefined quicFrom: a transport that cannot count.
   */
  quicFrom: number | undefined;
  quicUntil = Infinity;
  /** The deadline of every ping, in order. */
  readonly deadlines: number[] = [];
  /** When each ping was sent (virtual Date.now()). */
  readonly sentAt: number[] = [];
  /**
   * Busy: pings time out, but their connection shows the coordinator's QUIC stack acknowledged
   * them (RpcChannel keeps the connection and sets lastHeard).
   */
  busy = false;
  lastHeard = 0;
  answered = 0;
  timedOut = 0;

  /** Packets taken in: one per QUIC keep-alive while the process lives, one per answer. */
  private received(): number {
    const alive = Math.min(Date.now(), this.quicUntil) - this.quicFrom!;
    return Math.floor(alive / 5_000) + this.answered;
  }

  /** When, after the process died, the agent's own keep-alive goes out (then two resends). */
  ownKeepAliveMs = 5_000;
  /** RpcChannel.packets: sent, one for each taken in while the process lives, then the resends. */
  packets(): PacketCounts | undefined {
    if (this.quicFrom === undefined) return undefined;
    const received = this.received();
    const resends = Date.now() - this.quicUntil >= this.ownKeepAliveMs ? 3 : 0;
    return { received, sent: received + resends };
  }

  call(_method: unknown, _req: unknown, options: { timeoutMs?: number } = {}): Promise<unknown> {
    const timeoutMs = options.timeoutMs!;
    this.deadlines.push(timeoutMs);
    this.sentAt.push(Date.now());
    const { silent, delayMs, boot, every, quiet, down, busy } = this;
    return new Promise((resolve, reject) => {
      if (down) {
        setTimeout(() => reject(new FltError('CONNECT_FAILED', 'not connected')), timeoutMs);
        return;
      }
      // As RpcChannel: the deadline bounds the whole attempt; a late answer is never seen.
      const timer = setTimeout(() => {
        this.timedOut++;
        if (busy) this.lastHeard = Date.now();
        reject(new FltError('TIMEOUT', `agent.ping: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      if (silent || busy) return;
      setTimeout(() => {
        clearTimeout(timer);
        this.answered++;
        resolve({
          boot,
          ...(every === undefined ? {} : { every }),
          ...(quiet === undefined ? {} : { quiet }),
        });
      }, delayMs);
    });
  }
}

/** A sync adapter that has a session from the start and records what liveness asks of it. */
class FakeSync {
  readonly redials: { at: number; reason: string }[] = [];
  openedAt: number | undefined = Date.now();
  sessionOpenedAt(): number | undefined {
    return this.openedAt;
  }
  /** Whether a redial opens a new session at once. */
  opens = true;
  redial(_peer: NodeId, reason: string): void {
    this.redials.push({ at: Date.now(), reason });
    if (this.opens) this.openedAt = Date.now(); // the dial loop opens a new session at once
  }
  /** Every dialNow() call: (when, staleBefore). */
  readonly dialNows: { at: number; staleBefore: number }[] = [];
  dialNow(_peer: NodeId, staleBefore: number): void {
    this.dialNows.push({ at: Date.now(), staleBefore });
  }
}

let coordinator: FakeCoordinator;
let sync: FakeSync;
let stop: AbortController;
let live: Liveness;
let running: Promise<void>;
const lines: string[] = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  coordinator = new FakeCoordinator();
  sync = new FakeSync();
  stop = new AbortController();
  lines.length = 0;
  live = new Liveness(
    coordinator as unknown as RpcChannel,
    sync as unknown as SyncAdapter,
    PEER,
    createLogger('info', 'agent', (l) => lines.push(l)),
    stop.signal,
  );
  running = live.run();
});

afterEach(async () => {
  stop.abort();
  await vi.advanceTimersByTimeAsync(PING_TIMEOUT_MAX_MS + 1_000);
  await running;
  vi.useRealTimers();
});

/** Lets `ms` of virtual time pass, every timer and promise in it running in order. */
const pass = (ms: number) => vi.advanceTimersByTimeAsync(ms);

describe('liveness rule', () => {
  it('a coordinator that answers pings in 2-3 s for a minute does not lose the sync session', async () => {
    await pass(10_000); // healthy: answers at once
    expect(coordinator.answered).toBeGreaterThan(3);
    coordinator.delayMs = 2_500;
    await pass(30_000);
    coordinator.delayMs = 3_000;
    await pass(30_000);
    expect(sync.redials).toEqual([]);
    // The deadline followed the answers (4x, capped), so the slow answers got through.
    expect(Math.max(...coordinator.deadlines)).toBe(PING_TIMEOUT_MAX_MS);
    const answeredBefore = coordinator.answered;
    coordinator.delayMs = 1;
    await pass(60_000);
    expect(coordinator.answered).toBeGreaterThan(answeredBefore);
    // A minute of quick answers later the deadline is back at its floor.
    expect(coordinator.deadlines.at(-1)).toBe(PING_TIMEOUT_MIN_MS);
    expect(sync.redials).toEqual([]);
  });

  it('a coordinator silent beyond the limit makes the agent drop its sync session, once', async () => {
    await pass(10_000);
    coordinator.silent = true;
    const silentFrom = Date.now();
    await pass(SILENCE_DROP_MS - 2_000);
    expect(sync.redials).toEqual([]); // silent, but not for long enough
    expect(lines.join('\n')).toMatch(/did not answer a ping \(TIMEOUT\)/);
    for (let i = 0; i < 60 && sync.redials.length === 0; i++) await pass(1_000);
    expect(sync.redials).toHaveLength(1);
    expect(sync.redials[0]!.reason).toMatch(/^no ping answered for \d+ s: TIMEOUT$/);
    expect(sync.redials[0]!.at - silentFrom).toBeGreaterThanOrEqual(SILENCE_DROP_MS - 2_000);
    await pass(60_000); // still silent: the session is not dropped again and again
    expect(sync.redials).toHaveLength(1);
    coordinator.silent = false;
    await pass(PING_TIMEOUT_MAX_MS + 5_000);
    expect(lines.join('\n')).toMatch(/the coordinator answers again/);
    expect(sync.redials).toHaveLength(1);
  });

  it('a coordinator that acknowledges pings but answers none for a minute (busy) is not silence: no redial, no dial given up', async () => {
    await pass(10_000);
    coordinator.busy = true;
    await pass(60_000);
    expect(coordinator.timedOut).toBeGreaterThan(3);
    expect(sync.redials).toEqual([]);
    expect(lines.join('\n')).not.toMatch(/did not answer a ping/);
    // The deadline grew as for any slow answer, so a coordinator answering in 5 s gets through.
    expect(coordinator.deadlines.at(-1)).toBe(PING_TIMEOUT_MAX_MS);
    coordinator.busy = false;
    coordinator.delayMs = 5_000;
    const answered = coordinator.answered;
    await pass(2 * PING_TIMEOUT_MAX_MS);
    expect(coordinator.answered).toBeGreaterThan(answered);
    expect(sync.redials).toEqual([]);
    expect(sync.dialNows).toEqual([]); // an answer after busy pings gives up no sync dial
  });

  it('a restarted coordinator (new boot) makes the agent redial at once, long before the silence limit', async () => {
    await pass(10_000);
    coordinator.silent = true; // SIGKILL
    await pass(2_000);
    coordinator.silent = false; // the new process is up
    coordinator.boot = 'boot-2';
    const up = Date.now();
    for (let i = 0; i < 60 && sync.redials.length === 0; i++) await pass(250);
    expect(sync.redials.map((r) => r.reason)).toEqual(['the coordinator restarted']);
    expect(sync.redials[0]!.at - up).toBeLessThan(SILENCE_DROP_MS);
    expect(lines.join('\n')).toMatch(/the coordinator restarted; reconnecting/);
  });

  it('pings at the period the coordinator asks for, within bounds', async () => {
    const gaps = (from: number) =>
      coordinator.sentAt.filter((t) => t >= from).map((t, i, all) => (i ? t - all[i - 1]! : 0));
    coordinator.every = 20_000; // a coordinator with 10,000 agents
    await pass(5_000); // the first answers already ask for it
    let from = Date.now();
    await pass(200_000);
    let seen = gaps(from).slice(1);
    expect(seen.length).toBeGreaterThanOrEqual(8);
    for (const gap of seen) expect(gap).toBeGreaterThanOrEqual(20_000);
    for (const gap of seen) expect(gap).toBeLessThanOrEqual(22_000 + 10); // + 10 % jitter
    coordinator.every = 5; // below the floor: PING_INTERVAL_MS
    await pass(25_000);
    from = Date.now();
    await pass(20_000);
    seen = gaps(from).slice(1);
    for (const gap of seen) expect(gap).toBeGreaterThanOrEqual(PING_INTERVAL_MS);
    coordinator.every = 3_600_000; // above the cap: PING_INTERVAL_MAX_MS
    await pass(PING_INTERVAL_MAX_MS);
    from = Date.now();
    await pass(4 * PING_INTERVAL_MAX_MS);
    seen = gaps(from).slice(1);
    for (const gap of seen) expect(gap).toBeGreaterThanOrEqual(PING_INTERVAL_MAX_MS);
    for (const gap of seen) expect(gap).toBeLessThanOrEqual(PING_INTERVAL_MAX_MS * 1.1 + 10);
    expect(sync.redials).toEqual([]);
  });

  it('a long period asked for is not silence: the drop comes the silence limit after a ping was due', async () => {
    coordinator.every = 30_000;
    await pass(5_000);
    const lastSent = coordinator.sentAt.at(-1)!;
    coordinator.silent = true;
    for (let i = 0; i < 120 && sync.redials.length === 0; i++) await pass(1_000);
    expect(sync.redials).toHaveLength(1);
    // The next ping was due 30 s after the last answer; silence counts from there.
    expect(sync.redials[0]!.at - lastSent).toBeGreaterThanOrEqual(30_000 + SILENCE_DROP_MS - 2_000);
  });

  it('a coordinator that answered slowly, then was down, is found soon after it is back: an unreachable one does not grow the deadline', async () => {
    await pass(10_000);
    coordinator.delayMs = 2_500; // slow answers: the deadline grows to its cap
    await pass(20_000);
    expect(coordinator.deadlines.at(-1)).toBe(PING_TIMEOUT_MAX_MS);
    coordinator.down = true; // SIGKILL: every dial from now on hangs until its deadline
    const downFrom = coordinator.deadlines.length;
    await pass(30_000);
    // Pings sent while it cannot be reached (after the first that found it so) wait <= 3 s each.
    const whileDown = coordinator.deadlines.slice(downFrom + 2);
    expect(whileDown.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...whileDown)).toBeLessThanOrEqual(PING_TIMEOUT_UNREACHABLE_MS);
    coordinator.down = false; // restarted, ready
    coordinator.boot = 'boot-2';
    coordinator.delayMs = 1;
    const up = Date.now();
    const answeredBefore = coordinator.answered;
    for (let i = 0; i < 200 && coordinator.answered === answeredBefore; i++) await pass(100);
    // A dial in flight when it came back fails at its (<= 3 s) deadline; the next, after a
    // jittered retry of at most 1 s, reaches it. (Before: that dial waited up to 10 s.)
    expect(coordinator.answered).toBeGreaterThan(answeredBefore);
    expect(Date.now() - up).toBeLessThanOrEqual(PING_TIMEOUT_UNREACHABLE_MS + 1_000 + 100);
    expect(lines.join('\n')).toMatch(/did not answer a ping \(CONNECT_FAILED\)/);
  });

  it('answered pings leave a slow sync dial alone; after failed pings, only dials older than the answered ping are given up', async () => {
    // A coordinator busy accepting hundreds of agents takes seconds per connect; its pings (on
    // an open connection) are answered all along. Giving up the sync dial on each answer kept
    // 500 agents from ever opening their sessions.
    sync.openedAt = undefined; // dialing, no session yet
    await pass(30_000);
    expect(coordinator.answered).toBeGreaterThan(10);
    expect(sync.dialNows).toEqual([]);
    coordinator.silent = true;
    await pass(4_000);
    coordinator.silent = false;
    for (let i = 0; i < 100 && sync.dialNows.length === 0; i++) await pass(100);
    expect(sync.dialNows).toHaveLength(1);
    // Dials begun before the answered ping was sent may be stale (begun while it was away).
    expect(sync.dialNows[0]!.staleBefore).toBeLessThan(sync.dialNows[0]!.at);
    await pass(20_000);
    expect(sync.dialNows).toHaveLength(1);
  });

  it('a restart while answering (no failed ping) also redials', async () => {
    await pass(10_000);
    coordinator.boot = 'boot-2';
    await pass(5_000);
    expect(sync.redials.map((r) => r.reason)).toEqual(['the coordinator restarted']);
  });

  it('answeredAfter: a health check sees a slow coordinator answer', async () => {
    await pass(5_000);
    coordinator.delayMs = 2_500;
    const since = Date.now();
    const ok = live.answeredAfter(since, since + 30_000);
    await pass(30_000);
    await expect(ok).resolves.toBe(true);
    coordinator.silent = true;
    const since2 = Date.now();
    const notOk = live.answeredAfter(since2, since2 + 5_000);
    await pass(6_000);
    await expect(notOk).resolves.toBe(false);
  });
});

describe('pings deferred while the connection takes in packets', () => {
  const pingsIn = async (ms: number) => {
    const before = coordinator.sentAt.length;
    await pass(ms);
    return coordinator.sentAt.length - before;
  };

  it('as long as the coordinator allows, and not at all where it does not say', async () => {
    coordinator.quicFrom = Date.now();
    expect(await pingsIn(20_000)).toBeGreaterThanOrEqual(8); // no `quiet`: every period
    coordinator.quiet = 60_000;
    await pass(3_000); // an answer with `quiet`
    expect(await pingsIn(120_000)).toBeLessThanOrEqual(3); // at most one a minute
    expect(sync.redials).toEqual([]);
    expect(lines.join('\n')).not.toMatch(/did not answer a ping/);
    // A transport that cannot count: every period again.
    coordinator.quicFrom = undefined;
    await pass(61_000);
    expect(await pingsIn(20_000)).toBeGreaterThanOrEqual(8);
  });

  it('a coordinator killed meanwhile is pinged within QUIET_MS of its last packet, and its restart redials', async () => {
    coordinator.quicFrom = Date.now();
    coordinator.quiet = 60_000;
    coordinator.delayMs = 2_500; // slow answers (a busy spell): the deadline grows
    await pass(30_000);
    expect(coordinator.deadlines.at(-1)).toBeGreaterThan(PING_TIMEOUT_MIN_MS);
    const pings = coordinator.sentAt.length;
    coordinator.quicUntil = Date.now(); // SIGKILL: nothing more on the connection
    coordinator.silent = true;
    for (let i = 0; i < 200 && coordinator.sentAt.length === pings; i++) await pass(100);
    expect(coordinator.sentAt.at(-1)! - coordinator.quicUntil).toBeLessThanOrEqual(
      QUIET_MS + 1_000,
    );
    // Gone quiet, it is most likely gone: the old busy spell does not lengthen this deadline.
    expect(coordinator.deadlines.at(-1)).toBe(PING_TIMEOUT_MIN_MS);
    // Gone quiet and unanswered, the connection is dead: the sync session goes at once.
    for (let i = 0; i < 100 && sync.redials.length === 0; i++) await pass(100);
    expect(sync.redials.map((r) => r.reason)).toEqual(['the connection went quiet: TIMEOUT']);
    expect(sync.redials[0]!.at - coordinator.sentAt.at(-1)!).toBe(PING_TIMEOUT_MIN_MS);
    coordinator.silent = false; // the new process is up
    coordinator.boot = 'boot-2';
    coordinator.delayMs = 1;
    const answered = coordinator.answered;
    for (let i = 0; i < 100 && coordinator.answered === answered; i++) await pass(100);
    expect(lines.join('\n')).toMatch(/the coordinator restarted; reconnecting/);
    // The session it answers on is already the new process's: not dropped again.
    expect(sync.redials).toHaveLength(1);
  });

  it('after a quiet connection failed, the next ping waits for the new sync session, a while', async () => {
    coordinator.quicFrom = Date.now();
    coordinator.quiet = 60_000;
    await pass(10_000);
    coordinator.quicUntil = Date.now();
    coordinator.silent = true;
    sync.opens = false; // the redial does not get through yet
    for (let i = 0; i < 200 && sync.redials.length === 0; i++) await pass(100);
    const dropped = sync.redials[0]!.at;
    const failed = coordinator.sentAt.length;
    await pass(PING_TIMEOUT_UNREACHABLE_MS - 200);
    expect(coordinator.sentAt.length).toBe(failed); // no ping of its own while the session may come
    sync.openedAt = Date.now(); // the new session is up
    coordinator.silent = false;
    await pass(200);
    expect(coordinator.sentAt.length).toBe(failed + 1);
    expect(coordinator.sentAt.at(-1)! - dropped).toBeLessThan(PING_TIMEOUT_UNREACHABLE_MS);
    // Without a session after the wait, pings go on as before (dialing their own connection).
    coordinator.quicUntil = Infinity;
    coordinator.quicFrom = Date.now();
    await pass(20_000);
    coordinator.quicUntil = Date.now();
    coordinator.silent = true;
    const before = sync.redials.length;
    for (let i = 0; i < 200 && sync.redials.length === before; i++) await pass(100);
    const pings = coordinator.sentAt.length;
    await pass(PING_TIMEOUT_UNREACHABLE_MS + 2_000);
    expect(coordinator.sentAt.length).toBeGreaterThan(pings);
  });

  it('a connection whose own keep-alive goes unanswered is pinged sooner', async () => {
    coordinator.quicFrom = Date.now();
    coordinator.quiet = 60_000;
    await pass(30_000); // just past a keep-alive taken in
    const pings = coordinator.sentAt.length;
    coordinator.quicUntil = Date.now();
    coordinator.ownKeepAliveMs = 500;
    coordinator.silent = true;
    for (let i = 0; i < 200 && coordinator.sentAt.length === pings; i++) await pass(100);
    const after = coordinator.sentAt.at(-1)! - coordinator.quicUntil;
    expect(after).toBeLessThan(QUIET_MS);
    expect(after).toBeLessThanOrEqual(UNANSWERED_MS + 1_000);
    expect(coordinator.deadlines.at(-1)).toBe(PING_TIMEOUT_MIN_MS);
  });

  it('a health check still gets a ping at once', async () => {
    coordinator.quicFrom = Date.now();
    coordinator.quiet = 60_000;
    await pass(10_000);
    const since = Date.now();
    const ok = live.answeredAfter(since, since + 1_000);
    await pass(1_000);
    await expect(ok).resolves.toBe(true);
  });
});

describe('PingDeadline', () => {
  it('is 4x the slowest recent answer, floored and capped, and doubles after a timeout', () => {
    const d = new PingDeadline();
    expect(d.current()).toBe(PING_TIMEOUT_MIN_MS);
    d.answered(5);
    expect(d.current()).toBe(PING_TIMEOUT_MIN_MS);
    d.answered(1_000);
    expect(d.current()).toBe(4_000);
    d.answered(5_000);
    expect(d.current()).toBe(PING_TIMEOUT_MAX_MS);
    for (let i = 0; i < 8; i++) d.answered(10); // the slow answers leave the window
    expect(d.current()).toBe(PING_TIMEOUT_MIN_MS);
    d.missed(PING_TIMEOUT_MIN_MS);
    expect(d.current()).toBe(2 * PING_TIMEOUT_MIN_MS);
    d.missed(d.current());
    expect(d.current()).toBe(4 * PING_TIMEOUT_MIN_MS);
    d.missed(d.current());
    expect(d.current()).toBe(PING_TIMEOUT_MAX_MS);
    d.answered(10);
    expect(d.current()).toBe(PING_TIMEOUT_MIN_MS);
  });
});
