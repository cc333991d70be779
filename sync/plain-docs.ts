// Documents held as plain Automerge documents, not automerge-repo handles (issue 13).
//
// Why. A holder of many single-writer documents (a coordinator and its agents' facts) took each
// one into its Repo to apply a push: a `DocHandle` with its state machine, the document loaded
// with `loadIncremental(A.init())` (every change applied with patches, then diffed again from
// empty for the handle's change event) and 3-5x the wasm memory of `A.load` (sync/evict.ts).
// Measured on the restart fixture's 5,000 facts documents in one process: through automerge-
// repo's loading 4.7 ms a document and 792 MiB RSS; `A.load` 1.0 ms and 301 MiB, two thirds of
// it building the JavaScript object; Automerge's load alone 0.3 ms.
//
// What. `PlainDocs` holds documents by id, each an Automerge document loaded from the store's
// chunks (the layout automerge-repo uses, so a Repo finds them later as if it had saved them)
// into Automerge's backend alone: heads, changes and saves need no JavaScript object, and the
// read-only object `get()` returns is built on the first read after a change (`A.view` at the
// heads) and kept for the readers of that turn of the event loop only (a facts document's object
// held ~15 KiB of the coordinator's heap per agent, at 1,000 agents, until the next change). Changes are applied to the backend (no patches), and each change set is saved as one
// incremental chunk as soon as it is applied (one save in flight per document; changes applied
// meanwhile go in the next). When a document's incremental chunks reach its snapshot's bytes
// (automerge-repo's rule), the next save writes one snapshot and removes the chunks it holds:
// only chunks this table loaded or wrote, and only once the snapshot is durable, so a crash
// leaves a chunk too many, never one too few. A document idle for `idleMs` with nothing left to
// save leaves the table (`onEvict`); the next use loads it again.
//
// A document is held here or in a Repo, not both: `handOver(repo)` makes a find of a held
// document save it first and let it go, so the Repo loads everything it held (sync/repo-find-
// guard.ts runs first: a document the Repo is asking peers for never gets here). Whoever follows a
// document here is told the handle it went to (`onHandedOver`: its changes are told there from
// then on) and can still read it while it is being saved for the hand-over (`peek`).
//
// `sync/` knows no fleet: who may change which document is the caller's business.

import * as A from '@automerge/automerge';
import type {
  AnyDocumentId,
  Chunk,
  DocHandle,
  DocumentId,
  Repo,
  StorageKey,
} from '@automerge/automerge-repo';
import {
  interpretAsDocumentId,
  isValidAutomergeUrl,
  parseAutomergeUrl,
} from '@automerge/automerge-repo';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes } from '@noble/hashes/utils.js';
import { replaceWithSnapshot } from './compact.js';
import { FltError, messageOf } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { contentChunks, sameHeads } from './owned-doc.js';

/** Automerge's backend of a document (A.getBackend). */
export type Backend = ReturnType<typeof A.getBackend>;

/** What PlainDocs needs of a store: automerge-repo's storage interface (FsStore, MemoryStore). */
export interface PlainStore {
  loadRange(prefix: StorageKey): Promise<Chunk[]>;
  save(key: StorageKey, data: Uint8Array): Promise<void>;
  remove(key: StorageKey): Promise<void>;
}

/** Idle time after which a saved document leaves the table (as sync/evict.ts for handles). */
export const PLAIN_IDLE_MS = 30_000;

export interface PlainDocsOptions {
  readonly store: PlainStore;
  readonly idleMs?: number;
  /** `doc` is durable in the store up to `heads` (every change of them saved). */
  readonly onSaved?: (doc: DocumentId, heads: readonly string[]) => void;
  /** `doc` left the table, saved at `heads`. */
  readonly onEvict?: (doc: DocumentId, heads: readonly string[]) => void;
  /**
   * A find took `doc` from the table (handOver): `handle` holds it from now on, and whoever
   * followed it here must follow the handle (its changes are not told here any more).
   */
  readonly onHandedOver?: (doc: DocumentId, handle: DocHandle<unknown>) => void;
  /**
   * A document was loaded from the store, or changes were taken into one (create, apply): the
   * holder's measure of how busy it is (the coordinator's src/memory-mode.ts counts them).
   */
  readonly onWork?: () => void;
  readonly log?: Logger;
}

