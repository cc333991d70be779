// A `file://` Nix binary cache that flt writes and Nix reads (design §0.3b, §6): how an agent
// hands fetched NARs to its Nix store so that Nix itself checks every signature against the
// trusted keys (`require-sigs true`) and every NAR against its narHash. Layout, as Nix expects:
//   nix-cache-info          StoreDir: <storeDir>, WantMassQuery: 0, Priority: 10
//   <hash32>.narinfo        narinfoText(meta): URL nar/<narHash nix32>.nar, Compression: none
//   nar/<narHash nix32>.nar the NAR, uncompressed
// Crash safety: a NAR is written to `nar/.<name>.<8 hex>.tmp`, its SHA-256 and size checked
// against the meta, fsynced, renamed into place, then its narinfo is written atomically. Nix
// finds a NAR only through a narinfo, and a narinfo exists only once its NAR is whole, so a
// crash at any point leaves at most an unreferenced temp (removed by the next open).

import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureDir, fsyncDir, writeFileAtomic } from '../../stores/atomic-write.js';
import { FltError } from '../errors.js';
import {
  DEFAULT_STORE_DIR,
  firstLine,
  runTool,
  storeArgs,
  type ToolResult,
} from '../deploy/nix.js';
import { diskFullOr } from './disk.js';
import { hashPart, narHashName, narinfoText, type NarMeta, type StorePath } from './meta.js';
import { nix32 } from './nix32.js';

/** The `nix-cache-info` of a cache for `storeDir`. */
export function cacheInfoText(storeDir: string): string {
  return `StoreDir: ${storeDir}\nWantMassQuery: 0\nPriority: 10\n`;
}

/**
 * The substituter URL of a cache directory: `file://DIR`, with `?store=DIR` when the store dir
 * is not `/nix/store` (else Nix refuses it: "binary cache … is for Nix stores with prefix …").
 */
export function cacheUrl(dir: string, storeDir: string = DEFAULT_STORE_DIR): string {
  const base = `file://${dir}`;
  return storeDir === DEFAULT_STORE_DIR
    ? base
    : `${base}?store=${encodeURIComponent(storeDir).replaceAll('%2F', '/')}`;
}

const TEMP = /^\..+\.[0-9a-f]{8}\.tmp$/;

/** A `file://` binary cache directory that flt writes (one writer process at a time). */
export class NixCache {
  private constructor(
    readonly dir: string,
    readonly storeDir: string,
  ) {}

  /**
   * Opens (creating) the cache at `dir` for `storeDir`: writes `nix-cache-info` when it differs
   * and removes temps a crash left behind.
   */
  static async open(dir: string, storeDir: string = DEFAULT_STORE_DIR): Promise<NixCache> {
    await ensureDir(join(dir, 'nar'));
    const info = cacheInfoText(storeDir);
    const infoFile = join(dir, 'nix-cache-info');
    const old = await readFile(infoFile, 'utf8').catch(() => undefined);
    if (old !== info) await writeFileAtomic(infoFile, info, { mode: 0o644 });
    for (const sub of [dir, join(dir, 'nar')])
      for (const name of await readdir(sub))
        if (TEMP.test(name)) await rm(join(sub, name), { force: true });
    return new NixCache(dir, storeDir);
  }

  /** The substituter URL of this cache. */
  get url(): string {
    return cacheUrl(this.dir, this.storeDir);
  }

  /** Where the NAR of `meta` is (or will be). */
  narFile(meta: Pick<NarMeta, 'narHash'>): string {
    return join(this.dir, 'nar', `${narHashName(meta.narHash)}.nar`);
  }

  /** Where the narinfo of `path` is (or will be). */
  narinfoFile(path: StorePath): string {
    return join(this.dir, `${hashPart(path)}.narinfo`);
  }

