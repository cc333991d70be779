// How push and fetch move many store paths over one connection: `parallel` lanes, at most one
// of them on a big path. The iroh bindings copy every byte through Array<number> on the main
// thread, so streams side by side add no bandwidth; they take some away. Measured with `npm run
// bench -- artifacts` (16 paths, 256 MiB, one process): 4 paths at once moved 5.3 MB/s each way,
// one at a time 5.5 (push) and 6.1 (fetch). What parallel streams do buy is hiding the round
// trips of small paths (request, answer, end), of which a NixOS closure has hundreds. So lane 0
// takes the big paths, biggest first, and small ones once no big one is left; the other lanes
// take small ones only.

/** From this size on a path is big: its bytes, not its round trips, decide how long it takes. */
export const BIG_PATH = 1 << 20;

/**
 * Runs `work` over `items` in `parallel` lanes (at least 1) as above; `work` answering `stop`
 * ends its lane (the others go on with what is left). Resolves when every lane has ended;
 * rejects with the first error a `work` throws.
 */
export async function runLanes<T extends { readonly narSize: number }>(
  items: readonly T[],
  parallel: number,
  work: (item: T) => Promise<'next' | 'stop'>,
): Promise<void> {
  const big = items.filter((m) => m.narSize >= BIG_PATH).sort((a, b) => b.narSize - a.narSize);
  const small = items.filter((m) => m.narSize < BIG_PATH).sort((a, b) => a.narSize - b.narSize);
  const lane = async (first: boolean) => {
    for (;;) {
      const item = (first ? big.shift() : undefined) ?? small.shift();
      if (item === undefined || (await work(item)) === 'stop') return;
    }
  };
  const n = Math.max(1, Math.min(parallel, items.length));
  await Promise.all(Array.from({ length: n }, (_, i) => lane(i === 0)));
}
