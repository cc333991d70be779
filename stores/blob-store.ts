// BlobStore: a content-addressed store of large immutable blobs (the coordinator's NARs, the
// agent's fetched ones), crash-safe like FsStore: a blob is written to `partial/`, fsynced, checked
// whole and renamed into `blobs/`; every chunk is verified against a chunk hash list kept beside
// the blob (the `.chunks` sidecar) each time it is read; a blob that fails is moved to
// `.quarantine/` and reported, never deleted. Knows nothing of Nix, sync/ or src/: the key of a
// blob is `keyOf(sha256(content))`, given by the caller (nix32 for NARs), and the chunk hash is a
// parameter (`ChunkHashing`: SHA-256 by default; the transfer's BLAKE3 list plugs in here).
// Layout and reasons: stores/README.md.

import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, type FileHandle, lstat, open, readdir, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ensureDir, fsyncDir, writeFileAtomic } from './atomic-write.js';
import { StoreError } from './errors.js';
import { errMessage, errnoOf, isTempName, readIfExists, unlinkIfExists, wrapIo } from './fs-io.js';
import { leftoverProblem, quarantineName, QUARANTINE_DIR } from './problems.js';
import { KeyedMutex } from './semaphore.js';
import type { StoreProblem } from './store.js';

/**
 * How a blob is cut into chunks and each chunk hashed. The list of chunk hashes is the sidecar
 * `<key>.chunks` beside the blob; whoever hashes (the transfer protocol's BLAKE3, sync/blob-hash.ts)
 * passes its own ChunkHashing, and the store then verifies every chunk read with it.
 */
export interface ChunkHashing {
  /** Written into each sidecar: a list made by another hashing is never trusted. 1..16 of [a-z0-9-]. */
  readonly id: string;
  /** Bytes per chunk; every chunk but the last is exactly this long. */
  readonly chunkSize: number;
  /** The 32-byte hash of one chunk. */
  chunk(bytes: Uint8Array): Uint8Array;
  /** The 32-byte root over the list (what a sender announces and a receiver checks first). */
  root(size: number, hashes: readonly Uint8Array[]): Uint8Array;
}

/** Chunk size of the default hashing, equal to the transfer protocol's CHUNK (256 KiB). */
export const DEFAULT_CHUNK = 256 * 1024;

/**
 * The default ChunkHashing: SHA-256 per 256 KiB chunk, root = SHA-256 of
 * `"flt/blobs/sha256\0" ‖ u64be size ‖ u32be chunkSize ‖ hashes`.
 */
export const sha256Chunks: ChunkHashing = {
  id: 'sha256',
  chunkSize: DEFAULT_CHUNK,
  chunk: (bytes) => createHash('sha256').update(bytes).digest(),
  root: (size, hashes) => {
    const h = createHash('sha256')
      .update('flt/blobs/sha256\0')
      .update(sizeHeader(size, DEFAULT_CHUNK));
    for (const x of hashes) h.update(x);
    return h.digest();
  },
};

/** What a blob is expected to be: its size, SHA-256, chunk hash list and that list's root. */
export interface ChunkList {
  readonly size: number;
  /** SHA-256 of the whole blob (Nix's narHash for a NAR); its keyOf() is the blob's key. */
  readonly sha256: Uint8Array;
  readonly root: Uint8Array;
  /** One hash per chunk, ceil(size / chunkSize) of them. */
  readonly hashes: readonly Uint8Array[];
}

/** The chunk list of bytes held in memory (tests, small blobs). */
export function chunkListOf(bytes: Uint8Array, hashing: ChunkHashing = sha256Chunks): ChunkList {
  const hashes: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += hashing.chunkSize)
    hashes.push(hashing.chunk(bytes.subarray(at, at + hashing.chunkSize)));
  return {
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest(),
    root: hashing.root(bytes.length, hashes),
    hashes,
  };
}

