// Fork detection for single-writer documents, as Hypercore detects forks: one writer's signed
// heads always extend each other, so two signed heads of which neither contains the other prove
// that two copies of the writer's key wrote (a cloned machine, a restored backup that kept
// running). The coordinator (src/roles/fleet.ts) uses it.

import * as A from '@automerge/automerge';
import { sameHeads, type SignedHeads } from '../../sync/owned-doc.js';

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
  if (sameHeads(a.heads, b.heads)) return 'same';
  if (!A.hasHeads(doc, [...a.heads]) || !A.hasHeads(doc, [...b.heads])) return 'unknown';
  if (covers(doc, b.heads, a.heads)) return 'ahead';
  if (covers(doc, a.heads, b.heads)) return 'behind';
  return 'forked';
}
