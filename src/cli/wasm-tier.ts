// Which of V8's tiers a command that reads and exits compiles Automerge's wasm with (main.ts).
// The baseline compiler alone (`--liftoff-only`) is cheaper for a short run: optimizing the hot
// functions of a 3 MB module costs more than the run gains (`admin agents --offline` on 100
// agents: 306 ms against 419 ms, bench `cli` group). An admin whose replica holds a large root
// gains more: it loads the root, and loading is several times faster optimized (1.2 MB, 5,000
// agents: 90 ms against 410 ms). Measured whole (`admin agents`, one process each, same machine):
// 2,000 agents (a 498 KB root) offline 0.43-0.47 s either way, with 0.44-0.49 against 0.61-0.66
// CPU-s; 5,000 agents offline 0.72-0.78 s baseline-only against 0.55-0.61 s, online 0.96-1.05 s
// against 0.79-0.99 s. So the baseline alone, unless the replica's root is past 512 KiB.
// Decided before anything imports Automerge (this module must not); it changes speed, never
// results.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { keySegments } from '../../stores/fs-io.js';

/** A replica root of this many bytes on disk or more keeps the optimizing tier. */
export const LARGE_ROOT_BYTES = 512 * 1024;

/** Bytes of the chunks of the root named in `<stateDir>/replica.json`; 0 when there is none. */
export function replicaRootBytes(stateDir: string): number {
  let rootDocId: unknown;
  try {
    ({ rootDocId } = JSON.parse(readFileSync(join(stateDir, 'replica.json'), 'utf8')) as {
      rootDocId?: unknown;
    });
  } catch {
    return 0; // no replica (or a corrupt one, which the command reports)
  }
  if (typeof rootDocId !== 'string') return 0;
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

/** For a command that reads and exits: the baseline tier only, unless the replica is large. */
export function chooseOneShotTier(stateDir: string): void {
  if (replicaRootBytes(stateDir) < LARGE_ROOT_BYTES) setFlagsFromString('--liftoff-only');
}
