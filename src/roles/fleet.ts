// The coordinator's view of the fleet: the root document it owns (enrolled agents, their
// summaries, lastSeen) and the documents its agents write and it replicates: facts, and status
// (issue 11). Both have signed heads, a summary from the trusted view and fork detection; only
// facts count in `pending()`. Everything it serves after a restart comes from the root document,
// so the fleet is visible before any agent reconnects.

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, Message, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { changesIn } from '../../sync/changes.js';
import type { StoredHeads } from '../../sync/stored-heads.js';
import type { PushVerdict } from '../../sync/push.js';
import type { Backend, PlainDocs } from '../../sync/plain-docs.js';
import {
  newer,
  sameHeads,
  trustedView,
  verifySignedHeads,
  type OwnedDoc,
  type SignedHeads,
} from '../../sync/owned-doc.js';
import { validateSummaryFacts } from '../facts/index.js';
import {
  agentsOf,
  encodeAgent,
  readStatus,
  sortAgents,
  summarize,
  summaryFields,
  type AgentEntry,
  type DeploySummary,
  type DesiredSummary,
  type FactsDoc,
  type RootDoc,
  type StatusDoc,
} from '../docs/types.js';
import { relate, type HeadsRelation } from '../trust/fork.js';
import { LoadGauge, Presence } from './presence.js';

/** The documents an agent writes and the coordinator replicates. */
export type AgentDoc = 'facts' | 'status';

/** Where each of an agent's documents is named in its root record. */
const FIELDS = {
  facts: {
    docId: (e: AgentEntry) => e.factsDocId as DocumentId | undefined,
    writeKey: (e: AgentEntry) => e.factsWriteKey as string | undefined,
    heads: (e: AgentEntry) => e.factsHeads,
    withHeads: (e: AgentEntry, h: SignedHeads): AgentEntry => ({ ...e, factsHeads: h }),
  },
  status: {
    docId: (e: AgentEntry) => e.statusDocId,
    writeKey: (e: AgentEntry) => e.statusWriteKey,
    heads: (e: AgentEntry) => e.statusHeads,
    withHeads: (e: AgentEntry, h: SignedHeads): AgentEntry => ({ ...e, statusHeads: h }),
  },
} as const;
const KINDS: readonly AgentDoc[] = ['facts', 'status'];

/**
 * The signed heads of an agent's document in its root record. Verified before the coordinator
 * stored them, and only the coordinator writes the root document, so they are not checked again
 * here (at start that would cost a signature check per agent).
 */
const headsOf = (entry: AgentEntry | undefined, kind: AgentDoc = 'facts') =>
  ((entry && FIELDS[kind].heads(entry)) ?? undefined) as SignedHeads | undefined;

/**
 * An agent's document as Fleet reads it: a Repo handle, or a plain document (sync/plain-docs.ts)
 * that pushes were taken into.
 */
interface Source<T = unknown> {
  readonly documentId: DocumentId;
  doc(): A.Doc<T>;
}

/** Per kind of agent document: what the coordinator tracks of it. */
interface Tracked {
  /** Documents followed: found once (their source is in `handles` unless evicted since). */
  readonly watched: Set<DocumentId>;
  /** Loaded documents; an evicted document's source leaves (release), it comes back on use. */
  readonly handles: Map<NodeId, Source>;
  /** Documents being found again after an eviction (follow). */
  readonly reloading: Set<DocumentId>;
  /**
   * Verified signed heads newer than an agent's root record whose changes this coordinator does
   * not hold yet (a heartbeat can outrun the sync session: after a restart, or while a dead
   * session is being replaced). Recorded once the changes arrive, so that a root record never
   * names heads a reader would wait for in vain.
   */
  readonly waiting: Map<NodeId, SignedHeads>;
}

/** Where an enrolled agent's status and desired documents are (issue 11). */
export interface DeployDocs {
  /** Its status document and write key; absent from an agent before issue 11. */
  readonly status?: { readonly docId: DocumentId; readonly writeKey: string };
  /** Its desired document (written by this coordinator) and write key. */
  readonly desired?: { readonly docId: DocumentId; readonly writeKey: string };
}

/** Finds of a facts document before giving up until the agent's next heartbeat (250 ms .. 8 s). */
const WATCH_ATTEMPTS = 6;

/**
 * Replacements of an agent's live sync connection by another connection of the same node id,
 * within REPLACE_WINDOW_MS, that mark it forked. One instance replaces its own connection only
 * when it redials before the coordinator noticed the old one die (a restart, a new path): once
 * in a while. Two instances with one key replace each other on every redial; even backing off
 * (sync-adapter.ts, REPLACED_BACKOFF) they do so ~10 times in their first minute.
 */
export const REPLACE_STORM = 4;
export const REPLACE_WINDOW_MS = 60_000;

/** How long after an agent document's last change it is saved and marked (persistSoon). */
const PERSIST_DELAY_MS = 1_000;

