// File access for the collectors, always under a root directory (`/` in production, a temp dir
// in tests), with bounded reads. A missing file is `undefined`, never an error: the collector
// that asked decides whether that is worth a note.

import { open, readlink } from 'node:fs/promises';
import path from 'node:path';

/** The errno-style `code` of a thrown value, if it has one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

/** True when `err` says the file (or program) does not exist. */
export function isNotFound(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** `file` (an absolute path on the collected system) as a path on this one. */
export function inRoot(root: string, file: string): string {
  return path.join(root, file);
}

/**
 * Reads at most `maxBytes` of a text file under `root`, or `undefined` when it does not exist.
 * A truncated read is cut back to its last whole line, so line parsers never see half a line.
 */
export async function readTextIn(
  root: string,
  file: string,
  maxBytes = 64 * 1024,
): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(inRoot(root, file), 'r');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    const buf = Buffer.alloc(maxBytes);
    let n = 0;
    while (n < maxBytes) {
      const { bytesRead } = await handle.read(buf, n, maxBytes - n, null);
      if (bytesRead === 0) return buf.toString('utf8', 0, n);
      n += bytesRead;
    }
    const text = buf.toString('utf8', 0, n);
    return text.slice(0, text.lastIndexOf('\n') + 1);
  } finally {
    await handle.close();
  }
}

/**
 * The target of the symlink `link` under `root`, as an absolute path on the collected system
 * (a relative target is resolved against the link's folder), or `undefined` when there is no
 * such link. Intermediate links are not followed through `root`: callers resolve them first.
 */
export async function readLinkIn(root: string, link: string): Promise<string | undefined> {
  try {
    const target = await readlink(inRoot(root, link));
    return path.posix.resolve(path.posix.dirname(link), target);
  } catch (err) {
    if (isNotFound(err) || errnoCode(err) === 'EINVAL') return undefined;
    throw err;
  }
}
