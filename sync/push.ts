// Push: how a single-writer document reaches the peer that holds it, without automerge-repo's
// sync protocol. The writer sends the changes the holder does not have yet; the holder applies
// them and answers with its heads (once they are saved, if it asks for that: `durable`). No sync
// state, no Bloom filters, one message each way per batch of changes, and an unloaded document
// that is in sync costs the holder no load at all (it answers from the heads its store is marked
// with).
//
// Why: automerge-repo's sync protocol is built for many writers. For every message it converts
// the peer's sync state from JS to wasm and back, generates an answer, and runs its document
// state machine; a coordinator absorbing its agents' facts spent most of its CPU there (issue 13).
// A document with one writer needs none of that: the writer always knows what the holder lacks.
//
// The writer keeps, per document, `base`: heads the holder said it holds. It pushes
// `getChangesSince(base)`, one push in flight per document (later changes wait and go together).
// When a session opens, the first push carries no changes and asks the holder what it has. A
// holder with heads the writer never saw (a restored backup, a clone) is sent the whole document
// once; if even that is not covered, pushing stops until the next session (the holder refused:
// a forked writer, see its log). The writer saves a document before any push of it leaves
// (`durable`): a change a peer holds must never be lost by its writer.
//
// `sync/` knows no fleet: who may push which document is the holder's `authorize`.

