// The one error class of flt. Every failure a caller may act on carries a stable `code`;
// tests and scripts match the code, never the message text. The original cause is kept.

/** Stable error codes. Add new ones at the end; never rename one that shipped. */
export const ERROR_CODES = [
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
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class FltError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FltError';
    this.code = code;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** True for errors that mean "the program is wrong", which must never be swallowed. */
export function isProgrammingError(err: unknown): boolean {
  return err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError;
}

/** Codes of stores/errors.ts's StoreError (stores/ may not import this file) and ours for them. */
const STORE_CODES: Readonly<Record<string, ErrorCode>> = {
  STORE_CORRUPT: 'STORE_CORRUPT',
  STORE_IO: 'IO',
  STORE_CLOSED: 'CLOSED',
};

/**
 * The code of any thrown value: ours; a StoreError's, mapped to ours; `IO` for an operating-system
 * error (ENOENT, EACCES, ENOTDIR... from node:fs or node:net); INTERNAL for everything else,
 * programming errors (TypeError and friends) included.
 */
export function codeOf(err: unknown): ErrorCode {
  if (err instanceof FltError) return err.code;
  if (!(err instanceof Error) || isProgrammingError(err)) return 'INTERNAL';
  const { code, errno, syscall } = err as { code?: unknown; errno?: unknown; syscall?: unknown };
  if (err.name === 'StoreError' && typeof code === 'string') return STORE_CODES[code] ?? 'INTERNAL';
  if (typeof code === 'string' && typeof errno === 'number' && typeof syscall === 'string')
    return 'IO';
  return 'INTERNAL';
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
