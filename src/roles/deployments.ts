// The coordinator's side of deployments (issue 11): it records every signed part an admin submits
// in the audit trail (the gate) and puts it into the desired document of each agent it targets,
// one document per agent (key derived per agent, docs/desired.ts), which only that agent and the
// admins receive. The coordinator is trusted for delivery only: the agent verifies the part.
// An answer is an acknowledgement: what it says was placed is saved before it is sent, so a
// coordinator killed right after answering still delivers it when it comes back.

import type { StoredHeads } from '../../sync/stored-heads.js';
import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { OwnedDoc } from '../../sync/owned-doc.js';
import type { Store } from '../../stores/store.js';
import { DESIRED_KEY, desiredBase, encodeDesired, type DesiredDoc } from '../docs/types.js';
import { deriveKeyPairFor } from '../identity/index.js';
import type { SignedPart } from '../trust/deployment.js';
import type { Fleet } from './fleet.js';
import type { Gate } from './gate.js';

/** What deploy.submit answers (rpc-methods.ts, deploySubmit). */
export interface SubmitResult {
  /** The audit entry of the last part. */
  index: number;
  /** Targets whose desired document holds the part now (placed now, or before: a resubmission). */
  placed: NodeId[];
  /** Targets whose desired document already holds a higher (or the same) seq of another part. */
  stale: NodeId[];
  /**
   * Targets that are not enrolled agents (never enrolled, or revoked). A forked agent is still
   * an enrolled agent: the part is placed for it (it receives it once an admin resolves the fork).
   */
  unknown: NodeId[];
}

