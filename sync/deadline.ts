// Deadlines and cancellation for promises that cannot be cancelled themselves (dials, RPCs).

import { FltError } from './errors.js';

export interface DeadlineOptions {
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** Default for dials: long enough for a relayed handshake, short enough for a person waiting. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Races `p` against a timeout (TIMEOUT) and the caller's signal (ABORTED). */
export async function withDeadline<T>(
  p: Promise<T>,
  options: DeadlineOptions,
  what: string,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new FltError('TIMEOUT', `${what}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    onAbort = () => reject(new FltError('ABORTED', `${what}: aborted`));
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
  }
}
