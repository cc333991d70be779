// A small durable map of strings in one file: the coordinator's marks (sync/stored-heads.ts), one
// per agent document, thousands of them (issue 13).
//
// Why not a file per entry: a restarted coordinator needs every mark before its agents reconnect,
// and 1,500 small files took 0.33 s to read alone but 30-57 s under a reconnect storm, where
// every read waits several turns of a saturated event loop. One file is one read.
//
// The file is a log of lines, `key TAB value LF` (set) or `key LF` (delete); the last line of a
// key wins. Writes are group-committed: every set() asked while a write is in flight goes into
// the next one, a single append and fdatasync, and resolves once its line is durable. A crash can
// leave a torn last line (no LF): open() drops it, and rewrites the file whole (temp file, fsync,
// rename) before anything is appended after it. The log is rewritten the same way when it holds
// more than twice the live entries (plus COMPACT_SLACK lines), and after a failed append.

import { type FileHandle, open, readdir, readFile, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ensureDir, writeFileAtomic } from './atomic-write.js';
import { StoreError } from './errors.js';
import { errMessage, errnoOf, isTempName, wrapIo } from './fs-io.js';

/** Dead lines a log may hold beyond twice its live entries before it is rewritten. */
const COMPACT_SLACK = 1_024;

export interface JournalOptions {
  /** Keeps only the entries it accepts when the file is read (a malformed value: dropped). */
  accept?: (key: string, value: string) => boolean;
}

/** Throws TypeError for a key or value that would not read back as written. */
function check(key: string, value: string | undefined): void {
  if (key === '' || /[\t\n\r]/.test(key))
    throw new TypeError(`journal key ${JSON.stringify(key)}: empty, or holds a tab or line break`);
  if (value !== undefined && /[\t\n\r]/.test(value))
    throw new TypeError(`journal value for ${key}: holds a tab or line break`);
}

function lineOf(key: string, value: string | undefined): string {
  return value === undefined ? `${key}\n` : `${key}\t${value}\n`;
}

/**
 * What `file` holds, changing nothing (undefined: there is no file): its live entries, its lines,
 * and whether every line was whole and well-formed (else open() rewrites it).
 */
export async function readJournal(
  file: string,
  options: JournalOptions = {},
): Promise<{ entries: Map<string, string>; lines: number; clean: boolean } | undefined> {
  const text = await wrapIo('read', file, async () => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw err;
    }
  });
  if (text === undefined) return undefined;
  const entries = new Map<string, string>();
  const lines = text.split('\n');
  // After the last LF: '' for a whole file, else a torn line.
  let clean = lines.pop() === '';
  for (const line of lines) {
    const [key = '', value, extra] = line.split('\t');
    if (key === '' || extra !== undefined || line.includes('\r')) clean = false;
    else if (value === undefined) entries.delete(key);
    else if (options.accept?.(key, value) === false) clean = false;
    else entries.set(key, value);
  }
  return { entries, lines: lines.length, clean };
}

/** Removes the temp files of rewrites a crash interrupted (`.<name>.<8 hex>.tmp`, atomic-write.ts). */
async function removeLeftovers(file: string): Promise<void> {
  const name = basename(file);
  const dir = dirname(file);
  const entries = await wrapIo('list', dir, () => readdir(dir));
  for (const entry of entries)
    if (entry.startsWith(`.${name}.`) && isTempName(entry) && entry.length === name.length + 14)
      await wrapIo('remove', join(dir, entry), () => rm(join(dir, entry), { force: true }));
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export class Journal {
  /** Lines asked for and not yet written, and who waits for them. */
  private queue: string[] = [];
  private waiters: Waiter[] = [];
  /** A write is running (drain); set() only queues meanwhile. */
  private writing = false;
  /** Resolved when the running drain ends (close waits for it). */
  private drained: Promise<void> = Promise.resolve();
  private endDrain: () => void = () => undefined;
  /** The append handle, opened on first append and after each rewrite. */
  private handle: FileHandle | undefined;
  /** Lines in the file (live or not), to know when to compact. */
  private lines: number;
  /** The file must be rewritten whole before the next append (torn tail, failed append). */
  private dirty: boolean;
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly entries: Map<string, string>,
    lines: number,
    clean: boolean,
  ) {
    this.lines = lines;
    this.dirty = !clean;
  }

  /** Reads `file` (none: an empty map; its directory is created) and returns its journal. */
  static async open(file: string, options: JournalOptions = {}): Promise<Journal> {
    const read = await readJournal(file, options);
    await ensureDir(dirname(file));
    await removeLeftovers(file);
    const { entries = new Map<string, string>(), lines = 0, clean = false } = read ?? {};
    const journal = new Journal(file, entries, lines, clean);
    // A new file exists (and its directory entry is durable) before anything is appended to it;
    // one with a torn or malformed line is rewritten before a line goes after it.
    if (!clean) await journal.rewrite();
    return journal;
  }

  get(key: string): string | undefined {
    return this.entries.get(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Sets `key` to `value` (undefined: deletes it): get() answers the new value at once; resolves
   * once the change is durable. On failure it rejects (STORE_IO) and the next write rewrites the
   * file whole from what get() answers; a caller that must not keep the value asks again.
   */
  set(key: string, value: string | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new StoreError('STORE_CLOSED', `${this.file}: closed`));
    check(key, value);
    if (value === undefined) this.entries.delete(key);
    else this.entries.set(key, value);
    this.queue.push(lineOf(key, value));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.writing) void this.drain();
    });
  }

  /** Waits for the writes asked so far, then closes the file. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drained;
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  /** Writes queued lines, a batch at a time, until none are queued. Never rejects. */
  private async drain(): Promise<void> {
    this.writing = true;
    this.drained = new Promise((resolve) => (this.endDrain = resolve));
    while (this.queue.length > 0) {
      const batch = this.queue;
      const waiters = this.waiters;
      this.queue = [];
      this.waiters = [];
      try {
        if (this.dirty || this.lines + batch.length > 2 * this.entries.size + COMPACT_SLACK)
          await this.rewrite();
        else await this.append(batch.join(''), batch.length);
        for (const waiter of waiters) waiter.resolve();
      } catch (err) {
        this.dirty = true;
        const wrapped =
          err instanceof StoreError
            ? err
            : new StoreError('STORE_IO', `write ${this.file}: ${errMessage(err)}`, { cause: err });
        for (const waiter of waiters) waiter.reject(wrapped);
      }
    }
    // No await between the loop's last check and this: a set() from now on starts a drain.
    this.writing = false;
    this.endDrain();
  }

  private async append(text: string, count: number): Promise<void> {
    await wrapIo('append to', this.file, async () => {
      this.handle ??= await open(this.file, 'a', 0o600);
      await this.handle.write(text);
      await this.handle.datasync();
    });
    this.lines += count;
  }

  /** Replaces the file with the live entries (crash-safe), then appends go to the new file. */
  private async rewrite(): Promise<void> {
    const text = [...this.entries].map(([key, value]) => lineOf(key, value)).join('');
    await wrapIo('rewrite', this.file, () => writeFileAtomic(this.file, text));
    const old = this.handle;
    this.handle = undefined;
    await old?.close().catch(() => undefined);
    this.lines = this.entries.size;
    this.dirty = false;
  }
}
