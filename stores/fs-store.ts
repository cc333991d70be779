// FsStore, flt's default Store: automerge-repo values as plain files, in the exact layout of
// @automerge/automerge-repo-storage-nodefs (so a state dir opens with nodefs and the other way
// round), but crash-safe, verified on load, with corrupt chunks quarantined rather than lost. Built
// on stores/fs-io.ts (layout, walks), stores/atomic-write.ts (crash-safe writes) and
// stores/chunk-format.ts (integrity checks).

import { rename } from 'node:fs/promises';
import { setImmediate as setImmediateP } from 'node:timers/promises';
import { dirname, join, resolve } from 'node:path';
import type { Chunk, StorageKey } from '@automerge/automerge-repo';
import { type AtomicWriteOptions, ensureDir, fsyncDir, writeFileAtomic } from './atomic-write.js';
import { checkValue, decodeFile, hasLegacyMagic, type Decoded } from './chunk-format.js';
import { ChunkLog } from './chunk-log.js';
import { StoreError } from './errors.js';
import {
  errMessage,
  keySegments,
  listDir,
  readIfExists,
  rmdirIfEmpty,
  segmentsKey,
  unlinkIfExists,
  walk,
  wrapIo,
  type Listing,
} from './fs-io.js';
import { assertKey, assertPrefix, assertValue, show } from './keys.js';
import { checkStore, leftoverProblem, quarantineName, QUARANTINE_DIR } from './problems.js';
import { sharedReadWorker, type ReadWorker, type TreeRead } from './read-worker.js';
import { KeyedMutex, mapBounded, Semaphore } from './semaphore.js';
import type { Store, StoreProblem } from './store.js';

/** Options of FsStore.open. */
export interface FsStoreOptions {
  /** Receives one line per problem found (corrupt chunk, leftover temp file). Default: stderr. */
  logger?: (line: string) => void;
  /**
   * Most file operations of each kind in flight at once: saves, and the rest (reads, listings,
   * removals). Default 32 each: 64 in all, far below the usual 1,024 open files.
   */
  maxConcurrency?: number;
  /**
   * Keep an index of the documents it holds (see FsStore), so that asking about a document it
   * does not hold touches no file. For a coordinator, which asks about every new agent's
   * documents; off by default.
   */
  index?: boolean;
  /**
   * Read whole documents (loadRange) in a worker thread shared by the process's stores
   * (stores/read-worker.ts): for a coordinator, which loads thousands at once after a restart. Off
   * by default: a node that reads a few documents would pay a thread's start (~30 ms of CPU, some
   * MiB) for nothing, and a process running many agents one thread per agent.
   */
  readWorker?: boolean;
  /**
   * Saves and removals go to the chunk log (stores/chunk-log.ts): appended to one file, one write
   * and one fdatasync for every operation asked while the last was being written, instead of a
   * file, two fsyncs and a rename each. For a coordinator, which saves every change of thousands
   * of documents as it comes. Off by default: chunks saved this way are in no file nodefs reads.
   * Whatever the option, a store whose directory has a log reads it (a key in both a file and the
   * log reads from the log), and a key the log holds is saved there again.
   */
  log?: boolean;
}

/** Problems kept for problems(); older ones are dropped (they were logged). */
const MAX_PROBLEMS = 1000;

/**
 * A file in the store's root saying its files are in the plain format (2; flt 0.1 wrote format 1,
 * with a header). Without it, open() checks every file once and rewrites those of format 1. nodefs
 * never reads it: it only reads below a document's directory.
 */
const FORMAT_FILE = '.flt-store-format';
const FORMAT_TEXT = '2\n';

