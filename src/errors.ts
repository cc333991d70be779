// The fleet's error codes: flt's one error class (FltError, sync/errors.ts) with the codes this
// layer owns (configuration, keys, trust, the fleet's documents), and the stores' StoreError
// given ours. Import FltError and codeOf from here in src/: loading this file is what makes the
// codes below known (to codeOf, and to the rpc client reading a peer's error).

import { StoreError, type StoreErrorCode } from '../stores/errors.js';
import { declareErrorCodes, type ErrorCode } from '../sync/errors.js';

export { codeOf, FltError, isErrorCode, messageOf, type ErrorCode } from '../sync/errors.js';

/** Codes of this layer. Add new ones at the end; never rename one that shipped. */
export const FLEET_ERROR_CODES = [
  'BAD_CONFIG',
  'BAD_KEY',
  'KEY_ENCRYPTED',
  'KEY_WRONG_TYPE',
  'KEY_PERMISSIONS',
  'STORE_CORRUPT',
  'BAD_SIGNATURE',
  'SMALL_ORDER_KEY',
  'WRONG_FLEET',
  'NOT_ADMIN',
  'REVOKED',
  'OP_REPLAYED',
  'TOKEN_EXPIRED',
  'TOKEN_REUSED',
  'TOKEN_FORGED',
  'TOKEN_OTHER_FLEET',
  // Deployments (issue 11): refusals an agent records in its status (README, "Deployments").
  'BAD_DEPLOYMENT',
  'NOT_TARGETED',
  'UNTRUSTED_TRAIL',
  'SIGNER_NOT_ADMIN',
  'SEQ_NOT_NEWER',
  'DEPLOYMENT_EXPIRED',
  // `flt admin deploy --wait` saw a target fail, be refused or roll back.
  'DEPLOY_FAILED',
  // issue 11, activation (src/deploy/): the agent's own failures and refusals of what it runs
  'NO_ACTIVATOR',
  'BAD_STORE_PATH',
  'NOT_A_SYSTEM',
  'ACTIVATION_FAILED',
  'HEALTH_CHECK_FAILED',
  'INTERRUPTED',
  'ROLLBACK_FAILED',
  // issue 12, artifacts (src/artifacts/): push, the coordinator's blob store, agent delivery
  'NO_SIGNING_KEY',
  'BAD_SIGNING_KEY',
  'UNKNOWN_SIGNING_KEY',
  'UNTRUSTED_SIGNATURE',
  'NOT_IN_STORE',
  'NAR_HASH_MISMATCH',
  'BLOB_CORRUPT',
  'BLOB_MISSING',
  'DISK_FULL',
  'ARTIFACT_NOT_ALLOWED',
  'SUBSTITUTE_FAILED',
  'BUILD_FAILED',
] as const;

declare module '../sync/errors.js' {
  interface ErrorCodes {
    fleet: (typeof FLEET_ERROR_CODES)[number];
  }
}

/** A StoreError's code as ours; every store code has one (a new one fails to compile here). */
const STORE_CODES: Readonly<Record<StoreErrorCode, ErrorCode>> = {
  STORE_CORRUPT: 'STORE_CORRUPT',
  STORE_IO: 'IO',
  STORE_CLOSED: 'CLOSED',
};

declareErrorCodes(FLEET_ERROR_CODES, (err) =>
  err instanceof StoreError ? STORE_CODES[err.code] : undefined,
);