interface Entry {
  /**
   * The document: its Automerge backend holds every change (loaded without building the
   * JavaScript object, which is never read here: `view` is).
   */
  base: A.Doc<unknown>;
  /**
   * The document as a JavaScript object at its heads, built on the first read after a change and
   * let go at the end of that turn of the event loop.
   */
  view: A.Doc<unknown> | undefined;
  /** A view of `base` was handed out (it shares `base`'s memory: not freed while one may be read). */
  viewed: boolean;
  /** Heads the store holds every change of (empty: nothing saved yet). */
  saved: string[];
  /** Content chunks in the store that `doc` holds all of: what a snapshot replaces. */
  chunks: StorageKey[];
  snapshotBytes: number;
  incrementalBytes: number;
  /** The save loop, while it runs. */
  saving: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** A table of plain Automerge documents backed by a store (see above). */
export class PlainDocs {
  private readonly entries = new Map<DocumentId, Entry>();
  /** Loads from the store under way, so that two callers share one. */
  private readonly opening = new Map<DocumentId, Promise<Entry | undefined>>();
  /** Documents being handed over to a Repo (handOver): nothing opens them meanwhile. */
  private readonly leaving = new Map<DocumentId, Promise<void>>();
  /** The Repo documents are handed over to (handOver): what it holds is never loaded here. */
  private repo: Repo | undefined;
  private readonly log: Logger;
  private closed = false;
  private evictedCount = 0;

  constructor(private readonly opts: PlainDocsOptions) {
    this.log = opts.log ?? silentLogger;
  }

  /** Documents held now. */
  get size(): number {
    return this.entries.size;
  }

  /** Documents that left the table idle so far (status, tests). */
  get evicted(): number {
    return this.evictedCount;
  }

  /** Whether `doc` is held here now (loaded, or being loaded). */
  has(doc: DocumentId): boolean {
    return this.entries.has(doc) || this.opening.has(doc);
  }

  /** Whether `doc` is held and usable now: loaded, and not being handed over to a Repo. */
  holds(doc: DocumentId): boolean {
    return this.held(doc) !== undefined;
  }

  /**
   * `doc` as held now, as a (read-only) Automerge document, without loading it; undefined while
   * it is handed over to a Repo. Its JavaScript object is built here, once per change.
   */
  get<T = unknown>(doc: DocumentId): A.Doc<T> | undefined {
    return this.leaving.has(doc) ? undefined : this.peek<T>(doc);
  }

  /**
   * As get(), also while `doc` is being handed over (nothing changes it then): for a reader that
   * follows it across the hand-over (onHandedOver), which would else see nothing for a moment.
   */
  peek<T = unknown>(doc: DocumentId): A.Doc<T> | undefined {
    const entry = this.entries.get(doc);
    if (entry === undefined) return undefined;
    if (entry.view === undefined) {
      const view = A.view(entry.base, headsOf(entry));
      entry.view = view;
      setImmediate(() => {
        if (entry.view === view) entry.view = undefined;
      });
    }
    entry.viewed = true;
    return entry.view as A.Doc<T>;
  }

  /**
   * `read(backend)` on `doc` as held now, through Automerge's backend alone (no object of the
   * whole document built, as peek() builds); also while it is handed over, as peek(); undefined
   * when not held. `read` must not keep the backend past its return.
   */
  read<R>(doc: DocumentId, read: (backend: Backend) => R): R | undefined {
    const entry = this.entries.get(doc);
    return entry === undefined ? undefined : read(A.getBackend(entry.base));
  }

  /** The heads of `doc` as held now (no object built); undefined when not held. */
  heads(doc: DocumentId): string[] | undefined {
    const entry = this.held(doc);
    return entry === undefined ? undefined : headsOf(entry);
  }

  /**
   * Whether `doc` is held with every change of `heads` (no object built). Its own heads answer at
   * once (a push that brought it up to date: most of them); else each hash is looked up, which
   * costs Automerge a whole change (~37 us each: 4 % of a push's CPU when every push did it).
   */
  hasHeads(doc: DocumentId, heads: readonly string[]): boolean {
    const entry = this.held(doc);
    if (entry === undefined) return false;
    const own = headsOf(entry);
    return heads.every((h) => own.includes(h)) || A.hasHeads(entry.base, [...heads]);
  }

