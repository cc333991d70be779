// Checks the state directory once, before a command touches it: a path that is a file, that
// cannot be created, or that this user cannot write is a configuration problem (BAD_CONFIG,
// exit 2) named with its source, never a stack trace from deep inside a role.

import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { ConfigError, type ResolvedConfig } from './resolve.js';
import { errnoOf } from '../../stores/fs-io.js';

const ALLOWED = 'a directory this user can read and write (created with mode 0700 if missing)';

/** What a command does with the state dir: create and write it, or only read what is there. */
export type StateDirUse = 'write' | 'read';

/**
 * Makes sure `config.stateDir` is usable for `use`. For `write` it is created (mode 0700) when
 * missing; for `read` a missing dir is fine (there is nothing to read) and nothing is created.
 * @throws {ConfigError} (BAD_CONFIG) naming the path, the source that set it and the reason.
 */
export async function prepareStateDir(resolved: ResolvedConfig, use: StateDirUse): Promise<void> {
  const dir = resolved.config.stateDir;
  const fail = (reason: string, cause?: unknown) =>
    new ConfigError(
      [{ key: 'state_dir', source: resolved.sources.state_dir, reason, allowed: ALLOWED }],
      { cause },
    );
  try {
    if (!(await stat(dir)).isDirectory()) throw fail(`${dir} is not a directory`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (errnoOf(err) !== 'ENOENT') throw fail(`${dir}: ${ioReason(err)}`, err);
    if (use === 'read') return;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (mkErr) {
      throw fail(`cannot create ${dir}: ${ioReason(mkErr)}`, mkErr);
    }
  }
  const mode = use === 'write' ? constants.R_OK | constants.W_OK | constants.X_OK : constants.R_OK;
  try {
    await access(dir, mode);
  } catch (err) {
    throw fail(`${dir} is not ${use === 'write' ? 'writable' : 'readable'}: ${ioReason(err)}`, err);
  }
}

function ioReason(err: unknown): string {
  switch (errnoOf(err)) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    case 'EROFS':
      return 'read-only file system';
    case 'ENOENT':
      return 'no such file or directory';
    case 'ELOOP':
      return 'too many symbolic links';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}
