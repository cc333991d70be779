// The coordinator's view of the fleet: the root document it owns (enrolled agents, their
// summaries, lastSeen) and the facts documents it replicates. Everything it serves after a
// restart comes from the root document, so the fleet is visible before any agent reconnects.

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, Message, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { validateFacts } from '../facts/index.js';
import {
  agentsOf,
  DOC_SCHEMA,
  encodeAgent,
  sortAgents,
  storedFacts,
  summarize,
  type AgentEntry,
  type FactsDoc,
  type RootDoc,
} from '../docs/types.js';
import type { KeyPair } from '../identity/index.js';
import { changesIn } from '../trust/changes.js';
import { Presence } from './presence.js';
import {
  newer,
  signHeads,
  trustedView,
  verifySignedHeads,
  type SignedHeads,
} from '../trust/signed-heads.js';

/** Signed heads keep their heads sorted (signed-heads.ts); compare `current` sorted too. */
const sameHeads = (signed: readonly string[], current: readonly string[]) => {
  const sorted = [...current].sort();
  return signed.length === sorted.length && signed.every((h, i) => h === sorted[i]);
};

/**
 * The facts heads in an agent's root record. Verified before the coordinator stored them, and
 * only the coordinator writes the root document, so they are not checked again here (at start
 * that would cost a signature check per agent).
 */
const headsOf = (entry: AgentEntry | undefined) =>
  (entry?.factsHeads ?? undefined) as SignedHeads | undefined;

/** Finds of a facts document before giving up until the agent's next heartbeat (250 ms .. 8 s). */
const WATCH_ATTEMPTS = 6;

export class Fleet {
  readonly presence: Presence;
  private readonly watched = new Set<DocumentId>();
  /**
   * The root document's agents, decoded once at start and then kept in step by put(): the
   * coordinator is the root document's only writer, and lookups run on every rpc and, for the
   * share policy, for every document at every connection, so they must not decode N records.
   */
  private readonly entries = new Map<NodeId, AgentEntry>();
  private readonly handles = new Map<NodeId, DocHandle<FactsDoc>>();
  /**
   * Verified signed heads newer than an agent's root record whose changes this coordinator does
   * not hold yet (a heartbeat can outrun the sync session: after a restart, or while a dead
   * session is being replaced). Recorded once the changes arrive, so that a root record never
   * names heads a reader would wait for in vain.
   */
  private readonly waiting = new Map<NodeId, SignedHeads>();
  private rootSigned: SignedHeads | undefined;
  private rootSeq = 0;

  constructor(
    readonly root: DocHandle<RootDoc>,
    private readonly rootKey: KeyPair,
    private readonly repo: Repo,
    private readonly log: Logger,
  ) {
    for (const entry of agentsOf(root.doc())) this.entries.set(entry.nodeId, entry);
    this.presence = new Presence((seen) =>
      this.put(
        [...seen].flatMap(([id, at]) => {
          const entry = this.entries.get(id);
          return entry ? [{ ...entry, lastSeen: at }] : [];
        }),
      ),
    );
  }

  static base(coordinator: NodeId): RootDoc {
    return { kind: 'flt/root', schema: DOC_SCHEMA, coordinator, agents: {} };
  }

  /** Every enrolled agent, in fleet table order. */
  agents(): AgentEntry[] {
    return sortAgents([...this.entries.values()]);
  }

  agent(id: NodeId): AgentEntry | undefined {
    return this.entries.get(id);
  }

  /**
   * Whether an enrolled agent may sync `doc` with the coordinator: only its own facts document
   * (it has no use for the others, and offering N documents to each of N agents made fan-in
   * quadratic). Admins get everything (the coordinator asks its Gate first); others nothing.
   */
  offers(peer: NodeId, doc: DocumentId | undefined): boolean {
    return this.entries.get(peer)?.factsDocId === doc;
  }

  /**
   * Refuses (UNAUTHORIZED_PEER, which closes the connection) a sync message that carries changes
   * to a document the peer does not write (ARCHITECTURE.md §5.1): an agent writes its own facts
   * document only, and nobody but this coordinator writes the root document. An agent has no
   * business with any other document at all, so any message of its about one is refused.
   * Other messages without changes (requests, acknowledgements, heads) pass.
   */
  admit(peer: NodeId, message: Message): void {
    if (!('documentId' in message) || message.documentId === undefined) return;
    const docId = message.documentId;
    const agent = this.entries.get(peer);
    if (agent?.factsDocId === docId) return;
    if (agent)
      throw new FltError('UNAUTHORIZED_PEER', `agent ${peer} sent a ${message.type} for ${docId}`);
    const changes = changesIn(message);
    if (changes === 0) return;
    throw new FltError(
      'UNAUTHORIZED_PEER',
      `${peer} sent ${changes} change(s) to ${docId}, which it does not write`,
    );
  }

