// The coordinator's view of the fleet: the root document it owns (enrolled agents, their
// summaries, lastSeen) and the facts documents it replicates. Everything it serves after a
// restart comes from the root document, so the fleet is visible before any agent reconnects.

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, Message, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { changesIn } from '../../sync/changes.js';
import {
  newer,
  trustedView,
  verifySignedHeads,
  type OwnedDoc,
  type SignedHeads,
} from '../../sync/owned-doc.js';
import { validateFacts } from '../facts/index.js';
import {
  agentsOf,
  encodeAgent,
  sortAgents,
  storedFacts,
  summarize,
  type AgentEntry,
  type FactsDoc,
  type RootDoc,
} from '../docs/types.js';
import { relate, type HeadsRelation } from '../trust/fork.js';
import { Presence } from './presence.js';

/**
 * The facts heads in an agent's root record. Verified before the coordinator stored them, and
 * only the coordinator writes the root document, so they are not checked again here (at start
 * that would cost a signature check per agent).
 */
const headsOf = (entry: AgentEntry | undefined) =>
  (entry?.factsHeads ?? undefined) as SignedHeads | undefined;

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
  /** Per agent: when its live connection was replaced, within REPLACE_WINDOW_MS. */
  private readonly replacements = new Map<NodeId, number[]>();
  /** Per agent: sync messages with changes dropped because it is forked (for status and tests). */
  private readonly refused = new Map<NodeId, number>();

  /** The root document (open). */
  readonly root: DocHandle<RootDoc>;

  constructor(
    private readonly rootDoc: OwnedDoc<RootDoc>,
    private readonly repo: Repo,
    private readonly log: Logger,
  ) {
    this.root = rootDoc.opened();
    for (const entry of agentsOf(this.root.doc())) this.entries.set(entry.nodeId, entry);
    this.presence = new Presence((seen) =>
      this.put(
        [...seen].flatMap(([id, at]) => {
          const entry = this.entries.get(id);
          return entry ? [{ ...entry, lastSeen: at }] : [];
        }),
      ),
    );
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
    const entry = this.entries.get(peer);
    return entry !== undefined && entry.factsDocId === doc && !entry.forked;
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
    if (agent?.factsDocId === docId) {
      if (!agent.forked || changesIn(message) === 0) return true;
      this.refused.set(peer, (this.refused.get(peer) ?? 0) + 1);
      return false;
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
          forked: existing?.forked ?? null,
        },
      ]);
      this.log.info('agent enrolled', { agent: shortId(id) });
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
    // A forked agent's document is frozen as it is: an admin decides (revoke).
    if (this.watched.has(entry.factsDocId) || this.entries.get(entry.nodeId)?.forked) return;
    this.watched.add(entry.factsDocId);
    void this.follow(entry);
  }

  private async follow(entry: AgentEntry): Promise<void> {
    for (let attempt = 0; attempt < WATCH_ATTEMPTS; attempt++) {
      try {
        const handle = await this.repo.find<FactsDoc>(entry.factsDocId);
        this.handles.set(entry.nodeId, handle);
        handle.on('change', () => {
          this.arrived(entry.nodeId, handle);
        });
        this.arrived(entry.nodeId, handle);
        return;
      } catch (err) {
        this.log.debug('facts document not available yet', {
          agent: shortId(entry.nodeId),
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
    if (entry.forked) return; // the heads it held stay as they were until an admin decides
    const held = headsOf(entry);
    const rel = held ? this.relation(id, held, signed) : 'ahead';
    if (held && this.diverged(id, held, signed, rel)) return;
    // Behind: an older state of ours (a restored backup before it caught up): never go back.
    if (rel === 'same' || rel === 'behind') return;
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
    if (entry?.forked) this.waiting.delete(id);
    else if (signed && entry && A.hasHeads(handle.doc(), [...signed.heads])) {
      this.waiting.delete(id);
      // Recorded heads are always held, so now the two compare for sure.
      const held = headsOf(entry);
      if (!held || !this.diverged(id, held, signed)) this.put([{ ...entry, factsHeads: signed }]);
    }
    this.updateSummary(id, handle);
  }

  /**
   * Whether `signed` and the `held` heads prove a fork; if so the agent is marked. Two records
   * with one seq and other heads do at once; otherwise the document must hold both (until it
   * does, the newer ones wait in `waiting`, and arrived() compares them again).
   */
  private diverged(
    id: NodeId,
    held: SignedHeads,
    signed: SignedHeads,
    rel = this.relation(id, held, signed),
  ): boolean {
    if (held.seq === signed.seq && rel !== 'same') {
      this.markForked(id, `two different signed heads with one seq (${signed.seq})`);
      return true;
    }
    if (rel === 'forked') {
      this.markForked(id, 'two histories of its facts document, neither containing the other');
      return true;
    }
    return false;
  }

  private relation(id: NodeId, a: SignedHeads, b: SignedHeads): HeadsRelation {
    const handle = this.handles.get(id);
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
    return this.rootDoc.signed();
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
      this.log.warn('ignoring invalid facts', { agent: shortId(id), err: String(err) });
      return;
    }
    if (entry.summary && JSON.stringify(entry.summary) === JSON.stringify(summary)) return;
    this.put([{ ...entry, summary }]);
  }
}
