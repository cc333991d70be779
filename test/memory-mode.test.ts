// src/memory-mode.ts: V8 favours memory in the coordinator, and runs at speed through a burst of
// document work (loads in a reconnect storm, many documents changed at once), then favours memory
// again once it is quiet. A fake clock and a recording flag setter: what is asserted is which
// flags are set when.

import { describe, expect, it } from 'vitest';
import { BURST, MemoryMode, QUIET_MS } from '../src/memory-mode.js';

function mode() {
  const flags: string[] = [];
  let t = 1_000_000;
  const m = new MemoryMode(
    (f) => void flags.push(f),
    () => t,
  );
  return { m, flags, advance: (ms: number) => void (t += ms) };
}

describe('MemoryMode', () => {
  it('sets nothing until memory is favoured; then once, however often it is asked', () => {
    const { m, flags } = mode();
    for (let i = 0; i < BURST * 2; i++) m.worked();
    expect(flags).toEqual([]);
    m.favourMemory();
    m.favourMemory();
    expect(flags).toEqual(['--optimize-for-size']);
  });

  it('a burst of work lets V8 run at speed; memory again after a quiet spell, not before', () => {
    const { m, flags, advance } = mode();
    m.favourMemory();
    // Work spread out (fewer than a burst in any second) change nothing.
    for (let i = 0; i < BURST * 3; i++) {
      m.worked();
      advance(1_000 / (BURST - 10));
    }
    expect(flags).toEqual(['--optimize-for-size']);
    for (let i = 0; i < BURST; i++) m.worked();
    expect(m.bursting).toBe(true);
    expect(flags).toEqual(['--optimize-for-size', '--no-optimize-for-size']);
    for (let i = 0; i < BURST; i++) m.worked(); // still the same burst: nothing new set
    advance(QUIET_MS - 1);
    m.check();
    expect(m.bursting).toBe(true);
    // Another burst second pushes the quiet spell back.
    for (let i = 0; i < BURST; i++) m.worked();
    advance(QUIET_MS - 1);
    m.check();
    expect(flags).toHaveLength(2);
    advance(1);
    m.check();
    expect(m.bursting).toBe(false);
    expect(flags).toEqual(['--optimize-for-size', '--no-optimize-for-size', '--optimize-for-size']);
    m.check();
    expect(flags).toHaveLength(3);
    // And the next burst again.
    advance(1_000);
    for (let i = 0; i < BURST; i++) m.worked();
    expect(flags.at(-1)).toBe('--no-optimize-for-size');
    advance(QUIET_MS);
    m.check();
    expect(flags.at(-1)).toBe('--optimize-for-size');
  });
});
