// Fetch progress as admins see it (issue 12, design §7): the status record's `fetch` carried into
// `deploy --wait`'s TargetProgress and `admin status`, each new set of figures a change, the line
// `3f2a91c0 (web1): fetching 3.9/6.4 MB, 5.1 MB/s, ETA 0:01 (2/3 paths)`, redrawn in place on a
// terminal and a plain line per change otherwise.

import type { DocumentId } from '@automerge/automerge-repo';
import { describe, expect, it } from 'vitest';
import { shortId, type NodeId } from '../sync/ids.js';
import { progressLine } from '../src/cli/commands/deploy.js';
import { fetchFigures, LiveLines } from '../src/cli/progress.js';
import type { AgentEntry } from '../src/docs/root.js';
import type { DeploymentStatus, StatusContent } from '../src/docs/status.js';
import { agentStatus, progressKey, progressOf } from '../src/roles/rollout.js';

const NODE = 'ab'.repeat(32) as NodeId;
const ID = 'cd'.repeat(16);
const FETCH = { bytes: 3_900_000, total: 6_400_000, paths: 3, pathsDone: 2, rate: 5_100_000 };

const entry: AgentEntry = {
  nodeId: NODE,
  factsDocId: 'facts' as DocumentId,
  factsWriteKey: '00'.repeat(32),
  enrolledAt: '2025-01-01T00:00:00.000Z',
  lastSeen: '2025-01-01T00:00:00.000Z',
  summary: { hostname: 'web1', os: 'NixOS', nixosVersion: '25.05', kernel: '6', arch: 'x86_64' },
  factsHeads: null,
};

function status(rec: Partial<DeploymentStatus>): StatusContent {
  return {
    system: null,
    deployments: [
      {
        id: ID,
        seq: 1,
        storePath: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-top',
        action: 'switch',
        signer: null,
        state: 'fetching',
        times: {},
        ...rec,
      },
    ],
  };
}

describe('fetch figures', () => {
  it('are carried while fetching, and only then', () => {
    const p = progressOf(ID, entry, status({ fetch: FETCH }));
    expect(p).toMatchObject({ state: 'fetching', fetch: FETCH });
    expect(progressOf(ID, entry, status({})).fetch).toBeUndefined();
    // A record in another state never shows stale figures.
    expect(progressOf(ID, entry, status({ state: 'activating', fetch: FETCH })).fetch).toBe(
      undefined,
    );
    expect(agentStatus(entry, status({ fetch: FETCH })).last?.fetch).toEqual(FETCH);
    expect(
      agentStatus(entry, status({ state: 'succeeded', fetch: FETCH })).last,
    ).not.toHaveProperty('fetch');
  });

  it('new figures are a change for --wait; the same figures are not', () => {
    const a = progressOf(ID, entry, status({ fetch: FETCH }));
    const same = progressOf(ID, entry, status({ fetch: { ...FETCH } }));
    const more = progressOf(ID, entry, status({ fetch: { ...FETCH, bytes: 5_000_000 } }));
    const bare = progressOf(ID, entry, status({}));
    expect(progressKey(same)).toBe(progressKey(a));
    expect(progressKey(more)).not.toBe(progressKey(a));
    expect(progressKey(bare)).not.toBe(progressKey(a));
  });

  it('read as one line: bytes, rate, ETA from the agent rate, paths', () => {
    expect(fetchFigures(FETCH)).toBe('3.9/6.4 MB, 5.1 MB/s, ETA 0:01 (2/3 paths)');
    expect(fetchFigures({ ...FETCH, rate: 0 })).toBe('3.9/6.4 MB, 0 B/s, ETA -:-- (2/3 paths)');
    expect(progressLine(progressOf(ID, entry, status({ fetch: FETCH })))).toBe(
      `${shortId(NODE)} (web1): fetching 3.9/6.4 MB, 5.1 MB/s, ETA 0:01 (2/3 paths)`,
    );
    expect(progressLine(progressOf(ID, entry, status({})))).toBe(
      `${shortId(NODE)} (web1): fetching`,
    );
  });
});

describe('LiveLines', () => {
  it('not a terminal: a plain line per change, none for the same text, no control characters', () => {
    const plain: string[] = [];
    const raw: string[] = [];
    const l = new LiveLines({ tty: false, plain: (x) => plain.push(x), write: (t) => raw.push(t) });
    l.set('a', 'a: fetching 1/6 MB');
    l.set('a', 'a: fetching 1/6 MB');
    l.set('a', 'a: fetching 2/6 MB');
    l.delete('a');
    l.above('a: activating');
    l.finish();
    expect(plain).toEqual(['a: fetching 1/6 MB', 'a: fetching 2/6 MB', 'a: activating']);
    expect(raw).toEqual([]);
  });

  it('a terminal: one line redrawn in place, plain lines above it, cleared at the end', () => {
    const plain: string[] = [];
    const raw: string[] = [];
    const l = new LiveLines({
      tty: true,
      plain: (x) => plain.push(x),
      write: (t) => raw.push(t),
      columns: () => 200,
    });
    l.set('a', 'a: fetching 1/6 MB');
    l.set('b', 'b: fetching 2/6 MB');
    expect(raw).toEqual([
      '\ra: fetching 1/6 MB\x1b[K',
      '\ra: fetching 1/6 MB  |  b: fetching 2/6 MB\x1b[K',
    ]);
    raw.length = 0;
    l.delete('a');
    l.above('a: activating');
    expect(plain).toEqual(['a: activating']);
    expect(raw).toEqual(['\rb: fetching 2/6 MB\x1b[K', '\r\x1b[K', '\rb: fetching 2/6 MB\x1b[K']);
    raw.length = 0;
    l.finish();
    expect(raw).toEqual(['\r\x1b[K']);
    // Cut to the terminal's width, so a redraw never wraps.
    const narrow: string[] = [];
    const n = new LiveLines({
      tty: true,
      plain: () => undefined,
      write: (t) => narrow.push(t),
      columns: () => 30,
    });
    n.set('a', 'x'.repeat(100));
    expect(narrow[0]!.replace('\r', '').replace('\x1b[K', '')).toHaveLength(29);
  });
});
