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
  if (a.heads.length === b.heads.length && a.heads.every((h, i) => h === b.heads[i]))
    return 'same';
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
 * A sync message (automerge's encoding) for a single-writer document, keeping of its changes
 * (or whole-document chunks) only those `doc` lacks that the history up to `signed` contains,
 * and of the sender's heads only those `doc` will then hold; `left` counts the changes left
 * out. Without the heads, the receiver would ask for the left-out changes forever (measured:
 * an endless exchange of empty messages). While `doc` plus the chunks does not reach `signed`
 * yet, new changes cannot be told apart, so all are left out. Throws on a bad message.
 */
export function ownPart(doc: A.Doc<unknown>, data: Uint8Array, signed: readonly string[]) {
  const sync = A.decodeSyncMessage(data);
  let all = A.clone(doc);
  for (const chunk of sync.changes) all = A.loadIncremental(all, chunk);
  const added = A.getChanges(doc, all);
  const foreign = A.hasHeads(all, [...signed])
    ? new Set(A.getChangesMetaSince(all, [...signed]).map((c) => c.hash))
    : undefined;
  const keep = foreign ? added.filter((c) => !foreign.has(A.decodeChange(c).hash)) : [];
  const kept = new Set(keep.map((c) => A.decodeChange(c).hash));
  const heads = sync.heads.filter((h) => kept.has(h) || A.hasHeads(doc, [h]));
  return {
    data: A.encodeSyncMessage({ ...sync, heads, changes: keep }),
    left: added.length - keep.length,
  };
}
