// Facts that only a tool can tell: the Nix version (`nix --version`) and the hardware report of
// `nixos-facter` (or Puppet's `facter --json`). A tool that is not on PATH is a note, not an
// error; facter output is size-capped and bounded like any document from a peer.

import { boundedCopy, MAX_FACTER_BYTES } from './bounded.js';
import { describeError, firstLine, type ExecFn } from './exec.js';
import { isNotFound } from './files.js';
import type { NixInfo } from './schema.js';

type Note = (text: string) => void;

/** The tools tried for the facter report, in order. nixos-facter prints its JSON on stdout. */
const FACTER_TOOLS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['nixos-facter', []],
  ['facter', ['--json']],
];

/** The version in `nix --version` output (`nix (Nix) 2.24.10` gives `2.24.10`). */
export function parseNixVersion(output: string): string {
  const line = firstLine(output);
  return /(\d+\.\d+\S*)\s*$/.exec(line)?.[1] ?? line;
}

export async function collectNix(exec: ExecFn, note: Note): Promise<NixInfo | undefined> {
  try {
    const version = parseNixVersion(await exec('nix', ['--version']));
    if (version !== '') return { version };
    note('nix: `nix --version` printed nothing');
  } catch (err) {
    note(isNotFound(err) ? 'nix: not installed' : `nix: ${describeError(err)}`);
  }
  return undefined;
}

/** The first facter tool on PATH, its JSON parsed and bounded; undefined and a note otherwise. */
export async function collectFacter(exec: ExecFn, note: Note): Promise<unknown> {
  for (const [file, args] of FACTER_TOOLS) {
    let output: string;
    try {
      output = await exec(file, args, { maxBytes: MAX_FACTER_BYTES });
    } catch (err) {
      if (isNotFound(err)) continue;
      note(`facter: ${describeError(err)}`);
      return undefined;
    }
    if (Buffer.byteLength(output) > MAX_FACTER_BYTES) {
      note(`facter: ${file} output larger than ${MAX_FACTER_BYTES} bytes`);
      return undefined;
    }
    try {
      return boundedCopy(JSON.parse(output), 'facter');
    } catch (err) {
      note(`facter: ${file}: ${describeError(err)}`);
      return undefined;
    }
  }
  note('facter: not on PATH');
  return undefined;
}