/**
 * The default Store: one file per chunk at `<dir>/<key0[0:2]>/<key0[2:]>/<key1>/...`.
 *
 * - save() resolves once the chunk is durable (temp file, fsync, rename, fsync directory).
 * - remove() unlinks without an fsync of the directory: its callers (automerge-repo's compaction,
 *   flt's compact.ts and doc.fetch's replica) remove chunks only after a saved snapshot holds
 *   their changes, so one that comes back after a power failure loads to the same document
 *   (Automerge applies a change once). A compaction of a coordinator's root removes dozens of
 *   chunks one by one, and each fsync made every answer waiting on the root wait seconds longer
 *   under a fan-in (issue 13). removeRange (a document deleted) stays durable.
 * - A file holds the value itself, as nodefs writes it. It is checked on every load by what it
 *   claims to be (stores/chunk-format.ts): Automerge chunks by their checksums, incremental chunks
 *   by their names. A file that fails is moved to `<dir>/.quarantine/`, reported through the
 *   logger and problems(), and treated as absent: never deleted, and never reached by removeRange.
 *   save() refuses a value that would fail (TypeError), so an acknowledged save always loads.
 * - Files in flt 0.1's format (with a header) are rewritten plain: all of them by open(), and any
 *   met later (written by an older flt since) when read.
 * - Leftover temp files (`.*.tmp`) found by a listing are reported and removed.
 * - Assumes one FsStore per directory at a time (one process): it cannot tell another process's
 *   in-flight temp file from a leftover, and with `index` it knows which documents it holds from
 *   a scan at open plus its own saves, so a document another program adds to the directory later
 *   reads as absent until the next open.
 * - As in nodefs, a key cannot also be the prefix of a longer key (a file is not a directory);
 *   such a save fails with STORE_IO. automerge-repo's keys never collide this way.
 */
export class FsStore implements Store {
  readonly dir: string;
  private readonly log: (line: string) => void;
  private readonly limit: number;
  /** Reads, listings and removals. */
  private readonly sem: Semaphore;
  /**
   * Saves, apart: each holds its slot through two fsyncs (the file, its directory), and a read or
   * listing queued behind a burst of them waited seconds (issue 13: under a 1,000-agent fan-in,
   * the coordinator's "is this document stored?" before answering an enrollment took 2-74 s).
   */
  private readonly writes: Semaphore;
  /** Serializes save, remove and quarantine per file path. */
  private readonly fileLock = new KeyedMutex();
  private readonly tempsInFlight = new Set<string>();
  private readonly writeOptions: AtomicWriteOptions = {
    createDir: true,
    inFlight: this.tempsInFlight,
  };
  /**
   * Every document (first key element) the directory may hold files of, once `indexed` has
   * resolved true: one scan of the top two levels at open, run in the background, and every save
   * adds its document before the file exists. It is never shrunk (a removed document costs a
   * listing, as before). Asking about a document it does not name touches no file: under a
   * 1,000-agent fan-in, the "is this new agent's document stored?" listings waited seconds in
   * libuv's four threads behind fsyncs (issue 13). Resolves false if the scan failed: then every
   * question lists, as without an index.
   */
  private readonly docs = new Set<string>();
  /** The scan (option `index`), or undefined without an index. */
  private indexed: Promise<boolean> | undefined;
  /**
   * Running operations by the first element of their key (undefined: any document): settled()
   * asks about one document, and scanning every operation for it cost a fan-in's coordinator
   * 0.5 ms of CPU per agent with thousands of saves in flight (issue 13).
   */
  private readonly ops = new Map<string | undefined, Set<Promise<unknown>>>();
  private opCount = 0;
  /** Documents whose operations go ahead of queued ones of others (prioritize). */
  private readonly urgent = new Set<string>();
  private readonly reported: StoreProblem[] = [];
  /** Reads whole documents for loadRange, off the main thread (option `readWorker`). */
  private readonly reader: ReadWorker | undefined;
  /** The directory's chunk log, if it has one or option `log` made one. */
  private chunkLog: ChunkLog | undefined;
  /** Option `log`: every save goes to the chunk log. */
  private readonly logSaves: boolean;
  private closing: Promise<void> | undefined;

  private constructor(dir: string, options: FsStoreOptions) {
    this.dir = dir;
    this.log = options.logger ?? ((line) => process.stderr.write(line + '\n'));
    this.limit = options.maxConcurrency ?? 32;
    this.sem = new Semaphore(this.limit);
    this.writes = new Semaphore(this.limit);
    this.reader = options.readWorker === true ? sharedReadWorker(this.log) : undefined;
    this.logSaves = options.log === true;
  }

  /**
   * Opens (creating if needed) the store in `dir`. The first open of a directory without the
   * format file (new, written by nodefs, or by flt 0.1) reads every file once: each is checked,
   * quarantined if corrupt, and rewritten plain if it has flt 0.1's header.
   */
  static async open(dir: string, options: FsStoreOptions = {}): Promise<FsStore> {
    const root = resolve(dir);
    await wrapIo('open', root, () => ensureDir(root));
    const store = new FsStore(root, options);
    await store.upgrade();
    store.chunkLog = await wrapIo('open', root, () =>
      ChunkLog.open(root, (problem, outcome) => store.report(problem, outcome), store.logSaves),
    );
    if (options.index === true) store.indexed = store.track(undefined, () => store.scan());
    return store;
  }

