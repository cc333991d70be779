// The facts document: an agent's own (key `flt/v1/doc/facts`), one per agent, written only by that
// agent (writing: facts-doc.ts; the write key and id: identity/derive.ts, doc-id.ts). Its
// content is what readers validate with validateFacts (facts/schema.ts).

import type * as A from '@automerge/automerge';
import type { NodeId } from '../../sync/ids.js';
import type { Backend } from '../../sync/plain-docs.js';
import type { DerivePurpose } from '../identity/derive.js';
import { plain, scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

export const FACTS_KIND = 'flt/facts';
/** The purpose its write key is derived for (identity/derive.ts). */
export const FACTS_KEY = 'flt/v1/doc/facts' satisfies DerivePurpose;

export interface FactsDoc {
  kind: typeof FACTS_KIND;
  schema: number;
  owner: NodeId;
  /**
   * The stable facts (without collectedAt), updated field by field, strings sealed (scalars.ts);
   * absent until the first collection. Read them with storedFacts().
   */
  facts?: Record<string, unknown>;
  /** When the facts last changed (not when they were last checked: that would grow history). */
  changedAt?: A.ImmutableString;
}

/**
 * The facts a facts document holds as plain values, with collectedAt = changedAt; null before
 * the first write. Not validated: readers of another peer's document pass it to validateFacts.
 */
export function storedFacts(doc: FactsDoc): Record<string, unknown> | null {
  const facts = plain(doc.facts);
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) return null;
  return { ...facts, collectedAt: scalarString(doc.changedAt) ?? '' };
}

/** The facts fields the fleet table's summary is made of (facts/schema.ts SummaryFacts). */
const SUMMARY_FIELDS = ['schema', 'hostname', 'os', 'kernel', 'arch', 'nixos'] as const;

/**
 * The summary's fields of the facts a facts document holds at `heads` (which it must hold), as
 * plain values like storedFacts gives them, to validate with validateSummaryFacts; null before
 * the first write. Read through the backend, only these fields' values are built: building the
 * object of a whole facts document (~200 operations) was a coordinator's largest cost in taking
 * an agent's push, for five fields (issue 13).
 */
export function summaryFields(backend: Backend, heads: A.Heads): Record<string, unknown> | null {
  const facts = backend.getWithType('_root', 'facts', heads);
  if (facts?.[0] !== 'map') return null;
  const fields: Record<string, unknown> = {};
  for (const key of SUMMARY_FIELDS) {
    const value = backend.getWithType(facts[1], key, heads);
    if (value === null || value === undefined) continue;
    const [type, v] = value;
    fields[key] =
      type === 'map' || type === 'list' || type === 'text'
        ? plain(backend.materialize(v, heads))
        : v;
  }
  return fields;
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function factsBase(owner: NodeId): FactsDoc {
  return { kind: FACTS_KIND, schema: DOC_SCHEMA, owner };
}
