// Commands from a bench child's parent, one per line on stdin (fanin-child.ts, fleet-sync-child.ts).
// The parent's exit closes stdin, which ends the child with `exitCode`.

import { createInterface } from 'node:readline';

/** Starts reading stdin; returns `next`, which resolves with the next command line. */
export function childCommands(
  exitCode: number,
): (accept?: (line: string) => boolean) => Promise<string> {
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      lines.push(line.trim());
      wake?.();
    })
    .on('close', () => process.exit(exitCode));
  /** The next line `accept` takes (others are skipped). */
  return async (accept = () => true) => {
    for (;;) {
      const line = lines.shift();
      if (line !== undefined && accept(line)) return line;
      if (line === undefined) await new Promise<void>((resolve) => (wake = resolve));
    }
  };
}