/** Options of BlobStore.open and BlobStore.check. */
export interface BlobStoreOptions {
  /** Chunk hashing of the sidecars. Default sha256Chunks. */
  hashing?: ChunkHashing;
  /** The key of a blob from its SHA-256 (nix32 for NARs). Default lowercase hex. */
  keyOf?: (sha256: Uint8Array) => string;
  /** Receives one line per problem found. Default: stderr. */
  logger?: (line: string) => void;
  /** Partial data is fsynced every this many bytes (and at commit). Default 4 MiB. */
  syncEvery?: number;
}

/** Sizes for `flt admin status` and GC. */
export interface BlobStats {
  /** Complete blobs and their bytes (sidecars not counted). */
  readonly blobs: number;
  readonly bytes: number;
  /** Bytes of partial blobs (uploads or downloads in progress). */
  readonly partialBytes: number;
  /** Files in `.quarantine/` (a corrupt blob is two: data and sidecar). */
  readonly quarantined: number;
}

const BLOBS = 'blobs';
const PARTIAL = 'partial';
const DATA_EXT = '.blob';
const LIST_EXT = '.chunks';
const KEY_RE = /^[0-9a-z]{16,128}$/;
const MAGIC = Buffer.from('FLTC', 'latin1');
const MAX_PROBLEMS = 1000;

/**
 * Content-addressed blobs in `dir` (stores/README.md "BlobStore"): complete blobs at
 * `blobs/<key[0:2]>/<key>.blob` (0444) with their chunk list `<key>.chunks`; writes in progress in
 * `partial/`; corrupt blobs in `.quarantine/`. One BlobStore per directory at a time (one process).
 */
export class BlobStore {
  readonly dir: string;
  readonly hashing: ChunkHashing;
  private readonly keyOf: (sha256: Uint8Array) => string;
  private readonly log: (line: string) => void;
  private readonly syncEvery: number;
  private readonly lock = new KeyedMutex();
  private readonly writing = new Set<string>();
  private readonly reported: StoreProblem[] = [];
  /** Size of every complete blob, as it was installed (a damaged file's size is not trusted). */
  private readonly sizes = new Map<string, number>();
  private total = 0;

  private constructor(dir: string, options: BlobStoreOptions) {
    this.dir = dir;
    this.hashing = options.hashing ?? sha256Chunks;
    this.keyOf = options.keyOf ?? ((d) => Buffer.from(d).toString('hex'));
    this.log = options.logger ?? ((line) => process.stderr.write(line + '\n'));
    this.syncEvery = options.syncEvery ?? 4 * 1024 * 1024;
  }

  /**
   * Opens (creating) the store in `dir`: removes and reports leftover temp files, counts the
   * blobs (one lstat each; no content is read).
   */
  static async open(dir: string, options: BlobStoreOptions = {}): Promise<BlobStore> {
    const root = resolve(dir);
    const store = new BlobStore(root, options);
    await wrapIo('open', root, async () => {
      await ensureDir(join(root, BLOBS));
      await ensureDir(join(root, PARTIAL));
    });
    const found = await wrapIo('open', root, () => listStore(root));
    for (const temp of found.temps)
      if (await wrapIo('remove', temp, () => unlinkIfExists(temp)))
        store.report(leftoverProblem(temp), 'removed');
    for (const blob of found.blobs) store.account(blob.key, blob.size);
    return store;
  }

