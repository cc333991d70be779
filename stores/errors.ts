// The error class of the storage layer. stores/ may not import sync/errors.ts (layering), so this
// mirrors FltError's shape: a stable `code` that callers and tests match, and the original `cause`.

/** Stable store error codes. Add new ones at the end; never rename one that shipped. */
export type StoreErrorCode = 'STORE_CORRUPT' | 'STORE_IO' | 'STORE_CLOSED';

/** A failure a caller of a store may act on; match `code`, never the message text. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}
