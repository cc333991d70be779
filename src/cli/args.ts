// Parsers for the values of commands' own options (`-n 10`, `--size 64k`): one BAD_ARGUMENT line
// naming the option when a value is wrong.

import { FltError } from '../../sync/errors.js';
import { parseByteSize } from '../config-keys.js';
import type { Invocation } from './invocation.js';

/** A command's own option that takes a value (`--out FILE`), if given. */
export function textOption(opts: Invocation['opts'], name: string): string | undefined {
  const value = opts[name];
  return typeof value === 'string' ? value : undefined;
}

/** Parses a positive integer option such as `-n 10`. */
export function positiveInt(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new FltError(
      'BAD_ARGUMENT',
      `--${name} must be an integer from 1 to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** Parses a size such as `1024`, `64k`, `1m` (binary units, parseByteSize) up to `max` bytes. */
export function byteSize(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = parseByteSize(value) ?? NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new FltError(
      'BAD_ARGUMENT',
      `--${name} must be a byte size from 0 to ${max} (e.g. 4096, 64k, 1m), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}
