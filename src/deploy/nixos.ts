// The `nixos` activator (design §4): what `nixos-rebuild` does once the system is built. Set the
// system profile (a new generation, the boot menu entry), then the closure's own
// `bin/switch-to-configuration ACTION`. `test` leaves the profile alone. Rollback switches the
// profile back to the generation recorded before (by number) and runs *that* system's switch;
// a `test` rollback re-runs the system that was running. Always the default store (/nix/store).
// Only the commands are unit-tested here; the VM check (nix/checks) runs them for real.

import path from 'node:path';
import { FltError, messageOf } from '../errors.js';
import {
  shScript,
  type Activator,
  type ActivatorSystem,
  type DeployAction,
  type Previous,
} from './activator.js';
import { parseFailedUnits, newFailures } from './health.js';
import { currentGeneration, nixEnvArgs, runTool, shq } from './nix.js';
import { runningSystem, SWITCH } from './system.js';

/** The system profile NixOS boots from (`nixos-rebuild` sets the same). */
export const SYSTEM_PROFILE = '/nix/var/nix/profiles/system';

export interface NixosOptions {
  /** Tests only: a fake root for /run/current-system and the profile. */
  readonly root?: string;
}

export class NixosActivator implements Activator {
  readonly kind = 'nixos' as const;
  readonly nixStore = undefined;
  readonly #root: string;

  constructor(options: NixosOptions = {}) {
    this.#root = options.root ?? '/';
  }

  async snapshot(): Promise<Previous> {
    const [gen, running, failed] = await Promise.all([
      currentGeneration(this.#profile()),
      runningSystem(this.#root),
      failedUnits().catch(() => []), // no systemd answer before: every failure after is new
    ]);
    return {
      storePath: gen?.path ?? null,
      generation: gen?.generation ?? null,
      failedUnits: failed,
      running: running.current,
    };
  }

  /** switch/boot: `nix-env -p SYSTEM --set "$1" && "$1"/bin/switch-to-configuration "$2"`. */
  command(storePath: string, action: DeployAction): string[] {
    const set = action === 'test' ? [] : [`${this.#nixEnv()} --set "$1"`];
    return shScript([...set, `"$1"/${SWITCH} "$2"`], storePath, action);
  }

  rollbackCommand(prev: Previous, action: DeployAction): string[] | undefined {
    if (action === 'test') {
      const running = prev.running ?? null;
      return running === null ? undefined : shScript([`"$1"/${SWITCH} "$2"`], running, action);
    }
    if (prev.generation === null || prev.storePath === null) return undefined;
    const steps = [
      `${this.#nixEnv()} --switch-generation ${prev.generation}`,
      `"$1"/${SWITCH} "$2"`,
    ];
    return shScript(steps, prev.storePath, action);
  }

  async system(): Promise<ActivatorSystem> {
    const [gen, running] = await Promise.all([
      currentGeneration(this.#profile()),
      runningSystem(this.#root),
    ]);
    return {
      activator: this.kind,
      ...running,
      profile: gen?.path ?? null,
      generation: gen?.generation ?? null,
    };
  }

  /** New failed units since the snapshot (not for `boot`: nothing changed yet). */
  async healthExtra(prev: Previous, action: DeployAction): Promise<string | undefined> {
    if (action === 'boot') return undefined;
    let now: string[];
    try {
      now = await failedUnits();
    } catch (err) {
      return `systemctl --failed: ${messageOf(err)}`;
    }
    const fresh = newFailures(prev.failedUnits, now);
    return fresh.length === 0 ? undefined : `failed units: ${fresh.join(', ')}`;
  }

  #profile(): string {
    return path.join(this.#root, SYSTEM_PROFILE);
  }

  #nixEnv(): string {
    return ['nix-env', ...nixEnvArgs(SYSTEM_PROFILE)].map(shq).join(' ');
  }
}

/** `systemctl --failed --plain --no-legend`, parsed. */
async function failedUnits(): Promise<string[]> {
  const r = await runTool(
    'systemctl',
    ['--failed', '--plain', '--no-legend', '--no-pager'],
    10_000,
  );
  if (r.code !== 0) throw new FltError('IO', `exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
  return parseFailedUnits(r.stdout);
}