/**
 * How long agent records wait to be written to the root document together (put). Each change to
 * the root costs CPU in proportion to every byte ever written to it, and then a save and a sync
 * message to each admin; an agent joining brings about six records (enrollment, summaries,
 * signed heads, lastSeen), so a fan-in of 1,000 wrote 6,000 changes one by one (issue 13). Reads
 * of the root document through `root` and `signedRoot` write what waits first.
 */
export const ROOT_BATCH_MS = 50;

export class Fleet {
  readonly presence: Presence;
  private readonly tracked: Record<AgentDoc, Tracked> = {
    facts: { watched: new Set(), handles: new Map(), reloading: new Set(), waiting: new Map() },
    status: { watched: new Set(), handles: new Map(), reloading: new Set(), waiting: new Map() },
  };
  /** Every agent's facts and status document: whose, and which (kept in step by put()). */
  private readonly docs = new Map<DocumentId, { id: NodeId; kind: AgentDoc }>();
  /** Every agent's desired document (this coordinator writes it): whose (kept in step by put()). */
  private readonly desiredDocs = new Map<DocumentId, NodeId>();
  /**
   * The root document's agents, decoded once at start and then kept in step by put(): the
   * coordinator is the root document's only writer, and lookups run on every rpc and, for the
   * share policy, for every document at every connection, so they must not decode N records.
   */
  private readonly entries = new Map<NodeId, AgentEntry>();
  /** Per agent: when its live connection was replaced, within REPLACE_WINDOW_MS. */
  private readonly replacements = new Map<NodeId, number[]>();
  /** Per agent: sync messages with changes dropped because it is forked (for status and tests). */
  private readonly refused = new Map<NodeId, number>();

  private answeredCount = 0;

  /** Records put() but not yet in the root document (ROOT_BATCH_MS), by agent. */
  private readonly staged = new Map<NodeId, AgentEntry>();
  private stageTimer: NodeJS.Timeout | undefined;
  /** Agent documents to save and mark, by document (persistSoon). */
  private readonly persisting = new Map<DocumentId, NodeJS.Timeout>();
  /** The fleet's admins document (the gate's), which every agent is offered; set at start. */
  adminsDocId: DocumentId | undefined;

  constructor(
    private readonly rootDoc: OwnedDoc<RootDoc>,
    private readonly repo: Repo,
    private readonly log: Logger,
    /** What the store holds of agents' documents that are not loaded (sync/stored-heads.ts). */
    private readonly marks?: StoredHeads,
    /** Whether the store holds anything of a document (a new agent's documents: nothing yet). */
    private readonly stored?: (doc: DocumentId) => Promise<boolean>,
    /** Where agents' pushes are taken when their documents are not in the Repo (coordinator). */
    private readonly plain?: PlainDocs,
  ) {
    for (const entry of agentsOf(rootDoc.opened().doc())) this.index(entry);
    this.presence = new Presence(
      (seen) =>
        this.put(
          [...seen].flatMap(([id, at]) => {
            const entry = this.entries.get(id);
            return entry ? [{ ...entry, lastSeen: at }] : [];
          }),
        ),
      Date.now,
      new LoadGauge(),
      (id) => timeOf(this.entries.get(id)?.lastSeen),
    );
  }

  /** The root document (open), with every record put so far written to it (commit). */
  get root(): DocHandle<RootDoc> {
    this.commit();
    return this.rootDoc.opened();
  }

  /** Stops saving and marking agents' documents (persistSoon): the node is closing. */
  stop(): void {
    for (const timer of this.persisting.values()) clearTimeout(timer);
    this.persisting.clear();
  }

  /** Writes the records put() since the last commit to the root document, in one change. */
  commit(): void {
    clearTimeout(this.stageTimer);
    this.stageTimer = undefined;
    if (this.staged.size === 0) return;
    const entries = [...this.staged.values()];
    this.staged.clear();
    this.rootDoc.opened().change((d) => {
      for (const e of entries) d.agents[e.nodeId] = encodeAgent(e);
    });
  }

  /** Every enrolled agent, in fleet table order. */
  agents(): AgentEntry[] {
    return sortAgents([...this.entries.values()]);
  }

  /** The agent whose facts or status document `doc` is, if any. */
  writerOf(doc: DocumentId): NodeId | undefined {
    return this.docs.get(doc)?.id;
  }

  agent(id: NodeId): AgentEntry | undefined {
    return this.entries.get(id);
  }

  /**
   * Whether an enrolled agent may sync `doc` with the coordinator: only its own facts and status
   * documents (not while it is forked), its own desired document and the admins document (it has
   * no use for the others, and offering N documents to each of N agents made fan-in quadratic).
   * Admins get everything (the coordinator asks its Gate first); others nothing.
   */
  offers(peer: NodeId, doc: DocumentId | undefined): boolean {
    const entry = this.entries.get(peer);
    if (entry === undefined || doc === undefined) return false;
    if (doc === entry.factsDocId || doc === entry.statusDocId) return !entry.forked;
    return doc === entry.desiredDocId || doc === this.adminsDocId;
  }

