// Exponential backoff with jitter for redialing, and a sleep that a close can cut short.

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
}

/** 100 ms doubles to 10 s: a restarted coordinator is found within ~10 s, an absent one costs little. */
export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 10_000 };

/** Delay before attempt `n` (0-based): full jitter between half and all of the exponential step. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random = Math.random): number {
  const step = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return step / 2 + random() * (step / 2);
}

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
