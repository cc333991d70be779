// FsStore's chunk log (option `log`, the coordinator's): saves and removals appended to one file,
// group-committed, instead of a file per chunk (issue 13, point 4).
//
// Why. A coordinator saves each change of each agent's document as it comes (sync/plain-docs.ts):
// with a file per chunk that is a temp file, a write, an fsync, a rename and an fsync of the
// directory, per change. In the fleet-sync bench (1,000 documents, one change a second each) that
// was 0.24 ms of the server's 1.03 ms of CPU per change (the same server on a memory store: 0.79),
// most of it the kernel's work creating and syncing small files, which no cheaper call from Node
// avoids (callback fs instead of FileHandles: 0.23-0.24 against 0.29-0.31 ms per atomic write).
// Here every operation asked while an append is in flight joins the next one: one write and one
// fdatasync for the lot.
//
// Layout: `<store>/.flt-log/<16 digits>.seg`, appended in order (nodefs and the file walks skip
// dot names). A record: u32be length of what follows, u8 op (1 put, 2 remove, 3 remove every key
// under a prefix), u16be key length, the key (UTF-8 JSON of its elements), the value (put only),
// and the first 8 bytes of the SHA-256 of op..value. Later records win. The index of live keys is
// in memory (~150 bytes a key), built by reading every segment at open.
//
// Crash safety. An operation resolves once its record is written and fdatasynced. A crash can
// leave a torn or partly written tail in the newest segment: open() cuts it off (never
// acknowledged; reported as STORE_LEFTOVER_TEMP, like a file store's temp file) before anything
// is appended. A record that fails its check where a good one follows is damage (a flipped bit):
// reported as STORE_CORRUPT and skipped; a bad record in an older segment with none after it
// makes the rest of that segment unreadable (STORE_CORRUPT). A segment with damage is kept as it
// is for good. A new segment's directory entry is fsynced before any record
// in it is acknowledged.
//
// Space. A segment rolls over past SEGMENT_BYTES. Segments are deleted oldest first only (so a
// removal's record never outlives an older segment still holding what it removed), once nothing
// in them is live; when the log holds more than twice its live bytes plus SLACK_BYTES, the live
// records of the oldest segment are copied to the newest (the same bytes) so it can go. The copy
// runs between appends, so an operation asked meanwhile is written after it and wins.

import {
  close as closeCb,
  fdatasync as fdatasyncCb,
  fsync as fsyncCb,
  ftruncate as ftruncateCb,
  open as openCb,
  read as readCb,
  write as writeCb,
} from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Chunk, StorageKey } from '@automerge/automerge-repo';
import { ensureDir, fsyncDir } from './atomic-write.js';
import { sha256 } from './chunk-format.js';
import { StoreError } from './errors.js';
import { errMessage, errnoOf } from './fs-io.js';
import { hasPrefix, show } from './keys.js';
import type { StoreProblem } from './store.js';

const openFd = promisify(openCb);
const closeFd = promisify(closeCb);
const writeFd = promisify(writeCb);
const readFd = promisify(readCb);
const fdatasync = promisify(fdatasyncCb);
const fsync = promisify(fsyncCb);
const ftruncate = promisify(ftruncateCb);

export const LOG_DIR = '.flt-log';
/** A segment takes no more appends once it is this long. */
const SEGMENT_BYTES = 8 * 1024 * 1024;
/** Dead bytes the log may hold beyond its live bytes before its oldest segment is cleaned. */
const SLACK_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^(\d{16})\.seg$/;

const PUT = 1;
const REMOVE = 2;
const REMOVE_RANGE = 3;
type Op = typeof PUT | typeof REMOVE | typeof REMOVE_RANGE;
/** u32 length, u8 op, u16 key length. */
const HEAD = 7;
const CHECK = 8;

interface Segment {
  readonly seq: number;
  readonly file: string;
  /** Its descriptor, read and write, opened once on first need (see ChunkLog.fdOf). */
  fd: Promise<number> | undefined;
  size: number;
  /** Bytes of records the index points to. */
  live: number;
  /** Reads in flight (its descriptor stays open until they end). */
  reading: number;
  /** A record in it failed its check at open: kept for good, never appended to. */
  damaged: boolean;
}