  private held(doc: DocumentId): Entry | undefined {
    return this.leaving.has(doc) ? undefined : this.entries.get(doc);
  }

  /** Whether the Repo documents are handed over to has a handle of `doc`. */
  private inRepo(doc: DocumentId): boolean {
    return this.repo?.handles[doc] !== undefined;
  }

  /**
   * Whether `doc` is held, loaded from the store if it was not (without building its object:
   * get() does); false when the store has none of it (or what it has does not load: logged, and
   * treated as none), or once a hand-over under way ends (also one that began while it loaded):
   * the Repo holds it then. Held can change before the caller runs again: `holds` says it now.
   */
  async open(doc: DocumentId): Promise<boolean> {
    if (!this.leaving.has(doc)) {
      const held = this.entries.get(doc);
      if (held !== undefined) {
        this.touch(doc, held);
        return true;
      }
      let opening = this.opening.get(doc);
      if (opening === undefined) {
        opening = this.load(doc).finally(() => this.opening.delete(doc));
        this.opening.set(doc, opening);
      }
      const entry = await opening;
      if (entry !== undefined && !this.leaving.has(doc)) {
        this.touch(doc, entry);
        return true;
      }
    }
    // Waited for after the hand-over's own find began: the Repo holds it when this returns.
    await this.leaving.get(doc);
    return false;
  }

  /**
   * A document new here, from its writer's changes (if one does not decode: BAD_MESSAGE, nothing
   * made). Saved at once, whole (once it has heads). False, and nothing made, if `doc` is
   * held or being handed over, or in the Repo it is handed over to (a load under way finds this
   * one instead: the store had none of it when its caller's open() said so).
   */
  create(doc: DocumentId, changes: readonly Uint8Array[]): boolean {
    this.assertOpen();
    if (this.entries.has(doc) || this.leaving.has(doc) || this.inRepo(doc)) return false;
    // Changes whose dependencies are not among them (a push that raced a loss here) are kept
    // aside by Automerge, as a sync would, with no heads until the rest comes.
    const base = A.init<unknown>();
    decodable(doc, () => A.getBackend(base).applyChanges([...changes]));
    const entry: Entry = {
      base,
      view: undefined,
      viewed: false,
      saved: [],
      chunks: [],
      snapshotBytes: 0,
      incrementalBytes: 0,
      saving: undefined,
      timer: undefined,
    };
    this.entries.set(doc, entry);
    this.touch(doc, entry);
    this.saveSoon(doc, entry);
    this.opts.onWork?.();
    return true;
  }

  /**
   * Applies `changes` to a held document and saves them soon. Automerge parses every change
   * before it applies any, so one that does not decode changes nothing (BAD_MESSAGE; parsing
   * each here first, as before, cost more than applying them: 0.4 vs 0.3 ms for a facts change).
   * False, and nothing applied, if `doc` is not held now (see `holds`).
   */
  apply(doc: DocumentId, changes: readonly Uint8Array[]): boolean {
    this.assertOpen();
    const entry = this.held(doc);
    if (entry === undefined || this.inRepo(doc)) return false;
    const before = headsOf(entry);
    decodable(doc, () => A.getBackend(entry.base).applyChanges([...changes]));
    this.touch(doc, entry);
    if (!sameHeads(headsOf(entry), before)) {
      entry.view = undefined;
      this.saveSoon(doc, entry);
      this.opts.onWork?.();
    }
    return true;
  }

  /** Resolves once everything applied to `doc` so far is durable (at once if it is not held). */
  async saved(doc: DocumentId): Promise<void> {
    const entry = this.entries.get(doc);
    if (entry === undefined) return;
    if (!sameHeads(headsOf(entry), entry.saved)) this.saveSoon(doc, entry);
    await entry.saving;
  }