  /**
   * Walks the whole store in `dir` and verifies every chunk, changing nothing (for `flt doctor`).
   * Corrupt chunks come back without `quarantinedTo`; leftover temp files are listed.
   */
  static async check(
    dir: string,
    options: { maxConcurrency?: number } = {},
  ): Promise<StoreProblem[]> {
    const root = resolve(dir);
    return wrapIo('check', root, async () => [
      ...(await checkStore(root, options.maxConcurrency ?? 32)),
      ...(await ChunkLog.check(root)),
    ]);
  }

  load(key: StorageKey): Promise<Uint8Array | undefined> {
    return this.track(key[0], async () => {
      assertKey(key);
      const logged = await this.chunkLog?.get(key);
      if (logged !== undefined) return logged;
      if (await this.surelyAbsent(key)) return undefined;
      return this.loadVerified(key, this.pathOf(key));
    });
  }

  save(key: StorageKey, data: Uint8Array): Promise<void> {
    return this.track(key[0], async () => {
      assertKey(key);
      assertValue(key, data);
      const bytes = data.slice(); // a copy, so a caller mutating `data` cannot race the write
      const problem = hasLegacyMagic(bytes)
        ? "it starts with flt 0.1's header magic"
        : checkValue(key, bytes);
      if (problem !== undefined)
        throw new TypeError(`save ${show(key)}: refused, it would not load back: ${problem}`);
      const log = this.chunkLog;
      if (log !== undefined && (this.logSaves || log.has(key))) return log.put(key, bytes);
      const file = this.pathOf(key);
      if (this.indexed) this.docs.add(key[0] as string);
      await this.fileLock.run(file, () =>
        this.writes.run(
          () => wrapIo('save', file, () => writeFileAtomic(file, bytes, this.writeOptions)),
          this.isUrgent(key),
        ),
      );
    });
  }

  remove(key: StorageKey): Promise<void> {
    return this.track(key[0], async () => {
      assertKey(key);
      // With option `log` always a record, even for a key the log does not hold yet: a save of
      // it may be queued.
      const log = this.chunkLog;
      const logged = log && (this.logSaves || log.has(key)) ? log.remove(key) : undefined;
      if (await this.surelyAbsent(key)) return logged;
      await logged;
      // No fsync of the directory (see the class comment on remove()).
      await this.removeFile(this.pathOf(key), false, this.isUrgent(key));
    });
  }

  loadRange(prefix: StorageKey): Promise<Chunk[]> {
    return this.track(prefix[0], async () => {
      const files = await this.loadFiles(prefix);
      // Through the reads' queue, like a file: a restart asks for every document at once, and
      // 5,000 reads answered together kept their documents' loads in memory at once (GC 3.9 s of
      // CPU against 1.2 s for the same documents read from files).
      const log = this.chunkLog;
      const logged =
        log === undefined || log.keys(prefix).length === 0
          ? undefined
          : await this.sem.run(() => log.entries(prefix), this.isUrgent(prefix));
      if (logged === undefined || logged.length === 0) return files;
      // Answered on the loop's next turn, as the read worker answers: reads finishing back to back
      // kept the loop in its poll phase, each load right after its read, and the wasm headroom's
      // GC watcher (an immediate) waited through all of them, so Automerge's memory grew page by
      // page (~660 scavenges; 5,000 documents loaded in 4.8-6.7 s against 3.9-4.1 s from files).
      await setImmediateP();
      const byKey = new Map(files.map((c) => [show(c.key), c]));
      for (const c of logged) byKey.set(show(c.key), c);
      return [...byKey.values()].sort((a, b) => (show(a.key) < show(b.key) ? -1 : 1));
    });
  }

  /** loadRange of what is in files. */
  private async loadFiles(prefix: StorageKey): Promise<Chunk[]> {
    const read = await this.loadRangeInWorker(prefix);
    if (read !== undefined) return read;
    const listing = await this.list(prefix);
    if (listing === undefined) return [];
    if (listing === 'file') {
      const data = await this.loadVerified(prefix, this.pathOf(prefix));
      return data === undefined ? [] : [{ key: [...prefix], data }];
    }
    const chunks = await mapBounded(listing.files, this.limit, async (f) => {
      const key = segmentsKey(f.segments);
      return { key, data: await this.loadVerified(key, f.path) };
    });
    return chunks.filter((c) => c.data !== undefined);
  }

