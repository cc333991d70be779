// The coordinator's side of deployments (issue 11): it records every signed part an admin submits
// in the audit trail (the gate) and puts it into the desired document of each agent it targets,
// one document per agent (key derived per agent, docs/desired.ts), which only that agent and the
// admins receive. The coordinator is trusted for delivery only: the agent verifies the part.
// An answer is an acknowledgement: what it says was placed is saved before it is sent, so a
// coordinator killed right after answering still delivers it when it comes back.
//
// Marks (issue 13). A desired document's heads are marked in the store (sync/stored-heads.ts) once
// they are saved: at enrollment (ready), after each write's save, and when the document leaves the
// Repo idle (sync/evict.ts). An agent that reconnects at exactly those heads is told it is in sync
// without the document being loaded (Fleet.answer). That is only right while
// the mark names this coordinator's heads, so a mark must never outlive a change: every write
// first flags the document as being written (synchronously: from then on no eviction of it reaches
// onEvict, so no mark of the old heads can be recorded; see `writing`), then removes its mark,
// from memory and durably from the store, and only then opens the document and changes it. The
// flag stays until the change is saved. A crash anywhere in between leaves no mark or a mark of
// heads the store still holds as the document's latest.

import * as A from '@automerge/automerge';
import type { StoredHeads } from '../../sync/stored-heads.js';
import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { snapshotName } from '../../sync/compact.js';
import { OwnedDoc, isStored, sameHeads } from '../../sync/owned-doc.js';
import type { Store } from '../../stores/store.js';
import {
  DESIRED_KEY,
  desiredBase,
  desiredSnapshot,
  encodeDesired,
  type DesiredDoc,
} from '../docs/types.js';
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
  /**
   * Desired documents being written: from before their mark is removed until the change is saved.
   * Never evicted meanwhile (`writing`, asked by the coordinator's eviction), never answered from
   * a mark (Fleet.answer).
   */
  private readonly writes = new Set<DocumentId>();
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
   * Whether `docId` is being written (see the top of this file): the coordinator's eviction must
   * not evict it, and an agent's message about it is not answered from a mark.
   */
  writing(docId: DocumentId): boolean {
    return this.writes.has(docId);
  }

  /**
   * `docId` (a desired document) is leaving the Repo (sync/evict.ts: idle, saved at `heads`,
   * never while it is being written): the cached handle goes, the next open() finds it in storage
   * again, and its heads are marked (sync/stored-heads.ts). Synchronous up to the mark's store
   * write, which a later forget() waits for.
   */
  evicted(docId: DocumentId, heads: readonly string[]): void {
    const agent = this.ids.get(docId);
    if (agent === undefined) return;
    this.opened.delete(agent);
    this.keys.get(agent)?.release();
    // Belt and braces: the eviction asks `writing` in the same synchronous step as this call.
    this.mark(docId, heads);
  }

  /**
   * Makes `agent`'s desired document exist here before the agent syncs it (enrollment, which
   * waits for this): a new one is stored as its base, one snapshot and no Repo handle, and marked.
   * The agent starts from the same base (the enroll answer's `desiredBase`), so its first sync
   * message names the mark's heads and is answered without the document being loaded
   * (Fleet.answer); a coordinator restarted meanwhile answers it the same way. A document that is
   * stored or open already is left as it is (it is marked when it leaves the Repo), and the
   * agent is not told its base: an older coordinator may have begun it from another one.
   * Resolves with the base's head when this call stored it. Measured at a 1,000-agent fan-in:
   * a desired document opened in the Repo at enrollment held ~28 KiB of JavaScript objects until
   * evicted (issue 13).
   */
  async ready(agent: NodeId): Promise<string | undefined> {
    const owned = this.owned(agent);
    const doc = owned.docId;
    if (this.opened.has(agent) || (await isStored(this.opts.store, doc))) return undefined;
    const base = desiredSnapshot(agent, doc);
    await this.opts.store.save([doc, 'snapshot', snapshotName(base.heads)], base.bytes);
    // A write begun meanwhile opened the document (from this base, or the same base again) and
    // marks it itself; a mark of the base now could name less than it holds.
    if (!this.opened.has(agent)) this.mark(doc, base.heads);
    return base.heads[0];
  }

  /** Marks `doc` at `heads` unless it is being written (marks only ever name saved heads). */
  private mark(doc: DocumentId, heads: readonly string[]): void {
    if (this.opts.marks === undefined || this.writes.has(doc)) return;
    this.opts.marks
      .record(doc, heads)
      .catch((err: unknown) =>
        this.opts.log.warn('could not mark a saved document', { doc, err: String(err) }),
      );
  }

  /**
   * `doc` was saved at `heads` (a flush that began at those heads resolved): marked, if it is
   * still loaded at exactly those heads and not being written (no write began meanwhile).
   */
  private marked(doc: DocumentId, heads: readonly string[]): void {
    const handle = this.opts.repo.handles[doc];
    if (handle?.isReady() !== true || !sameHeads(A.getHeads(handle.doc()), heads)) return;
    this.mark(doc, heads);
  }

  /**
   * Saves `docs` (the caller's writes), then ends the writes of `held` (their flags go, also when
   * the save fails) and marks each saved one at the heads it was saved with.
   */
  private async saveHeld(
    docs: readonly DocumentId[],
    held: ReadonlySet<DocumentId>,
  ): Promise<void> {
    const saving = new Map<DocumentId, string[]>();
    for (const doc of docs) {
      const handle = this.opts.repo.handles[doc];
      if (held.has(doc) && handle?.isReady() === true) saving.set(doc, A.getHeads(handle.doc()));
    }
    try {
      if (docs.length > 0) await this.opts.flush(docs);
    } finally {
      for (const doc of held) this.writes.delete(doc);
    }
    for (const [doc, heads] of saving) this.marked(doc, heads);
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
      /** Desired documents flagged as being written (held until the flush below). */
      const held = new Set<DocumentId>();
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
              // Not evicted before the flush below (which needs it loaded); no change, no forget.
              this.hold(this.owned(target).docId, held);
              const handle = await this.open(target);
              touched.add(handle.documentId); // saved again before "placed" is answered
            } else if (current !== undefined && current.seq >= seq) {
              result.stale.push(target);
            } else {
              const handle = await this.write(target, part, held);
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
        if (touched.size > 0) touched.add(this.opts.fleet.root.documentId);
        await this.saveHeld([...touched], held);
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
      const held = new Set<DocumentId>();
      let written: DocumentId[] = [];
      try {
        const handle = await this.write(agent, part, held);
        written = [handle.documentId, this.opts.fleet.root.documentId];
      } finally {
        await this.saveHeld(written, held);
      }
    });
  }

  /** Flags `doc` as being written (synchronously), until the caller's flush; `held` lists it. */
  private hold(doc: DocumentId, held: Set<DocumentId>): void {
    this.writes.add(doc);
    held.add(doc);
  }

  /**
   * Places `part` in `agent`'s desired document, in this order (see the top of this file): the
   * flag first, in the caller's synchronous step, so that no eviction of the document reaches
   * onEvict (and marks its old heads) from now on; then the mark goes, from the store too; then
   * the document is opened (an eviction that ended before the flag dropped the cached handle: it
   * is found in storage again) and changed. The caller clears the flag once the change is saved.
   * Opening before the mark is gone would not do: an eviction could take the handle out of the
   * Repo meanwhile, and the change would go into a handle nothing saves or syncs.
   */
  private async write(
    agent: NodeId,
    part: SignedPart,
    held: Set<DocumentId>,
  ): Promise<DocHandle<DesiredDoc>> {
    const doc = this.owned(agent).docId;
    this.hold(doc, held);
    await this.opts.marks?.forget(doc);
    const handle = await this.open(agent);
    // Not expected (the flag keeps evictions off): a handle the Repo no longer holds is refused
    // rather than changed.
    if (this.opts.repo.handles[doc] !== handle)
      throw new FltError('INTERNAL', `${shortId(agent)}'s desired document left the Repo`);
    const adminOps = this.opts.gate.adminOps;
    handle.change((d) => void (d.current = encodeDesired({ part, adminOps })));
    this.opts.fleet.setDesired(agent, summaryOf(part, agent));
    return handle;
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
