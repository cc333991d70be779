// The store path word of deploy and push: a symlink (./result) is resolved to the store path.

import { readlink, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, posix, resolve } from 'node:path';
import { FltError } from '../../sync/errors.js';
import { isStorePath } from '../trust/deployment.js';

/** The store path word: a symlink (./result) is resolved; it must then be a Nix store path. */
export async function storePathArg(word: string): Promise<string> {
  let path = word;
  try {
    path = await realpath(word);
  } catch {
    // A link to a path that is not here: a store whose files live elsewhere (`nix_store` with
    // `real=`, whose ./result names the logical path), or built elsewhere. Its target is the
    // path; a word that is no link is taken as written. Checked below either way.
    const target = await readlink(word).catch(() => undefined);
    if (target !== undefined) path = resolve(dirname(resolve(word)), target);
  }
  if (!isAbsolute(path) || !isStorePath(posix.normalize(path)))
    throw new FltError(
      'BAD_ARGUMENT',
      `${JSON.stringify(word)} is not a Nix store path (/nix/store/<hash>-<name>, or a symlink to one such as ./result)`,
    );
  return posix.normalize(path);
}
