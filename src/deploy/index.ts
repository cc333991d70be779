// The activation layer's public API (issue 11, design §3-§4), for the agent's Deployer: check a
// store path, pick the configured activator, open the journal, activate or resume. Each file
// below holds one concern; see its header.

export { activate, ACTIVATION_TIMEOUT_MS, resume } from './activate.js';
export type { ActivationContext, ActivationRequest } from './activate.js';
export { checkDeployConfig, shellCommand } from './activator.js';
export type {
  Activator,
  ActivatorKind,
  ActivatorSystem,
  DeployAction,
  DeployConfig,
  LastGood,
  Previous,
} from './activator.js';
export { createActivator } from './factory.js';
export { checkHealth, newFailures, parseFailedUnits, runCheck } from './health.js';
export type { HealthOptions, Reachable } from './health.js';
export { EMPTY_JOURNAL, Journal, parseJournal } from './journal.js';
export type { ActiveRecord, JournalState, Phase } from './journal.js';
export { isStorePathIn, isValidPath, storeDirOf } from './nix.js';
export { FAILURE_CODES, LOG_TAIL_MAX } from './outcome.js';
export type { ActivationOutcome, FailureCode, OutcomeState } from './outcome.js';
export { defaultMode } from './runner.js';
export type { RunnerMode, RunnerRecord } from './runner.js';
export { checkClosure, runningSystem } from './system.js';
export type { ClosureCheck, RunningSystem } from './system.js';
