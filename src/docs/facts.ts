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
const SUMMARY_FIELDS = {
  schema: true,
  hostname: true,
  arch: true,
  os: ['name', 'prettyName'],
  kernel: ['release'],
  nixos: ['version'],
} as const;

/**
 * The summary's fields of the facts a facts document holds at `heads` (which it must hold), as
 * plain values like storedFacts gives them, to validate with validateSummaryFacts; null before
 * the first write. Read value by value through the backend: no object is built, of the document
 * or of any part of it (building the whole document's object, ~200 operations, was a
 * coordinator's largest cost in taking an agent's push, for five fields: issue 13).
 */
export function summaryFields(backend: Backend, heads: A.Heads): Record<string, unknown> | null {
  const facts = backend.getWithType('_root', 'facts', heads);
  if (facts?.[0] !== 'map') return null;
  /** The value at `key` of object `obj`: a scalar; text as its string; a map or list by its id. */
  const at = (obj: string, key: string): unknown => {
    const value = backend.getWithType(obj, key, heads);
    if (value === null || value === undefined) return undefined;
    const [type, v] = value;
    if (type === 'text') return backend.text(v, heads);
    return type === 'map' ? { map: v } : type === 'list' ? { list: v } : v;
  };
  /** Absent keys left out, as storedFacts leaves them (validation refuses undefined). */
  const present = (entries: [string, unknown][]) =>
    Object.fromEntries(entries.filter(([, v]) => v !== undefined));
  return present(
    Object.entries(SUMMARY_FIELDS).map(([key, inner]) => {
      const value = at(facts[1], key);
      // A map or list where a scalar belongs stays a {map}/{list} object: validation refuses it.
      return [
        key,
        inner !== true && isMapRef(value)
          ? present(inner.map((k: string) => [k, at(value.map, k)]))
          : value,
      ];
    }),
  );
}

const isMapRef = (value: unknown): value is { map: string } =>
  typeof value === 'object' && value !== null && 'map' in value;

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function factsBase(owner: NodeId): FactsDoc {
  return { kind: FACTS_KIND, schema: DOC_SCHEMA, owner };
}
