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
