// The `profile` activator (design §4): set a Nix profile to the store path (a new generation),
// then run `deploy_command` if configured. Rollback switches back to the generation recorded
// before the activation, by number, never a bare `--rollback` (someone else may have moved it).

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  shScript,
  type Activator,
  type ActivatorSystem,
  type DeployAction,
  type Previous,
} from './activator.js';
import { currentGeneration, nixEnvArgs, shq } from './nix.js';

export interface ProfileOptions {
  /** `deploy_profile`: absolute path of the profile link; its directory is created. */
  readonly profile: string;
  /** `deploy_command`, run after the profile is set with STORE_PATH ACTION. */
  readonly command?: string | undefined;
  readonly nixStore?: string | undefined;
}

export class ProfileActivator implements Activator {
  readonly kind = 'profile' as const;
  readonly nixStore: string | undefined;

  constructor(private readonly options: ProfileOptions) {
    this.nixStore = options.nixStore;
  }

  async snapshot(): Promise<Previous> {
    await mkdir(path.dirname(this.options.profile), { recursive: true });
    const gen = await currentGeneration(this.options.profile);
    return { storePath: gen?.path ?? null, generation: gen?.generation ?? null, failedUnits: [] };
  }

  /** `nix-env ... --set "$1" && <command> "$1" "$2"`; `test` leaves the profile as it is. */
  command(storePath: string, action: DeployAction): string[] {
    const steps = action === 'test' ? [] : [`${this.#nixEnv()} --set "$1"`];
    return this.#script(steps, storePath, action);
  }

  /** Back to the recorded generation (switch/boot), then the command on its path. */
  rollbackCommand(prev: Previous, action: DeployAction): string[] | undefined {
    if (prev.storePath === null) return undefined;
    if (action === 'test') return this.#script([], prev.storePath, action);
    if (prev.generation === null) return undefined;
    const steps = [`${this.#nixEnv()} --switch-generation ${prev.generation}`];
    return this.#script(steps, prev.storePath, action);
  }

  async system(): Promise<ActivatorSystem> {
    const gen = await currentGeneration(this.options.profile);
    return {
      activator: this.kind,
      current: gen?.path ?? null,
      booted: null,
      profile: gen?.path ?? null,
      generation: gen?.generation ?? null,
      rebootNeeded: null,
    };
  }

  #nixEnv(): string {
    return ['nix-env', ...nixEnvArgs(this.options.profile, this.nixStore)].map(shq).join(' ');
  }

  /** One `/bin/sh -c` script: the steps, then the command; `$1` = store path, `$2` = action. */
  #script(steps: string[], storePath: string, action: DeployAction): string[] {
    const cmd = this.options.command;
    const all =
      cmd === undefined ? steps : [...steps, `/bin/sh -c ${shq(`${cmd} "$@"`)} flt "$1" "$2"`];
    return shScript(all, storePath, action);
  }
}