  /** The documents `offers` gives `peer`, by name (none for a peer that is not an agent). */
  scopeOf(peer: NodeId, pushes = false): DocumentId[] {
    const entry = this.entries.get(peer);
    if (entry === undefined) return [];
    // An agent that pushes its own documents (sync/push.ts) is not offered them: they would
    // sync twice. Its messages about them (a restore, a catch-up) are still answered.
    const own = entry.forked || pushes ? [] : [entry.factsDocId, entry.statusDocId];
    return [...own, entry.desiredDocId, this.adminsDocId].filter(
      (d): d is DocumentId => d !== undefined,
    );
  }

  /**
   * Answers an agent's sync message about its own facts, status or desired document without
   * loading it: when the document is not loaded and the agent's heads are those the store is
   * marked with (sync/stored-heads.ts). A mark may fall behind its document, so this needs a
   * peer that cannot lack what the mark does not name: the agent writes its facts and status
   * documents alone; the desired document is this coordinator's, whose every write removes the
   * mark before it changes anything and holds `writing(doc)` until the change is saved
   * (deployments.ts), so its mark, while there, names the coordinator's own heads. A forked
   * agent's documents take the usual path. Undefined: the usual path (admit, the Repo).
   */
  answer(
    peer: NodeId,
    message: Message,
    writing: (doc: DocumentId) => boolean = () => false,
  ): Message | undefined {
    if (this.marks === undefined || !('documentId' in message) || message.documentId === undefined)
      return undefined;
    const doc = message.documentId;
    if (this.entries.get(peer)?.forked) return undefined;
    if (this.desiredDocs.get(doc) === peer) {
      if (this.repo.handles[doc] !== undefined || writing(doc)) return undefined;
      return this.counted(this.marks.answer(message));
    }
    if (!this.unloadedOwn(peer, doc)) return undefined;
    return this.counted(this.marks.answer(message));
  }

  /**
   * Whether `doc` is `peer`'s own facts or status document, not loaded, with no signed heads of
   * it waiting for their changes (the usual path loads the document and records them; a document
   * found by the synchronizer alone, then evicted, would else keep them waiting for as long as
   * the agent stays in sync). The agent not forked is the callers' check.
   */
  private unloadedOwn(peer: NodeId, doc: DocumentId): boolean {
    const owner = this.docs.get(doc);
    if (owner?.id !== peer || this.repo.handles[doc] !== undefined) return false;
    return !this.tracked[owner.kind].waiting.has(peer);
  }

  /**
   * Who may push what (sync/push.ts): an agent its own facts and status documents (a forked
   * one's pushes are dropped, as its sync messages with changes are); anything else refuses the
   * peer (UNAUTHORIZED_PEER closes its connection).
   */
  authorizePush(peer: NodeId, doc: DocumentId): PushVerdict {
    const owner = this.docs.get(doc);
    if (owner?.id !== peer)
      throw new FltError('UNAUTHORIZED_PEER', `${peer} pushed ${doc}, which it does not write`);
    if (!this.entries.get(peer)?.forked) return 'accept';
    this.refused.set(peer, (this.refused.get(peer) ?? 0) + 1);
    return 'drop';
  }

  /**
   * The heads to answer an agent's empty push of its own document with, without loading it (sync/
   * push.ts): those of its mark, when they are the agent's (`pushed`), under the conditions of
   * `answer`.
   */
  storedHeads(
    peer: NodeId,
    doc: DocumentId,
    pushed: readonly string[],
  ): readonly string[] | undefined {
    if (this.entries.get(peer)?.forked || !this.unloadedOwn(peer, doc)) return undefined;
    const mark = this.marks?.peek(doc)?.split(',');
    if (mark === undefined || !sameHeads(mark, pushed)) return undefined;
    this.answeredCount++;
    return mark;
  }

  /**
   * A push of an agent's own document is being taken (sync/push.ts): its handle is followed from
   * now on (once; a forked agent's documents stay as they are, see watch()).
   */
  pushed(peer: NodeId, handle: DocHandle<unknown>): void {
    const owner = this.docs.get(handle.documentId);
    if (owner?.id !== peer || this.entries.get(peer)?.forked) return;
    this.tracked[owner.kind].watched.add(handle.documentId);
    this.attach(peer, owner.kind, handle);
  }

  /** The same for a push taken into a plain document (sync/plain-docs.ts). */
  pushedPlain(peer: NodeId, doc: DocumentId): void {
    const owner = this.docs.get(doc);
    if (owner?.id !== peer || this.entries.get(peer)?.forked) return;
    this.tracked[owner.kind].watched.add(doc);
    this.attachPlain(peer, owner.kind, doc);
  }

