// The coordinator's side of liveness at fleet sizes a test cannot run: the ping period it asks
// of each agent from the number connected, the online window that follows it, and packets on an
// agent's session counting as hearing from it (virtual clock).

import { describe, expect, it } from 'vitest';
import type { NodeId } from '../sync/ids.js';
import { PING_INTERVAL_MAX_MS, PING_INTERVAL_MS } from '../src/roles/liveness.js';
import {
  LOAD_SHED_FROM,
  LOAD_SHED_MAX_FACTOR,
  LOAD_SHED_MIN_AGENTS,
  LoadGauge,
  ONLINE_WINDOW_MS,
  PING_BUDGET_PER_S,
  Presence,
  loadFactor,
  pingPeriodFor,
} from '../src/roles/presence.js';

const id = (i: number) => i.toString(16).padStart(64, '0') as NodeId;
/** A coordinator load set by the test (event-loop utilization, 0-1). */
const loadOf = (get: () => number) => ({ utilization: get });
const idle = loadOf(() => 0);

describe('ping period', () => {
  it('is PING_INTERVAL_MS up to the budget, then keeps the fleet at the budget, capped', () => {
    expect(pingPeriodFor(0)).toBe(PING_INTERVAL_MS);
    expect(pingPeriodFor(1_000)).toBe(PING_INTERVAL_MS);
    expect(pingPeriodFor(1_001)).toBeGreaterThan(PING_INTERVAL_MS);
    expect(pingPeriodFor(10_000)).toBe(20_000);
    // Pings a second from the whole fleet stay within the budget until the cap.
    for (const n of [2_000, 5_000, 10_000, 30_000]) {
      expect(n / (pingPeriodFor(n) / 1000)).toBeLessThanOrEqual(PING_BUDGET_PER_S);
    }
    expect(pingPeriodFor(100_000)).toBe(PING_INTERVAL_MAX_MS);
  });

  it('an agent is online for three of the periods it was given', () => {
    let now = 1_000_000;
    const presence = new Presence(
      () => undefined,
      () => now,
      idle,
    );
    const many = 5_000; // period 10 s
    for (let i = 0; i < many; i++) presence.connected(id(i));
    const period = presence.pinged(id(1));
    expect(period).toBe(pingPeriodFor(many));
    now += 3 * period - 1;
    expect(presence.isOnline(id(1))).toBe(true);
    // An agent that was never pinged has the window of a small fleet.
    expect(3 * period).toBeGreaterThan(ONLINE_WINDOW_MS);
    expect(presence.isOnline(id(2))).toBe(false);
    now += 2;
    expect(presence.isOnline(id(1))).toBe(false);
    // In a small fleet again, the next ping gives the default period and window back.
    for (let i = 3; i < many; i++) presence.disconnected(id(i));
    expect(presence.pinged(id(1))).toBe(PING_INTERVAL_MS);
    now += ONLINE_WINDOW_MS;
    expect(presence.isOnline(id(1))).toBe(true);
    now += 1;
    expect(presence.isOnline(id(1))).toBe(false);
  });
});

describe('ping period under load', () => {
  it('grows with the utilization past half, up to the factor, in fleets large enough', () => {
    const n = 1_000;
    expect(loadFactor(LOAD_SHED_FROM, n)).toBe(1);
    expect(loadFactor(0.75, n)).toBeCloseTo(1 + (LOAD_SHED_MAX_FACTOR - 1) / 2);
    expect(loadFactor(1, n)).toBe(LOAD_SHED_MAX_FACTOR);
    expect(loadFactor(Number.NaN, n)).toBe(1);
    expect(pingPeriodFor(n, 1)).toBe(LOAD_SHED_MAX_FACTOR * PING_INTERVAL_MS);
    expect(pingPeriodFor(30_000, 1)).toBe(PING_INTERVAL_MAX_MS);
    // A small fleet's pings cost little: its period stays, however busy.
    expect(pingPeriodFor(LOAD_SHED_MIN_AGENTS - 1, 1)).toBe(PING_INTERVAL_MS);
  });

  it('a busy coordinator gives longer periods and windows, and short ones again when idle', () => {
    let now = 1_000_000;
    let utilization = 1;
    const presence = new Presence(
      () => undefined,
      () => now,
      loadOf(() => utilization),
    );
    for (let i = 0; i < 1_000; i++) presence.connected(id(i));
    const busy = presence.pinged(id(1));
    expect(busy).toBe(LOAD_SHED_MAX_FACTOR * PING_INTERVAL_MS);
    // Online for three of the long periods it was given: a shed ping is not silence.
    now += 3 * busy - 1;
    expect(presence.isOnline(id(1))).toBe(true);
    utilization = 0.2;
    expect(presence.pinged(id(1))).toBe(PING_INTERVAL_MS);
    now += ONLINE_WINDOW_MS + 1;
    expect(presence.isOnline(id(1))).toBe(false);
  });
});

