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
import { Presence } from './presence.js';

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

  constructor(
    readonly root: DocHandle<RootDoc>,
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
   * Whether the coordinator offers `doc` to `peer` unasked: an enrolled agent gets only its own
   * facts document (it has no use for the others, and offering N documents to each of N agents
   * made fan-in quadratic); any other peer (an admin) gets everything, to keep its replica whole.
   * Agents enroll before they open their sync session, so an agent is never taken for an admin.
   */
  offers(peer: NodeId, doc: DocumentId | undefined): boolean {
    const entry = this.entries.get(peer);
    return entry ? entry.factsDocId === doc : true;
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
    if ((message.type !== 'sync' && message.type !== 'request') || !message.data) return;
    let changes: number;
    try {
      changes = A.decodeSyncMessage(message.data).changes.length;
    } catch (err) {
      throw new FltError('BAD_MESSAGE', `undecodable sync message for ${docId}`, { cause: err });
    }
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
        handle.on('change', () => this.updateSummary(entry.nodeId, handle));
        this.updateSummary(entry.nodeId, handle);
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

  private updateSummary(id: NodeId, handle: DocHandle<FactsDoc>): void {
    const facts = storedFacts(handle.doc());
    const entry = this.entries.get(id);
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