  /**
   * A plain agent document was taken over by the Repo (a find: an admin's sync, sync/plain-docs.ts
   * handOver): followed through its handle from now on, and heads waiting for it are checked
   * again. Before, a heartbeat's signed heads that came while the hand-over ran found nothing held
   * and waited for a change the handle never told anyone about: an agent's refusal never reached
   * its root record (test/deploy-refusals.test.ts with status documents held plain).
   */
  handedOver(doc: DocumentId, handle: DocHandle<unknown>): void {
    const owner = this.docs.get(doc);
    if (owner === undefined || this.entries.get(owner.id)?.forked) return;
    // Not followed now (evicted): whatever needs it next finds it (recordHeads, admit).
    if (this.tracked[owner.kind].handles.get(owner.id)?.documentId !== doc) return;
    this.attach(owner.id, owner.kind, handle);
  }

  /**
   * A plain agent document is saved up to `heads` (sync/plain-docs.ts): marked there, so that a
   * restarted coordinator answers the agent without a load (as persist() for a handle).
   */
  savedPlain(doc: DocumentId, heads: readonly string[]): void {
    const owner = this.docs.get(doc);
    if (owner === undefined || this.entries.get(owner.id)?.forked) return;
    this.mark(doc, heads);
  }

  private counted(reply: Message | undefined): Message | undefined {
    if (reply !== undefined) this.answeredCount++;
    return reply;
  }

  /** Sync messages answered without loading their document (answer), for status and tests. */
  get answered(): number {
    return this.answeredCount;
  }

  /**
   * `doc` is leaving the Repo (sync/evict.ts: idle, saved at `heads`): its handle is dropped,
   * and an agent's own document is marked (sync/stored-heads.ts). It stays followed; what needs
   * it next finds it again (a sync message that is not answered: admit(); new signed heads:
   * recordHeads()), not each heartbeat: an unchanged signed record needs no document.
   */
  evicted(doc: DocumentId, heads: readonly string[]): void {
    const owner = this.docs.get(doc);
    if (owner === undefined) return;
    const handles = this.tracked[owner.kind].handles;
    if (handles.get(owner.id)?.documentId === doc) handles.delete(owner.id);
    this.mark(doc, heads);
  }

  private mark(doc: DocumentId, heads: readonly string[]): void {
    this.marks
      ?.record(doc, heads)
      .catch((err: unknown) =>
        this.log.warn('could not mark a saved document', { doc, err: String(err) }),
      );
  }

  /**
   * Refuses (UNAUTHORIZED_PEER, which closes the connection) a sync message that carries changes
   * to a document the peer does not write (ARCHITECTURE.md §5.1): an agent writes its own facts
   * document only, and nobody but this coordinator writes the root document. An agent has no
   * business with any other document at all, so any message of its about one is refused.
   * Other messages without changes (requests, acknowledgements, heads) pass.
   * A forked agent's changes to its own document are dropped (false), quietly: its connection
   * stays, so that its heartbeats still arrive, and `flt admin agents` says why.
   */
  admit(peer: NodeId, message: Message): boolean {
    if (!('documentId' in message) || message.documentId === undefined) return true;
    const docId = message.documentId;
    const agent = this.entries.get(peer);
    if (agent && (agent.factsDocId === docId || agent.statusDocId === docId)) {
      // automerge-repo finds an evicted document for the message itself; its summary and waiting
      // heads need our listener on it again.
      this.reload(peer, agent.factsDocId === docId ? 'facts' : 'status', docId, true);
      if (!agent.forked || changesIn(message) === 0) return true;
      this.refused.set(peer, (this.refused.get(peer) ?? 0) + 1);
      return false;
    }
    // Documents it reads but this coordinator writes: requests and acknowledgements only.
    if (agent && (agent.desiredDocId === docId || this.adminsDocId === docId)) {
      const changes = changesIn(message);
      if (changes === 0) return true;
      throw new FltError(
        'UNAUTHORIZED_PEER',
        `agent ${peer} sent ${changes} change(s) to ${docId}, which it does not write`,
      );
    }
    if (agent)
      throw new FltError('UNAUTHORIZED_PEER', `agent ${peer} sent a ${message.type} for ${docId}`);
    const changes = changesIn(message);
    if (changes === 0) return true;
    throw new FltError(
      'UNAUTHORIZED_PEER',
      `${peer} sent ${changes} change(s) to ${docId}, which it does not write`,
    );
  }

