// Waiting on state with a deadline, never on a fixed sleep (STYLE.md). `check` is polled on
// a short interval until it returns a value other than undefined/false, or the deadline fails it.

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** i, 100)));
  }
}

/** What waitForChanges listens to: a DocHandle, or anything else that emits 'change'. */
export interface ChangeEmitter {
  on(event: 'change', f: () => void): unknown;
  off(event: 'change', f: () => void): unknown;
}

/**
 * waitFor that also runs `check` on every 'change' of `source`: a state that a document passes
 * through between two polls (a record that is `waiting` for one recheck) is seen all the same.
 */
export async function waitForChanges<T>(
  what: string,
  source: ChangeEmitter | undefined,
  check: () => T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  let hit: T | undefined;
  const look = () => {
    if (hit !== undefined) return hit;
    const v = check();
    if (v !== undefined && v !== false) hit = v;
    return hit;
  };
  source?.on('change', look);
  try {
    return await waitFor(what, look, timeoutMs);
  } finally {
    source?.off('change', look);
  }
}
