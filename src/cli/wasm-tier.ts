// Which of V8's tiers a command that reads and exits compiles Automerge's wasm with (main.ts).
// The baseline compiler alone (`--liftoff-only`) is cheaper for a short run: optimizing the hot
// functions of a 3 MB module costs more than the run gains (`admin agents --offline` on 100
// agents: 306 ms against 419 ms, bench `cli` group). An admin whose replica holds a large root
// gains more: it loads the root, and loading is several times faster optimized (1.2 MB, 5,000
// agents: 90 ms against 410 ms). Measured whole (`admin agents`, one process each, same machine):
// 2,000 agents (a 498 KB root) offline 0.43-0.47 s either way, with 0.44-0.49 against 0.61-0.66
// CPU-s; 5,000 agents offline 0.72-0.78 s baseline-only against 0.55-0.61 s, online 0.96-1.05 s
// against 0.79-0.99 s. So the baseline alone, unless the replica's root is past 512 KiB, or there
// is no replica yet: the first read fetches and loads the whole root, whose size it cannot know
// (a fresh admin's `admin facts` at 5,000 agents, interleaved, 5 runs each: 1.60-1.65 s with
// V8's default tiers against 1.77-1.96 s baseline-only; at 100 agents 0.68-0.72 s against
// 0.58-0.66 s: a small fleet's admin pays ~0.1 s once, on its first command). A command that
// loads no root (`admin facts` online, which asks the coordinator for its one agent) takes the
// baseline alone whatever the replica holds (a fresh admin's at 5,000 agents: 0.80-0.88 s against
// 0.90-0.97 s).
// Decided before anything imports Automerge (this module must not); it changes speed, never
// results.

import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { keySegments } from '../../stores/fs-io.js';

/** A replica root of this many bytes on disk or more keeps the optimizing tier. */
export const LARGE_ROOT_BYTES = 512 * 1024;

/** replica.json's first bytes: `rootDocId` is among its first fields (admin.ts keepReplica). */
const HEAD_BYTES = 4096;

/**
 * Bytes of the chunks of the root named in `<stateDir>/replica.json`; undefined when there is no
 * replica yet, 0 when it names no root. Reads the file's head only: at 5,000 agents the file is
 * 1 MB (presence), and parsing it whole cost every command 15 ms before its work began.
 */
export function replicaRootBytes(stateDir: string): number | undefined {
  let head: string;
  try {
    head = readHead(join(stateDir, 'replica.json'));
  } catch (err) {
    // none yet; or unreadable, which the command reports
    return (err as { code?: unknown }).code === 'ENOENT' ? undefined : 0;
  }
  const rootDocId = /"rootDocId": *"([^"\\]*)"/.exec(head)?.[1];
  if (rootDocId === undefined) return 0;
  let total = 0;
  for (const kind of ['snapshot', 'incremental']) {
    try {
      const dir = join(stateDir, 'repo', ...keySegments([rootDocId, kind]));
      for (const name of readdirSync(dir)) total += statSync(join(dir, name)).size;
    } catch {
      // no chunks of this kind (or a name the store would refuse): none counted
    }
  }
  return total;
}

function readHead(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    return buf.toString('utf8', 0, readSync(fd, buf, 0, HEAD_BYTES, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * For a command that reads and exits: the baseline tier only, unless it may load the replica's
 * root (`loadsRoot`, true unless told) and that root is large or not there yet.
 */
export function chooseOneShotTier(stateDir: string, loadsRoot = true): void {
  const bytes = loadsRoot ? replicaRootBytes(stateDir) : 0;
  if (bytes !== undefined && bytes < LARGE_ROOT_BYTES) setFlagsFromString('--liftoff-only');
}
