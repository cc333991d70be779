// The coordinator's view of the fleet: the root document it owns (enrolled agents, their
// summaries, lastSeen) and the facts documents it replicates. Everything it serves after a
// restart comes from the root document, so the fleet is visible before any agent reconnects.

import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { validateFacts } from '../facts/index.js';
import {
  agentsOf,
  DOC_SCHEMA,
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

  constructor(
    readonly root: DocHandle<RootDoc>,
    private readonly repo: Repo,
    private readonly log: Logger,
  ) {
    this.presence = new Presence((entries) =>
      this.root.change((d) => {
        for (const [id, at] of entries) {
          const a = d.agents[id];
          if (a) a.lastSeen = at;
        }
      }),
    );
  }

  static base(coordinator: NodeId): RootDoc {
    return { kind: 'flt/root', schema: DOC_SCHEMA, coordinator, agents: {} };
  }

  agents(): AgentEntry[] {
    return agentsOf(this.root.doc());
  }

  agent(id: NodeId): AgentEntry | undefined {
    return this.agents().find((a) => a.nodeId === id);
  }

  /**
   * Whether the coordinator offers `doc` to `peer` unasked: an enrolled agent gets only its own
   * facts document (it has no use for the others, and offering N documents to each of N agents
   * made fan-in quadratic); any other peer (an admin) gets everything, to keep its replica whole.
   * Agents enroll before they open their sync session, so an agent is never taken for an admin.
   * Called for every document at every connection: O(1), no copy of the agent list.
   */
  offers(peer: NodeId, doc: DocumentId | undefined): boolean {
    const entry = this.root.doc().agents[peer];
    return entry ? entry.factsDocId === doc : true;
  }

  /** Records (or refreshes) an enrollment; returns the entry. Idempotent. */
  enroll(id: NodeId, factsDocId: DocumentId, factsWriteKey: string): AgentEntry {
    const now = new Date().toISOString();
    const existing = this.agent(id);
    if (
      !existing ||
      existing.factsDocId !== factsDocId ||
      existing.factsWriteKey !== factsWriteKey
    ) {
      this.root.change((d) => {
        d.agents[id] = {
          nodeId: id,
          factsDocId,
          factsWriteKey,
          enrolledAt: existing?.enrolledAt ?? now,
          lastSeen: now,
          summary: existing?.summary ?? null,
        };
      });
      this.log.info('agent enrolled', { agent: id.slice(0, 10) });
    }
    this.watch(this.agent(id)!);
    return this.agent(id)!;
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
    const doc = handle.doc();
    if (!doc.facts) return;
    let summary;
    try {
      summary = summarize(validateFacts({ ...doc.facts, collectedAt: doc.changedAt ?? '' }));
    } catch (err) {
      this.log.warn('ignoring invalid facts', { agent: id.slice(0, 10), err: String(err) });
      return;
    }
    const current = this.agent(id)?.summary;
    if (current && JSON.stringify(current) === JSON.stringify(summary)) return;
    this.root.change((d) => {
      const a = d.agents[id];
      if (a) a.summary = summary;
    });
  }
}