export class Deployments {
  /** Desired documents by agent, opened lazily (a promise, so that two callers share one open). */
  private readonly opened = new Map<NodeId, Promise<DocHandle<DesiredDoc>>>();
  /** Desired document ids this coordinator writes (`durable`, eviction), with their agent. */
  private readonly ids = new Map<DocumentId, NodeId | undefined>();
  private readonly keys = new Map<NodeId, OwnedDoc<DesiredDoc>>();
  /** One submit or place at a time: each reads an agent's desired seq, then writes it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly opts: {
      repo: Repo;
      store: Store;
      /** The coordinator's node secret: desired write keys are derived from it per agent. */
      secret: Uint8Array;
      fleetId: string;
      fleet: Fleet;
      gate: Gate;
      log: Logger;
      /** Saves the given documents (repo flush, then the store settled). */
      flush: (docIds: readonly DocumentId[]) => Promise<void>;
      /** Marks of evicted desired documents: each is removed before the document changes. */
      marks?: StoredHeads;
    },
  ) {
    for (const entry of opts.fleet.agents())
      if (entry.desiredDocId !== undefined) this.ids.set(entry.desiredDocId, entry.nodeId);
  }

  /** The desired document of `agent` (id and write key, hex); derived once, cached. */
  desiredOf(agent: NodeId): { docId: DocumentId; writeKey: string } {
    const owned = this.owned(agent);
    return { docId: owned.docId, writeKey: owned.writeKey };
  }

  /** Whether `docId` is a desired document this coordinator writes. */
  isDesired(docId: DocumentId): boolean {
    return this.ids.has(docId);
  }

  /**
   * `docId` (a desired document) is leaving the Repo (sync/evict.ts: idle, saved): the cached
   * handle goes; the next open() finds it in storage again.
   */
  release(docId: DocumentId): void {
    const agent = this.ids.get(docId);
    if (agent === undefined) return;
    this.opened.delete(agent);
    this.keys.get(agent)?.release();
  }

  /** Opens (from storage, or from its base) the desired document of `agent`; cached. */
  open(agent: NodeId): Promise<DocHandle<DesiredDoc>> {
    let handle = this.opened.get(agent);
    if (handle === undefined) {
      const owned = this.owned(agent);
      handle = owned.open(this.opts.repo, this.opts.store, desiredBase(agent));
      // A failed open is not cached: the next caller tries again.
      handle.catch(() => this.opened.delete(agent));
      this.opened.set(agent, handle);
    }
    return handle;
  }

  /**
   * Records `parts` (signed deployment parts, any shape: each is verified) in the audit trail and
   * places each in its targets' desired documents. All parts are checked before any is recorded
   * (Gate.checkDeploy: verifyPart's codes, NOT_ADMIN for a signer who is not an admin now,
   * DEPLOYMENT_EXPIRED, OP_REPLAYED; none of these for a part recorded already), so a refused
   * request changes nothing; OP_REPLAYED (parts of one deployment that disagree with each other)
   * can still stop it midway, after the parts before it. Idempotent: the same parts again record
   * nothing and answer the same targets as placed. Answers once every write is saved.
   */
  submit(parts: readonly unknown[], from: NodeId): Promise<SubmitResult> {
    return this.serially(async () => {
      if (parts.length === 0) throw new FltError('BAD_ARGUMENT', 'deploy.submit: no part');
      const now = new Date();
      // Every part checked first (one rule set: Authority's), then recorded: a refused request
      // changes nothing. A part recorded already passes whoever signed it (a resubmission).
      const verified = parts.map((p) => this.opts.gate.checkDeploy(p, now).part);
      const result: SubmitResult = { index: 0, placed: [], stale: [], unknown: [] };
      const touched = new Set<DocumentId>();
      try {
        for (const value of verified) {
          const { part, index } = this.opts.gate.recordDeploy(value, now);
          result.index = index;
          // Saved even when not fresh: a resubmission may follow an answer lost to a failed save.
          touched.add(this.opts.gate.audit.documentId);
          for (const [target, seq] of Object.entries(part.targets) as [NodeId, number][]) {
            const entry = this.opts.fleet.agent(target);
            if (entry === undefined || this.opts.gate.role(target) === 'revoked') {
              result.unknown.push(target);
              continue;
            }
            // What the desired document holds, from the root record's summary: written in the
            // same step as the document and saved in the same flush (no signature verified again).
            const current = entry.desired ?? undefined;
            if (current?.id === part.id && current.seq === seq) {
              result.placed.push(target); // a resubmission: it is there already
              const handle = await this.open(target);
              touched.add(handle.documentId); // saved again before "placed" is answered
            } else if (current !== undefined && current.seq >= seq) {
              result.stale.push(target);
            } else {
              const handle = await this.open(target);
              await this.write(target, handle, part);
              touched.add(handle.documentId);
              result.placed.push(target);
            }
          }
          this.opts.log.info('deployment submitted', {
            id: part.id.slice(0, 8),
            part: part.part,
            from: shortId(from),
          });
        }
      } finally {
        // Whatever was written is saved before anything is answered, refusals included.
        if (touched.size > 0) {
          touched.add(this.opts.fleet.root.documentId);
          await this.opts.flush([...touched]);
        }
      }
      return result;
    });
  }

  /**
   * Places `part` in `agent`'s desired document as is, whatever it holds and whoever signed it
   * (no check at all: tests act as a coordinator forging parts through it), with the admins
   * document's current op count, and records the summary in the agent's root record; both are
   * saved before it resolves. The agent must be enrolled (INTERNAL otherwise).
   */
  place(agent: NodeId, part: SignedPart): Promise<void> {
    return this.serially(async () => {
      if (this.opts.fleet.agent(agent) === undefined)
        throw new FltError('INTERNAL', `${shortId(agent)} is not enrolled`);
      const handle = await this.open(agent);
      await this.write(agent, handle, part);
      await this.opts.flush([handle.documentId, this.opts.fleet.root.documentId]);
    });
  }

  /**
   * The document's mark goes first (sync/stored-heads.ts): an agent in sync with the marked
   * heads is answered without a load, so a mark left behind would hide this change from it.
   */
  private async write(agent: NodeId, handle: DocHandle<DesiredDoc>, part: SignedPart) {
    await this.opts.marks?.forget(handle.documentId);
    const adminOps = this.opts.gate.adminOps;
    handle.change((d) => void (d.current = encodeDesired({ part, adminOps })));
    this.opts.fleet.setDesired(agent, summaryOf(part, agent));
  }

  private owned(agent: NodeId): OwnedDoc<DesiredDoc> {
    let owned = this.keys.get(agent);
    if (owned === undefined) {
      owned = new OwnedDoc<DesiredDoc>(deriveKeyPairFor(this.opts.secret, DESIRED_KEY, agent));
      this.keys.set(agent, owned);
      this.ids.set(owned.docId, agent);
    }
    return owned;
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function summaryOf(part: SignedPart, agent: NodeId) {
  return {
    id: part.id,
    seq: part.targets[agent] ?? 0,
    storePath: part.storePath,
    action: part.action,
  };
}
