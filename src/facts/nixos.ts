// NixOS facts: the version, the current and booted system generations, and whether a reboot is
// needed to run the current one. Links are read under `root` one hop at a time, so a fake tree
// whose links point at /nix/store/... (as real ones do) resolves inside the tree.

import path from 'node:path';
import { describeError, firstLine, type ExecFn } from './exec.js';
import { readLinkIn, readTextIn } from './files.js';
import type { NixosInfo, OsInfo } from './schema.js';

type Note = (text: string) => void;

/** The links whose change needs a reboot, as NixOS's own "reboot required" checks compare. */
const BOOT_LINKS = ['kernel', 'initrd', 'kernel-modules'] as const;

/**
 * Whether the booted system runs another kernel, initrd or module set than the current one:
 * false when the generations are the same, undefined when neither has any of the links.
 */
export async function rebootRequired(
  root: string,
  current: string,
  booted: string,
): Promise<boolean | undefined> {
  if (current === booted) return false;
  let known = false;
  for (const link of BOOT_LINKS) {
    const [a, b] = await Promise.all([
      readLinkIn(root, path.posix.join(current, link)),
      readLinkIn(root, path.posix.join(booted, link)),
    ]);
    if (a !== undefined || b !== undefined) known = true;
    if (a !== b) return true;
  }
  return known ? false : undefined;
}

/** `nixos-version`, else the generation's nixos-version file, else os-release's VERSION. */
async function nixosVersion(
  root: string,
  exec: ExecFn,
  current: string | undefined,
  os: OsInfo,
  note: Note,
): Promise<string> {
  let why = 'printed nothing';
  try {
    const version = firstLine(await exec('nixos-version', []));
    if (version !== '') return version;
  } catch (err) {
    why = describeError(err);
  }
  if (current !== undefined) {
    const file = await readTextIn(root, path.posix.join(current, 'nixos-version'), 4096);
    if (file !== undefined && firstLine(file) !== '') return firstLine(file);
  }
  note(`nixos: version from os-release, nixos-version: ${why}`);
  return os.version;
}

/** NixOS facts under `root`, or undefined (and a note) on another distribution. */
export async function collectNixos(
  root: string,
  exec: ExecFn,
  os: OsInfo,
  note: Note,
): Promise<NixosInfo | undefined> {
  const [current, booted, marker] = await Promise.all([
    readLinkIn(root, '/run/current-system'),
    readLinkIn(root, '/run/booted-system'),
    readTextIn(root, '/etc/NIXOS', 1),
  ]);
  if (os.id !== 'nixos' && current === undefined && marker === undefined) {
    note('nixos: not NixOS');
    return undefined;
  }
  if (current === undefined) note('nixos: /run/current-system not found');
  if (booted === undefined) note('nixos: /run/booted-system not found');
  const reboot =
    current !== undefined && booted !== undefined
      ? await rebootRequired(root, current, booted)
      : undefined;
  return {
    version: await nixosVersion(root, exec, current, os, note),
    ...(current === undefined ? {} : { currentSystem: current }),
    ...(booted === undefined ? {} : { bootedSystem: booted }),
    ...(reboot === undefined ? {} : { rebootRequired: reboot }),
  };
}
