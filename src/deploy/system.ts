// What is a system closure, and what system runs now. checkClosure is the agent's last word on a
// store path before anything runs (design §4 "System closure": BAD_STORE_PATH, waiting,
// NOT_A_SYSTEM), for every activator. runningSystem reads /run/current-system and
// /run/booted-system, and reboot-needed with the facts collector's own rule (facts/nixos.ts).

import { constants } from 'node:fs';
import { access, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { rebootRequired } from '../facts/nixos.js';
import { isStorePathIn, isValidPath, storeDirOf } from './nix.js';

/** Where a store path stands: ready to activate, not (yet) in the store, or refused. */
export type ClosureCheck =
  | { readonly state: 'ready' }
  | { readonly state: 'waiting' }
  | {
      readonly state: 'refused';
      readonly code: 'BAD_STORE_PATH' | 'NOT_A_SYSTEM';
      readonly reason: string;
    };

/** The file every activator runs (or requires): what makes a store path a system. */
export const SWITCH = 'bin/switch-to-configuration';

/**
 * Checks `storePath` against the store of `nixStore` in the order of design §4: syntax
 * (BAD_STORE_PATH), validity (`waiting` when absent: it may be copied later), then an executable
 * regular `bin/switch-to-configuration` that resolves inside the store (NOT_A_SYSTEM).
 */
export async function checkClosure(storePath: string, nixStore?: string): Promise<ClosureCheck> {
  const storeDir = storeDirOf(nixStore);
  if (!isStorePathIn(storePath, storeDir))
    return refused('BAD_STORE_PATH', `${JSON.stringify(storePath)} is not a path in ${storeDir}`);
  if (!(await isValidPath(storePath, nixStore))) return { state: 'waiting' };
  const file = path.join(storePath, SWITCH);
  try {
    const real = await realpath(file);
    const realStore = await realpath(storeDir);
    if (!real.startsWith(realStore + '/'))
      return refused('NOT_A_SYSTEM', `${SWITCH} of ${storePath} points outside ${storeDir}`);
    if (!(await stat(real)).isFile())
      return refused('NOT_A_SYSTEM', `${SWITCH} of ${storePath} is not a file`);
    await access(real, constants.X_OK);
  } catch {
    return refused('NOT_A_SYSTEM', `${storePath} has no executable ${SWITCH}`);
  }
  return { state: 'ready' };
}

function refused(code: 'BAD_STORE_PATH' | 'NOT_A_SYSTEM', reason: string): ClosureCheck {
  return { state: 'refused', code, reason };
}

/** The running and booted NixOS systems; nulls off NixOS (no /run/current-system). */
export interface RunningSystem {
  readonly current: string | null;
  readonly booted: string | null;
  /** Kernel, initrd or modules differ between the two; null when unknown (not NixOS). */
  readonly rebootNeeded: boolean | null;
}

/** Reads the running system under `root` (`/` in production, a fake tree in tests). */
export async function runningSystem(root = '/'): Promise<RunningSystem> {
  const [current, booted] = await Promise.all([
    linkTarget(path.join(root, 'run/current-system')),
    linkTarget(path.join(root, 'run/booted-system')),
  ]);
  const reboot =
    current !== null && booted !== null ? await rebootRequired(root, current, booted) : undefined;
  return { current, booted, rebootNeeded: reboot ?? null };
}

async function linkTarget(link: string): Promise<string | null> {
  try {
    return await readlink(link);
  } catch {
    return null;
  }
}
