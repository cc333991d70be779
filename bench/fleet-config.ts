// Configuration and logging for the roles the fleet benchmarks start in-process (restart.ts,
// fanin.ts): resolved the way the CLI resolves it, from flags only (no config file, no FLT_*
// environment), on loopback without relays or discovery.

import { appendFileSync } from 'node:fs';
import { createLogger, type Logger } from '../sync/log.js';

/**
 * A Config as `flt --state-dir DIR --relay disabled --discovery none --bind 127.0.0.1:0` has it:
 * the same helper the tests use.
 */
export { localConfig as benchConfig } from '../test/helpers/fleet.js';

/**
 * Warnings and errors only (a corrupt chunk, a failed shutdown step), tagged with `who`. With
 * BENCH_LOG=FILE, everything from info up goes to FILE instead (to see why a run was slow);
 * BENCH_LOG_LEVEL=debug adds the agents' debug lines (failed dials, retries).
 */
export function benchLogger(who: string): Logger {
  const file = process.env.BENCH_LOG;
  if (!file) return createLogger('warn', who);
  const level = process.env.BENCH_LOG_LEVEL === 'debug' ? 'debug' : 'info';
  return createLogger(level, who, (line) => appendFileSync(file, `${Date.now()} ${line}\n`));
}
