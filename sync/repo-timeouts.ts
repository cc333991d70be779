// automerge-repo 2.5.6 leaves two rejections unhandled when a document a peer announced never
// becomes ready here: CollectionSynchronizer calls `void docSynchronizer.beginSync(...)`, which
// awaits `handle.whenReady()` without a catch, so its 60 s `withTimeout` rejects with nobody
// listening; and `withTimeout` races xstate's `waitFor`, whose own 120 s timeout then rejects the
// same way. Node ends a process on an unhandled rejection, so a peer that announced a document
// and went away took the coordinator down a minute later (a 500-agent fan-in, issue 13): a bad
// peer must lose its connection, never the process. The guard recognises exactly these two and
// logs them (at most one line per 10 s, with the count); any other unhandled rejection still ends
// the process, as Node would.

import type { Logger } from './log.js';

const LOG_EVERY_MS = 10_000;

let installed = false;
let seen = 0;
let logged = 0;
let lastLog = -Infinity;

/** Whether `reason` is one of automerge-repo's two unhandled sync timeouts (above). */
export function isRepoTimeout(reason: unknown): boolean {
  if (!(reason instanceof Error)) return false;
  if (reason.name === 'TimeoutError' && reason.message.startsWith('withTimeout:')) return true;
  return /^Timeout of \d+ ms exceeded$/.test(reason.message) && /xstate/.test(reason.stack ?? '');
}

/** How many such timeouts this process has absorbed. */
export function repoTimeoutsSeen(): number {
  return seen;
}

/** Installs the process-wide guard once (later calls do nothing); `log` gets its lines. */
export function guardRepoTimeouts(log: Logger): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason: unknown) => {
    if (!isRepoTimeout(reason)) {
      process.nextTick(() => {
        throw reason;
      });
      return;
    }
    seen++;
    const now = Date.now();
    if (now - lastLog < LOG_EVERY_MS) return;
    log.warn('sync: a document a peer announced did not arrive in time (automerge-repo timeout)', {
      since: seen - logged,
      total: seen,
    });
    logged = seen;
    lastLog = now;
  });
}
