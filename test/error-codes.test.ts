// codeOf gives every error that can reach the CLI a stable code: ours, the store's (mapped), and
// operating-system errors; only what is not understood (bugs included) stays INTERNAL. Each
// layer owns its codes: sync/ names none of the fleet's, src/errors.ts declares them.

import { readFile } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { StoreError } from '../stores/errors.js';
import { codeOf, FLEET_ERROR_CODES, FltError, isErrorCode } from '../src/errors.js';
import { declareErrorCodes, errorCodes, SYNC_ERROR_CODES } from '../sync/errors.js';

/** Every code that shipped before the codes were split by layer: none may change its spelling. */
const SHIPPED = [
  'BAD_CONFIG',
  'BAD_ARGUMENT',
  'BAD_NODE_ID',
  'BAD_ADDRESS',
  'BAD_KEY',
  'KEY_ENCRYPTED',
  'KEY_WRONG_TYPE',
  'KEY_PERMISSIONS',
  'FRAME_TOO_LARGE',
  'BAD_MESSAGE',
  'UNSUPPORTED_VERSION',
  'UNKNOWN_ALPN',
  'UNAUTHORIZED_PEER',
  'SENDER_MISMATCH',
  'CONNECT_FAILED',
  'CONNECTION_LOST',
  'ECHO_MISMATCH',
  'RPC_UNKNOWN_METHOD',
  'RPC_REMOTE',
  'BUSY',
  'NOT_FOUND',
  'STORE_CORRUPT',
  'TIMEOUT',
  'ABORTED',
  'CLOSED',
  'TRANSPORT',
  'IO',
  'INTERNAL',
  'BAD_SIGNATURE',
  'SMALL_ORDER_KEY',
  'WRONG_FLEET',
  'NOT_ADMIN',
  'REVOKED',
  'OP_REPLAYED',
  'TOKEN_EXPIRED',
  'TOKEN_REUSED',
  'TOKEN_FORGED',
  'TOKEN_OTHER_FLEET',
  'BAD_DEPLOYMENT',
  'NOT_TARGETED',
  'UNTRUSTED_TRAIL',
  'SIGNER_NOT_ADMIN',
  'SEQ_NOT_NEWER',
  'DEPLOYMENT_EXPIRED',
  'DEPLOY_FAILED',
  'NO_ACTIVATOR',
  'BAD_STORE_PATH',
  'NOT_A_SYSTEM',
  'ACTIVATION_FAILED',
  'HEALTH_CHECK_FAILED',
  'INTERRUPTED',
  'ROLLBACK_FAILED',
  'HASH_MISMATCH',
  'NO_SIGNING_KEY',
  'BAD_SIGNING_KEY',
  'UNKNOWN_SIGNING_KEY',
  'UNTRUSTED_SIGNATURE',
  'NOT_IN_STORE',
  'NAR_HASH_MISMATCH',
  'BLOB_CORRUPT',
  'BLOB_MISSING',
  'DISK_FULL',
  'ARTIFACT_NOT_ALLOWED',
  'SUBSTITUTE_FAILED',
  'BUILD_FAILED',
];

it('keeps every shipped code, each owned by one layer; sync/ owns none of the fleet', () => {
  expect([...errorCodes()].sort()).toEqual([...SHIPPED].sort());
  for (const code of ['WRONG_FLEET', 'NOT_ADMIN', 'REVOKED', 'OP_REPLAYED', 'BAD_CONFIG'])
    expect((SYNC_ERROR_CODES as readonly string[]).includes(code)).toBe(false);
  for (const code of SHIPPED) expect(isErrorCode(code)).toBe(true);
  expect(isErrorCode('NOT_A_CODE')).toBe(false);
  // A code declared twice (by two layers, or twice by one) is a programming error.
  expect(() => declareErrorCodes(['NOT_ADMIN'])).toThrow(TypeError);
  expect(() => declareErrorCodes([FLEET_ERROR_CODES[0]])).toThrow(TypeError);
});

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
