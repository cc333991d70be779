// ArtifactIndex: the coordinator's (and later the agent's) index of store path -> Nix metadata and
// blob key, beside the BlobStore in `<state>/artifacts/` (design §4). One small JSON file per path,
// `index/<hash32>.json`, written with writeFileAtomic; all of them loaded into a Map at open.
// Why one file per path (measured, 5,000 entries of ~660 B, ext4, this 2-core machine): a put costs
// 1.7 ms (one small atomic write) against 24 ms for rewriting one 3.3 MB index file, which grows
// with the index (a 5,000-path first push: 8.4 s against ~2 min, quadratic); loading costs 0.66 s
// against 14 ms, paid once at start. A malformed file is quarantined and reported, like a corrupt
// blob. WP1's decodeMeta (src/artifacts/meta.ts) is meant to be passed as `decode`; until then the
// entry's shape is checked here.

import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ensureDir, fsyncDir, writeFileAtomic } from '../../stores/atomic-write.js';
import { quarantineName, QUARANTINE_DIR } from '../../stores/problems.js';
import type { StoreProblem } from '../../stores/store.js';

/** One path's index entry: what its narinfo says, plus where its NAR is. */
export interface IndexEntry {
  /** Full store path. */
  readonly path: string;
  /** 'sha256:<nix32>'. */
  readonly narHash: string;
  readonly narSize: number;
  /** Full store paths, sorted. */
  readonly references: readonly string[];
  readonly deriver?: string;
  /** Nix signatures 'name:base64', deduplicated; a put merges them, never drops one. */
  readonly sigs: readonly string[];
  /** The BlobStore key of the NAR. */
  readonly blob: string;
  /** ms since the epoch of the latest put (GC grace). */
  readonly pushedAt: number;
  /** Who pushed it last (a node id), when known. */
  readonly pushedBy?: string;
}

/** Options of ArtifactIndex.open. */
export interface ArtifactIndexOptions {
  /** Validates one parsed file, throwing on anything wrong. Default: checkEntry. */
  decode?: (value: unknown) => IndexEntry;
  /** One line per malformed file quarantined. Default stderr. */
  logger?: (line: string) => void;
}

const INDEX = 'index';
const NAME_RE = /^[0-9a-z]{32}\.json$/;

/** The in-memory index of `<dir>/index/`, written through on every change. */
export class ArtifactIndex {
  private readonly entries = new Map<string, IndexEntry>();
  private readonly reported: StoreProblem[] = [];