describe('packets on a session', () => {
  it('count as hearing from an agent that does not ping; a count standing still does not', () => {
    let now = 1_000_000;
    const presence = new Presence(
      () => undefined,
      () => now,
      idle,
    );
    const counts = new Map<NodeId, number>([
      [id(1), 10],
      [id(2), 10],
    ]);
    const received = (a: NodeId) => counts.get(a);
    presence.connected(id(1));
    presence.connected(id(2));
    presence.connected(id(3)); // a transport that cannot count: heard by pings only
    presence.scan(received);
    for (let t = 0; t < 60_000; t += 2_000) {
      now += 2_000;
      counts.set(id(1), counts.get(id(1))! + 1); // its keep-alives
      presence.scan(received);
    }
    expect(presence.isOnline(id(1))).toBe(true);
    expect(presence.lastSeen(id(1))).toBe(new Date(now).toISOString());
    expect(presence.isOnline(id(2))).toBe(false);
    expect(presence.isOnline(id(3))).toBe(false);
    expect(presence.lastSeen(id(2))).toBe(new Date(1_000_000).toISOString());
    // Packets again: heard again. Disconnected: no longer counted, whatever its count does.
    counts.set(id(2), 11);
    presence.scan(received);
    expect(presence.isOnline(id(2))).toBe(true);
    presence.disconnected(id(1));
    now += 2_000;
    counts.set(id(1), counts.get(id(1))! + 1);
    presence.scan(received);
    expect(presence.lastSeen(id(1))).toBe(new Date(now - 2_000).toISOString());
    expect(presence.isOnline(id(1))).toBe(false);
  });
});

describe('load gauge', () => {
  it('reads a blocked event loop as busy and a waiting one as idle', async () => {
    const gauge = new LoadGauge();
    const until = performance.now() + 2_100; // one window, the loop never yielding
    while (performance.now() < until);
    expect(gauge.utilization()).toBeGreaterThan(0.9);
    await new Promise((resolve) => setTimeout(resolve, 2_100)); // one window, the loop waiting
    expect(gauge.utilization()).toBeLessThan(LOAD_SHED_FROM);
  });
});

describe('lastSeen writes', () => {
  it('a connect or disconnect writes its own agent when due, and a mass disconnect stays linear', () => {
    let now = 1_000_000;
    let clockReads = 0; // the pending-write check reads the clock once per agent it looks at
    const writes: string[][] = [];
    const presence = new Presence(
      (due) => writes.push([...due.keys()]),
      () => (clockReads++, now),
      idle,
    );
    const n = 5_000;
    for (let i = 0; i < n; i++) presence.connected(id(i));
    expect(writes).toHaveLength(n); // the first connect of each is written at once
    now += 1_000;
    clockReads = 0;
    for (let i = 0; i < n; i++) presence.disconnected(id(i));
    expect(writes).toHaveLength(n); // within the interval: nothing written, all pending
    // Scanning every pending agent on each disconnect read the clock n²/2 times (12.5 million).
    expect(clockReads).toBeLessThan(10 * n);
    now += 10 * 60_000;
    presence.flush();
    expect(writes.at(-1)).toHaveLength(n); // the timer's flush writes every pending one
  });

  it('after a restart, the interval counts from the lastSeen the root document holds', () => {
    const now = 1_000_000_000;
    const writes: string[][] = [];
    const stored = new Map<NodeId, number>([
      [id(1), now - 60_000], // written a minute before the restart
      [id(2), now - 11 * 60_000], // long enough ago
      [id(3), now + 3_600_000], // from a clock that was ahead: not trusted
    ]);
    const presence = new Presence(
      (due) => writes.push([...due.keys()]),
      () => now,
      idle,
      (agent) => stored.get(agent),
    );
    for (const i of [1, 2, 3, 4]) presence.connected(id(i));
    expect(writes.flat().sort()).toEqual([id(2), id(3), id(4)].sort());
    // Still pending: the root gets it once due, or at the coordinator's stop.
    presence.flush(true);
    expect(writes.at(-1)).toEqual([id(1)]);
  });
});