import * as A from '@automerge/automerge';
import { concatBytes } from '@noble/hashes/utils.js';
import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError, messageOf } from './errors.js';
import { shortId, type NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { sameHeads } from './owned-doc.js';
import type { PlainDocs } from './plain-docs.js';
import {
  MAX_PUSH_CHANGES,
  type HaveMessage,
  type PushMessage,
  type PushHandler,
  type PushLink,
  type PushWireMessage,
} from './push-wire.js';

interface Pushed {
  readonly handle: DocHandle<unknown>;
  /** Heads the holder holds, as far as we know; undefined: ask, or send everything. */
  base: string[] | undefined;
  /** Heads of the push in flight (its answer is awaited). */
  inFlight: string[] | undefined;
  /** Whether the push in flight carries changes. */
  carries: boolean;
  /** The whole document was sent this session (a holder that had heads we never saw). */
  fullSent: boolean;
  /** The holder refused even the whole document: nothing more this session. */
  stuck: boolean;
}

export interface PushSenderOptions {
  readonly link: PushLink;
  /** The peer that holds our documents (the coordinator). */
  readonly peer: NodeId;
  /** Makes `doc` durable here (save, fsync) before a push of it leaves. */
  readonly durable: (doc: DocumentId) => Promise<void>;
  readonly logger?: Logger;
}

/** The writer's side: pushes the documents it is given to one peer, session after session. */
export class PushSender {
  private readonly docs = new Map<DocumentId, Pushed>();
  private readonly log: Logger;
  private open = false;

  constructor(private readonly opts: PushSenderOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  get peer(): NodeId {
    return this.opts.peer;
  }

  /** Whether a session with the peer is open and it speaks push. */
  speaks(): boolean {
    return this.opts.link.speaksPush(this.opts.peer);
  }

  /** Pushes `handle` (a ready document this node writes) from now on. Idempotent. */
  track(handle: DocHandle<unknown>): void {
    const doc = handle.documentId;
    if (this.docs.has(doc)) return;
    const state: Pushed = {
      handle,
      base: undefined,
      inFlight: undefined,
      carries: false,
      fullSent: false,
      stuck: false,
    };
    this.docs.set(doc, state);
    handle.on('heads-changed', () => this.pump(state));
    if (this.open) this.ask(state);
  }

  /** Whether `doc` is pushed (given to track). */
  tracks(doc: DocumentId): boolean {
    return this.docs.has(doc);
  }

  /** Whether the holder holds every change of `doc` we had when it last answered. */
  inSync(doc: DocumentId): boolean {
    const state = this.docs.get(doc);
    if (state?.base === undefined || !state.handle.isReady()) return false;
    return A.getChangesSince(state.handle.doc(), state.base).length === 0;
  }

  /** A session with the peer opened (call when it speaks push): ask what it holds. */
  opened(): void {
    this.open = true;
    for (const state of this.docs.values()) {
      Object.assign(state, { base: undefined, inFlight: undefined, fullSent: false, stuck: false });
      this.ask(state);
    }
  }

  /** The session ended: nothing is in flight any more. */
  closed(): void {
    this.open = false;
    for (const state of this.docs.values()) state.inFlight = undefined;
  }

  /** The holder's answer. */
  receive(message: HaveMessage): void {
    const state = this.docs.get(message.documentId as DocumentId);
    if (state?.inFlight === undefined) return; // not ours, or from a session that ended
    const sent = state.inFlight;
    state.inFlight = undefined;
    const doc = state.handle.doc();
    const theirs = [...message.heads];
    const known = A.hasHeads(doc, theirs);
    // Changes it did not take though it held what they build on: refused (a longer backlog,
    // sent in part, moves its heads on).
    const refused = state.carries && known && sameHeads(theirs, state.base ?? []);
    if (message.covers) state.base = known ? theirs : sent;
    else if (known && !refused) state.base = theirs;
    else if (!known && !state.fullSent) state.base = undefined;
    else {
      state.stuck = true;
      this.log.warn('the peer does not take our document; pushing it again next session', {
        peer: shortId(this.opts.peer),
        doc: state.handle.documentId,
      });
    }
    this.pump(state);
  }

  private ask(state: Pushed): void {
    const heads = A.getHeads(state.handle.doc());
    this.send(state, heads, []);
  }

  private pump(state: Pushed): void {
    if (!this.open || state.inFlight !== undefined || state.stuck) return;
    const doc = state.handle.doc();
    let changes: Uint8Array[];
    if (state.base !== undefined) changes = A.getChangesSince(doc, state.base);
    else if (state.fullSent) return;
    else {
      changes = A.getAllChanges(doc);
      state.fullSent = true;
    }
    if (changes.length === 0) return;
    // A longer backlog goes in several pushes; each answer moves `base` on.
    const heads = A.getHeads(doc);
    this.send(state, heads, changes.slice(0, MAX_PUSH_CHANGES));
  }

  private send(state: Pushed, heads: string[], changes: Uint8Array[]): void {
    state.inFlight = heads;
    state.carries = changes.length > 0;
    const docId = state.handle.documentId;
    const message: PushMessage = {
      type: 'flt-push',
      senderId: this.opts.link.nodeId,
      targetId: this.opts.peer,
      documentId: docId,
      heads,
      changes,
    };
    const ready = changes.length === 0 ? Promise.resolve() : this.opts.durable(docId);
    ready.then(
      () => {
        if (this.open && state.inFlight === heads) this.opts.link.sendPush(message);
      },
      (err: unknown) => {
        // Not durable: not sent. The next change, or the next session, tries again.
        if (state.inFlight === heads) state.inFlight = undefined;
        this.log.warn('cannot save our document before pushing it', {
          doc: docId,
          err: messageOf(err),
        });
      },
    );
  }
}

/** What the holder decides about a push: take it, or drop it quietly (answer: not covered). */
export type PushVerdict = 'accept' | 'drop';

export interface PushReceiverOptions {
  readonly repo: Repo;
  readonly link: PushLink;
  /**
   * Who may push what: throws to refuse (the connection closes: UNAUTHORIZED_PEER, code 2);
   * 'drop' answers without taking the changes.
   */
  readonly authorize: (peer: NodeId, doc: DocumentId) => PushVerdict;
  /**
   * Heads to answer an empty push of `doc`, which is not loaded and whose writer has `pushed`,
   * without loading it: the heads the store holds for sure, when they are `pushed` (or the
   * writer has none). Undefined: load it (sync/stored-heads.ts).
   */
  readonly storedHeads?: (
    peer: NodeId,
    doc: DocumentId,
    pushed: readonly string[],
  ) => readonly string[] | undefined;
  /** Whether the store holds anything of `doc`. */
  readonly stored: (doc: DocumentId) => Promise<boolean>;
  /**
   * Makes `doc` durable (save, fsync) before the answer leaves. Without it, the answer says what
   * is held in memory, and the Repo saves it as it saves anything: a holder that crashes before
   * is asked again by the writer's next session, which pushes whatever it lacks.
   */
  readonly durable?: (doc: DocumentId) => Promise<void>;
  /** A push of a document is being taken: its handle (ready), for each push. */
  readonly onHandle?: (peer: NodeId, handle: DocHandle<unknown>) => void;
  /**
   * Where documents the Repo does not hold are taken, instead of loading them into it
   * (sync/plain-docs.ts): a document held as a handle still takes its pushes there.
   */
  readonly plain?: PlainDocs;
  /** A push of a document held in `plain` was taken (or answered), for each push. */
  readonly onPlain?: (peer: NodeId, doc: DocumentId) => void;
  /** Where a failed save of a document new here is told (default: nowhere). */
  readonly logger?: Logger;
}

/** The holder's side: takes pushes from many writers, one document at a time each. */
export class PushReceiver {
  /** Per document, the push being taken: the next waits for it. */
  private readonly busy = new Map<DocumentId, Promise<void>>();
  private takenCount = 0;
  private answeredCount = 0;

  private readonly log: Logger;

  constructor(private readonly opts: PushReceiverOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  /** Pushes with changes applied so far; pushes answered without a load (status, tests). */
  get counts(): { taken: number; answeredUnloaded: number } {
    return { taken: this.takenCount, answeredUnloaded: this.answeredCount };
  }

  /**
   * Takes one push from `peer`. Checked at once (who may push it); applied after any push of the
   * same document before it (a change that does not decode changes nothing); answered once
   * applied (and durable, if asked). Throws (closing the peer's connection) on a refusal or a
   * change that does not decode.
   */
  receive(peer: NodeId, message: PushMessage): Promise<void> {
    const doc = message.documentId as DocumentId;
    const verdict = this.opts.authorize(peer, doc);
    const before = this.busy.get(doc) ?? Promise.resolve();
    const next = before.then(() => this.take(peer, message, verdict));
    const settled = next.catch(() => undefined);
    this.busy.set(doc, settled);
    void settled.then(() => {
      if (this.busy.get(doc) === settled) this.busy.delete(doc);
    });
    return next;
  }

  private async take(peer: NodeId, message: PushMessage, verdict: PushVerdict): Promise<void> {
    const doc = message.documentId as DocumentId;
    const pushed = [...message.heads];
    const take = verdict === 'accept' && message.changes.length > 0;
    const handle = this.opts.repo.handles[doc] as DocHandle<unknown> | undefined;
    if (!take && handle === undefined) {
      // Nothing to apply and not loaded: answer from the store's mark when it settles it.
      const stored = this.opts.storedHeads?.(peer, doc, pushed);
      if (stored !== undefined) {
        this.answeredCount++;
        return this.answer(peer, doc, [...stored], true);
      }
    }
    if (handle === undefined && this.opts.plain !== undefined)
      return this.takePlain(peer, message, take, this.opts.plain);
    return this.takeHandle(peer, message, take, handle);
  }

  /** Takes a push into a plain document (loaded from the store, or made by the push). */
  private async takePlain(
    peer: NodeId,
    message: PushMessage,
    take: boolean,
    plain: PlainDocs,
  ): Promise<void> {
    const doc = message.documentId as DocumentId;
    const pushed = [...message.heads];
    const held = await plain.open(doc);
    if (!held && !take && this.opts.repo.handles[doc] === undefined)
      return this.answer(peer, doc, [], pushed.length === 0);
    // Not taken here if it moved since open() (a Repo found it, a hand-over began, another
    // caller loaded it): the Repo's path finds it wherever it is.
    let here: boolean;
    if (held) here = take ? plain.apply(doc, message.changes) : plain.holds(doc);
    else here = take && plain.create(doc, message.changes);
    if (!here) {
      const handle = this.opts.repo.handles[doc] as DocHandle<unknown> | undefined;
      return this.takeHandle(peer, message, take, handle);
    }
    if (take) this.takenCount++;
    this.opts.onPlain?.(peer, doc);
    if (this.opts.durable) await plain.saved(doc);
    return this.answer(peer, doc, plain.heads(doc) ?? [], plain.hasHeads(doc, pushed));
  }

  /** Takes a push into the Repo's handle of the document (loading it first, or importing it). */
  private async takeHandle(
    peer: NodeId,
    message: PushMessage,
    take: boolean,
    found: DocHandle<unknown> | undefined,
  ): Promise<void> {
    const doc = message.documentId as DocumentId;
    const pushed = [...message.heads];
    let handle = found;
    let imported = false;
    if (handle === undefined || !handle.isReady()) {
      handle = await this.load(doc, handle);
      if (handle === undefined && !take) return this.answer(peer, doc, [], pushed.length === 0);
      if (handle === undefined) {
        // New here (or nowhere to be found): the push makes it, under its own id.
        this.checkNew(doc, message.changes);
        handle = this.opts.repo.import(concatBytes(...message.changes), { docId: doc });
        imported = true;
        // automerge-repo's import applies the bytes before it starts saving the handle on
        // changes: without this the document stayed unsaved until its next change (issue 13:
        // after a crash at 1,000 agents, 790 documents were pushed again, whole). `durable`,
        // if given, saves it below anyway.
        if (!this.opts.durable)
          this.opts.repo
            .flush([doc])
            .catch((err: unknown) =>
              this.log.warn('cannot save a pushed document', { doc, err: messageOf(err) }),
            );
      }
    }
    // Every time, not only when loaded here: the handle may have come another way (automerge-
    // repo's sync before the writer pushed), and whoever follows it must know.
    this.opts.onHandle?.(peer, handle);
    if (take) {
      // Automerge parses every change before it applies any: one that does not decode leaves
      // the document as it was (and costs the peer its connection).
      const ready = handle;
      if (!imported)
        undecodable(doc, () => ready.update((d) => A.applyChanges(d, [...message.changes])[0]));
      this.takenCount++;
    }
    await this.opts.durable?.(doc);
    const heads = A.getHeads(handle.doc());
    return this.answer(peer, doc, heads, A.hasHeads(handle.doc(), pushed));
  }

  /** Checks a new document's changes before import: a failed one would leave a dead handle. */
  private checkNew(doc: DocumentId, changes: readonly Uint8Array[]): void {
    for (const change of changes) undecodable(doc, () => A.decodeChange(change));
  }

  /**
   * `doc` loaded from the store (or by whoever is loading it), or undefined if it holds none. A
   * document the plain table holds (also one it is handing over) counts as stored: the Repo's find
   * takes everything from the table first (PlainDocs.handOver). Asking the store alone, a document
   * made by a push whose first save was still under way looked new, and the next push, sent here
   * by a hand-over that began after its open(), was imported as a second copy lacking the first
   * changes: its heads never covered the push, and the writer's record waited forever (the status
   * documents' race of sessions 17-18, test/plain-docs.test.ts).
   */
  private async load(
    doc: DocumentId,
    handle: DocHandle<unknown> | undefined,
  ): Promise<DocHandle<unknown> | undefined> {
    const held = this.opts.plain?.has(doc) === true;
    if (handle === undefined && !held && !(await this.opts.stored(doc))) return undefined;
    try {
      const found = await this.opts.repo.find(doc);
      return found.isReady() ? found : undefined;
    } catch {
      return undefined; // unavailable: nothing stored, and no peer had it
    }
  }

  private answer(peer: NodeId, doc: DocumentId, heads: string[], covers: boolean): void {
    this.opts.link.sendPush({
      type: 'flt-have',
      senderId: this.opts.link.nodeId,
      targetId: peer,
      documentId: doc,
      heads,
      covers,
    });
  }
}

/** Runs `parse`; a failure is the peer's BAD_MESSAGE. */
function undecodable(doc: DocumentId, parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    throw new FltError('BAD_MESSAGE', `push of ${doc}: a change does not decode`, { cause: err });
  }
}

/**
 * The push messages of one node, to its sender (answers from the holder it pushes to) and its
 * receiver (pushes from its writers). Built before the adapter, which it is handed to
 * (SyncAdapterOptions.push); the sender and receiver, which need the adapter, are set after.
 */
export class PushRoutes implements PushHandler {
  sender: PushSender | undefined;
  receiver: PushReceiver | undefined;

  receive(peer: NodeId, message: PushWireMessage): Promise<void> | void {
    if (message.type === 'flt-push') return this.receiver?.receive(peer, message);
    if (peer === this.sender?.peer) this.sender.receive(message);
  }

  session(peer: NodeId, open: boolean): void {
    if (peer !== this.sender?.peer) return;
    if (open) this.sender.opened();
    else this.sender.closed();
  }
}
