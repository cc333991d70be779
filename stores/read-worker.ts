// Whole-document reads for FsStore (stores/fs-store.ts) in a worker thread (issue 13: all facts
// documents back after a restart).
//
// Why. A restarted coordinator reads thousands of small documents at once: per document two
// listings and a file (open, fstat, read, close). On the main thread each of those is a trip to
// libuv's pool and a callback or promise back: 5,000 documents cost ~1.1 s of the main thread's
// CPU plus the GC of their promises, against ~0.3 s for the same reads done synchronously in a
// row. Here one thread does them synchronously, off the main thread, and sends each document's
// files back in one message (batched, buffers transferred, not copied).
//
// What it does not do: check the bytes (FsStore does, and quarantines), take locks (FsStore's
// reads never did: every write is a rename), or clean temp files (it names them). A read or
// listing that fails with anything but "not there" answers an error for that request only.
// Blocking reads in one thread are serial: on a cold, slow disk they queue where libuv ran four
// at once; a document FsStore marks urgent never comes here.

import { Worker } from 'node:worker_threads';

/** What a read of a directory found, as stores/fs-io.ts walk() finds it, with the bytes. */
export type TreeRead =
  | undefined
  | { readonly file: Uint8Array }
  | {
      readonly files: { readonly segments: string[]; readonly data: Uint8Array }[];
      readonly temps: string[];
    };

/** A request that failed in the worker: the errno code (if any) and a message. */
export class TreeReadError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/**
 * Requests sent to the worker in one message, and answered in one. At most WINDOW messages are
 * out at a time, and the next goes once the event loop has turned (setImmediate): a restart asks
 * for thousands of documents at once, and answers arriving faster than the main thread loads them
 * would be handled in one stretch of the loop's poll phase, where nothing else runs (the GC
 * watcher of sync/wasm-headroom.ts among them: without it the restart's loads took 7.1-7.5 s
 * against 5.7-6.0 s before this worker).
 */
const BATCH = 32;
const WINDOW = 2;
/** A worker left idle this long ends (its isolate holds several MiB). */
const IDLE_MS = 5_000;