  /**
   * Records (or refreshes) an enrollment; returns the entry. Idempotent. `docs` names the
   * agent's status and desired documents (issue 11): an agent enrolled before gets them recorded
   * on its next enrollment; a record that names them keeps them when an enrollment does not.
   */
  enroll(
    id: NodeId,
    factsDocId: DocumentId,
    factsWriteKey: string,
    docs: DeployDocs = {},
  ): AgentEntry {
    const existing = this.entries.get(id);
    const sameFacts =
      existing?.factsDocId === factsDocId && existing.factsWriteKey === factsWriteKey;
    const { status, desired } = docs;
    const sameStatus =
      status === undefined ||
      (existing?.statusDocId === status.docId && existing.statusWriteKey === status.writeKey);
    const sameDesired =
      desired === undefined ||
      (existing?.desiredDocId === desired.docId && existing.desiredWriteKey === desired.writeKey);
    if (!existing || !sameFacts || !sameStatus || !sameDesired) {
      const now = new Date().toISOString();
      const keepStatus = existing !== undefined && sameStatus;
      this.put([
        {
          ...existing,
          nodeId: id,
          factsDocId,
          factsWriteKey,
          enrolledAt: existing?.enrolledAt ?? now,
          lastSeen: now,
          summary: sameFacts ? (existing?.summary ?? null) : null,
          factsHeads: sameFacts ? (existing?.factsHeads ?? null) : null,
          forked: existing?.forked ?? null,
          ...(status && !keepStatus
            ? {
                statusDocId: status.docId,
                statusWriteKey: status.writeKey,
                statusHeads: null,
                deploy: null,
              }
            : {}),
          ...(desired ? { desiredDocId: desired.docId, desiredWriteKey: desired.writeKey } : {}),
        },
      ]);
      this.log.info('agent enrolled', { agent: shortId(id) });
    }
    const entry = this.entries.get(id)!;
    this.watch(entry);
    return entry;
  }