  private constructor(
    readonly dir: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Loads every `index/*.json` of `dir` (the artifacts dir); malformed ones are quarantined. */
  static async open(dir: string, options: ArtifactIndexOptions = {}): Promise<ArtifactIndex> {
    const decode = options.decode ?? checkEntry;
    const index = new ArtifactIndex(dir, options.logger ?? ((l) => process.stderr.write(l + '\n')));
    const idir = join(dir, INDEX);
    await ensureDir(idir);
    for (const name of (await readdir(idir)).sort()) {
      if (name.startsWith('.')) continue; // temp files: writeFileAtomic's, never acknowledged
      const file = join(idir, name);
      try {
        if (!NAME_RE.test(name)) throw new Error('not an index file name');
        const entry = decode(JSON.parse(await readFile(file, 'utf8')));
        if (fileOf(entry.path) !== name) throw new Error(`it names ${entry.path}`);
        index.entries.set(entry.path, entry);
      } catch (err) {
        await index.quarantine(file, err instanceof Error ? err.message : String(err));
      }
    }
    return index;
  }

  /**
   * Reads `<dir>/index/` without changing anything (for `flt doctor`): the blob keys its entries
   * name, and a STORE_CORRUPT problem per malformed file (which open() would quarantine).
   */
  static async check(
    dir: string,
    options: Pick<ArtifactIndexOptions, 'decode'> = {},
  ): Promise<{ entries: number; blobKeys: Set<string>; problems: StoreProblem[] }> {
    const decode = options.decode ?? checkEntry;
    const idir = join(dir, INDEX);
    const blobKeys = new Set<string>();
    const problems: StoreProblem[] = [];
    let entries = 0;
    let names: string[];
    try {
      names = (await readdir(idir)).sort();
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return { entries, blobKeys, problems };
      throw err;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const file = join(idir, name);
      try {
        if (!NAME_RE.test(name)) throw new Error('not an index file name');
        const entry = decode(JSON.parse(await readFile(file, 'utf8')));
        if (fileOf(entry.path) !== name) throw new Error(`it names ${entry.path}`);
        blobKeys.add(entry.blob);
        entries++;
      } catch (err) {
        const detail = err instanceof Error ? err.message : String(err);
        problems.push({ code: 'STORE_CORRUPT', file, detail: `malformed index entry: ${detail}` });
      }
    }
    return { entries, blobKeys, problems };
  }

  get size(): number {
    return this.entries.size;
  }

  get(path: string): IndexEntry | undefined {
    return this.entries.get(path);
  }

  /** Every entry (a copy of the list). */
  all(): IndexEntry[] {
    return [...this.entries.values()];
  }

  /** The blob keys the index names (for BlobStore.check's `expect`). */
  blobKeys(): Set<string> {
    return new Set([...this.entries.values()].map((e) => e.blob));
  }

  /**
   * Adds or replaces `entry`, merging the signatures of an entry already there for the same
   * narHash (two admins' signatures both kept). Durable when it resolves.
   */
  async put(entry: IndexEntry): Promise<IndexEntry> {
    checkEntry(entry);
    const old = this.entries.get(entry.path);
    const sigs =
      old && old.narHash === entry.narHash
        ? [...new Set([...old.sigs, ...entry.sigs])]
        : entry.sigs;
    const merged: IndexEntry = { ...entry, sigs };
    const file = join(this.dir, INDEX, fileOf(entry.path));
    await writeFileAtomic(file, JSON.stringify(merged) + '\n', { createDir: true });
    this.entries.set(entry.path, merged);
    return merged;
  }

  /** Removes the entry of `path` (GC); false when there was none. */
  async remove(path: string): Promise<boolean> {
    if (!this.entries.has(path)) return false;
    const idir = join(this.dir, INDEX);
    await rm(join(idir, fileOf(path)), { force: true });
    await fsyncDir(idir);
    this.entries.delete(path);
    return true;
  }

  /**
   * The closure of `roots` over references, dependencies before dependents where the index
   * knows them; `missing` lists the paths reached but not in the index.
   */
  closure(roots: readonly string[]): { entries: IndexEntry[]; missing: string[] } {
    const seen = new Set<string>();
    const missing: string[] = [];
    const order: IndexEntry[] = [];
    // Iterative post-order DFS: bounded by the number of distinct paths.
    const stack: { path: string; expanded: boolean }[] = roots.map((p) => ({
      path: p,
      expanded: false,
    }));
    while (stack.length > 0) {
      const top = stack.pop()!;
      const entry = this.entries.get(top.path);
      if (top.expanded) {
        if (entry) order.push(entry);
        continue;
      }
      if (seen.has(top.path)) continue;
      seen.add(top.path);
      if (!entry) {
        missing.push(top.path);
        continue;
      }
      stack.push({ path: top.path, expanded: true });
      for (const r of entry.references) if (!seen.has(r)) stack.push({ path: r, expanded: false });
    }
    return { entries: order, missing };
  }

  /** Malformed files quarantined since open. */
  problems(): StoreProblem[] {
    return this.reported.map((p) => ({ ...p }));
  }

  private async quarantine(file: string, detail: string): Promise<void> {
    const problem: StoreProblem = { code: 'STORE_CORRUPT', file, detail };
    const qdir = join(this.dir, QUARANTINE_DIR);
    await ensureDir(qdir);
    problem.quarantinedTo = await quarantineName(qdir, [INDEX, basename(file)]);
    await rename(file, problem.quarantinedTo);
    await fsyncDir(qdir);
    await fsyncDir(join(this.dir, INDEX));
    this.reported.push(problem);
    this.log(`${problem.code} ${file}: ${detail}; moved to ${problem.quarantinedTo}`);
  }
}

/** `index/<the 32 hash characters of the path's base name>.json`. */
function fileOf(path: string): string {
  const base = basename(path);
  if (!/^[0-9a-z]{32}-/.test(base)) throw new TypeError(`not a store path: ${path}`);
  return base.slice(0, 32) + '.json';
}

/** Checks the shape of an index entry (until WP1's decodeMeta replaces it); the entry. */
export function checkEntry(v: unknown): IndexEntry {
  const e = v as Partial<IndexEntry> | null;
  const str = (x: unknown) => typeof x === 'string' && x.length > 0 && x.length < 4096;
  const paths = (x: unknown) => Array.isArray(x) && x.length <= 100_000 && x.every(str);
  if (
    typeof e !== 'object' ||
    e === null ||
    !str(e.path) ||
    !/^sha256:[0-9a-z]{52}$/.test(String(e.narHash)) ||
    !Number.isSafeInteger(e.narSize) ||
    (e.narSize ?? 0) < 1 ||
    !paths(e.references) ||
    (e.deriver !== undefined && !str(e.deriver)) ||
    !paths(e.sigs) ||
    !/^[0-9a-z]{16,128}$/.test(String(e.blob)) ||
    !Number.isSafeInteger(e.pushedAt) ||
    (e.pushedBy !== undefined && !str(e.pushedBy))
  )
    throw new TypeError('malformed artifact index entry');
  fileOf(e.path!);
  return e as IndexEntry;
}