  /** Whether the cache serves `meta.path` (its narinfo exists: then its NAR is whole). */
  async has(meta: Pick<NarMeta, 'path'>): Promise<boolean> {
    return stat(this.narinfoFile(meta.path)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Writes the NAR of `meta` from `source`, then its narinfo (with `meta.sigs` as they are).
   * @throws FltError NAR_HASH_MISMATCH when the bytes are not `meta.narSize` bytes hashing to
   *   `meta.narHash` (nothing becomes visible); DISK_FULL on ENOSPC; the source's own error.
   */
  async putNar(meta: NarMeta, source: AsyncIterable<Uint8Array>): Promise<void> {
    const target = this.narFile(meta);
    const temp = join(
      this.dir,
      'nar',
      `.${narHashName(meta.narHash)}.nar.${randomBytes(4).toString('hex')}.tmp`,
    );
    try {
      const file = await open(temp, 'wx', 0o644);
      try {
        const sha = createHash('sha256');
        let size = 0;
        for await (const chunk of source) {
          size += chunk.byteLength;
          if (size > meta.narSize) break;
          sha.update(chunk);
          await file.write(chunk);
        }
        const got = `sha256:${nix32(sha.digest())}`;
        if (size !== meta.narSize || got !== meta.narHash)
          throw new FltError(
            'NAR_HASH_MISMATCH',
            `${meta.path}: the NAR has ${size > meta.narSize ? 'more than ' : ''}${size} bytes, ${got}; its meta says ${meta.narSize} bytes, ${meta.narHash}`,
          );
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, target);
      await fsyncDir(join(this.dir, 'nar'));
    } catch (err) {
      await rm(temp, { force: true });
      throw diskFullOr(err, `the disk of ${this.dir}`);
    }
    await this.putNarinfo(meta);
  }

  /**
   * Moves a complete NAR file that the caller already checked against `meta` (same file system)
   * into the cache, then writes the narinfo.
   */
  async adoptNar(meta: NarMeta, file: string): Promise<void> {
    try {
      await rename(file, this.narFile(meta));
      await fsyncDir(join(this.dir, 'nar'));
    } catch (err) {
      throw diskFullOr(err, `the disk of ${this.dir}`);
    }
    await this.putNarinfo(meta);
  }

  /** Writes the narinfo of `meta` (its NAR must be in place). */
  async putNarinfo(meta: NarMeta): Promise<void> {
    try {
      await writeFileAtomic(this.narinfoFile(meta.path), narinfoText(meta), { mode: 0o644 });
    } catch (err) {
      throw diskFullOr(err, `the disk of ${this.dir}`);
    }
  }

  /** Removes `meta.path` from the cache: narinfo first (so no narinfo names a missing NAR). */
  async remove(meta: Pick<NarMeta, 'path' | 'narHash'>): Promise<void> {
    await rm(this.narinfoFile(meta.path), { force: true });
    await rm(this.narFile(meta), { force: true });
  }

  /** Removes the narinfo of `path` and the NAR it names, whatever that is. */
  async removePath(path: StorePath): Promise<void> {
    const text = await readFile(this.narinfoFile(path), 'utf8').catch(() => '');
    const url = /^URL: (nar\/[0-9a-z]{52}\.nar)$/m.exec(text)?.[1];
    await rm(this.narinfoFile(path), { force: true });
    if (url !== undefined) await rm(join(this.dir, url), { force: true });
  }
}

/** Options of {@link substitute}. */
export interface SubstituteOptions {
  /** The `--store` URI (config `nix_store`); undefined: Nix's default store. */
  readonly store?: string;
  /** The cache directory (as written by NixCache). */
  readonly cacheDir: string;
  /** The store's logical directory; default `/nix/store`. */
  readonly storeDir?: string;
  /**
   * `trusted-public-keys` for this call (`name:base64`); undefined or empty: Nix's own
   * configuration decides (design §6).
   */
  readonly trustedKeys?: readonly string[];
  /** An indirect GC root (`--add-root R --indirect`) for the first path. */
  readonly gcRoot?: string;
  /** Deadline of the whole call; default 1 h (a local copy of GBs). */
  readonly timeoutMs?: number;
}

export const SUBSTITUTE_TIMEOUT_MS = 3_600_000;

/**
 * The `nix-store -r` arguments of {@link substitute}: only our cache as substituter, signatures
 * required, no local builds, no cached narinfo answers (a path the cache lacked a minute ago may
 * be there now).
 */
export function substituteArgs(paths: readonly string[], opts: SubstituteOptions): string[] {
  const args = [...storeArgs(opts.store), '-r', ...paths];
  if (opts.gcRoot !== undefined) args.push('--add-root', opts.gcRoot, '--indirect');
  args.push('--max-jobs', '0');
  const option = (name: string, value: string) => args.push('--option', name, value);
  option('substituters', cacheUrl(opts.cacheDir, opts.storeDir));
  option('require-sigs', 'true');
  if (opts.trustedKeys !== undefined && opts.trustedKeys.length > 0)
    option('trusted-public-keys', opts.trustedKeys.join(' '));
  option('narinfo-cache-negative-ttl', '0');
  option('narinfo-cache-positive-ttl', '0');
  return args;
}

/**
 * Makes `paths` valid in the store by substitution from the cache at `opts.cacheDir`, through
 * Nix, so that Nix checks each path's signature (`require-sigs true`, `opts.trustedKeys`) and
 * its NAR's hash. A path whose NAR Nix found corrupt is removed from the cache.
 * @throws FltError UNTRUSTED_SIGNATURE (no signature by a trusted key), NAR_HASH_MISMATCH (a NAR
 *   that does not match its narinfo), SUBSTITUTE_FAILED (anything else Nix refused, with its
 *   first error line), IO / TIMEOUT (nix-store missing or stuck).
 */
export async function substitute(paths: readonly string[], opts: SubstituteOptions): Promise<void> {
  if (paths.length === 0) return;
  const r = await runTool(
    'nix-store',
    substituteArgs(paths, opts),
    opts.timeoutMs ?? SUBSTITUTE_TIMEOUT_MS,
    64 << 20,
  );
  if (r.code === 0) return;
  const err = substituteError(r);
  const bad = /^(?:hash mismatch importing path|NAR for) '([^']+)'/m.exec(
    r.stderr.replace(/^error: /gm, ''),
  )?.[1];
  if (err.code === 'NAR_HASH_MISMATCH' && bad !== undefined) {
    const cache = await NixCache.open(opts.cacheDir, opts.storeDir);
    await cache.removePath(bad as StorePath);
  }
  throw err;
}

