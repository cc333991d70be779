// What flt asks a Nix store about the paths it pushes (design §1, §5), through Nix's stable CLI
// only (no experimental `nix path-info`): the closure (`nix-store -qR`, dependencies first), the
// narinfo facts of each path (`nix-store --dump-db P...`: narHash, narSize, references, deriver;
// measured for 100 paths: one `--dump-db` call 30 ms, the `-q --hash/--size/--deriver` calls plus
// one `-q --references` per path 2.9 s), which paths are missing, and the NAR bytes
// (`nix-store --export`, streamed with backpressure; see dumpNar for why not `--dump`). Signing a meta with the admin's key is here
// too. The store is a `--store` URI (config `nix_store`) or, when undefined, Nix's default.

import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { FltError } from '../errors.js';
import {
  firstLine,
  NO_SUBSTITUTERS,
  runTool,
  spawnTool,
  storeArgs,
  storeDirOf,
  type ToolResult,
} from '../deploy/nix.js';
import {
  decodeNarMeta,
  MAX_SIGS,
  parseStorePath,
  type NarHash,
  type NarMeta,
  type StorePath,
} from './meta.js';
import { sign, type SigningKey } from './nix-key.js';
import { nix32 } from './nix32.js';

/** Paths per `--dump-db` / `--check-validity` call (argv stays far below the kernel's limit). */
export const QUERY_BATCH = 1000;
/** Output a query may print: a closure of 10^4 paths with its references is a few MB. */
export const QUERY_MAX_BYTES = 64 << 20;
/** One query's deadline (a `--dump-db` of 1,000 paths takes well under a second). */
export const QUERY_TIMEOUT_MS = 120_000;

function where(store: string | undefined): string {
  return store === undefined ? "Nix's default store" : `store ${store}`;
}

function notInStore(p: string, store: string | undefined): FltError {
  return new FltError(
    'NOT_IN_STORE',
    `${p} is not a valid path in the Nix store (build it first; ${where(store)})`,
  );
}

/** The path an `error: path '…' is not valid` / `getting status of '…'` line names, if any. */
function invalidNamed(stderr: string): string | undefined {
  const m = /error: (?:path '([^']+)' is not valid|getting status of '([^']+)')/.exec(stderr);
  return m?.[1] ?? m?.[2];
}

async function nixStore(store: string | undefined, args: readonly string[]): Promise<ToolResult> {
  return runTool(
    'nix-store',
    [...storeArgs(store), ...NO_SUBSTITUTERS, ...args],
    QUERY_TIMEOUT_MS,
    QUERY_MAX_BYTES,
  );
}

function failed(what: string, r: ToolResult, store: string | undefined): FltError {
  const p = invalidNamed(r.stderr);
  if (p !== undefined) return notInStore(p, store);
  return new FltError('IO', `nix-store ${what}: exit ${r.code}: ${firstLine(r.stderr)}`);
}

/** Checks that every path is a store path of the store's directory (else BAD_STORE_PATH). */
function parsePaths(paths: readonly string[], store: string | undefined): StorePath[] {
  const dir = storeDirOf(store);
  return paths.map((p) => {
    const sp = parseStorePath(p);
    if (posix.dirname(sp) !== dir)
      throw new FltError('BAD_STORE_PATH', `${p} is not a path of the store directory ${dir}`);
    return sp;
  });
}

function batches<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += QUERY_BATCH) out.push(items.slice(i, i + QUERY_BATCH));
  return out;
}

/**
 * Those of `paths` that are not valid in the store (`--check-validity --print-invalid`), in order.
 * @throws FltError BAD_STORE_PATH for a path outside the store's directory; IO when nix-store fails.
 */
export async function invalidPaths(paths: readonly string[], store?: string): Promise<StorePath[]> {
  const out: StorePath[] = [];
  for (const batch of batches(parsePaths(paths, store))) {
    const r = await nixStore(store, ['--check-validity', '--print-invalid', ...batch]);
    if (r.code !== 0) throw failed('--check-validity', r, store);
    const invalid = new Set(r.stdout.split('\n').filter((l) => l !== ''));
    out.push(...batch.filter((p) => invalid.has(p)));
  }
  return out;
}

/**
 * The closure of `paths` (`nix-store -qR`): every path they reference, transitively, themselves
 * included, dependencies before the paths that need them, each once.
 * @throws FltError NOT_IN_STORE naming a path the store does not hold; BAD_STORE_PATH; IO.
 */
export async function closureOf(paths: readonly string[], store?: string): Promise<StorePath[]> {
  const roots = parsePaths(paths, store);
  if (roots.length === 0) return [];
  const missing = await invalidPaths(roots, store);
  if (missing.length > 0) throw notInStore(missing[0]!, store);
  const r = await nixStore(store, ['-qR', ...roots]);
  if (r.code !== 0) throw failed('-qR', r, store);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  return [...new Set(lines)].map((l) => parseStorePath(l));
}

/**
 * The narinfo facts of each path as the store registered them (`--dump-db`), in the order given;
 * `sigs` empty (the dump has none: flt signs every path itself, design §11).
 * @throws FltError NOT_IN_STORE for a path the store does not hold; BAD_STORE_PATH; IO when
 *   nix-store fails or prints something that is not a dump.
 */