  /** Mirrors an agent's labels (agent.label ops, as the gate's trail has them) into its record. */
  setLabels(id: NodeId, labels: Readonly<Record<string, string>>): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    const next = Object.keys(labels).length > 0 ? { ...labels } : undefined;
    if (JSON.stringify(entry.labels) === JSON.stringify(next)) return;
    this.put([{ ...entry, labels: next }]);
  }

  /** Mirrors whether the trail says the agent is revoked into its record (`revoked`). */
  setRevoked(id: NodeId, revoked: boolean): void {
    const entry = this.entries.get(id);
    if (!entry || (entry.revoked === true) === revoked) return;
    this.put([{ ...entry, revoked: revoked ? true : undefined }]);
  }

  /** Records what was placed in an agent's desired document (roles/deployments.ts). */
  setDesired(id: NodeId, desired: DesiredSummary): void {
    const entry = this.entries.get(id);
    if (!entry) throw new FltError('INTERNAL', `${shortId(id)} is not enrolled`);
    if (JSON.stringify(entry.desired) === JSON.stringify(desired)) return;
    this.put([{ ...entry, desired }]);
  }

  /**
   * Writes whole agent records to the lookup map now and to the root document within
   * ROOT_BATCH_MS, together with any others put meanwhile (commit).
   */
  private put(entries: readonly AgentEntry[]): void {
    for (const e of entries) {
      this.index(e);
      this.staged.set(e.nodeId, e);
    }
    if (this.staged.size === 0 || this.stageTimer !== undefined) return;
    this.stageTimer = setTimeout(() => {
      try {
        this.commit();
      } catch (err) {
        // The lookup map has them; the next commit (or restart's re-enrollment) writes them.
        this.log.error('could not write agent records to the root document', { err: String(err) });
      }
    }, ROOT_BATCH_MS);
  }

  private index(entry: AgentEntry): void {
    this.entries.set(entry.nodeId, entry);
    if (entry.desiredDocId !== undefined) this.desiredDocs.set(entry.desiredDocId, entry.nodeId);
    for (const kind of KINDS) {
      const docId = FIELDS[kind].docId(entry);
      if (docId !== undefined) this.docs.set(docId, { id: entry.nodeId, kind });
    }
  }

  /**
   * Whether `doc` is an agent's facts or status document (O(1)): the coordinator holds those as
   * plain documents (sync/plain-docs.ts) until a find takes one into the Repo (handedOver).
   */
  isAgentDoc(doc: DocumentId): boolean {
    return this.docs.has(doc);
  }

  /**
   * Finds an evicted document of `id` again, and follows it as before. `viaRepo`: a sync message
   * about it came (admit), so the Repo is about to hold it: followed there (a plain document is
   * handed over), with listeners on its handle.
   */
  private reload(id: NodeId, kind: AgentDoc, docId: DocumentId, viaRepo = false): void {
    const { watched, handles, reloading } = this.tracked[kind];
    const current = handles.get(id);
    const followed = current !== undefined && !(viaRepo && current instanceof PlainSource);
    if (!watched.has(docId) || followed || reloading.has(docId)) return;
    reloading.add(docId);
    void this.follow(id, kind, docId, viaRepo).finally(() => reloading.delete(docId));
  }

  /**
   * Replicates an agent's facts document, and its status document once it named one, and keeps
   * their summaries in the root document current. A find can race the agent's first sync
   * (REFERENCE.md), so it is retried a few times with backoff; after that the agent's next
   * connection or heartbeat tries again.
   */
  watch(entry: AgentEntry): void {
    // A forked agent's documents are frozen as they are: an admin decides (revoke).
    if (this.entries.get(entry.nodeId)?.forked) return;
    for (const kind of KINDS) {
      const docId = FIELDS[kind].docId(entry);
      const { watched } = this.tracked[kind];
      if (docId === undefined || watched.has(docId)) continue;
      watched.add(docId);
      this.followUnlessMarked(entry.nodeId, kind, docId);
    }
  }

  /**
   * Follows a document unless the store is marked with its heads (sync/stored-heads.ts): then it
   * is left on disk, as if evicted, and loaded only when something about it changes (admit and
   * recordHeads reload it) or someone asks for it. A coordinator that restarts with thousands of
   * enrolled agents loads none of their unchanged documents when they reconnect.
   */
  private followUnlessMarked(id: NodeId, kind: AgentDoc, docId: DocumentId): void {
    const marked = this.marks?.peek(docId) !== undefined;
    const unloaded = this.repo.handles[docId] === undefined;
    if (marked && unloaded && !this.tracked[kind].waiting.has(id)) return;
    void this.follow(id, kind, docId);
  }

  private async follow(
    id: NodeId,
    kind: AgentDoc,
    docId: DocumentId,
    viaRepo = false,
  ): Promise<void> {
    const { watched } = this.tracked[kind];
    // Not in the Repo: read as a plain document, as its pushes are taken (none stored: a new
    // agent's, which comes by push).
    if (!viaRepo && this.plain !== undefined && this.repo.handles[docId] === undefined) {
      const held = await this.plain.open(docId).catch(() => false);
      if (this.repo.handles[docId] === undefined) {
        if (held) this.attachPlain(id, kind, docId);
        return;
      }
    }
    // Neither here nor stored: a new agent's document. A find would ask every admin for it, and
    // retry; it comes by push (pushed()) or by the agent's own sync (admit() finds it then).
    // (Looked at again after the listing: a sync message may have set it up meanwhile.)
    if (this.stored !== undefined && this.repo.handles[docId] === undefined) {
      const held = await this.stored(docId).catch(() => true);
      if (!held && this.repo.handles[docId] === undefined) return;
    }
    for (let attempt = 0; attempt < WATCH_ATTEMPTS; attempt++) {
      try {
        const handle = await this.repo.find<unknown>(docId);
        // Evicted right after it was found (sync/evict.ts): find it again.
        if (!handle.isReady()) throw new FltError('INTERNAL', 'evicted while found');
        this.attach(id, kind, handle);
        return;
      } catch (err) {
        this.log.debug(`${kind} document not available yet`, {
          agent: shortId(id),
          err: String(err),
        });
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt).unref());
      }
    }
    watched.delete(docId);
  }

  /**
   * Follows a plain document: its source reads the table (or the Repo, once a find took it
   * there), and the push receiver tells of its changes (pushedPlain).
   */
  private attachPlain(id: NodeId, kind: AgentDoc, docId: DocumentId): void {
    const { handles } = this.tracked[kind];
    let source = handles.get(id);
    if (source?.documentId !== docId || !(source instanceof PlainSource)) {
      source = new PlainSource(docId, this.plain!, this.repo);
      handles.set(id, source);
    }
    this.arrived(id, kind, source);
  }

  /** Keeps `handle`'s summary and waiting heads current (once per handle). */
  private attach(id: NodeId, kind: AgentDoc, handle: DocHandle<unknown>): void {
    const { handles } = this.tracked[kind];
    if (handles.get(id) === handle) return;
    handles.set(id, handle);
    handle.on('change', () => this.arrived(id, kind, handle));
    // Not 'change': a change with no patch (a value written again) moves the heads all the same.
    handle.on('heads-changed', () => this.persistSoon(id, handle));
    this.arrived(id, kind, handle);
    this.persistSoon(id, handle);
  }

  /**
   * Saves an agent's document and marks it at the heads it was saved with PERSIST_DELAY_MS after
   * its last change, not only when it is evicted: a coordinator killed before its agents'
   * documents went idle would else load them all again when they reconnect (issue 13: a 500-agent
   * fleet killed 35 s after it formed had most of them unmarked, and its restart loaded ~600).
   * Whatever brought the change (a push, automerge-repo's sync, a load from the store). Delayed
   * so that a burst of changes costs one mark, and the Repo's own save (100 ms after a change)
   * has usually written the document by then: the flush then writes nothing.
   */
  private persistSoon(id: NodeId, handle: DocHandle<unknown>): void {
    if (this.marks === undefined) return;
    const doc = handle.documentId;
    clearTimeout(this.persisting.get(doc));
    const timer = setTimeout(() => {
      this.persisting.delete(doc);
      this.persist(id, handle);
    }, PERSIST_DELAY_MS);
    timer.unref();
    this.persisting.set(doc, timer);
  }

  private persist(id: NodeId, handle: DocHandle<unknown>): void {
    const doc = handle.documentId;
    if (this.entries.get(id)?.forked) return;
    if (this.repo.handles[doc] !== handle || !handle.isReady()) return;
    const heads = A.getHeads(handle.doc());
    this.repo.flush([doc]).then(
      // Saves run concurrently: one of older heads that ends last must not take the mark back.
      () => {
        if (this.repo.handles[doc] === handle && sameHeads(A.getHeads(handle.doc()), heads))
          this.mark(doc, heads);
      },
      (err: unknown) =>
        this.log.warn('could not save an agent document', { doc, err: String(err) }),
    );
  }

  /**
   * Takes an agent's signed heads of its facts (or status) document, sent with each heartbeat:
   * verified against the write key it enrolled with, kept when newer, and stored in its root
   * record once this coordinator holds the changes they name (until then they wait, see
   * `Tracked.waiting`); the summary is recomputed from the document at those heads. A bad record
   * is refused (BAD_SIGNATURE); status heads from an agent that named no status document are
   * BAD_ARGUMENT.
   */
  recordHeads(id: NodeId, value: unknown, kind: AgentDoc = 'facts'): void {
    const entry = this.entries.get(id);
    if (!entry) throw new FltError('UNAUTHORIZED_PEER', 'not enrolled');
    const docId = FIELDS[kind].docId(entry);
    const writeKey = FIELDS[kind].writeKey(entry);
    if (docId === undefined || writeKey === undefined)
      throw new FltError('BAD_ARGUMENT', `no ${kind} document enrolled: enroll again`);
    const { waiting, handles } = this.tracked[kind];
    const latest = newer(headsOf(entry, kind), waiting.get(id));
    // Every heartbeat carries the record; an unchanged one needs no signature check.
    if (latest && (value as Partial<SignedHeads> | null)?.sig === latest.sig) return;
    const signed = verifySignedHeads(value, { docId, writeKey });
    if (entry.forked) return; // the heads it held stay as they were until an admin decides
    const held = headsOf(entry, kind);
    const rel = held ? this.relation(id, kind, held, signed) : 'ahead';
    if (held && this.diverged(id, kind, held, signed, rel)) return;
    // Behind: an older state of ours (a restored backup before it caught up): never go back.
    if (rel === 'same' || rel === 'behind') return;
    if (newer(latest, signed) !== signed || latest?.seq === signed.seq) return;
    waiting.set(id, signed);
    const handle = handles.get(id);
    if (handle) this.arrived(id, kind, handle);
    else this.reload(id, kind, docId); // evicted: arrived() runs once it is found again
  }

  /** Whether the agent signed facts heads that this coordinator does not hold yet. */
  pending(id: NodeId): boolean {
    return this.tracked.facts.waiting.has(id);
  }

  /** A document changed (or was found): record waiting heads it now holds, summarize. */
  private arrived(id: NodeId, kind: AgentDoc, handle: Source): void {
    const { waiting } = this.tracked[kind];
    const signed = waiting.get(id);
    const entry = this.entries.get(id);
    if (entry?.forked) waiting.delete(id);
    else if (signed && entry && holdsHeads(handle, signed.heads)) {
      waiting.delete(id);
      // Recorded heads are always held, so now the two compare for sure.
      const held = headsOf(entry, kind);
      if (!held || !this.diverged(id, kind, held, signed))
        this.put([FIELDS[kind].withHeads(entry, signed)]);
    }
    if (kind === 'facts') this.updateSummary(id, handle as Source<FactsDoc>);
    else this.updateDeploy(id, handle as Source<StatusDoc>);
  }

  /**
   * Whether `signed` and the `held` heads prove a fork; if so the agent is marked. Two records
   * with one seq and other heads do at once; otherwise the document must hold both (until it
   * does, the newer ones wait in `waiting`, and arrived() compares them again).
   */
  private diverged(
    id: NodeId,
    kind: AgentDoc,
    held: SignedHeads,
    signed: SignedHeads,
    rel = this.relation(id, kind, held, signed),
  ): boolean {
    if (held.seq === signed.seq && rel !== 'same') {
      this.markForked(id, `two different signed heads of its ${kind} with one seq (${signed.seq})`);
      return true;
    }
    if (rel === 'forked') {
      this.markForked(id, `two histories of its ${kind} document, neither containing the other`);
      return true;
    }
    return false;
  }

  private relation(id: NodeId, kind: AgentDoc, a: SignedHeads, b: SignedHeads): HeadsRelation {
    // Equal heads need no document: an evicted one (sync/evict.ts) must not make a late copy of
    // the held record look like a second record with its seq.
    if (sameHeads(a.heads, b.heads)) return 'same';
    const handle = this.tracked[kind].handles.get(id);
    return handle ? relate(handle.doc(), a, b) : 'unknown';
  }

  /**
   * A live sync connection of `id` was replaced by a newer one of the same node id (the sync
   * adapter tells). REPLACE_STORM of them within REPLACE_WINDOW_MS mark the agent forked.
   */
  replaced(id: NodeId): void {
    if (!this.entries.has(id)) return;
    const now = Date.now();
    const recent = (this.replacements.get(id) ?? []).filter((t) => now - t < REPLACE_WINDOW_MS);
    recent.push(now);
    this.replacements.set(id, recent);
    if (recent.length >= REPLACE_STORM)
      this.markForked(
        id,
        `its connection was replaced ${recent.length} times within ${REPLACE_WINDOW_MS / 1000} s ` +
          'by another connection with its node id: two machines run with one identity',
      );
  }

  /**
   * Marks an agent forked (once: logged once) and stops taking its document's changes: admit()
   * drops them and the share policy stops syncing the document with it.
   */
  private markForked(id: NodeId, reason: string): void {
    const entry = this.entries.get(id);
    if (!entry || entry.forked) return;
    this.put([{ ...entry, forked: { at: new Date().toISOString(), reason } }]);
    this.log.warn(
      `agent forked: ${reason} (a cloned machine or a copied state dir?); its facts are ` +
        `refused until an admin revokes it (\`flt admin revoke ${id}\`)`,
      { agent: shortId(id) },
    );
    this.repo.shareConfigChanged();
  }

  /** Sync messages with changes refused from a forked agent so far. */
  refusedFrom(id: NodeId): number {
    return this.refused.get(id) ?? 0;
  }

  /**
   * The root document's heads signed with the root write key, for readers to verify
   * (ARCHITECTURE.md §5.2). Signed on demand and cached until the heads move.
   */
  signedRoot(): SignedHeads {
    this.commit();
    return this.rootDoc.signed();
  }

  /**
   * The summary comes from the facts at the signed heads only (the trusted view's): facts no
   * verified signature covers never count. Only its fields are read and validated (summaryFields):
   * another field that is not valid does not keep the table's row from the agent's hostname.
   */
  private updateSummary(id: NodeId, handle: Source<FactsDoc>): void {
    const entry = this.entries.get(id);
    const signed = headsOf(entry, 'facts');
    if (!signed || !entry || !holdsHeads(handle, signed.heads)) return;
    const facts = readBackend(handle, (backend) => summaryFields(backend, [...signed.heads]));
    if (!facts) return;
    let summary;
    try {
      summary = summarize(validateSummaryFacts(facts));
    } catch (err) {
      this.log.warn('ignoring invalid facts', { agent: shortId(id), err: String(err) });
      return;
    }
    if (entry.summary && JSON.stringify(entry.summary) === JSON.stringify(summary)) return;
    this.put([{ ...entry, summary }]);
  }

  /**
   * The deploy summary, like the facts summary, from the status document's trusted view only:
   * system now, and the newest deployment record.
   */
  private updateDeploy(id: NodeId, handle: Source<StatusDoc>): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    const view = trustedView(handle.doc(), headsOf(entry, 'status'));
    if (!view.doc) return;
    const { system, deployments } = readStatus(view.doc);
    const last = deployments[0];
    const deploy: DeploySummary = {
      current: system?.current ?? null,
      booted: system?.booted ?? null,
      rebootNeeded: system?.rebootNeeded ?? null,
      last: last
        ? {
            id: last.id,
            state: last.state,
            ...(last.code !== undefined ? { code: last.code } : {}),
          }
        : null,
    };
    if (entry.deploy && JSON.stringify(entry.deploy) === JSON.stringify(deploy)) return;
    this.put([{ ...entry, deploy }]);
  }
}

