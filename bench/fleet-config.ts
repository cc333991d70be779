// Configuration and logging for the roles the fleet benchmarks start in-process (restart.ts,
// fanin.ts): resolved the way the CLI resolves it, from flags only (no config file, no FLT_*
// environment), on loopback without relays or discovery.

import { createLogger, type Logger } from '../sync/log.js';

/**
 * A Config as `flt --state-dir DIR --relay disabled --discovery none --bind 127.0.0.1:0` has it:
 * the same helper the tests use.
 */
export { localConfig as benchConfig } from '../test/helpers/fleet.js';

/** Warnings and errors only (a corrupt chunk, a failed shutdown step), tagged with `who`. */
export function benchLogger(who: string): Logger {
  return createLogger('warn', who);
}
