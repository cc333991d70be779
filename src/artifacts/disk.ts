// A full disk while artifacts are written, said the same way wherever it happens: the
// coordinator's blob store, the agent's partial NARs and its Nix cache. ENOSPC can arrive bare
// from fs or wrapped by a store (as a cause), so the whole cause chain is looked at.

import { FltError, messageOf } from '../errors.js';

/** Bytes as decimal gigabytes with one decimal, as the DISK_FULL messages give them. */
export const gb = (n: number): string => `${(n / 1e9).toFixed(1)} GB`;

/** DISK_FULL naming `where` (e.g. "the agent's disk") when ENOSPC is in `err`'s cause chain; else `err`. */
export function diskFullOr(err: unknown, where: string): unknown {
  for (let e: unknown = err, i = 0; e instanceof Error && i < 8; e = e.cause, i++)
    if ((e as { code?: unknown }).code === 'ENOSPC')
      return new FltError('DISK_FULL', `${where} is full: ${messageOf(err)}`, { cause: err });
  return err;
}

/** Throws {@link diskFullOr}: for `.catch()` on a write. */
export function throwDiskFull(where: string): (err: unknown) => never {
  return (err) => {
    throw diskFullOr(err, where);
  };
}
