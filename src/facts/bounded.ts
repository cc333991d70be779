// Bounds on facts that come from elsewhere: another peer's document or a tool's JSON output.
// One walk checks every limit and returns a plain copy, so a caller never keeps a foreign proxy
// or a prototype key. schema.ts validates the shape of that copy; tools.ts bounds facter output.

import { FltError } from '../../sync/errors.js';

/** Longest string (in UTF-16 units) anywhere in a facts document; os-release and paths fit. */
export const MAX_STRING = 4096;
/** Most items in one array, or keys in one object. */
export const MAX_ITEMS = 1024;
/** Deepest nesting; facter reports are under 10 levels deep. */
export const MAX_DEPTH = 32;
/**
 * Most values in one document: a 1 MiB facter report ({@link MAX_FACTER_BYTES}) spends at
 * least two bytes per JSON value, so 2^19 values cover it; the rest of the facts are small.
 */
export const MAX_NODES = 1 << 19;
/** Largest facter JSON output we keep (the brief's cap). */
export const MAX_FACTER_BYTES = 1024 * 1024;

const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** True for keys that would reach an object's prototype if a reader assigned them. */
export function isForbiddenKey(key: string): boolean {
  return FORBIDDEN_KEYS.has(key);
}

/** A value that is a plain object (or an Automerge map proxy, whose prototype is Object's). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function bad(where: string, what: string): FltError {
  return new FltError('BAD_MESSAGE', `facts field ${where}: ${what}`);
}

/**
 * Checks that `value` is JSON data within the limits above and returns a plain deep copy.
 * Throws FltError `BAD_MESSAGE` naming the first offending field (`where` is its path).
 */
export function boundedCopy(value: unknown, where: string): unknown {
  const budget = { nodes: 0 };
  return copy(value, where, 0, budget);
}

function copy(value: unknown, where: string, depth: number, budget: { nodes: number }): unknown {
  if (++budget.nodes > MAX_NODES) throw bad(where, `more than ${MAX_NODES} values in all`);
  if (depth > MAX_DEPTH) throw bad(where, `nested deeper than ${MAX_DEPTH}`);
  switch (typeof value) {
    case 'string':
      if (value.length > MAX_STRING) throw bad(where, `string longer than ${MAX_STRING}`);
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw bad(where, 'number is not finite');
      return value;
    case 'boolean':
      return value;
    case 'object':
      if (value === null) return null;
      if (Array.isArray(value)) return copyArray(value, where, depth, budget);
      if (isPlainObject(value)) return copyObject(value, where, depth, budget);
      throw bad(where, 'not JSON data');
    default:
      throw bad(where, `${typeof value} is not JSON data`);
  }
}

function copyArray(
  value: readonly unknown[],
  where: string,
  depth: number,
  budget: { nodes: number },
): unknown[] {
  if (value.length > MAX_ITEMS) throw bad(where, `more than ${MAX_ITEMS} items`);
  return value.map((item, i) => copy(item, `${where}[${i}]`, depth + 1, budget));
}

function copyObject(
  value: Record<string, unknown>,
  where: string,
  depth: number,
  budget: { nodes: number },
): Record<string, unknown> {
  const keys = Object.keys(value);
  if (keys.length > MAX_ITEMS) throw bad(where, `more than ${MAX_ITEMS} keys`);
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    if (isForbiddenKey(key)) throw bad(`${where}.${key}`, 'forbidden key');
    if (key.length > MAX_STRING) throw bad(where, `key longer than ${MAX_STRING}`);
    out[key] = copy(value[key], `${where}.${key}`, depth + 1, budget);
  }
  return out;
}
