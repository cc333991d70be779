// The honest result of one activation (issue 11 Deliver 4, deploy-rs#214): what activate.ts
// returns and the journal keeps, for the status document to map. A rollback that failed is
// never `rolled-back`; a first deployment that failed says it could not roll back.

import type { FailureCode } from '../docs/status.js';

/** Codes of a failed activation: declared with the status document that records them. */
export { FAILURE_CODES, type FailureCode } from '../docs/status.js';

export type OutcomeState = 'succeeded' | 'failed' | 'rolled-back';

/**
 * - `succeeded`: activated and healthy; no code.
 * - `rolled-back`: failed (code ACTIVATION_FAILED, HEALTH_CHECK_FAILED or INTERRUPTED) and the
 *   rollback command exited 0 (`rollback: 'done'`).
 * - `failed`: `rollback: 'impossible-first-deployment'` (code of the failure), or
 *   `rollback: 'failed'` (code ROLLBACK_FAILED, reason names both failures).
 */
export interface ActivationOutcome {
  readonly state: OutcomeState;
  readonly code?: FailureCode;
  readonly reason?: string;
  readonly rollback?: 'done' | 'failed' | 'impossible-first-deployment';
  /** ISO times: activation started, its command ended (rc 0), the outcome was decided. */
  readonly times: {
    readonly activating: string;
    readonly activated?: string;
    readonly finished: string;
  };
  /** The tail of the activation's (and rollback's) output, at most {@link LOG_TAIL_MAX} bytes. */
  readonly log?: string;
}

/** Cap on the log tail an outcome carries (design §2: status records keep <= 4 KiB). */
export const LOG_TAIL_MAX = 4096;