// The worker, as source: CommonJS, no imports of ours, so that it runs the same under the test
// runner (TypeScript) and from dist/. Request: [id, root, segments][]; reply: [id, result][],
// result { missing } | { error, code } | { file } | { files: [segments, bytes][], temps }.
// Entries are skipped as walk() skips them: dot names other than temp files, and non-files.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const GONE = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
const isTemp = (n) => n.startsWith('.') && n.endsWith('.tmp');
const own = (buf) => { const a = new Uint8Array(buf.length); a.set(buf); return a; };
function readIf(path) {
  try { return own(readFileSync(path)); }
  catch (e) { if (GONE.has(e.code)) return undefined; throw e; }
}
function entries(dir) {
  try { return readdirSync(dir, { withFileTypes: true }); }
  catch (e) { if (e.code === 'ENOENT') return undefined; if (e.code === 'ENOTDIR') return 'file'; throw e; }
}
function into(root, segments, out, transfer) {
  const dir = join(root, ...segments);
  const list = entries(dir);
  if (list === undefined || list === 'file') return list;
  for (const e of list) {
    const path = join(dir, e.name);
    if (isTemp(e.name) && e.isFile()) out.temps.push(path);
    else if (e.name.startsWith('.')) continue;
    else if (e.isDirectory()) into(root, [...segments, e.name], out, transfer);
    else if (e.isFile() && segments.length > 0) {
      const data = readIf(path);
      if (data !== undefined) { out.files.push([[...segments, e.name], data]); transfer.push(data.buffer); }
    }
  }
  return 'dir';
}
function read(root, segments, transfer) {
  const out = { files: [], temps: [] };
  const found = into(root, segments, out, transfer);
  if (found === undefined) return { missing: true };
  out.files.sort((a, b) => (a[0].join('/') < b[0].join('/') ? -1 : 1));
  if (found === 'file') {
    const data = readIf(join(root, ...segments));
    if (data === undefined) return { missing: true };
    transfer.push(data.buffer);
    return { file: data };
  }
  return out;
}
parentPort.on('message', (batch) => {
  const replies = [], transfer = [];
  for (const [id, root, segments] of batch) {
    let result;
    try { result = read(root, segments, transfer); }
    catch (e) { result = { error: String(e && e.message || e), code: e && e.code }; }
    replies.push([id, result]);
  }
  parentPort.postMessage(replies, transfer);
});
`;

type Reply =
  | { missing: true }
  | { error: string; code?: string }
  | { file: Uint8Array }
  | { files: [string[], Uint8Array][]; temps: string[] };

interface Pending {
  resolve: (r: TreeRead) => void;
  reject: (e: Error) => void;
}

type Request = [id: number, root: string, segments: string[]];

/**
 * One worker thread reading whole directories below a root, started on the first read and ended
 * after IDLE_MS without one (or by close()). It keeps the process alive only while a read is
 * pending. If the worker cannot start or dies, pending reads fail with TreeReadError (code
 * undefined) and `broken` turns true: the caller reads on its own from then on.
 */
export class ReadWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private queued: Request[] = [];
  /** Messages sent and not answered yet (at most WINDOW). */
  private out = 0;
  private pumpScheduled = false;
  private nextId = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  broken = false;

  /** `log` gets one line if the worker breaks; `source` replaces the worker's (tests). */
  constructor(
    private readonly log: (line: string) => void,
    private readonly source = SOURCE,
  ) {}

  /** Everything below `root/segments`: its files' bytes (sorted by path), one file, or nothing. */
  read(root: string, segments: string[]): Promise<TreeRead> {
    if (this.closed || this.broken)
      return Promise.reject(new TreeReadError('read worker is not running', undefined));
    const id = this.nextId++;
    this.queued.push([id, root, segments]);
    // A microtask: the reads asked in this turn go out together.
    this.schedulePump(queueMicrotask);
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** Ends the worker; later reads fail. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stop(new TreeReadError('read worker closed', undefined));
  }

  private schedulePump(when: (fn: () => void) => unknown): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    when(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.worker === undefined && this.queued.length === 0) return;
    clearTimeout(this.idleTimer);
    try {
      while (this.out < WINDOW && this.queued.length > 0) {
        this.start().postMessage(this.queued.splice(0, BATCH));
        this.out++;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private start(): Worker {
    if (this.worker) {
      this.worker.ref();
      return this.worker;
    }
    const worker = new Worker(this.source, { eval: true });
    worker.on('message', (replies: [number, Reply][]) => this.answer(replies));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', () => {
      if (this.worker === worker) this.fail(new Error('read worker exited'));
    });
    return (this.worker = worker);
  }

  private answer(replies: [number, Reply][]): void {
    this.out--;
    for (const [id, r] of replies) {
      const p = this.pending.get(id);
      if (p === undefined) continue;
      this.pending.delete(id);
      if ('missing' in r) p.resolve(undefined);
      else if ('error' in r) p.reject(new TreeReadError(r.error, r.code));
      else if ('file' in r) p.resolve({ file: r.file });
      else
        p.resolve({
          files: r.files.map(([segments, data]) => ({ segments, data })),
          temps: r.temps,
        });
    }
    if (this.queued.length > 0) this.schedulePump(setImmediate);
    else if (this.pending.size === 0) this.rest();
  }

  /** Nothing pending: let the process exit, and end the worker if none comes for IDLE_MS. */
  private rest(): void {
    this.worker?.unref();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.pending.size === 0) void this.stop(undefined);
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  private fail(err: unknown): void {
    if (this.broken || this.closed) return;
    this.broken = true;
    const message = `read worker failed (${err instanceof Error ? err.message : String(err)})`;
    this.log(`${message}; reading on the main thread from now on`);
    void this.stop(new TreeReadError(message, undefined));
  }

  private async stop(reason: Error | undefined): Promise<void> {
    clearTimeout(this.idleTimer);
    const worker = this.worker;
    this.worker = undefined;
    this.queued = [];
    this.out = 0;
    if (reason) for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
    await worker?.terminate();
  }
}

let shared: ReadWorker | undefined;

/**
 * The process's read worker, for every FsStore with `readWorker` (the worker takes the root with
 * each request). Never closed: it ends itself when idle, and lets the process exit. `log` is the
 * first caller's.
 */
export function sharedReadWorker(log: (line: string) => void): ReadWorker {
  return (shared ??= new ReadWorker((line) => log(`FsStore: ${line}`)));
}
