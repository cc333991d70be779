// Waiting on events with a deadline, for the benchmarks: a stuck transport fails the
// measurement with a message instead of hanging the run. Each wait removes its listener and
// its timer when it settles, so nothing it set up keeps the process alive.

/** Subscribes `listener` to some event source and returns the matching unsubscribe. */
export type Subscribe = (listener: () => void) => () => void;

/**
 * Resolves with `performance.now()` at the moment `check()` first holds: at once, or inside the
 * listener of the event that made it hold (so the time stamp has no extra scheduling delay).
 */
export function until(
  what: string,
  check: () => boolean,
  subscribe: Subscribe,
  timeoutMs: number,
): Promise<number> {
  if (check()) return Promise.resolve(performance.now());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const unsubscribe = subscribe(() => {
      if (!check()) return;
      const at = performance.now();
      clearTimeout(timer);
      unsubscribe();
      resolve(at);
    });
  });
}

/**
 * Runs every close step even when one fails, then reports all failures at once (STYLE.md:
 * shutdown runs every step).
 */
export async function closeAll(steps: readonly (() => Promise<void> | void)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `${errors.length} close step(s) failed`);
}

/** `promise`, or a rejection naming `what` once `timeoutMs` has passed (the timer is cleared). */
export async function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
