// codeOf gives every error that can reach the CLI a stable code: ours, the store's (mapped), and
// operating-system errors; only what is not understood (bugs included) stays INTERNAL.

import { readFile } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { StoreError } from '../stores/errors.js';
import { codeOf, FltError } from '../sync/errors.js';

it('maps StoreError codes to ours', () => {
  expect(codeOf(new StoreError('STORE_IO', 'x'))).toBe('IO');
  expect(codeOf(new StoreError('STORE_CORRUPT', 'x'))).toBe('STORE_CORRUPT');
  expect(codeOf(new StoreError('STORE_CLOSED', 'x'))).toBe('CLOSED');
});

it('maps operating-system errors to IO', async () => {
  const err: unknown = await readFile('/nonexistent/flt-test').catch((e: unknown) => e);
  expect(codeOf(err)).toBe('IO');
});

it('keeps our codes, and INTERNAL for bugs and unknown values', () => {
  expect(codeOf(new FltError('TIMEOUT', 'x'))).toBe('TIMEOUT');
  expect(codeOf(new TypeError('x'))).toBe('INTERNAL');
  expect(codeOf(Object.assign(new TypeError('x'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBe(
    'INTERNAL',
  );
  expect(codeOf(new Error('x'))).toBe('INTERNAL');
  expect(codeOf('a string')).toBe('INTERNAL');
  expect(codeOf(null)).toBe('INTERNAL');
});
