// src/artifacts/lanes.ts: push and fetch run `parallel` lanes over one connection, at most one
// of them on a big path (the bindings copy bytes on one thread: big paths side by side only slow
// each other down), the others on small paths; every path is taken exactly once.

import { describe, expect, it } from 'vitest';
import { BIG_PATH, runLanes } from '../src/artifacts/lanes.js';

const item = (name: string, narSize: number) => ({ name, narSize });
const ITEMS = [
  item('big1', 64 * BIG_PATH),
  item('s1', 10),
  item('big2', 2 * BIG_PATH),
  item('s2', BIG_PATH - 1),
  item('big3', BIG_PATH),
  item('s3', 1000),
];

/** Runs the lanes with a work function that yields a few times per item; records overlap. */
async function trace(parallel: number, stopAt?: string) {
  const started: string[] = [];
  let bigNow = 0;
  let maxBig = 0;
  let maxAll = 0;
  let now = 0;
  await runLanes(ITEMS, parallel, async (m) => {
    started.push(m.name);
    const big = m.narSize >= BIG_PATH ? 1 : 0;
    bigNow += big;
    now++;
    maxBig = Math.max(maxBig, bigNow);
    maxAll = Math.max(maxAll, now);
    for (let i = 0; i < 3; i++) await Promise.resolve();
    bigNow -= big;
    now--;
    return m.name === stopAt ? 'stop' : 'next';
  });
  return { started, maxBig, maxAll };
}

describe('runLanes', () => {
  it('takes every path once, big ones one at a time (biggest first), small ones alongside', async () => {
    const r = await trace(4);
    expect([...r.started].sort()).toEqual(ITEMS.map((m) => m.name).sort());
    expect(r.maxBig).toBe(1);
    expect(r.maxAll).toBeGreaterThan(1);
    expect(r.started.filter((n) => n.startsWith('big'))).toEqual(['big1', 'big2', 'big3']);
  });

  it('one lane runs everything in turn: the big paths, then the small ones', async () => {
    const r = await trace(1);
    expect(r.maxAll).toBe(1);
    expect(r.started).toEqual(['big1', 'big2', 'big3', 's1', 's3', 's2']);
  });

  it('a lane told to stop ends; the others finish what is left', async () => {
    const r = await trace(2, 'big1');
    expect(r.started).toContain('big1');
    expect(r.started).not.toContain('big2'); // only the first lane takes big paths
    expect(r.started).toEqual(expect.arrayContaining(['s1', 's2', 's3']));
  });
});