/** Maps a failed `nix-store -r` to flt's code (design §6), keeping Nix's words. */
export function substituteError(r: ToolResult): FltError {
  const lines = r.stderr.split('\n');
  const find = (re: RegExp) =>
    lines
      .find((l) => re.test(l))
      ?.trim()
      .slice(0, 300);
  const untrusted = find(/is not signed by any of the keys/);
  if (untrusted !== undefined)
    return new FltError(
      'UNTRUSTED_SIGNATURE',
      `Nix refused a path: ${untrusted.replace(/^warning: /, '')}`,
    );
  const mismatch = find(/hash mismatch importing path|NAR for '.*' is incomplete/);
  if (mismatch !== undefined)
    return new FltError('NAR_HASH_MISMATCH', mismatch.replace(/^error: /, ''));
  const lacking = lines.findIndex((l) => l.startsWith("don't know how to build these paths"));
  if (lacking >= 0) {
    const paths = lines.slice(lacking + 1).filter((l) => /^ {2}\//.test(l));
    return new FltError(
      'SUBSTITUTE_FAILED',
      `the binary cache has no path ${paths.map((l) => l.trim()).join(', ') || '(none named)'} (Nix will not build it here)`.slice(
        0,
        400,
      ),
    );
  }
  const first = find(/^error: /) ?? firstLine(r.stderr);
  return new FltError(
    'SUBSTITUTE_FAILED',
    `nix-store -r: exit ${r.code}: ${first.replace(/^error: /, '')}`,
  );
}
