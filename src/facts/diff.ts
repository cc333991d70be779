// Turns two Facts into the smallest list of writes that makes the first into the second, so an
// agent's facts document grows only when the machine changes. Objects are diffed key by key;
// arrays are replaced whole (lists are short, and list edits would buy little).

import { FltError } from '../../sync/errors.js';
import { isForbiddenKey, isPlainObject } from './bounded.js';
import type { Facts } from './schema.js';

/** One write: set the value at `path` (creating parent objects), or delete the key there. */
export type FactsChange =
  | { readonly op: 'set'; readonly path: readonly string[]; readonly value: unknown }
  | { readonly op: 'delete'; readonly path: readonly string[] };

/** The writes of one {@link diffFacts}, in a stable order. */
export type FactsPatch = readonly FactsChange[];

/**
 * Top-level keys never diffed. collectedAt changes on every run; writing it would grow the
 * history every minute. The writer stamps it itself (e.g. only with a non-empty patch).
 */
const NOT_DIFFED: ReadonlySet<string> = new Set(['collectedAt']);

/**
 * The changes from `prev` (undefined: an empty document) to `next`, leaving out collectedAt.
 * Unchanged facts give an empty patch ({@link isEmptyPatch}).
 */
export function diffFacts(prev: Facts | undefined, next: Facts): FactsPatch {
  const out: FactsChange[] = [];
  const before: Record<string, unknown> = prev === undefined ? {} : { ...prev };
  const after: Record<string, unknown> = { ...next };
  for (const key of NOT_DIFFED) {
    delete before[key];
    delete after[key];
  }
  diffObject(before, after, [], out);
  return out;
}

/** True when a patch has no writes, i.e. nothing but collectedAt changed. */
export function isEmptyPatch(patch: FactsPatch): boolean {
  return patch.length === 0;
}

function diffObject(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
  path: readonly string[],
  out: FactsChange[],
): void {
  for (const [key, value] of Object.entries(b)) {
    const here = [...path, key];
    const old = Object.hasOwn(a, key) ? a[key] : undefined;
    if (isPlainObject(old) && isPlainObject(value)) diffObject(old, value, here, out);
    else if (old === undefined || !deepEqual(old, value))
      out.push({ op: 'set', path: here, value });
  }
  for (const key of Object.keys(a)) {
    if (!Object.hasOwn(b, key)) out.push({ op: 'delete', path: [...path, key] });
  }
}

/** Structural equality of JSON data. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a);
    return (
      keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]))
    );
  }
  return false;
}

/**
 * Applies a patch to `target` in place: a plain object, or the draft inside an Automerge
 * `change()` callback. Set values are copied (by `copy`) so the target never aliases the patch.
 */
export function applyFactsPatch(
  target: Record<string, unknown>,
  patch: FactsPatch,
  copy: (value: unknown) => unknown = structuredClone,
): void {
  for (const change of patch) {
    const last = change.path.at(-1);
    if (last === undefined || change.path.some(isForbiddenKey)) {
      throw new FltError('BAD_ARGUMENT', `bad facts patch path: ${change.path.join('.')}`);
    }
    let node = target;
    for (const key of change.path.slice(0, -1)) {
      const child = node[key];
      if (!isPlainObject(child)) node[key] = {};
      const next = node[key];
      if (!isPlainObject(next)) throw new FltError('INTERNAL', `cannot create ${key}`);
      node = next;
    }
    if (change.op === 'set') node[last] = copy(change.value);
    else delete node[last];
  }
}