  /**
   * Verifies every complete blob (each chunk against its sidecar, the sidecar's own checksum and
   * root, the whole SHA-256 against the key), changing nothing (for `flt doctor`). Lists leftover
   * temp files (STORE_LEFTOVER_TEMP), corrupt blobs (STORE_CORRUPT) and keys in `expect` (those
   * an index names) that have no blob (BLOB_MISSING). Partial blobs are not checked: a resume
   * re-verifies them.
   */
  static async check(
    dir: string,
    options: Omit<BlobStoreOptions, 'logger' | 'syncEvery'> & { expect?: Iterable<string> } = {},
  ): Promise<StoreProblem[]> {
    const root = resolve(dir);
    const store = new BlobStore(root, { ...options, logger: () => undefined });
    return wrapIo('check', root, async () => {
      const found = await listStore(root);
      const problems = found.temps.sort().map((f) => leftoverProblem(f));
      const keys = new Set<string>();
      for (const blob of found.blobs) {
        keys.add(blob.key);
        const detail = await store.verifyWhole(blob.key);
        if (detail !== undefined)
          problems.push({ code: 'STORE_CORRUPT', key: [blob.key], file: blob.file, detail });
      }
      for (const key of options.expect ?? [])
        if (!keys.has(key))
          problems.push({
            code: 'BLOB_MISSING',
            key: [key],
            file: store.dataPath(key),
            detail: 'an index entry names this blob but it is not in the store',
          });
      return problems;
    });
  }

  /** Whether the complete blob `key` is here (not whether it is intact: read() checks that). */
  async has(key: string): Promise<boolean> {
    assertBlobKey(key);
    return wrapIo('stat', this.dataPath(key), () => exists(this.dataPath(key)));
  }

  /** The file of a complete blob, for a caller that hands it on (e.g. links it into a cache). */
  dataPath(key: string): string {
    return join(this.dir, BLOBS, key.slice(0, 2), key + DATA_EXT);
  }

  /**
   * Starts or resumes writing blob `key` (whose SHA-256 is `list.sha256`, keyOf of which must be
   * `key`). A partial left by an earlier write (even one killed with SIGKILL) is re-verified chunk
   * by chunk against the list and cut after the last good chunk; `next` says where to go on. A
   * different list for the same key (another hashing) starts over. One writer per key at a time
   * (STORE_IO otherwise). A complete blob gives a PartialBlob that is already `complete`.
   */
  async beginPut(key: string, list: ChunkList): Promise<PartialBlob> {
    assertBlobKey(key);
    this.assertList(key, list);
    if (this.writing.has(key))
      throw new StoreError('STORE_IO', `blob ${key} is being written already`);
    this.writing.add(key);
    try {
      if (await this.has(key))
        return new PartialBlob(this, key, list, undefined, undefined, 0, true);
      const listFile = this.partialPath(key, LIST_EXT);
      const dataFile = this.partialPath(key, DATA_EXT);
      const encoded = encodeList(this.hashing, list);
      const old = await wrapIo('load', listFile, () => readIfExists(listFile));
      const same = old !== undefined && Buffer.compare(old, encoded) === 0;
      if (!same) {
        // Data first: a crash in between leaves an empty partial with the new list or the old one.
        await wrapIo('remove', dataFile, () => unlinkIfExists(dataFile));
        await wrapIo('save', listFile, () =>
          writeFileAtomic(listFile, encoded, { createDir: true }),
        );
      }
      const handle = await wrapIo('open', dataFile, () =>
        open(dataFile, constants.O_RDWR | constants.O_CREAT, 0o600),
      );
      try {
        const sha = createHash('sha256');
        const good = await this.verifyPrefix(handle, list, sha);
        const length = Math.min(good * this.hashing.chunkSize, list.size);
        if ((await handle.stat()).size !== length) {
          await handle.truncate(length);
          await handle.sync();
        }
        return new PartialBlob(this, key, list, handle, sha, good, false);
      } catch (err) {
        await handle.close();
        throw err;
      }
    } catch (err) {
      this.writing.delete(key);
      throw err;
    }
  }

  /**
   * Verified chunks of the partial blob `key` on disk (0 when none), changing nothing: where a
   * resumed transfer would start. beginPut() does the same check and also cuts the bad tail.
   */
  async partialChunks(key: string): Promise<number> {
    assertBlobKey(key);
    const listFile = this.partialPath(key, LIST_EXT);
    const raw = await wrapIo('load', listFile, () => readIfExists(listFile));
    const list = raw && decodeList(this.hashing, raw);
    if (list === undefined || typeof list === 'string') return 0;
    const dataFile = this.partialPath(key, DATA_EXT);
    let handle: FileHandle;
    try {
      handle = await open(dataFile, 'r');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return 0;
      throw new StoreError('STORE_IO', `open ${dataFile}: ${errMessage(err)}`, { cause: err });
    }
    try {
      return await this.verifyPrefix(handle, list, undefined);
    } finally {
      await handle.close();
    }
  }

