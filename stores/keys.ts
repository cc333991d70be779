// Storage key and value rules shared by every store, so a key MemoryStore accepts is one FsStore
// can map to a file name, and a value it accepts is one FsStore can tell from a crash's leftovers.
// Keys and values come from automerge-repo and flt code: a bad one is a programming error
// (TypeError), never data to be stored.

import type { StorageKey } from '@automerge/automerge-repo';

/**
 * Longest key element, in UTF-8 bytes: a file name may be 255 bytes (NAME_MAX on Linux, macOS) and
 * FsStore's temp files add 14 (`.` + name + `.` + 8 hex + `.tmp`); 200 leaves room to spare.
 * automerge-repo's elements are at most 64 (a SHA-256 in hex).
 */
export const MAX_KEY_ELEMENT_BYTES = 200;

/**
 * Throws TypeError unless `key` is a valid storage key: at least one element; the first at least 3
 * characters (FsStore splits it as `<2 chars>/<rest>`, like nodefs); every element non-empty,
 * without '/' or NUL, not starting with '.' (reserved for temp files and `.quarantine`, and it
 * excludes '.' and '..'), and at most MAX_KEY_ELEMENT_BYTES.
 */
export function assertKey(key: StorageKey): void {
  assertPrefix(key);
  if (key.length === 0) throw new TypeError('storage key is empty');
  if ((key[0] as string).length < 3)
    throw new TypeError(`storage key ${show(key)}: first element shorter than 3`);
}

/**
 * Throws TypeError unless `prefix` is a valid key prefix: like assertKey, but it may be empty
 * (everything) and its first element may be short (it then matches no key).
 */
export function assertPrefix(prefix: StorageKey): void {
  if (!Array.isArray(prefix)) throw new TypeError('storage key is not an array');
  for (const element of prefix) assertElement(prefix, element);
}

function assertElement(key: StorageKey, element: unknown): void {
  if (typeof element !== 'string')
    throw new TypeError(`storage key ${show(key)}: non-string element`);
  const bad =
    element === '' ||
    element.startsWith('.') ||
    element.includes('/') ||
    element.includes('\0') ||
    Buffer.byteLength(element) > MAX_KEY_ELEMENT_BYTES;
  if (bad) throw new TypeError(`storage key ${show(key)}: bad element ${JSON.stringify(element)}`);
}

/**
 * Throws TypeError unless `data` can be stored: a Uint8Array, not empty, not only zeros. FsStore
 * keeps values without a header of its own, and an empty or zero-filled file is what a crash leaves
 * on some filesystems, so it reads such a file as corrupt; automerge-repo never writes one. Every
 * store refuses them, so code that works on one store works on all.
 */
export function assertValue(key: StorageKey, data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array))
    throw new TypeError(`storage value for ${show(key)} is not a Uint8Array`);
  if (data.length === 0) throw new TypeError(`storage value for ${show(key)} is empty`);
  if (data.every((byte) => byte === 0))
    throw new TypeError(`storage value for ${show(key)} is only zeros`);
}

/** True when `key` starts with every element of `prefix` (array elements, not string prefixes). */
export function hasPrefix(key: StorageKey, prefix: StorageKey): boolean {
  return prefix.length <= key.length && prefix.every((element, i) => key[i] === element);
}

/** A key for messages: JSON, so odd characters stay visible. */
export function show(key: StorageKey): string {
  return JSON.stringify(key);
}