/**
 * A plain document as a Source: the table's copy, or the Repo's once a find took it over
 * (sync/plain-docs.ts handOver); empty while neither holds it (an evicted one is dropped from
 * `handles` first: evicted()).
 */
class PlainSource implements Source {
  constructor(
    readonly documentId: DocumentId,
    private readonly plain: PlainDocs,
    private readonly repo: Repo,
  ) {}

  /** `read` through the held document's backend (PlainDocs.read); undefined when not held. */
  read<R>(read: (backend: Backend) => R): R | undefined {
    return this.plain.read(this.documentId, read);
  }

  /** PlainDocs.hasHeads while it holds the document, else as doc() finds it. */
  hasHeads(heads: readonly string[]): boolean {
    return this.plain.holds(this.documentId)
      ? this.plain.hasHeads(this.documentId, heads)
      : A.hasHeads(this.doc(), [...heads]);
  }

  doc(): A.Doc<unknown> {
    const held = this.plain.peek(this.documentId);
    if (held !== undefined) return held;
    const handle = this.repo.handles[this.documentId] as DocHandle<unknown> | undefined;
    return handle?.isReady() ? handle.doc() : A.init();
  }
}

/**
 * `read` on `source`'s document through Automerge's backend: a plain document's builds no
 * object of it (PlainDocs.read); a handle's document is an object already.
 */
function readBackend<R extends object | null>(source: Source, read: (backend: Backend) => R): R {
  const held = source instanceof PlainSource ? source.read(read) : undefined;
  return held !== undefined ? held : read(A.getBackend(source.doc()));
}

/** Whether `source`'s document holds every change of `heads`, without building its object. */
function holdsHeads(source: Source, heads: readonly string[]): boolean {
  return source instanceof PlainSource
    ? source.hasHeads(heads)
    : A.hasHeads(source.doc(), [...heads]);
}

/** An ISO time as ms, or undefined when absent or not a time. */
function timeOf(iso: string | undefined): number | undefined {
  const ms = iso === undefined ? NaN : Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms;
}
