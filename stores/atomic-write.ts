// The one crash-safe file write of the project: a temp file in the same directory, fsync, rename
// (or link, to refuse an existing target), fsync the directory. FsStore (stores/fs-store.ts) saves
// chunks with it; the roles and identity (src/) write tickets, replicas and keys with it.

import { randomBytes } from 'node:crypto';
import { type FileHandle, link, mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options of writeFileAtomic. */
export interface AtomicWriteOptions {
  /** Mode of a new file (before the umask); the target gets it on replacement too. Default 0600. */
  mode?: number;
  /**
   * Refuse when the target exists, with the link(2) error (code EEXIST), leaving it untouched.
   * Of writers racing for the same path exactly one wins: link(2), unlike rename(2), never
   * replaces.
   */
  noOverwrite?: boolean;
  /** Create the target's directory (and fsync the parents of what it created) when missing. */
  createDir?: boolean;
  /** Temp paths are in this set while they exist, so a concurrent walk does not take one for a leftover. */
  inFlight?: Set<string>;
}

/**
 * Writes `data` to `target` so that after a crash the file is either the old one or the new one,
 * never half of one. The temp file is `.<name>.<8 hex>.tmp` beside the target (stores/keys.ts
 * counts those 14 characters); it is removed whatever happens. Errors are the Node ones (errno
 * `code`), for the caller to wrap in its own layer's error.
 */
export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(target);
  const temp = join(dir, `.${basename(target)}.${randomBytes(4).toString('hex')}.tmp`);
  options.inFlight?.add(temp);
  let handle: FileHandle;
  try {
    handle = await createTemp(temp, options.mode ?? 0o600, options.createDir ?? false);
  } catch (err) {
    options.inFlight?.delete(temp); // and no rm: a temp name another writer took is not ours
    throw err;
  }
  let moved = false;
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.noOverwrite) {
      await link(temp, target);
      await rm(temp);
    } else {
      await rename(temp, target);
    }
    moved = true;
  } finally {
    // On failure the write's own error is the one to report. On success the temp is gone
    // already: no removal (two more file-system calls for every chunk a store saves).
    if (!moved) await rm(temp, { force: true }).catch(() => undefined);
    options.inFlight?.delete(temp);
  }
  await fsyncDir(dir);
}

/** Makes a directory's entries (creations, renames, unlinks) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** mkdir -p, then fsyncs the parent of every directory it created so they survive a crash. */
export async function ensureDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  for (let created = dir; ; created = dirname(created)) {
    await fsyncDir(dirname(created));
    if (created === first || dirname(created) === created) return;
  }
}

/**
 * Creates `file`, which must not exist, for writing. With `createDir`, the directory is made only
 * when the open finds it missing: nearly every save goes to a directory that exists, and a
 * `mkdir -p` before each cost a file-system round trip, one more turn of a saturated event loop
 * per save under a fan-in (issue 13).
 */
async function createTemp(file: string, mode: number, createDir: boolean): Promise<FileHandle> {
  // A concurrent removal of an emptied directory (FsStore.removeRange) may land between ensureDir
  // and open: the directory is made at most twice.
  for (let attempt = 0; ; attempt++) {
    try {
      return await open(file, 'wx', mode);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (!createDir || attempt > 1 || code !== 'ENOENT') throw err;
    }
    await ensureDir(dirname(file));
  }
}
