// The store path word of deploy and push: a symlink (./result) is resolved to the store path.

import { realpath } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { FltError } from '../../sync/errors.js';
import { isStorePath } from '../trust/deployment.js';

/** The store path word: a symlink (./result) is resolved; it must then be a Nix store path. */
export async function storePathArg(word: string): Promise<string> {
  let path = word;
  try {
    path = await realpath(word);
  } catch {
    // not here (built elsewhere): taken as written, checked below
  }
  if (!isAbsolute(path) || !isStorePath(posix.normalize(path)))
    throw new FltError(
      'BAD_ARGUMENT',
      `${JSON.stringify(word)} is not a Nix store path (/nix/store/<hash>-<name>, or a symlink to one such as ./result)`,
    );
  return posix.normalize(path);
}