  /** The keys that start with `prefix` (a listing, no reads), sorted. */
  keys(prefix: StorageKey): Promise<StorageKey[]> {
    return this.track(prefix[0], async () => {
      const listing = await this.list(prefix);
      const files =
        listing === undefined
          ? []
          : listing === 'file'
            ? [[...prefix]]
            : listing.files.map((f) => segmentsKey(f.segments));
      const logged = this.chunkLog?.keys(prefix) ?? [];
      if (logged.length === 0) return files;
      const byKey = new Map([...files, ...logged].map((k) => [show(k), k]));
      return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
    });
  }

  /** Whether any key starts with `prefix` (a listing, no reads): does the store hold a document? */
  holds(prefix: StorageKey): Promise<boolean> {
    return this.track(prefix[0], async () => {
      if (this.chunkLog !== undefined && this.chunkLog.keys(prefix).length > 0) return true;
      const listing = await this.list(prefix);
      return listing === 'file' || (listing !== undefined && listing.files.length > 0);
    });
  }

  removeRange(prefix: StorageKey): Promise<void> {
    return this.track(prefix[0], async () => {
      await this.chunkLog?.removeRange(prefix);
      const listing = await this.list(prefix);
      if (listing === 'file') await this.removeFile(this.pathOf(prefix));
      if (listing === undefined || listing === 'file') return;
      await mapBounded(listing.files, this.limit, (f) => this.removeFile(f.path, false));
      await this.pruneDirs(listing);
    });
  }

  /** Problems found since open (corrupt chunks, leftover temp files), oldest first. */
  problems(): StoreProblem[] {
    return this.reported.map((p) => ({ ...p, ...(p.key && { key: [...p.key] }) }));
  }

  /** Whether any operation is running right now. */
  get busy(): boolean {
    return this.opCount > 0;
  }

  /** Resolves once no operation is running (new ones may still start afterwards). */
  async idle(): Promise<void> {
    while (this.opCount > 0) await Promise.allSettled(this.running());
  }

  /**
   * Resolves once the operations running now have ended (unlike idle(), not later ones); given
   * `first`, only those on keys that start with it (a document's, for automerge-repo), and those
   * on any key. A coordinator sending a message about one document waits for that document's
   * save, not for the saves of a thousand others (issue 13).
   */
  async settled(first?: string): Promise<void> {
    const ops =
      first === undefined
        ? this.running()
        : [...(this.ops.get(first) ?? []), ...(this.ops.get(undefined) ?? [])];
    await Promise.allSettled(ops);
  }

  /**
   * Saves, loads and removals of `doc`'s chunks (first key element) go ahead of those of other
   * documents queued from now on: for the few documents a node's answers wait on (a
   * coordinator's root, audit and admins documents). Under a fan-in their saves queued 20 s
   * behind the per-agent ones, and a compaction's removals of old chunks (one at a time, in
   * automerge-repo) behind the reads (issue 13).
   */
  prioritize(doc: string): void {
    this.urgent.add(doc);
  }

  /** Whether `doc` was prioritized. */
  prioritized(doc: string): boolean {
    return this.urgent.has(doc);
  }

  /** Refuses new operations and waits for running ones. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.allSettled(this.running()).then(() => this.chunkLog?.close());
    return this.closing;
  }

  private running(): Promise<unknown>[] {
    return [...this.ops.values()].flatMap((set) => [...set]);
  }

  private track<T>(first: string | undefined, body: () => Promise<T>): Promise<T> {
    if (this.closing)
      return Promise.reject(new StoreError('STORE_CLOSED', `store ${this.dir} is closed`));
    const op = body();
    let set = this.ops.get(first);
    if (set === undefined) this.ops.set(first, (set = new Set()));
    set.add(op);
    this.opCount++;
    const done = () => {
      this.opCount--;
      set.delete(op);
      if (set.size === 0 && this.ops.get(first) === set) this.ops.delete(first);
    };
    void op.then(done, done);
    return op;
  }

  private pathOf(key: StorageKey): string {
    return join(this.dir, ...keySegments(key));
  }

  /** Lists below `prefix`, cleaning leftover temp files on the way. */
  private async list(prefix: StorageKey): Promise<Listing | 'file' | undefined> {
    assertPrefix(prefix);
    if (await this.surelyAbsent(prefix)) return undefined;
    // A key's first element has at least 3 characters, so a shorter one matches nothing (and
    // would otherwise name the shared 2-character directory).
    if (prefix.length > 0 && (prefix[0] as string).length < 3) return undefined;
    const listing = await wrapIo('list', this.dir, () =>
      walk(this.dir, keySegments(prefix), this.sem),
    );
    if (listing !== undefined && listing !== 'file') {
      const leftovers = listing.temps.filter((t) => !this.tempsInFlight.has(t));
      await mapBounded(leftovers, this.limit, (t) => this.cleanLeftover(t));
    }
    return listing;
  }

