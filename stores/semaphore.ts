// Concurrency limits for stores/fs-store.ts: a counting semaphore that bounds open files and
// in-flight syscalls (EMFILE with thousands of documents), a worker-pool map, and a per-name
// mutex so a save, a remove and a quarantine of the same file never interleave.

/**
 * A counting semaphore: at most `limit` holders at a time, served in arrival order, except that
 * waiters asking `first` are served before all others (a coordinator's answer waiting on the root
 * document's save must not queue behind a fan-in's thousands of per-agent saves: issue 13).
 */
export class Semaphore {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  private readonly firstWaiters: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`bad semaphore limit ${limit}`);
    this.free = limit;
  }

  /** Runs `fn` while holding one permit; with `first`, ahead of the waiters without it. */
  async run<T>(fn: () => Promise<T>, first = false): Promise<T> {
    await this.acquire(first);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(first: boolean): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => (first ? this.firstWaiters : this.waiters).push(resolve));
  }

  private release(): void {
    const next = this.firstWaiters.shift() ?? this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * Maps `fn` over `items` with at most `limit` calls running, keeping the order of results.
 * On failure it stops starting new calls, lets the running ones settle, then throws the first
 * error (no call is left floating).
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const workers = Array.from({ length: Math.min(limit, items.length) }, worker);
  await Promise.all(workers);
  if (failure !== undefined) throw failure.error;
  return results;
}

/** Serializes tasks per name; idle names hold no memory. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier task for `name` has settled. */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(name) ?? Promise.resolve();
    let done!: () => void;
    const tail = new Promise<void>((resolve) => (done = resolve));
    this.tails.set(name, tail);
    await before;
    try {
      return await fn();
    } finally {
      done();
      if (this.tails.get(name) === tail) this.tails.delete(name);
    }
  }
}
