// Writing an agent's facts document: the difference between what the document holds and what
// was just collected, applied field by field. The agent uses it through a DocHandle
// (roles/agent.ts); tests use applyFacts on a plain Automerge document to bound a year of history.

import * as A from '@automerge/automerge';
import {
  applyFactsPatch,
  diffFacts,
  isEmptyPatch,
  type Facts,
  type FactsPatch,
} from '../facts/index.js';
import { sealStrings } from './scalars.js';
import { storedFacts, type FactsDoc } from './types.js';

/** The writes that bring `doc` to `facts`; empty when nothing but collectedAt differs. */
export function factsPatch(doc: FactsDoc, facts: Facts): FactsPatch {
  // Our own document: what we wrote is what diffFacts produced from validated Facts.
  const prev = storedFacts(doc) as Facts | null;
  return diffFacts(prev ?? undefined, facts);
}

/**
 * Applies `patch` inside a change callback and stamps `changedAt`, every string sealed. Call it
 * only with a non-empty patch: stamping on every collection would add one change per interval
 * to the history.
 */
export function writeFactsPatch(draft: FactsDoc, patch: FactsPatch, changedAt: string): void {
  draft.facts ??= {};
  applyFactsPatch(draft.facts, patch, sealStrings);
  draft.changedAt = new A.ImmutableString(changedAt);
}

/**
 * The agent's write step on a plain Automerge document: one change when the facts differ, the
 * same document (no change) when they do not. `time` is the change's Unix time in seconds.
 */
export function applyFacts(doc: A.Doc<FactsDoc>, facts: Facts, time: number): A.Doc<FactsDoc> {
  const patch = factsPatch(doc, facts);
  if (isEmptyPatch(patch)) return doc;
  return A.change(doc, { time }, (d) => writeFactsPatch(d, patch, facts.collectedAt));
}