  /**
   * True when the index is complete and names no file of the key's document. Without an index
   * (option `index`): false, and nothing waits for a scan.
   */
  private async surelyAbsent(key: StorageKey): Promise<boolean> {
    const first = key[0];
    if (this.indexed === undefined || first === undefined || this.docs.has(first)) return false;
    return (await this.indexed) === true && !this.docs.has(first);
  }

  /** Fills `docs` from the layout's top two levels; false (logged) if they cannot be read. */
  private async scan(): Promise<boolean> {
    // A directory pruned by a removal since its parent was read held nothing.
    const names = async (dir: string) => {
      const entries = await this.sem.run(() => listDir(dir));
      return Array.isArray(entries) ? entries : [];
    };
    try {
      const tops = (await names(this.dir)).filter(
        (e) => e.isDirectory() && !e.name.startsWith('.'),
      );
      await mapBounded(tops, this.limit, async (top) => {
        for (const e of await names(join(this.dir, top.name)))
          if (!e.name.startsWith('.')) this.docs.add(top.name + e.name);
      });
      return true;
    } catch (err) {
      this.log(
        `STORE_IO ${this.dir}: cannot index its documents (${errMessage(err)}); every lookup lists`,
      );
      return false;
    }
  }

  /**
   * Removes a temp file no save of ours holds. If it is already gone, the save that made it
   * finished after the listing: not a leftover, nothing to report.
   */
  private async cleanLeftover(file: string): Promise<void> {
    const removed = await this.sem.run(() => wrapIo('remove', file, () => unlinkIfExists(file)));
    if (removed) this.report(leftoverProblem(file), 'removed');
  }

  /**
   * loadRange by the read worker (stores/read-worker.ts), off the main thread; undefined when
   * this read is the main thread's: no `readWorker` option, a prioritized document (the worker's
   * queue is first come, first served), or a worker that could not run.
   */
  private async loadRangeInWorker(prefix: StorageKey): Promise<Chunk[] | undefined> {
    const reader = this.reader;
    if (reader === undefined || reader.broken || this.isUrgent(prefix)) return undefined;
    assertPrefix(prefix);
    if (await this.surelyAbsent(prefix)) return [];
    if (prefix.length > 0 && (prefix[0] as string).length < 3) return []; // as in list()
    let tree: TreeRead;
    try {
      tree = await reader.read(this.dir, keySegments(prefix));
    } catch (err) {
      if (reader.broken) return undefined; // logged by the reader
      throw new StoreError('STORE_IO', `load ${show(prefix)}: ${errMessage(err)}`, { cause: err });
    }
    if (tree === undefined) return [];
    if ('file' in tree) {
      const data = await this.verified(prefix, this.pathOf(prefix), tree.file);
      return data === undefined ? [] : [{ key: [...prefix], data }];
    }
    const leftovers = tree.temps.filter((t) => !this.tempsInFlight.has(t));
    await mapBounded(leftovers, this.limit, (t) => this.cleanLeftover(t));
    const chunks = await Promise.all(
      tree.files.map(async (f) => {
        const key = segmentsKey(f.segments);
        return { key, data: await this.verified(key, join(this.dir, ...f.segments), f.data) };
      }),
    );
    return chunks.filter((c) => c.data !== undefined);
  }

  /** Reads and verifies one chunk; a corrupt one is quarantined and reads as absent. */
  private async loadVerified(key: StorageKey, file: string): Promise<Uint8Array | undefined> {
    const bytes = await this.sem.run(
      () => wrapIo('load', file, () => readIfExists(file)),
      this.isUrgent(key),
    );
    return bytes === undefined ? undefined : this.verified(key, file, bytes);
  }

  /** The chunk in `bytes`, read from `file`, if it checks; if not, settle() decides. */
  private verified(
    key: StorageKey,
    file: string,
    bytes: Uint8Array,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const decoded = decodeFile(key, bytes);
    return decoded.ok && !decoded.legacy ? decoded.data : this.settle(key, file);
  }

