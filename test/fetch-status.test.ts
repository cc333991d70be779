// The `fetch` field of a deployment status record (issue 12, design §6): readers take it from
// peers, so every count is bounded (a record with a bad `fetch` is skipped whole, as any
// malformed record; writing one throws), and the Deployer's progress writes are throttled so a
// long fetch cannot grow the status history without bound (one write per 5 s of progress at
// most, none while no byte moves), checked on the throttle with a fake clock.

import { describe, expect, it } from 'vitest';
import * as A from '@automerge/automerge';
import {
  decodeDeployment,
  statusBase,
  writeDeployment,
  type DeploymentStatus,
  type StatusDoc,
} from '../src/docs/status.js';
import { generateNodeKey } from '../src/identity/index.js';
import { FETCH_PROGRESS_MS, progressThrottle } from '../src/roles/deployer.js';

const PATH = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web';
const ADMIN = generateNodeKey().nodeId;
const AGENT = generateNodeKey().nodeId;
const fetching = (fetch: unknown): DeploymentStatus =>
  ({
    id: '0'.repeat(31) + '1',
    seq: 7,
    storePath: PATH,
    action: 'switch',
    signer: ADMIN,
    state: 'fetching',
    times: { received: '2030-01-01T00:00:00.000Z' },
    fetch,
  }) as DeploymentStatus;
const good = { bytes: 3_900_000, total: 6_400_000, paths: 3, pathsDone: 2, rate: 5_100_000 };

describe('status record: fetch bounds', () => {
  it('keeps a sound fetch and skips a record whose fetch is out of bounds', () => {
    expect(decodeDeployment(JSON.stringify(fetching(good)))?.fetch).toEqual(good);
    expect(
      decodeDeployment(JSON.stringify(fetching({ ...good, bytes: good.total }))),
    ).toBeDefined();
    for (const bad of [
      { ...good, bytes: -1 },
      { ...good, total: -5 },
      { ...good, bytes: good.total + 1 },
      { ...good, pathsDone: 4 },
      { ...good, paths: -1, pathsDone: 0 },
      { ...good, bytes: '5' },
      { ...good, rate: null },
      { ...good, paths: 1.5 },
      { ...good, rate: 2 ** 51 },
      { ...good, rate: 1e300 },
      { ...good, total: 2 ** 60, bytes: 0 },
      { ...good, paths: 10_000_000, pathsDone: 0 },
      { ...good, extra: 1 },
      { bytes: 1, total: 2, paths: 1, pathsDone: 0 },
      [1, 2, 3, 4, 5],
      'fast',
      null,
    ])
      expect(decodeDeployment(JSON.stringify(fetching(bad))), JSON.stringify(bad)).toBeUndefined();
  });

  it('refuses to write a record whose fetch is out of bounds', () => {
    const doc = () =>
      A.from(statusBase(AGENT) as unknown as Record<string, unknown>) as A.Doc<StatusDoc>;
    expect(() => A.change(doc(), (d) => writeDeployment(d, fetching(good)))).not.toThrow();
    expect(() =>
      A.change(doc(), (d) => writeDeployment(d, fetching({ ...good, bytes: good.total + 1 }))),
    ).toThrow(TypeError);
  });
});

describe('fetch progress throttle (history bound)', () => {
  it('a 10 min fetch reporting every 50 ms writes at most once per 5 s; a stall writes nothing', () => {
    const start = 1_000_000;
    const due = progressThrottle(start);
    let writes = 0;
    let bytes = 0;
    const writeTimes: number[] = [];
    // 10 minutes of progress, bytes moving on every report.
    for (let t = start; t <= start + 600_000; t += 50) {
      bytes += 1000;
      if (due(bytes, t)) {
        writes++;
        writeTimes.push(t);
      }
    }
    expect(writes).toBeLessThanOrEqual(600_000 / FETCH_PROGRESS_MS);
    expect(writes).toBeGreaterThan(100); // it does report (~120)
    for (let i = 1; i < writeTimes.length; i++)
      expect(writeTimes[i]! - writeTimes[i - 1]!).toBeGreaterThanOrEqual(FETCH_PROGRESS_MS);
    // Then 10 stalled minutes: bytes do not move, nothing is written.
    const stalledFrom = start + 600_000;
    let stalled = 0;
    for (let t = stalledFrom; t <= stalledFrom + 600_000; t += 50) if (due(bytes, t)) stalled++;
    expect(stalled).toBe(0);
    // Bytes move again: one write, at once (5 s have long passed).
    expect(due(bytes + 1, stalledFrom + 600_050)).toBe(true);
    expect(due(bytes + 2, stalledFrom + 600_100)).toBe(false);
  });

  it('writes nothing in the first 5 s of a fetch', () => {
    const due = progressThrottle(0);
    for (let t = 0; t < FETCH_PROGRESS_MS; t += 10) expect(due(t + 1, t)).toBe(false);
    expect(due(FETCH_PROGRESS_MS + 1, FETCH_PROGRESS_MS)).toBe(true);
  });
});