interface Entry {
  readonly key: StorageKey;
  /** The key as JSON: its name in the index. */
  readonly id: string;
  seg: Segment;
  /** Offset of the record in its segment, and its whole length. */
  at: number;
  readonly length: number;
}

interface Pending {
  readonly record: Buffer;
  readonly op: Op;
  readonly key: StorageKey;
  /** The key as JSON (Entry.id). */
  readonly id: string;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** A record of `op` on the key whose JSON is `id`. */
function encode(op: Op, id: string, data?: Uint8Array): Buffer {
  const keyBytes = Buffer.from(id, 'utf8');
  const body = 3 + keyBytes.length + (data?.length ?? 0);
  const record = Buffer.allocUnsafe(4 + body + CHECK);
  record.writeUInt32BE(body + CHECK, 0);
  record.writeUInt8(op, 4);
  record.writeUInt16BE(keyBytes.length, 5);
  keyBytes.copy(record, HEAD);
  if (data !== undefined) record.set(data, HEAD + keyBytes.length);
  sha256(record.subarray(4, 4 + body)).copy(record, 4 + body, 0, CHECK);
  return record;
}

type RecordRead =
  | { op: Op; key: StorageKey; id: string; data: Buffer; length: number }
  | { bad: string };

/** The record at `at` in `buf` (a whole segment, or one record), or why it cannot be read. */
function decode(buf: Buffer, at: number): RecordRead {
  if (buf.length - at < 4) return { bad: 'torn record length' };
  const length = 4 + buf.readUInt32BE(at);
  if (length < HEAD + CHECK || buf.length - at < length) return { bad: 'torn or bad record' };
  const body = buf.subarray(at + 4, at + length - CHECK);
  if (
    !sha256(body)
      .subarray(0, CHECK)
      .equals(buf.subarray(at + length - CHECK, at + length))
  )
    return { bad: 'record fails its check' };
  const op = body.readUInt8(0);
  const keyLength = body.readUInt16BE(1);
  if ((op !== PUT && op !== REMOVE && op !== REMOVE_RANGE) || 3 + keyLength > body.length)
    return { bad: 'unknown record' };
  const id = body.toString('utf8', 3, 3 + keyLength);
  let key: unknown;
  try {
    key = JSON.parse(id);
  } catch {
    return { bad: 'record key is not JSON' };
  }
  if (!Array.isArray(key) || !key.every((e) => typeof e === 'string'))
    return { bad: 'record key is not a list of strings' };
  return { op, key, id, data: body.subarray(3 + keyLength), length };
}

/**
 * Walks the records of a segment. A record that fails its check but whose length leads to a good
 * record is damage (skipped, its offset in `damaged`); anything else bad ends the walk at `end`:
 * the tail from there on is torn (the newest segment) or unreadable (an older one).
 */
function scan(
  buf: Buffer,
  each: (record: Exclude<RecordRead, { bad: string }>, at: number) => void,
): { end: number; damaged: number[] } {
  const damaged: number[] = [];
  let at = 0;
  while (at < buf.length) {
    const d = decode(buf, at);
    if (!('bad' in d)) {
      each(d, at);
      at += d.length;
      continue;
    }
    const length = buf.length - at >= 4 ? 4 + buf.readUInt32BE(at) : 0;
    const next = at + length;
    if (length < HEAD + CHECK || next >= buf.length || 'bad' in decode(buf, next)) break;
    damaged.push(at);
    at = next;
  }
  return { end: at, damaged };
}

/** Writes all of `buf` at `position`. */
async function writeAll(fd: number, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    done += (await writeFd(fd, buf, done, buf.length - done, position + done)).bytesWritten;
  }
}

