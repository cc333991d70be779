// A year of an agent's facts publishing, simulated: 525,600 collections one (fake) minute apart,
// written with the agent's own write step (applyFacts, the logic Agent.publish runs through its
// DocHandle). No real waiting: the clock is the tick counter. Proves the facts document's history
// stays small because only real changes are written, and that the bound would catch a writer that
// stamped every collection.

import { createHash } from 'node:crypto';
import * as A from '@automerge/automerge';
import { describe, expect, it } from 'vitest';
import { baseDocument, docIdFor } from '../sync/owned-doc.js';
import { applyFacts, factsPatch, writeFactsPatch } from '../src/docs/facts-doc.js';
import { DOC_SCHEMA, storedFacts, type FactsDoc } from '../src/docs/types.js';
import { validateFacts, type DiskInfo, type Facts } from '../src/facts/index.js';
import { generateNodeKey } from '../src/identity/index.js';

/** Ticks are minutes (the default --facts-interval of 60 s). */
const DAY = 24 * 60;
const WEEK = 7 * DAY;
const FORTNIGHT = 2 * WEEK;
const MONTH = 30 * DAY;
const YEAR = 365 * DAY; // 525,600 ticks
const DISK_ADDED_AT = 200_000; // once, some time in July
const START_MS = Date.UTC(2025, 0, 1);

/**
 * The bound on one agent's saved facts document after a year. The year below makes 65 changes:
 * 1 first write + 52 weekly address changes + 12 monthly kernel updates - 1 (day 210 is both a
 * week and a month boundary) + 1 disk; the fortnightly NixOS switches fall on week boundaries. A change
 * rewrites at most the network list (~200 B of addresses), the NixOS block (~250 B of store
 * paths) and changedAt, so ~600 B each before compression: 65 × 600 B ≈ 38 KiB worst case, well
 * under 64 KiB. The measured size is far below that (Automerge's columnar encoding shares
 * actor ids and keys). A writer that stamped every collection adds a change per minute instead
 * (see the control test), which this bound rejects within days.
 */
const BOUND = 64 * 1024;

const hash = (s: string, n: number) => createHash('sha256').update(s).digest('hex').slice(0, n);

/** Which scheduled changes have happened by `tick`; two ticks with equal keys have equal facts. */
function scheduleKey(tick: number): string {
  const week = Math.floor(tick / WEEK);
  const generation = Math.floor(tick / FORTNIGHT);
  const month = Math.floor(tick / MONTH);
  const disk = tick >= DISK_ADDED_AT ? 1 : 0;
  return `${week}/${generation}/${month}/${disk}`;
}

/** The ticks at which the schedule changes something (tick 0: the first write). */
function isScheduledChange(tick: number): boolean {
  return tick === 0 || tick % WEEK === 0 || tick % MONTH === 0 || tick === DISK_ADDED_AT;
}

function system(generation: number): string {
  return `/nix/store/${hash(`system-${generation}`, 32)}-nixos-system-web-01-24.11.${generation}`;
}

/** The stable facts of a NixOS server at `tick`; volatile values are not in Facts by design. */
function stableFacts(tick: number): Omit<Facts, 'collectedAt'> {
  const week = Math.floor(tick / WEEK);
  const generation = Math.floor(tick / FORTNIGHT);
  const month = Math.floor(tick / MONTH);
  // The machine reboots into the current generation when the kernel is updated (monthly).
  const booted = Math.floor((month * MONTH) / FORTNIGHT);
  const disks: DiskInfo[] = [
    { mount: '/', fs: 'ext4', totalBytes: 512_110_190_592 },
    { mount: '/boot', fs: 'vfat', totalBytes: 1_071_624_192 },
  ];
  if (tick >= DISK_ADDED_AT) disks.push({ mount: '/data', fs: 'xfs', totalBytes: 4e12 });
  return {
    schema: 1,
    hostname: 'web-01',
    os: {
      id: 'nixos',
      name: 'NixOS',
      version: '24.11 (Vicuna)',
      versionId: '24.11',
      prettyName: 'NixOS 24.11 (Vicuna)',
    },
    kernel: {
      name: 'Linux',
      release: `6.6.${40 + month}`,
      version: '#1-NixOS SMP PREEMPT_DYNAMIC',
    },
    arch: 'x86_64',
    cpus: { model: 'AMD EPYC 7543P 32-Core Processor', count: 8 },
    memory: { totalBytes: 67_108_864_000 },
    disks,
    network: [
      {
        name: 'enp1s0',
        mac: '52:54:00:12:34:56',
        addresses: [
          `10.20.${week % 250}.${10 + (week % 200)}/24`,
          `2001:db8::${hash(`v6-${week}`, 4)}/64`,
        ],
      },
    ],
    machineIdHash: hash('machine-id', 64),
    nix: { version: '2.24.10' },
    nixos: {
      version: `24.11.${generation}.${hash(`rev-${generation}`, 7)}`,
      currentSystem: system(generation),
      bootedSystem: system(booted),
      rebootRequired: generation !== booted,
    },
    notes: [],
  };
}

