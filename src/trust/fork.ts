// Fork detection for single-writer documents, as Hypercore detects forks: one writer's signed
// heads always extend each other, so two signed heads of which neither contains the other prove
// that two copies of the writer's key wrote (a cloned machine, a restored backup that kept
// running). The coordinator (src/roles/fleet.ts) and the agent's own catch-up (agent.ts) use it.

import * as A from '@automerge/automerge';
import type { SignedHeads } from './signed-heads.js';

/** How `b` relates to `a` in one document's history. */
export type HeadsRelation = 'same' | 'ahead' | 'behind' | 'forked' | 'unknown';

/** Whether the history up to `outer` contains every change of `inner` (both held by `doc`). */
export function covers(doc: A.Doc<unknown>, outer: readonly string[], inner: readonly string[]) {
  const after = new Set(A.getChangesMetaSince(doc, [...outer]).map((c) => c.hash));
  return inner.every((h) => !after.has(h));
}

/**
 * How signed heads `b` relate to `a`: the same heads, ahead of (containing) them, behind them,
 * forked (neither contains the other), or unknown while `doc` lacks either's changes.
 */
export function relate(doc: A.Doc<unknown>, a: SignedHeads, b: SignedHeads): HeadsRelation {
  if (a.heads.length === b.heads.length && a.heads.every((h, i) => h === b.heads[i])) return 'same';
  if (!A.hasHeads(doc, [...a.heads]) || !A.hasHeads(doc, [...b.heads])) return 'unknown';
  if (covers(doc, b.heads, a.heads)) return 'ahead';
  if (covers(doc, a.heads, b.heads)) return 'behind';
  return 'forked';
}

/** Whether two sets of heads are the same, in whatever order. */
export function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((h, i) => h === y[i]);
}

/**
 * The heads `doc` would have after taking `chunks` (changes or document chunks, as a sync
 * message carries them), without changing it; undefined when they do not load.
 */
export function headsAfter(doc: A.Doc<unknown>, chunks: readonly Uint8Array[]) {
  try {
    let next = A.clone(doc);
    for (const chunk of chunks) next = A.loadIncremental(next, chunk);
    return A.getHeads(next);
  } catch {
    return undefined;
  }
}