  /** Records (or refreshes) an enrollment; returns the entry. Idempotent. */
  enroll(id: NodeId, factsDocId: DocumentId, factsWriteKey: string): AgentEntry {
    const existing = this.entries.get(id);
    if (
      !existing ||
      existing.factsDocId !== factsDocId ||
      existing.factsWriteKey !== factsWriteKey
    ) {
      const now = new Date().toISOString();
      this.put([
        {
          nodeId: id,
          factsDocId,
          factsWriteKey,
          enrolledAt: existing?.enrolledAt ?? now,
          lastSeen: now,
          summary: existing?.summary ?? null,
          factsHeads: existing?.factsHeads ?? null,
        },
      ]);
      this.log.info('agent enrolled', { agent: id.slice(0, 10) });
    }
    const entry = this.entries.get(id)!;
    this.watch(entry);
    return entry;
  }

  /** Writes whole agent records, in one change, to the root document and the lookup map. */
  private put(entries: readonly AgentEntry[]): void {
    if (entries.length === 0) return;
    this.root.change((d) => {
      for (const e of entries) d.agents[e.nodeId] = encodeAgent(e);
    });
    for (const e of entries) this.entries.set(e.nodeId, e);
  }

  /**
   * Replicates an agent's facts document and keeps its summary in the root document current.
   * A find can race the agent's first sync (REFERENCE.md), so it is retried a few times with
   * backoff; after that the agent's next connection or heartbeat tries again.
   */
  watch(entry: AgentEntry): void {
    if (this.watched.has(entry.factsDocId)) return;
    this.watched.add(entry.factsDocId);
    void this.follow(entry);
  }

  private async follow(entry: AgentEntry): Promise<void> {
    for (let attempt = 0; attempt < WATCH_ATTEMPTS; attempt++) {
      try {
        const handle = await this.repo.find<FactsDoc>(entry.factsDocId);
        this.handles.set(entry.nodeId, handle);
        handle.on('change', () => this.arrived(entry.nodeId, handle));
        this.arrived(entry.nodeId, handle);
        return;
      } catch (err) {
        this.log.debug('facts document not available yet', {
          agent: entry.nodeId.slice(0, 10),
          err: String(err),
        });
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt).unref());
      }
    }
    this.watched.delete(entry.factsDocId);
  }

  /**
   * Takes an agent's signed heads of its facts document (sent with each heartbeat): verified
   * against the write key it enrolled with, kept when newer, and stored in its root record once
   * this coordinator holds the changes they name (until then they wait, see `waiting`); the
   * summary is recomputed from the facts at those heads. A bad record is refused (BAD_SIGNATURE).
   */
  recordHeads(id: NodeId, value: unknown): void {
    const entry = this.entries.get(id);
    if (!entry) throw new FltError('UNAUTHORIZED_PEER', 'not enrolled');
    const latest = newer(headsOf(entry), this.waiting.get(id));
    // Every heartbeat carries the record; an unchanged one needs no signature check.
    if (latest && (value as Partial<SignedHeads> | null)?.sig === latest.sig) return;
    const signed = verifySignedHeads(value, {
      docId: entry.factsDocId,
      writeKey: entry.factsWriteKey,
    });
    if (newer(latest, signed) !== signed || latest?.seq === signed.seq) return;
    this.waiting.set(id, signed);
    const handle = this.handles.get(id);
    if (handle) this.arrived(id, handle);
  }

  /** Whether the agent signed heads that this coordinator does not hold yet. */
  pending(id: NodeId): boolean {
    return this.waiting.has(id);
  }

  /** The facts document changed (or was found): record waiting heads it now holds, summarize. */
  private arrived(id: NodeId, handle: DocHandle<FactsDoc>): void {
    const signed = this.waiting.get(id);
    const entry = this.entries.get(id);
    if (signed && entry && A.hasHeads(handle.doc(), [...signed.heads])) {
      this.waiting.delete(id);
      this.put([{ ...entry, factsHeads: signed }]);
    }
    this.updateSummary(id, handle);
  }

  /**
   * The root document's heads signed with the root write key, for readers to verify
   * (ARCHITECTURE.md §5.2). Signed on demand and cached until the heads move.
   */
  signedRoot(): SignedHeads {
    const heads = A.getHeads(this.root.doc());
    if (this.rootSigned && sameHeads(this.rootSigned.heads, heads)) return this.rootSigned;
    this.rootSeq = Math.max(Date.now(), this.rootSeq + 1);
    this.rootSigned = signHeads(
      this.root.documentId,
      this.rootSeq,
      heads,
      this.rootKey.secret,
      this.rootKey.publicKey,
    );
    return this.rootSigned;
  }

  /** The summary comes from the trusted view only: facts no verified signature covers never count. */
  private updateSummary(id: NodeId, handle: DocHandle<FactsDoc>): void {
    const entry = this.entries.get(id);
    const view = trustedView(handle.doc(), headsOf(entry));
    const facts = view.doc ? storedFacts(view.doc) : null;
    if (!facts || !entry) return;
    let summary;
    try {
      summary = summarize(validateFacts(facts));
    } catch (err) {
      this.log.warn('ignoring invalid facts', { agent: id.slice(0, 10), err: String(err) });
      return;
    }
    if (entry.summary && JSON.stringify(entry.summary) === JSON.stringify(summary)) return;
    this.put([{ ...entry, summary }]);
  }
}