  /**
   * Makes `repo`'s finds of a document held here save it and let it go first, so that the Repo
   * loads everything it held and the two never hold one document at once (idempotent per Repo).
   */
  handOver(repo: Repo): void {
    const r = repo as Repo & { [handedOver]?: true };
    if (r[handedOver]) return;
    r[handedOver] = true;
    this.repo = repo;
    const find = repo.find.bind(repo);
    repo.find = async <T>(id: AnyDocumentId, options?: Parameters<Repo['find']>[1]) => {
      const doc = documentIdOf(id);
      const moving = doc !== undefined && this.has(doc);
      if (moving) await this.release(doc);
      // No await between here and the find: its handle exists before anything else runs.
      const found = find<T>(id, options);
      if (moving)
        void found.then(
          (handle) => handle.isReady() && this.opts.onHandedOver?.(doc, handle),
          () => undefined, // the caller is told
        );
      return found;
    };
  }

  /** Saves `doc` and stops holding it (a Repo takes it over); concurrent callers share one. */
  private release(doc: DocumentId): Promise<void> {
    let leaving = this.leaving.get(doc);
    if (leaving === undefined) {
      leaving = (async () => {
        await this.opening.get(doc);
        // Changes applied before the hand-over began may still be saving (nothing new is
        // applied now: get() and open() say it is not here): it goes once all are saved, checked
        // and let go in one step (bounded: a failing store lets it go as it is).
        for (let round = 0; round < 100; round++) {
          const entry = this.entries.get(doc);
          if (entry === undefined) return;
          if (entry.saving === undefined && sameHeads(headsOf(entry), entry.saved)) {
            this.forget(doc, entry);
            return;
          }
          try {
            await this.saved(doc);
          } catch (err) {
            this.log.warn('could not save a document before handing it over', {
              doc,
              err: messageOf(err),
            });
            this.forget(doc, entry);
            return;
          }
        }
        const entry = this.entries.get(doc);
        if (entry !== undefined) this.forget(doc, entry);
      })().finally(() => this.leaving.delete(doc));
      this.leaving.set(doc, leaving);
    }
    return leaving;
  }