export async function dumpDb(paths: readonly string[], store?: string): Promise<NarMeta[]> {
  const wanted = parsePaths(paths, store);
  const byPath = new Map<string, NarMeta>();
  for (const batch of batches(wanted)) {
    const missing = await invalidPaths(batch, store);
    if (missing.length > 0) throw notInStore(missing[0]!, store);
    const r = await nixStore(store, ['--dump-db', ...batch]);
    if (r.code !== 0) throw failed('--dump-db', r, store);
    for (const meta of parseDumpDb(r.stdout)) byPath.set(meta.path, meta);
  }
  return wanted.map((p) => {
    const m = byPath.get(p);
    if (m === undefined) throw new FltError('IO', `nix-store --dump-db printed nothing for ${p}`);
    return m;
  });
}

/**
 * Parses `nix-store --dump-db` output: per path the lines `path`, `sha256 hex`, `narSize`,
 * `deriver or empty`, `N`, then N reference lines (Nix 2.8 writes no separator).
 * @throws FltError IO on anything else.
 */
export function parseDumpDb(text: string): NarMeta[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const out: NarMeta[] = [];
  let i = 0;
  const bad = (what: string): never => {
    throw new FltError('IO', `nix-store --dump-db: ${what} at line ${i + 1}`);
  };
  const next = () => (i < lines.length ? lines[i++]! : bad('output ends early'));
  while (i < lines.length) {
    const path = next();
    const hex = next();
    if (!/^[0-9a-f]{64}$/.test(hex)) bad('not a sha256 hash');
    const size = next();
    const deriver = next();
    const count = next();
    if (!/^\d{1,10}$/.test(size) || !/^\d{1,6}$/.test(count)) bad('not a number');
    const references: string[] = [];
    for (let k = 0; k < Number(count); k++) references.push(next());
    const narHash = `sha256:${nix32(Buffer.from(hex, 'hex'))}` as NarHash;
    try {
      out.push(
        decodeNarMeta({
          path,
          narHash,
          narSize: Number(size),
          references: [...references].sort(),
          ...(deriver === '' ? {} : { deriver }),
          sigs: [],
        }),
      );
    } catch (err) {
      bad(`bad entry for ${path} (${(err as Error).message})`);
    }
  }
  return out;
}

/** `closureOf` then `dumpDb`: the facts of every path of the closure, dependencies first. */
export async function closureMetas(paths: readonly string[], store?: string): Promise<NarMeta[]> {
  return dumpDb(await closureOf(paths, store), store);
}

/** Bytes of `--export` after the NAR: `NIXE`, path, references, deriver, flags (a few KB). */
const MAX_EXPORT_TRAILER = 4 << 20;

/**
 * The NAR of `meta.path` as a stream with backpressure. Read through `nix-store --export`, not
 * `--dump`: `--dump` reads the file system at the logical path (measured: fails for a
 * `local?real=…` store whose files are elsewhere), `--export` asks the store, and checks the
 * bytes against the registered narHash. Its output is `u64le 1`, the NAR (`narSize` bytes),
 * then a trailer (read and dropped, so the exit code is known); only the NAR is passed on.
 * The stream errors with NOT_IN_STORE when the store lacks the path, IO when nix-store fails or
 * prints something else. Destroying it kills nix-store.
 */
export function dumpNar(
  meta: { readonly path: string; readonly narSize: number },
  store?: string,
  opts: { idleMs?: number } = {},
): Readable {
  const [p] = parsePaths([meta.path], store);
  const source = spawnTool('nix-store', [...storeArgs(store), '--export', p!], {
    ...opts,
    onFail: (code, stderr) => failed('--export', { code, stdout: '', stderr }, store),
  });
  return Readable.from(narOfExport(source, meta.narSize, p!));
}

async function* narOfExport(
  source: Readable,
  narSize: number,
  path: string,
): AsyncGenerator<Uint8Array> {
  const bad = (what: string) =>
    new FltError('IO', `nix-store --export ${path}: ${what} (is its narSize ${narSize} right?)`);
  const head = Buffer.alloc(8);
  let at = 0; // bytes of the export seen so far
  const narEnd = 8 + narSize;
  try {
    for await (const data of source as AsyncIterable<Buffer>) {
      let chunk = data;
      if (at < 8) {
        const n = Math.min(8 - at, chunk.length);
        chunk.copy(head, at, 0, n);
        at += n;
        chunk = chunk.subarray(n);
        if (at === 8 && !(head[0] === 1 && head.subarray(1).every((b) => b === 0)))
          throw bad('not an export of one path');
      }
      if (chunk.length === 0) continue;
      if (at < narEnd) {
        const n = Math.min(narEnd - at, chunk.length);
        at += n;
        yield chunk.subarray(0, n);
        chunk = chunk.subarray(n);
      }
      at += chunk.length;
      if (at - narEnd > MAX_EXPORT_TRAILER) throw bad('too much after the NAR');
    }
    if (at < narEnd) throw bad(`ended after ${Math.max(0, at - 8)} NAR bytes`);
  } finally {
    source.destroy();
  }
}

/**
 * `meta` with Nix's signature by `key` added after the ones it had (none is dropped; a
 * signature already there is not repeated).
 * @throws FltError BAD_MESSAGE when the meta would carry more than MAX_SIGS signatures.
 */
export function signMeta(meta: NarMeta, key: SigningKey): NarMeta {
  const sig = sign(meta, key);
  if (meta.sigs.includes(sig)) return meta;
  const sigs = [...meta.sigs, sig];
  if (sigs.length > MAX_SIGS)
    throw new FltError('BAD_MESSAGE', `${meta.path}: more than ${MAX_SIGS} signatures`);
  return { ...meta, sigs };
}