/** Facts as the collector would return them at `tick` (stable part cached per schedule key). */
function makeCollector(): (tick: number) => Facts {
  let key = '';
  let stable = stableFacts(0);
  return (tick) => {
    const k = scheduleKey(tick);
    if (k !== key) [key, stable] = [k, stableFacts(tick)];
    return { ...stable, collectedAt: new Date(START_MS + tick * 60_000).toISOString() };
  };
}

function newFactsDoc(): A.Doc<FactsDoc> {
  const key = generateNodeKey();
  const docId = docIdFor(key.publicKey);
  const base: FactsDoc = { kind: 'flt/facts', schema: DOC_SCHEMA, owner: key.nodeId };
  return A.load<FactsDoc>(baseDocument(docId, base));
}

const seconds = (tick: number) => Math.floor(START_MS / 1000) + tick * 60;

describe('facts history over a year', () => {
  it('a year of 60 s publishing stays under the bound, with one change per real change', () => {
    const collect = makeCollector();
    let doc = newFactsDoc();
    let written = 0;
    let last: Facts | undefined;
    let lastChangedAt = '';
    for (let tick = 0; tick < YEAR; tick++) {
      last = collect(tick);
      const next = applyFacts(doc, last, seconds(tick));
      if (next !== doc) {
        written++;
        lastChangedAt = last.collectedAt;
        // Only a scheduled change may produce a write; a tick without one adds nothing.
        if (!isScheduledChange(tick)) expect.fail(`tick ${tick} wrote without a change`);
      }
      doc = next;
    }

    let expected = 0;
    for (let tick = 0; tick < YEAR; tick++) if (isScheduledChange(tick)) expected++;
    expect(expected).toBe(65); // the arithmetic in BOUND's comment
    expect(written).toBe(expected);
    expect(A.getAllChanges(doc)).toHaveLength(1 + expected); // + the base change

    const saved = A.save(doc);
    console.log(
      `facts document after a year: ${saved.byteLength} bytes, ${written} changes (bound ${BOUND})`,
    );
    expect(saved.byteLength).toBeLessThan(BOUND);

    const loaded = A.load<FactsDoc>(saved);
    // What readers get back is exactly the last facts, stamped with the last real change.
    expect(storedFacts(loaded)).toEqual({ ...last!, collectedAt: lastChangedAt });
    // What readers run on it (the coordinator's summary) still accepts it.
    expect(validateFacts(storedFacts(loaded)).hostname).toBe('web-01');
  });

  it('control: stamping collectedAt on every collection would blow the bound within the year', () => {
    // The writer without its "nothing changed" guard: one change per minute.
    const collect = makeCollector();
    let doc = newFactsDoc();
    const sizeAt = new Map<number, number>();
    for (let tick = 0; tick < DAY; tick++) {
      const facts = collect(tick);
      const patch = factsPatch(doc, facts);
      doc = A.change(doc, { time: seconds(tick) }, (d) =>
        writeFactsPatch(d, patch, facts.collectedAt),
      );
      if (tick === 0 || tick === DAY / 2 - 1 || tick === DAY - 1)
        sizeAt.set(tick, A.save(doc).byteLength);
    }
    expect(A.getAllChanges(doc)).toHaveLength(1 + DAY);
    const first = sizeAt.get(0)!;
    const half = sizeAt.get(DAY / 2 - 1)!;
    const full = sizeAt.get(DAY - 1)!;
    // It grows in both halves of the day: linear in ticks, not a one-off.
    expect(half).toBeGreaterThan(first);
    expect(full).toBeGreaterThan(half);
    const perTick = (full - first) / (DAY - 1);
    const yearEstimate = first + perTick * (YEAR - 1);
    console.log(
      `stamping every minute: ${full} bytes after a day, ${perTick.toFixed(1)} B/tick, ~${Math.round(yearEstimate / 1024)} KiB a year`,
    );
    expect(yearEstimate).toBeGreaterThan(BOUND);
    // Not even close: over the bound within the first month.
    expect(first + perTick * (MONTH - 1)).toBeGreaterThan(BOUND);
  });
});
