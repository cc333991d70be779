// What FsStore (stores/fs-store.ts) finds wrong on disk: leftover temp files, corrupt chunks, and
// where a corrupt chunk goes (`<dir>/.quarantine/`); plus the read-only whole-store check behind
// FsStore.check, which reports the same problems without touching anything.

import { lstat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { StorageKey } from '@automerge/automerge-repo';
import { decodeFile, sha256 } from './chunk-format.js';
import { errnoOf, readIfExists, segmentsKey, walk } from './fs-io.js';
import { mapBounded, Semaphore } from './semaphore.js';
import type { StoreProblem } from './store.js';

/** Directory below the store root that holds corrupt chunks; never walked, never removed. */
export const QUARANTINE_DIR = '.quarantine';

/** Flattened keys longer than this are cut and suffixed with a hash, to stay under NAME_MAX. */
const MAX_FLAT_KEY = 160;

/** The problem report for a leftover temp file `.<name>.<random>.tmp`. */
export function leftoverProblem(file: string): StoreProblem {
  return {
    code: 'STORE_LEFTOVER_TEMP',
    file,
    detail: `temp file of an interrupted save of ${basename(file).replace(/^\.(.*)\.[^.]*\.tmp$/, '$1')}`,
  };
}

/**
 * Verifies every chunk of the store at `root` and lists leftover temp files, changing nothing
 * (FsStore.check). At most `limit` file operations at once.
 */
export async function checkStore(root: string, limit: number): Promise<StoreProblem[]> {
  const sem = new Semaphore(limit);
  const listing = await walk(root, [], sem);
  if (listing === undefined || listing === 'file') return [];
  const problems = listing.temps.sort().map((file) => leftoverProblem(file));
  const found = await mapBounded(listing.files, limit, (f) => checkFile(f, sem));
  for (const p of found) if (p !== undefined) problems.push(p);
  return problems;
}

/** Verifies one file found by a walk; a problem if it is corrupt. Reads only. */
async function checkFile(
  found: { path: string; segments: string[] },
  sem: Semaphore,
): Promise<StoreProblem | undefined> {
  const bytes = await sem.run(() => readIfExists(found.path));
  if (bytes === undefined) return undefined;
  const key = segmentsKey(found.segments);
  const decoded = decodeFile(key, bytes);
  return decoded.ok
    ? undefined
    : { code: 'STORE_CORRUPT', key, file: found.path, detail: decoded.detail };
}

/**
 * A fresh path in `qdir` for a corrupt chunk: `<UTC timestamp>-<key joined by '_'>`, with `-<n>`
 * added if taken. Callers serialize calls (FsStore holds a lock), so checking then renaming is safe.
 */
export async function quarantineName(qdir: string, key: StorageKey): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, '');
  const base = join(qdir, `${stamp}-${flatten(key)}`);
  for (let n = 0; ; n++) {
    const candidate = n === 0 ? base : `${base}-${n}`;
    if (!(await exists(candidate))) return candidate;
  }
}

function flatten(key: StorageKey): string {
  const flat = key.join('_');
  if (flat.length <= MAX_FLAT_KEY) return flat;
  return `${flat.slice(0, MAX_FLAT_KEY)}-${sha256(Buffer.from(flat)).toString('hex').slice(0, 16)}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}
