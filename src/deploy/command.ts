// The `command` activator (design §4): a configured shell command gets STORE_PATH ACTION, for
// hosts that are not NixOS and for tests. Nix keeps no generation for it, so "previous" is the
// journal's lastGood, and a first deployment has nothing to roll back to.

import type { Activator, ActivatorSystem, DeployAction, LastGood, Previous } from './activator.js';
import { shellCommand } from './activator.js';

export interface CommandOptions {
  /** `deploy_command`, run as `/bin/sh -c '<cmd> "$@"' flt STORE_PATH ACTION`. */
  readonly command: string;
  readonly nixStore?: string | undefined;
}

export class CommandActivator implements Activator {
  readonly kind = 'command' as const;
  readonly nixStore: string | undefined;
  constructor(private readonly options: CommandOptions) {
    this.nixStore = options.nixStore;
  }

  snapshot(lastGood: LastGood | null): Promise<Previous> {
    return Promise.resolve({
      storePath: lastGood?.storePath ?? null,
      generation: null,
      failedUnits: [],
    });
  }

  command(storePath: string, action: DeployAction): string[] {
    return shellCommand(this.options.command, storePath, action);
  }

  rollbackCommand(prev: Previous, action: DeployAction): string[] | undefined {
    return prev.storePath === null
      ? undefined
      : shellCommand(this.options.command, prev.storePath, action);
  }

  /** Nothing but the journal knows what runs: the current system is lastGood. */
  system(lastGood: LastGood | null): Promise<ActivatorSystem> {
    return Promise.resolve({
      activator: this.kind,
      current: lastGood?.storePath ?? null,
      booted: null,
      profile: null,
      generation: null,
      rebootNeeded: null,
    });
  }
}