  /** Drops the partial blob `key` (data and list). */
  async removePartial(key: string): Promise<void> {
    assertBlobKey(key);
    for (const ext of [DATA_EXT, LIST_EXT]) {
      const file = this.partialPath(key, ext);
      await wrapIo('remove', file, () => unlinkIfExists(file));
    }
    await wrapIo('remove', this.dir, () => fsyncDir(join(this.dir, PARTIAL)));
  }

  /**
   * Opens the complete blob `key` for reading; undefined when absent. A sidecar that fails its own
   * checks, or a data file of the wrong size, quarantines the blob and throws STORE_CORRUPT.
   */
  async openBlob(key: string): Promise<BlobReader | undefined> {
    assertBlobKey(key);
    const listFile = this.blobPath(key, LIST_EXT);
    const dataFile = this.dataPath(key);
    let handle: FileHandle;
    try {
      handle = await open(dataFile, 'r');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw new StoreError('STORE_IO', `open ${dataFile}: ${errMessage(err)}`, { cause: err });
    }
    try {
      const raw = await wrapIo('load', listFile, () => readIfExists(listFile));
      const list = raw === undefined ? 'its chunk list is missing' : decodeList(this.hashing, raw);
      let problem = typeof list === 'string' ? list : undefined;
      if (typeof list !== 'string' && this.keyOf(list.sha256) !== key)
        problem = 'its chunk list names another blob';
      const size = (await handle.stat()).size;
      if (problem === undefined && typeof list !== 'string' && size !== list.size)
        problem = `it has ${size} bytes, its chunk list says ${list.size}`;
      if (problem !== undefined || typeof list === 'string') {
        await handle.close();
        throw await this.quarantine(key, problem ?? 'bad chunk list');
      }
      return new BlobReader(this, key, list, handle);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Removes the complete blob `key` (GC); false when it was not here. */
  async remove(key: string): Promise<boolean> {
    assertBlobKey(key);
    return this.lock.run(key, async () => {
      const dataFile = this.dataPath(key);
      const removed = await wrapIo('remove', dataFile, () => unlinkIfExists(dataFile));
      const listFile = this.blobPath(key, LIST_EXT);
      await wrapIo('remove', listFile, () => unlinkIfExists(listFile));
      await wrapIo('remove', dataFile, () => fsyncDir(dirname(dataFile)));
      this.account(key, undefined);
      return removed;
    });
  }

  /**
   * Every blob here, complete or partial, with its size and last modification (for GC: a blob no
   * index names, or a partial nobody resumed, is dropped once old enough).
   */
  async list(): Promise<{ key: string; complete: boolean; size: number; mtimeMs: number }[]> {
    return wrapIo('list', this.dir, async () => {
      const out: { key: string; complete: boolean; size: number; mtimeMs: number }[] = [];
      for (const blob of (await listStore(this.dir)).blobs) {
        const st = await statIfExists(blob.file);
        if (st) out.push({ key: blob.key, complete: true, size: st.size, mtimeMs: st.mtimeMs });
      }
      const pdir = join(this.dir, PARTIAL);
      for (const name of ((await listNames(pdir)) ?? []).sort()) {
        if (!name.endsWith(DATA_EXT) || isTempName(name)) continue;
        const key = basename(name, DATA_EXT);
        const st = KEY_RE.test(key) ? await statIfExists(join(pdir, name)) : undefined;
        if (st) out.push({ key, complete: false, size: st.size, mtimeMs: st.mtimeMs });
      }
      return out;
    });
  }

  /** Counts and sizes; blobs and bytes from memory, partial and quarantine listed now. */
  async stats(): Promise<BlobStats> {
    let partialBytes = 0;
    const pdir = join(this.dir, PARTIAL);
    for (const name of (await listNames(pdir)) ?? [])
      if (name.endsWith(DATA_EXT)) partialBytes += (await sizeIfExists(join(pdir, name))) ?? 0;
    const quarantined = ((await listNames(join(this.dir, QUARANTINE_DIR))) ?? []).length;
    return { blobs: this.sizes.size, bytes: this.total, partialBytes, quarantined };
  }

  /** Problems found since open (leftover temps, corrupt blobs), oldest first. */
  problems(): StoreProblem[] {
    return this.reported.map((p) => ({ ...p }));
  }

  // ---- internals used by PartialBlob and BlobReader ----

  /** @internal Moves a finished partial into blobs/ (list first, then data). */
  async install(key: string, size: number): Promise<void> {
    await this.lock.run(key, async () => {
      const dataFile = this.dataPath(key);
      const bdir = dirname(dataFile);
      await wrapIo('commit', dataFile, async () => {
        await ensureDir(bdir);
        const partialData = this.partialPath(key, DATA_EXT);
        await chmod(partialData, 0o444);
        await rename(this.partialPath(key, LIST_EXT), this.blobPath(key, LIST_EXT));
        await rename(partialData, dataFile);
        await fsyncDir(bdir);
        await fsyncDir(join(this.dir, PARTIAL));
      });
      this.account(key, size);
    });
  }

  /** @internal */
  released(key: string): void {
    this.writing.delete(key);
  }

  /** @internal Moves blob `key` (data and list) to the quarantine; the StoreError to throw. */
  async quarantine(key: string, detail: string): Promise<StoreError> {
    const dataFile = this.dataPath(key);
    const problem: StoreProblem = { code: 'STORE_CORRUPT', key: [key], file: dataFile, detail };
    await this.lock.run(key, async () => {
      try {
        const qdir = join(this.dir, QUARANTINE_DIR);
        await ensureDir(qdir);
        const size = await sizeIfExists(dataFile);
        const target = await quarantineName(qdir, [key + DATA_EXT]);
        if (size !== undefined) {
          await rename(dataFile, target);
          this.account(key, undefined);
          problem.quarantinedTo = target;
        }
        const listFile = this.blobPath(key, LIST_EXT);
        if (await exists(listFile))
          await rename(listFile, await quarantineName(qdir, [key + LIST_EXT]));
        await fsyncDir(qdir);
        await fsyncDir(dirname(dataFile));
        this.report(problem, problem.quarantinedTo ? `moved to ${problem.quarantinedTo}` : 'gone');
      } catch (err) {
        this.report(problem, `could not move it to ${QUARANTINE_DIR}: ${errMessage(err)}`);
      }
    });
    return new StoreError('STORE_CORRUPT', `blob ${key} is corrupt: ${detail}; quarantined`);
  }

  /** Records blob `key` as holding `size` bytes, or as gone. */
  private account(key: string, size: number | undefined): void {
    this.total -= this.sizes.get(key) ?? 0;
    if (size === undefined) this.sizes.delete(key);
    else {
      this.sizes.set(key, size);
      this.total += size;
    }
  }

  private partialPath(key: string, ext: string): string {
    return join(this.dir, PARTIAL, key + ext);
  }

  private blobPath(key: string, ext: string): string {
    return join(this.dir, BLOBS, key.slice(0, 2), key + ext);
  }

  private assertList(key: string, list: ChunkList): void {
    const { chunkSize } = this.hashing;
    if (!Number.isSafeInteger(list.size) || list.size < 0)
      throw new TypeError(`blob ${key}: bad size ${list.size}`);
    if (list.hashes.length !== Math.ceil(list.size / chunkSize))
      throw new TypeError(`blob ${key}: ${list.hashes.length} chunk hashes for ${list.size} bytes`);
    if (list.sha256.length !== 32 || this.keyOf(list.sha256) !== key)
      throw new TypeError(`blob ${key}: its SHA-256 gives another key`);
    if (Buffer.compare(this.hashing.root(list.size, list.hashes), list.root) !== 0)
      throw new TypeError(`blob ${key}: the chunk hashes do not give the root`);
  }

  /** Chunks at the start of `handle` that match `list`, feeding their bytes to `sha`. */
  private async verifyPrefix(
    handle: FileHandle,
    list: ChunkList,
    sha: Hash | undefined,
  ): Promise<number> {
    const { chunkSize } = this.hashing;
    const size = (await handle.stat()).size;
    const buf = Buffer.alloc(chunkSize);
    let good = 0;
    for (; good < list.hashes.length; good++) {
      const want = Math.min(chunkSize, list.size - good * chunkSize);
      if ((good + 1) * chunkSize > size && want === chunkSize) break;
      if (good * chunkSize + want > size) break;
      const bytes = await readExactly(handle, buf, want, good * chunkSize);
      if (Buffer.compare(this.hashing.chunk(bytes), list.hashes[good]!) !== 0) break;
      sha?.update(bytes);
    }
    return good;
  }

  /** What is wrong with complete blob `key`, reading everything; undefined when intact. */
  private async verifyWhole(key: string): Promise<string | undefined> {
    const raw = await readIfExists(this.blobPath(key, LIST_EXT));
    if (raw === undefined) return 'its chunk list is missing';
    const list = decodeList(this.hashing, raw);
    if (typeof list === 'string') return list;
    if (this.keyOf(list.sha256) !== key) return 'its chunk list names another blob';
    const handle = await open(this.dataPath(key), 'r');
    try {
      const size = (await handle.stat()).size;
      if (size !== list.size) return `it has ${size} bytes, its chunk list says ${list.size}`;
      const sha = createHash('sha256');
      const good = await this.verifyPrefix(handle, list, sha);
      if (good < list.hashes.length) return `chunk ${good} does not match its hash`;
      if (Buffer.compare(sha.digest(), list.sha256) !== 0) return 'its SHA-256 does not match';
      return undefined;
    } finally {
      await handle.close();
    }
  }

  private report(problem: StoreProblem, outcome: string): void {
    this.reported.push(problem);
    if (this.reported.length > MAX_PROBLEMS) this.reported.shift();
    this.log(`${problem.code} ${problem.file}: ${problem.detail}; ${outcome}`);
  }

  /** @internal */
  get syncBytes(): number {
    return this.syncEvery;
  }
}

/**
 * A blob being written (BlobStore.beginPut): chunks are appended in order, each verified against
 * the list before it touches the file; data is fsynced every `syncEvery` bytes; commit() checks the
 * whole SHA-256 and moves the blob into place. close() without commit keeps the verified prefix for
 * a later resume.
 */
export class PartialBlob {
  readonly key: string;
  readonly list: ChunkList;
  private nextIndex: number;
  private unsynced = 0;
  private done: boolean;
  private closed = false;

  /** @internal */
  constructor(
    private readonly store: BlobStore,
    key: string,
    list: ChunkList,
    private readonly handle: FileHandle | undefined,
    private readonly sha: Hash | undefined,
    next: number,
    complete: boolean,
  ) {
    this.key = key;
    this.list = list;
    this.nextIndex = complete ? list.hashes.length : next;
    this.done = complete;
  }

  /** Chunks in the list. */
  get chunks(): number {
    return this.list.hashes.length;
  }

  /** The index of the next chunk to write (= verified chunks so far). */
  get next(): number {
    return this.nextIndex;
  }

  /** Whether the blob is complete in the store (already there, or committed). */
  get complete(): boolean {
    return this.done;
  }

  /**
   * Appends chunk `index`, which must be `next` (RangeError otherwise). False, writing nothing,
   * when the bytes do not match the list's hash for that chunk (or its length): a peer sent bad
   * data.
   */
  async write(index: number, bytes: Uint8Array): Promise<boolean> {
    const handle = this.open();
    if (index !== this.nextIndex)
      throw new RangeError(`blob ${this.key}: chunk ${index} written, ${this.nextIndex} expected`);
    const { chunkSize } = this.store.hashing;
    const want = Math.min(chunkSize, this.list.size - index * chunkSize);
    if (bytes.length !== want) return false;
    if (Buffer.compare(this.store.hashing.chunk(bytes), this.list.hashes[index]!) !== 0)
      return false;
    const file = this.store.dir;
    await wrapIo('write', file, async () => {
      await handle.write(bytes, 0, bytes.length, index * chunkSize);
      this.unsynced += bytes.length;
      if (this.unsynced >= this.store.syncBytes) {
        await handle.sync();
        this.unsynced = 0;
      }
    });
    this.sha!.update(bytes);
    this.nextIndex++;
    return true;
  }

  /**
   * Fsyncs, checks the whole blob's SHA-256 and moves it into `blobs/`. Every chunk must have been
   * written (RangeError otherwise). A SHA-256 mismatch (a coherent list of wrong bytes) drops the
   * partial and throws STORE_CORRUPT.
   */
  async commit(): Promise<void> {
    if (this.done) return this.close();
    const handle = this.open();
    if (this.nextIndex !== this.chunks)
      throw new RangeError(
        `blob ${this.key}: commit after ${this.nextIndex} of ${this.chunks} chunks`,
      );
    await wrapIo('commit', this.store.dir, () => handle.sync());
    const ok = Buffer.compare(this.sha!.digest(), this.list.sha256) === 0;
    await this.close();
    if (!ok) {
      await this.store.removePartial(this.key);
      throw new StoreError('STORE_CORRUPT', `blob ${this.key}: its bytes do not have its SHA-256`);
    }
    await this.store.install(this.key, this.list.size);
    this.done = true;
  }

  /** Fsyncs what was written and closes the file; the partial stays for a resume. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.handle && this.unsynced > 0 && !this.done) await this.handle.sync();
    } finally {
      await this.handle?.close();
      this.store.released(this.key);
    }
  }

  private open(): FileHandle {
    if (this.closed || this.handle === undefined)
      throw new StoreError('STORE_CLOSED', `blob ${this.key}: the write is closed or complete`);
    return this.handle;
  }
}

/** A complete blob opened for reading (BlobStore.openBlob). close() when done. */
export class BlobReader {
  readonly key: string;
  readonly list: ChunkList;

  /** @internal */
  constructor(
    private readonly store: BlobStore,
    key: string,
    list: ChunkList,
    private readonly handle: FileHandle,
  ) {
    this.key = key;
    this.list = list;
  }

  get chunks(): number {
    return this.list.hashes.length;
  }

  /**
   * Chunks `from` .. end, each verified against the list before it is yielded. A mismatch
   * quarantines the blob (reported through the store's logger and problems()) and throws
   * STORE_CORRUPT; nothing unverified is ever yielded.
   */
  async *read(from = 0): AsyncGenerator<{ index: number; bytes: Uint8Array }> {
    const { chunkSize } = this.store.hashing;
    for (let index = from; index < this.chunks; index++) {
      const want = Math.min(chunkSize, this.list.size - index * chunkSize);
      const bytes = await wrapIo('read', this.store.dataPath(this.key), () =>
        readExactly(this.handle, Buffer.alloc(want), want, index * chunkSize),
      );
      if (Buffer.compare(this.store.hashing.chunk(bytes), this.list.hashes[index]!) !== 0) {
        await this.close();
        throw await this.store.quarantine(this.key, `chunk ${index} does not match its hash`);
      }
      yield { index, bytes };
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** Throws TypeError unless `key` can name a blob (16..128 of [0-9a-z]). */
export function assertBlobKey(key: string): void {
  if (typeof key !== 'string' || !KEY_RE.test(key))
    throw new TypeError(`bad blob key ${JSON.stringify(key)}: 16..128 of [0-9a-z] expected`);
}

// ---- sidecar: 'FLTC' u8 0 u8 idLen id u64be size u32be chunkSize sha256 root hashes... sha256(all before)

function sizeHeader(size: number, chunkSize: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt32BE(chunkSize, 8);
  return b;
}

function encodeList(hashing: ChunkHashing, list: ChunkList): Buffer {
  const id = Buffer.from(hashing.id, 'latin1');
  const body = Buffer.concat([
    MAGIC,
    Buffer.from([0, id.length]),
    id,
    sizeHeader(list.size, hashing.chunkSize),
    list.sha256,
    list.root,
    ...list.hashes,
  ]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** The list in a sidecar, or what is wrong with it. */
function decodeList(hashing: ChunkHashing, raw: Buffer): ChunkList | string {
  if (raw.length < 6 + 32 || !raw.subarray(0, 4).equals(MAGIC) || raw[4] !== 0)
    return 'its chunk list has a bad header';
  const body = raw.subarray(0, raw.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(raw.subarray(raw.length - 32))
  )
    return 'its chunk list fails its checksum';
  const idLen = raw[5]!;
  const id = raw.subarray(6, 6 + idLen).toString('latin1');
  if (id !== hashing.id) return `its chunk list is of hashing ${id}, not ${hashing.id}`;
  let at = 6 + idLen;
  const size = Number(raw.readBigUInt64BE(at));
  const chunkSize = raw.readUInt32BE(at + 8);
  at += 12;
  if (chunkSize !== hashing.chunkSize) return `its chunk list has chunks of ${chunkSize} bytes`;
  const n = Math.ceil(size / chunkSize);
  if (body.length !== at + 64 + 32 * n) return 'its chunk list has the wrong length';
  const sha256 = body.subarray(at, at + 32);
  const root = body.subarray(at + 32, at + 64);
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < n; i++) hashes.push(body.subarray(at + 64 + 32 * i, at + 96 + 32 * i));
  if (!Buffer.from(hashing.root(size, hashes)).equals(root)) return 'its chunk list fails its root';
  return { size, sha256, root, hashes };
}

// ---- files

async function readExactly(
  handle: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
): Promise<Buffer> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await handle.read(buf, got, length - got, position + got);
    if (bytesRead === 0) throw new StoreError('STORE_CORRUPT', `short read at ${position + got}`);
    got += bytesRead;
  }
  return buf.subarray(0, length);
}

async function exists(path: string): Promise<boolean> {
  return (await sizeIfExists(path)) !== undefined;
}

async function statIfExists(path: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const st = await lstat(path);
    return { size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function sizeIfExists(path: string): Promise<number | undefined> {
  try {
    return (await lstat(path)).size;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function listNames(dir: string): Promise<string[] | undefined> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Complete blobs (by their data files) and temp files below blobs/ and partial/. */
async function listStore(
  root: string,
): Promise<{ blobs: { key: string; file: string; size: number }[]; temps: string[] }> {
  const blobs: { key: string; file: string; size: number }[] = [];
  const temps: string[] = [];
  const pdir = join(root, PARTIAL);
  for (const name of (await listNames(pdir)) ?? [])
    if (isTempName(name)) temps.push(join(pdir, name));
  const bdir = join(root, BLOBS);
  for (const sub of ((await listNames(bdir)) ?? []).sort()) {
    if (isTempName(sub)) temps.push(join(bdir, sub));
    if (sub.startsWith('.')) continue;
    for (const name of ((await listNames(join(bdir, sub))) ?? []).sort()) {
      const file = join(bdir, sub, name);
      if (isTempName(name)) temps.push(file);
      else if (name.endsWith(DATA_EXT)) {
        const key = basename(name, DATA_EXT);
        const size = await sizeIfExists(file);
        if (KEY_RE.test(key) && size !== undefined) blobs.push({ key, file, size });
      }
    }
  }
  return { blobs, temps };
}
