// The Activator interface of design §4: what one kind of host does to activate a store path and
// to go back. An activator only *builds* the commands; runner.ts runs them detached from the
// agent, and activate.ts sequences snapshot, command, health check and rollback with the journal.
// The implementations (nixos.ts, profile.ts, command.ts) import this file; factory.ts picks one.

import type { ActivatorKind as SystemActivator } from '../docs/status.js';
import { FltError } from '../errors.js';
import type { DeployAction } from '../trust/deployment.js';

/** What a deployment asks a host to do with its system (as `switch-to-configuration`). */
export type { DeployAction } from '../trust/deployment.js';

/** The last store path that activated and passed its health check (journal.ts keeps it). */
export interface LastGood {
  readonly storePath: string;
  readonly generation: number | null;
}

/** What was there before an activation: what a rollback returns to. */
export interface Previous {
  /** The store path to return to (profile generation's path, or lastGood), null if none. */
  readonly storePath: string | null;
  /** The profile generation to switch back to, null when there is none (or no profile). */
  readonly generation: number | null;
  /** nixos: units failed before the activation (only new failures count against it). */
  readonly failedUnits: readonly string[];
  /** nixos: /run/current-system before, the target of a `test` rollback. */
  readonly running?: string | null;
}

/** The activator's view of the system, for the status document (`hwm`/`at` are the agent's). */
export interface ActivatorSystem {
  readonly activator: ActivatorKind;
  readonly current: string | null;
  readonly booted: string | null;
  readonly profile: string | null;
  readonly generation: number | null;
  readonly rebootNeeded: boolean | null;
}

/** The activators there are (the status document's kinds but `none`). */
export type ActivatorKind = Exclude<SystemActivator, 'none'>;

/** One way to activate a system; every method but `snapshot`/`system`/`healthExtra` is pure. */
export interface Activator {
  readonly kind: ActivatorKind;
  /** The store (`--store` URI) paths are checked against; undefined: Nix's default. */
  readonly nixStore?: string;
  /** State before activating: taken, and journaled, before anything runs. */
  snapshot(lastGood: LastGood | null): Promise<Previous>;
  /** The argv the runner runs to activate `storePath` with `action`. */
  command(storePath: string, action: DeployAction): string[];
  /** The argv that returns to `prev`, or undefined when there is nothing to return to. */
  rollbackCommand(prev: Previous, action: DeployAction): string[] | undefined;
  /** The system as this activator sees it; `lastGood` from the journal (all `command` knows). */
  system(lastGood: LastGood | null): Promise<ActivatorSystem>;
  /** An activator's own health check (nixos: new failed units); a reason when it fails. */
  healthExtra?(prev: Previous, action: DeployAction): Promise<string | undefined>;
}

/** The configuration keys the activators read (src/config-keys.ts, design §4). */
export interface DeployConfig {
  readonly deployActivator: 'none' | ActivatorKind;
  readonly deployProfile?: string | undefined;
  readonly deployCommand?: string | undefined;
  readonly nixStore?: string | undefined;
}

/**
 * The cross-key rules, for where the agent starts: `profile` needs `deploy_profile`, `command`
 * needs `deploy_command`, `nixos` takes no `nix_store`. Throws BAD_CONFIG naming the key.
 */
export function checkDeployConfig(config: DeployConfig): void {
  const a = config.deployActivator;
  if (a === 'profile' && config.deployProfile === undefined)
    throw new FltError(
      'BAD_CONFIG',
      'config: deploy_profile must be set when deploy_activator is profile',
    );
  if (a === 'command' && config.deployCommand === undefined)
    throw new FltError(
      'BAD_CONFIG',
      'config: deploy_command must be set when deploy_activator is command',
    );
  if (a === 'nixos' && config.nixStore !== undefined)
    throw new FltError(
      'BAD_CONFIG',
      'config: nix_store cannot be set when deploy_activator is nixos (it uses the system store)',
    );
}

/**
 * `/bin/sh -c 'STEP && STEP ...' flt STORE_PATH ACTION` (no step: `true`): every argv the
 * activators build; a step reads the store path as `$1` and the action as `$2`.
 */
export function shScript(
  steps: readonly string[],
  storePath: string,
  action: DeployAction,
): string[] {
  return [
    '/bin/sh',
    '-c',
    steps.length === 0 ? 'true' : steps.join(' && '),
    'flt',
    storePath,
    action,
  ];
}

/** `/bin/sh -c '<cmd> "$@"' flt STORE_PATH ACTION`: the argv convention for configured commands. */
export function shellCommand(cmd: string, storePath: string, action: DeployAction): string[] {
  return shScript([`${cmd} "$@"`], storePath, action);
}