  /**
   * Under the file's lock, moves a corrupt chunk aside or rewrites one in flt 0.1's format plain.
   * The file is read again first: a save may have replaced it since, and then the new data is the
   * answer.
   */
  private settle(key: StorageKey, file: string): Promise<Uint8Array | undefined> {
    return this.fileLock.run(file, async () => {
      const bytes = await this.sem.run(() => wrapIo('load', file, () => readIfExists(file)));
      if (bytes === undefined) return undefined;
      const decoded = decodeFile(key, bytes);
      if (!decoded.ok) return this.quarantine(key, file, decoded);
      if (decoded.legacy) {
        const data = decoded.data;
        await this.sem.run(() =>
          wrapIo('rewrite', file, () => writeFileAtomic(file, data, this.writeOptions)),
        );
      }
      return decoded.data;
    });
  }

  /** Moves a corrupt chunk to the quarantine; the caller holds the file's lock. */
  private async quarantine(
    key: StorageKey,
    file: string,
    decoded: Decoded & { ok: false },
  ): Promise<undefined> {
    const problem: StoreProblem = {
      code: 'STORE_CORRUPT',
      key: [...key],
      file,
      detail: decoded.detail,
    };
    try {
      problem.quarantinedTo = await this.fileLock.run(QUARANTINE_DIR, () =>
        this.moveAside(key, file),
      );
      this.report(problem, `moved to ${problem.quarantinedTo}`);
    } catch (err) {
      this.report(problem, `could not move it to ${QUARANTINE_DIR}: ${errMessage(err)}`);
    }
    return undefined;
  }

  /**
   * Without the format file: checks every file once (quarantining the corrupt, rewriting flt 0.1's
   * plain), then writes the format file. A crash part way leaves each file old or new, and the
   * next open starts over.
   */
  private async upgrade(): Promise<void> {
    const marker = join(this.dir, FORMAT_FILE);
    const found = await this.sem.run(() => wrapIo('open', marker, () => readIfExists(marker)));
    if (found?.toString('latin1') === FORMAT_TEXT) return;
    const listing = await this.list([]);
    if (listing !== undefined && listing !== 'file') {
      await mapBounded(listing.files, this.limit, async (f) => {
        await this.loadVerified(segmentsKey(f.segments), f.path);
      });
    }
    const text = Buffer.from(FORMAT_TEXT, 'latin1');
    await this.sem.run(() =>
      wrapIo('open', marker, () => writeFileAtomic(marker, text, this.writeOptions)),
    );
  }

  private async moveAside(key: StorageKey, file: string): Promise<string> {
    const qdir = join(this.dir, QUARANTINE_DIR);
    return this.sem.run(async () => {
      await ensureDir(qdir);
      const target = await quarantineName(qdir, key);
      await rename(file, target);
      await fsyncDir(qdir);
      await fsyncDir(dirname(file));
      return target;
    });
  }

  private report(problem: StoreProblem, outcome: string): void {
    this.reported.push(problem);
    if (this.reported.length > MAX_PROBLEMS) this.reported.shift();
    this.log(`${problem.code} ${problem.file}: ${problem.detail}; ${outcome}`);
  }

  private async removeFile(file: string, sync = true, first = false): Promise<void> {
    const removed = await this.fileLock.run(file, () =>
      this.sem.run(() => wrapIo('remove', file, () => unlinkIfExists(file)), first),
    );
    if (removed && sync)
      await this.sem.run(() => wrapIo('remove', file, () => fsyncDir(dirname(file))), first);
  }

  /** Whether `key` is of a prioritized document (its operations go ahead of queued others'). */
  private isUrgent(key: StorageKey): boolean {
    return this.prioritized(key[0] as string);
  }

  /**
   * After removeRange: remove the directories left empty (deepest first) and fsync the rest, then
   * the parent of the top one, so the removals are durable.
   */
  private async pruneDirs(listing: Listing): Promise<void> {
    const dirs = listing.dirs.filter((d) => d !== this.dir).reverse();
    for (const dir of dirs) {
      const gone = await this.sem.run(() => wrapIo('remove', dir, () => rmdirIfEmpty(dir)));
      if (!gone) await this.sem.run(() => wrapIo('remove', dir, () => fsyncDir(dir)));
    }
    const top = listing.dirs[0];
    if (top !== undefined) {
      const parent = top === this.dir ? top : dirname(top);
      await this.sem.run(() => wrapIo('remove', parent, () => fsyncDir(parent)));
    }
  }
}
