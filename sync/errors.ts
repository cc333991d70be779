// The one error class of flt. Every failure a caller may act on carries a stable `code`;
// tests and scripts match the code, never the message text. The original cause is kept.

/**
 * This layer's codes (transport, framing, rpc, sync) and the generic ones every layer uses. A
 * layer above declares its own (src/errors.ts: the fleet's), so that this one names nothing of
 * fleets. Add new ones at the end; never rename one that shipped: tests and scripts match them.
 */
export const SYNC_ERROR_CODES = [
  'BAD_ARGUMENT',
  'BAD_NODE_ID',
  'BAD_ADDRESS',
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
  'TIMEOUT',
  'ABORTED',
  'CLOSED',
  'TRANSPORT',
  'IO',
  'INTERNAL',
  // flt/blobs/0: a chunk (or a hash list) that does not match the hash it was announced with.
  'HASH_MISMATCH',
] as const;

/**
 * The codes of every layer, one member per layer. A layer adds its own by merging into this
 * interface (`declare module '.../sync/errors.js' { interface ErrorCodes { name: ... } }`) and
 * declaring them at run time with `declareErrorCodes`.
 */
export interface ErrorCodes {
  sync: (typeof SYNC_ERROR_CODES)[number];
}

export type ErrorCode = ErrorCodes[keyof ErrorCodes];

/** Gives a layer's own error type (one this layer cannot import) its code, or undefined. */
export type CodeTranslator = (err: Error) => ErrorCode | undefined;

const known = new Set<string>(SYNC_ERROR_CODES);
const translators: CodeTranslator[] = [];

/**
 * Declares a layer's codes (each once, across all layers), and optionally how its own error
 * type maps to codes (for codeOf). Called once when the layer's errors module loads.
 */
export function declareErrorCodes(codes: readonly ErrorCode[], translate?: CodeTranslator): void {
  const twice = codes.filter((c, i) => known.has(c) || codes.indexOf(c) !== i);
  if (twice.length > 0) throw new TypeError(`error codes declared twice: ${twice.join(', ')}`);
  for (const c of codes) known.add(c);
  if (translate) translators.push(translate);
}

/**
 * Codes that mean the peer did not answer at all (unreachable, gone, silent). Here, not in the
 * rpc channel, so that readers of an answer's absence load no rpc runtime (offline reads).
 */
export const NO_ANSWER: ReadonlySet<string> = new Set([
  'CONNECT_FAILED',
  'CONNECTION_LOST',
  'TIMEOUT',
  'TRANSPORT',
]);

/** Every code declared so far, this layer's first. */
export function errorCodes(): ErrorCode[] {
  return [...known] as ErrorCode[];
}

export class FltError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FltError';
    this.code = code;
  }
}

/** Whether `value` is a code some loaded layer declared (an rpc peer's code, say). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && known.has(value);
}

/** True for errors that mean "the program is wrong", which must never be swallowed. */
export function isProgrammingError(err: unknown): boolean {
  return err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError;
}

/**
 * The code of any thrown value: ours; another layer's error type's, through the translator its
 * layer declared (src/errors.ts maps the stores' StoreError); `IO` for an operating-system error
 * (ENOENT, EACCES, ENOTDIR... from node:fs or node:net); INTERNAL for everything else,
 * programming errors (TypeError and friends) included.
 */
export function codeOf(err: unknown): ErrorCode {
  if (err instanceof FltError) return err.code;
  if (!(err instanceof Error) || isProgrammingError(err)) return 'INTERNAL';
  for (const translate of translators) {
    const code = translate(err);
    if (code !== undefined) return code;
  }
  const { code, errno, syscall } = err as { code?: unknown; errno?: unknown; syscall?: unknown };
  if (typeof code === 'string' && typeof errno === 'number' && typeof syscall === 'string')
    return 'IO';
  return 'INTERNAL';
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