export class ChunkLog {
  private readonly segments: Segment[] = [];
  /** Live keys by their document (first element), then by JSON. */
  private readonly docs = new Map<string, Map<string, Entry>>();
  private liveBytes = 0;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly report: (problem: StoreProblem, outcome: string) => void,
  ) {}

  /**
   * Opens the log below the store root `root`, reading every segment; creates it with `create`,
   * else resolves undefined when there is none.
   */
  static async open(
    root: string,
    report: (problem: StoreProblem, outcome: string) => void,
    create: boolean,
  ): Promise<ChunkLog | undefined> {
    const log = new ChunkLog(join(root, LOG_DIR), report);
    const names = await segmentNames(log.dir);
    if (names === undefined) {
      if (!create) return undefined;
      await ensureDir(log.dir);
    }
    for (const [i, name] of (names ?? []).entries())
      await log.replay(name, i === names!.length - 1);
    return log;
  }

  /**
   * Reads the log below `root` changing nothing: a problem for each segment with a damaged
   * record before its end (a torn tail of the newest segment is not one: it was never
   * acknowledged).
   */
  static async check(root: string): Promise<StoreProblem[]> {
    const dir = join(root, LOG_DIR);
    const names = (await segmentNames(dir)) ?? [];
    const problems: StoreProblem[] = [];
    for (const [i, name] of names.entries()) {
      const file = join(dir, name);
      const buf = await readFile(file);
      problems.push(
        ...damages(
          file,
          buf.length,
          scan(buf, () => {}),
          i === names.length - 1,
        ),
      );
    }
    return problems;
  }

  put(key: StorageKey, data: Uint8Array): Promise<void> {
    return this.enqueue(PUT, key, data);
  }

  remove(key: StorageKey): Promise<void> {
    return this.enqueue(REMOVE, key);
  }

  removeRange(prefix: StorageKey): Promise<void> {
    return this.enqueue(REMOVE_RANGE, prefix);
  }

  /** Whether `key` is live here (a later get may still find it corrupt). */
  has(key: StorageKey): boolean {
    return this.docs.get(key[0] as string)?.has(JSON.stringify(key)) === true;
  }

  /** The live keys under `prefix`. */
  keys(prefix: StorageKey): StorageKey[] {
    return this.under(prefix).map((e) => e.key);
  }

  async get(key: StorageKey): Promise<Uint8Array | undefined> {
    const entry = this.docs.get(key[0] as string)?.get(JSON.stringify(key));
    return entry === undefined ? undefined : (await this.read(entry))?.data;
  }

  /** Every live chunk under `prefix`. */
  async entries(prefix: StorageKey): Promise<Chunk[]> {
    const found = await Promise.all(
      this.under(prefix).map(async (e) => ({ key: e.key, data: (await this.read(e))?.data })),
    );
    return found.filter((c) => c.data !== undefined);
  }

  /** Waits for the appends asked so far, then closes every segment. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.flushing !== undefined) await this.flushing;
    for (const seg of this.segments) await closeSegment(seg);
  }

  private under(prefix: StorageKey): Entry[] {
    if (prefix.length > 0) {
      const doc = this.docs.get(prefix[0] as string);
      return doc === undefined ? [] : [...doc.values()].filter((e) => hasPrefix(e.key, prefix));
    }
    return [...this.docs.values()].flatMap((doc) => [...doc.values()]);
  }

  private enqueue(op: Op, key: StorageKey, data?: Uint8Array): Promise<void> {
    if (this.closed)
      return Promise.reject(new StoreError('STORE_CLOSED', `chunk log ${this.dir} is closed`));
    const id = JSON.stringify(key);
    const record = encode(op, id, data);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ record, op, key, id, resolve, reject });
      this.kick();
    });
  }

  /** Starts the appends unless they run; what is queued after their last batch starts them again. */
  private kick(): void {
    if (this.flushing !== undefined) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0) this.kick();
    });
  }

  /** Appends what is queued, batch after batch, until the queue is empty. */
  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        const seg = await this.current();
        const at = await this.append(
          seg,
          batch.map((p) => p.record),
        );
        for (const [i, p] of batch.entries()) {
          this.apply(p.op, p.key, p.id, seg, at[i]!, p.record.length);
          p.resolve();
        }
      } catch (err) {
        const error = new StoreError('STORE_IO', `chunk log ${this.dir}: ${errMessage(err)}`, {
          cause: err,
        });
        for (const p of batch) p.reject(error);
        continue;
      }
      // Space only: what fails here is tried again after the next append.
      await this.tidy().catch(() => undefined);
    }
  }

  /** Writes `records` at the end of `seg`, durably; their offsets. Cut back if it fails. */
  private async append(seg: Segment, records: Buffer[]): Promise<number[]> {
    const fd = await this.fdOf(seg);
    const start = seg.size;
    const offsets: number[] = [];
    let end = start;
    for (const r of records) {
      offsets.push(end);
      end += r.length;
    }
    try {
      await writeAll(
        fd,
        records.length === 1 ? records[0]! : Buffer.concat(records, end - start),
        start,
      );
      await fdatasync(fd);
    } catch (err) {
      // Whatever part of the batch reached the file must not sit before the next one.
      await ftruncate(fd, start).catch(() => (seg.damaged = true)); // then a new segment
      throw err;
    }
    seg.size = end;
    return offsets;
  }

  /** The segment appends go to: the newest, or a new one once it is full or damaged. */
  private async current(): Promise<Segment> {
    const last = this.segments.at(-1);
    if (last !== undefined && !last.damaged && last.size < SEGMENT_BYTES) {
      return last;
    }
    const seq = (last?.seq ?? 0) + 1;
    const file = join(this.dir, `${String(seq).padStart(16, '0')}.seg`);
    const fd = openFd(file, 'wx+', 0o600);
    await fd;
    const seg: Segment = { seq, file, fd, size: 0, live: 0, reading: 0, damaged: false };
    this.segments.push(seg);
    await fsyncDir(this.dir);
    return seg;
  }

  private apply(
    op: Op,
    key: StorageKey,
    id: string,
    seg: Segment,
    at: number,
    length: number,
  ): void {
    if (op === REMOVE_RANGE) {
      for (const e of this.under(key)) this.drop(e);
      return;
    }
    const doc = key[0] as string;
    const old = this.docs.get(doc)?.get(id);
    if (old !== undefined) this.drop(old);
    if (op === REMOVE) return;
    let entries = this.docs.get(doc);
    if (entries === undefined) this.docs.set(doc, (entries = new Map<string, Entry>()));
    entries.set(id, { key, id, seg, at, length });
    seg.live += length;
    this.liveBytes += length;
  }

  private drop(e: Entry): void {
    const doc = e.key[0] as string;
    const entries = this.docs.get(doc);
    entries?.delete(e.id);
    if (entries?.size === 0) this.docs.delete(doc);
    e.seg.live -= e.length;
    this.liveBytes -= e.length;
  }

  /** Reads one segment at open into the index; cuts a torn tail of the newest. */
  private async replay(name: string, newest: boolean): Promise<void> {
    const file = join(this.dir, name);
    const buf = await readFile(file);
    const seg: Segment = {
      seq: Number(SEGMENT_NAME.exec(name)![1]),
      file,
      fd: undefined,
      size: buf.length,
      live: 0,
      reading: 0,
      damaged: false,
    };
    this.segments.push(seg);
    const scanned = scan(buf, (d, offset) => this.apply(d.op, d.key, d.id, seg, offset, d.length));
    for (const problem of damages(file, buf.length, scanned, newest)) {
      seg.damaged = true;
      this.report(problem, 'kept as it is; the records around it are read');
    }
    const at = scanned.end;
    if (at === buf.length || !newest) return;
    // A torn tail: never acknowledged. Cut, durably, before anything follows it.
    const fd = await openFd(file, 'r+');
    try {
      await ftruncate(fd, at);
      await fsync(fd);
    } finally {
      await closeFd(fd);
    }
    seg.size = at;
    this.report(
      {
        code: 'STORE_LEFTOVER_TEMP',
        file,
        detail: `the ${buf.length - at} bytes from byte ${at} on: an interrupted append, never acknowledged`,
      },
      'cut off',
    );
  }

  /** Reads and checks an entry's record; a damaged one is reported and leaves the index. */
  private async read(e: Entry): Promise<{ record: Buffer; data: Uint8Array } | undefined> {
    const seg = e.seg;
    seg.reading++;
    try {
      const record = Buffer.allocUnsafe(e.length);
      const { bytesRead } = await readFd(await this.fdOf(seg), record, 0, e.length, e.at);
      const d = decode(record.subarray(0, bytesRead), 0);
      if (!('bad' in d) && d.op === PUT && d.id === e.id)
        return { record, data: new Uint8Array(d.data) }; // a copy: the caller owns it
      if (this.holds(e)) this.drop(e);
      this.report(
        {
          code: 'STORE_CORRUPT',
          key: [...e.key],
          file: seg.file,
          detail: `record at byte ${e.at}: ${'bad' in d ? d.bad : 'another key'}`,
        },
        'read as absent',
      );
      return undefined;
    } catch (err) {
      throw new StoreError('STORE_IO', `load ${show(e.key)} from ${seg.file}: ${errMessage(err)}`, {
        cause: err,
      });
    } finally {
      seg.reading--;
    }
  }

  /**
   * The segment's descriptor, opened once, read and write, whoever asks first (a read before the
   * first append to the newest segment, or two reads at once, must not open a second one); a
   * failed open is tried again by the next caller.
   */
  private fdOf(seg: Segment): Promise<number> {
    if (seg.fd !== undefined) return seg.fd;
    const fd = openFd(seg.file, 'r+');
    seg.fd = fd;
    fd.catch(() => seg.fd === fd && (seg.fd = undefined));
    return fd;
  }

  /** Whether `e` is still the index's entry for its key. */
  private holds(e: Entry): boolean {
    return this.docs.get(e.key[0] as string)?.get(e.id) === e;
  }

  /**
   * Between appends: deletes the oldest segments once nothing in them is live, and cleans the
   * oldest when the log is more than twice its live bytes plus SLACK_BYTES.
   */
  private async tidy(): Promise<void> {
    const total = this.segments.reduce((sum, s) => sum + s.size, 0);
    const oldest = this.segments[0];
    if (
      oldest !== undefined &&
      this.segments.length > 1 &&
      !oldest.damaged &&
      oldest.live > 0 &&
      total > 2 * this.liveBytes + SLACK_BYTES
    )
      await this.clean(oldest);
    let deleted = false;
    while (this.segments.length > 1) {
      const seg = this.segments[0]!;
      if (seg.live > 0 || seg.damaged || seg.reading > 0) break;
      this.segments.shift();
      await closeSegment(seg);
      await unlink(seg.file);
      deleted = true;
    }
    if (deleted) await fsyncDir(this.dir);
  }

  /** Copies the live records of `seg` to the newest segment (the same bytes). */
  private async clean(seg: Segment): Promise<void> {
    const live = [...this.docs.values()].flatMap((d) =>
      [...d.values()].filter((e) => e.seg === seg),
    );
    const read = await Promise.all(live.map((e) => this.read(e)));
    const kept = live.filter((_, i) => read[i] !== undefined);
    if (kept.length === 0) return;
    const target = await this.current();
    const offsets = await this.append(
      target,
      read.flatMap((r) => (r === undefined ? [] : [r.record])),
    );
    for (const [i, e] of kept.entries()) {
      if (!this.holds(e)) continue; // found damaged by a read meanwhile: stays dropped
      seg.live -= e.length;
      target.live += e.length;
      e.seg = target;
      e.at = offsets[i]!;
    }
  }
}

async function closeSegment(seg: Segment): Promise<void> {
  const fd = seg.fd;
  seg.fd = undefined;
  if (fd !== undefined) await fd.then(closeFd).catch(() => undefined);
}

/** The segments in `dir`, oldest first; undefined when there is no such directory. */
async function segmentNames(dir: string): Promise<string[] | undefined> {
  try {
    return (await readdir(dir)).filter((n) => SEGMENT_NAME.test(n)).sort();
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * What a scan of `file` found wrong: each damaged record, and for an older segment the unreadable
 * rest (the newest one's is a torn tail, never acknowledged: not a problem).
 */
function damages(
  file: string,
  size: number,
  { end, damaged }: { end: number; damaged: number[] },
  newest: boolean,
): StoreProblem[] {
  const problem = (detail: string): StoreProblem => ({ code: 'STORE_CORRUPT', file, detail });
  const found = damaged.map((at) => problem(`damaged record at byte ${at} of ${size}: skipped`));
  if (end < size && !newest)
    found.push(
      problem(
        `damaged record at byte ${end} of ${size}: the ${size - end} bytes from there on are unreadable`,
      ),
    );
  return found;
}