  /** Waits for every save under way and stops holding anything (idempotent). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.opening.values()]);
    for (let round = 0; round < 3; round++) {
      const saving = [...this.entries.values()].flatMap((e) => (e.saving ? [e.saving] : []));
      if (saving.length === 0) break;
      await Promise.allSettled(saving);
    }
    for (const entry of this.entries.values()) clearTimeout(entry.timer);
    this.entries.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new FltError('INTERNAL', 'the document table is closed');
  }

  private async load(doc: DocumentId): Promise<Entry | undefined> {
    const { snapshots, incrementals } = await contentChunks(this.opts.store, doc);
    const chunks = [...snapshots, ...incrementals].filter((c) => c.data !== undefined);
    if (chunks.length === 0 || this.closed) return undefined;
    // Found by the Repo while it was read (one place at a time), or made here meanwhile (create).
    if (this.inRepo(doc)) return undefined;
    const made = this.entries.get(doc);
    if (made !== undefined) return made;
    // Loaded into the backend alone: the JavaScript object (most of `A.load`'s cost) is built
    // when something reads the document (get).
    const base = A.init<unknown>();
    try {
      const [only, ...more] = chunks.map((c) => c.data!);
      A.getBackend(base).loadIncremental(more.length === 0 ? only! : concatBytes(only!, ...more));
    } catch (err) {
      this.log.warn('a stored document does not load', { doc, err: messageOf(err) });
      return undefined;
    }
    const sum = (cs: Chunk[]) => cs.reduce((n, c) => n + (c.data?.length ?? 0), 0);
    const entry: Entry = {
      base,
      view: undefined,
      viewed: false,
      saved: A.getBackend(base).getHeads(),
      chunks: chunks.map((c) => c.key),
      snapshotBytes: sum(snapshots),
      incrementalBytes: sum(incrementals),
      saving: undefined,
      timer: undefined,
    };
    this.entries.set(doc, entry);
    this.opts.onWork?.();
    return entry;
  }

  /** Restarts `doc`'s idle timer. */
  private touch(doc: DocumentId, entry: Entry): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.idle(doc, entry), this.opts.idleMs ?? PLAIN_IDLE_MS);
    entry.timer.unref();
  }

  private idle(doc: DocumentId, entry: Entry): void {
    if (this.entries.get(doc) !== entry) return;
    if (entry.saving !== undefined || !sameHeads(headsOf(entry), entry.saved)) {
      this.touch(doc, entry); // not saved yet: later
      return;
    }
    this.forget(doc, entry);
    this.evictedCount++;
    // Nothing saved (changes that still wait for their dependencies): nothing to mark.
    if (entry.saved.length > 0) this.opts.onEvict?.(doc, entry.saved);
  }

  private forget(doc: DocumentId, entry: Entry): void {
    clearTimeout(entry.timer);
    if (this.entries.get(doc) === entry) this.entries.delete(doc);
  }

  /** Starts the save loop unless it runs (it looks at the heads again before it ends). */
  private saveSoon(doc: DocumentId, entry: Entry): void {
    entry.saving ??= this.saveLoop(doc, entry).finally(() => (entry.saving = undefined));
    entry.saving.catch(() => undefined); // told to whoever awaits it (saved()), and logged
  }

  private async saveLoop(doc: DocumentId, entry: Entry): Promise<void> {
    // Bounded: each round saves the heads it starts with, and applies made meanwhile are few.
    for (let round = 0; round < 1_000; round++) {
      const heads = headsOf(entry);
      if (sameHeads(heads, entry.saved)) return;
      try {
        if (entry.saved.length === 0 || entry.incrementalBytes >= entry.snapshotBytes)
          await this.saveSnapshot(doc, entry, heads);
        else await this.saveIncremental(doc, entry, heads);
      } catch (err) {
        this.log.warn('could not save a document', { doc, err: messageOf(err) });
        throw err;
      }
      this.opts.onSaved?.(doc, heads);
    }
  }

  private async saveIncremental(doc: DocumentId, entry: Entry, heads: string[]): Promise<void> {
    const bytes = A.getBackend(entry.base).saveSince(entry.saved);
    const key = [doc, 'incremental', bytesToHex(sha256(bytes))];
    await this.opts.store.save(key, bytes);
    entry.chunks.push(key);
    entry.incrementalBytes += bytes.length;
    entry.saved = heads;
  }

  /**
   * One snapshot, durable, then the chunks it replaces removed. The document held is swapped for
   * one loaded from the snapshot's bytes (see `reload`).
   */
  private async saveSnapshot(doc: DocumentId, entry: Entry, heads: string[]): Promise<void> {
    const bytes = A.getBackend(entry.base).save();
    reload(entry, bytes);
    const key = await replaceWithSnapshot(
      this.opts.store,
      doc,
      { bytes, heads },
      entry.chunks,
      (err) => this.log.warn('could not remove a replaced chunk', { doc, err: messageOf(err) }),
    );
    entry.chunks = [key];
    entry.snapshotBytes = bytes.length;
    entry.incrementalBytes = 0;
    entry.saved = heads;
  }
}

const handedOver = Symbol('flt.plainDocsHandOver');

/**
 * Swaps `entry`'s document for one loaded from `bytes`, a save of it: Automerge holds a document
 * built by applying changes in several times the memory of the same document loaded from a save
 * (a facts document: ~200 KiB after its writer's first change, ~40 KiB loaded; each later small
 * change ~3-7 KiB applied; measured with RSS over 1,000 documents). The old one is freed at once
 * unless a view of it was handed out (then when the garbage collector finds it unused). Changes
 * that wait for their dependencies are in the save too (test/plain-docs.test.ts).
 */
function reload(entry: Entry, bytes: Uint8Array): void {
  const base = A.init<unknown>();
  A.getBackend(base).loadIncremental(bytes);
  if (!entry.viewed) A.free(entry.base);
  Object.assign(entry, { base, view: undefined, viewed: false });
}

/** A held document's heads, from its backend. */
function headsOf(entry: Entry): string[] {
  return A.getBackend(entry.base).getHeads();
}

/** The document id a find names (an id or an automerge URL); undefined if it names none. */
function documentIdOf(id: AnyDocumentId): DocumentId | undefined {
  try {
    return isValidAutomergeUrl(id) ? parseAutomergeUrl(id).documentId : interpretAsDocumentId(id);
  } catch {
    return undefined;
  }
}

/** Runs `parse`; a failure is the sender's BAD_MESSAGE. */
function decodable<T>(doc: DocumentId, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new FltError('BAD_MESSAGE', `changes to ${doc} do not decode`, { cause: err });
  }
}
