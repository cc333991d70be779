// The admin's outbox (issue 11, design §2.4): every deployment it signs is written here first (an
// OwnedDoc in its own repo, flushed before `deploy` says anything), then handed to the
// coordinator with `deploy.submit`. Unreachable, or any error that is not a definite refusal: it
// stays queued, and the next online admin command delivers it (Admin.open starts flush()), across
// admin restarts. The coordinator's answer, or a definite refusal (REFUSALS), moves it to `sent`;
// a refusal is never retried. Local only: the
// admin's share policy never offers this document to the coordinator.

import type { DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { OwnedDoc, docIdFor, type ConsolidatedChunks } from '../../sync/owned-doc.js';
import type { FsStore } from '../../stores/fs-store.js';
import { codeOf, messageOf } from '../errors.js';
import { deriveKeyPair } from '../identity/derive.js';
import type { NodeKey } from '../identity/index.js';
import {
  OUTBOX_KEY,
  outboxBase,
  readOutbox,
  writeQueued,
  writeSent,
  type OutboxDoc,
  type QueuedDeployment,
  type SentDeployment,
} from '../docs/outbox.js';
import type { SignedPart } from '../trust/deployment.js';
import { loadStoredDoc } from './replica.js';

export type OutboxContent = ReturnType<typeof readOutbox>;
export type SubmitAnswer = NonNullable<SentDeployment['answer']>;
/** Hands parts to the coordinator (deploy.submit); throws its refusal or a no-answer error. */
export type Submit = (parts: SignedPart[]) => Promise<SubmitAnswer>;
/** Runs before a queued deployment is submitted (its closure pushed); throws as Submit does. */
export type Prepare = (q: QueuedDeployment) => Promise<void>;

/**
 * The definite refusals: after one of these a deployment moves to `sent` and is never retried.
 * Anything else (no answer, BUSY, IO from a coordinator whose disk failed, a code this admin does
 * not know) keeps it queued, to be submitted again: submission is idempotent.
 */
const REFUSALS: ReadonlySet<string> = new Set([
  'NOT_ADMIN',
  'BAD_DEPLOYMENT',
  'BAD_SIGNATURE',
  'WRONG_FLEET',
  'DEPLOYMENT_EXPIRED',
  'OP_REPLAYED',
  'BAD_ARGUMENT',
  // A queued deployment's push (design §5): the path or the key is not there any more, or the
  // coordinator will not take this admin's key. Deploy again once that is fixed.
  'NOT_IN_STORE',
  'BAD_STORE_PATH',
  'NO_SIGNING_KEY',
  'BAD_SIGNING_KEY',
  'UNKNOWN_SIGNING_KEY',
  'UNTRUSTED_SIGNATURE',
]);

/** What one flush did. */
export interface FlushResult {
  /** Moved to `sent` (answered or refused). */
  sent: SentDeployment[];
  /** Set when the coordinator did not answer, or failed otherwise: the rest stays queued. */
  unreachable?: FltError;
}

/** The outbox document id of the admin with `key`. */
export function outboxDocId(key: NodeKey): DocumentId {
  return docIdFor(deriveKeyPair(key.secret, OUTBOX_KEY).publicKey);
}

/** The outbox as the store holds it (offline reads); empty when there is none. */
export async function readStoredOutbox(
  store: FsStore,
  key: NodeKey,
  fleetId?: string,
): Promise<OutboxContent> {
  try {
    return readOutbox(await loadStoredDoc<OutboxDoc>(store, outboxDocId(key)), fleetId);
  } catch {
    return readOutbox(undefined);
  }
}

export class Outbox {
  /** Flushes run one after another: a queued deployment is never submitted twice at once. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly owned: OwnedDoc<OutboxDoc>,
    private readonly repo: Repo,
  ) {}

  static async open(repo: Repo, store: ConsolidatedChunks, key: NodeKey): Promise<Outbox> {
    const owned = new OwnedDoc<OutboxDoc>(deriveKeyPair(key.secret, OUTBOX_KEY));
    await owned.open(repo, store, outboxBase(key.nodeId));
    return new Outbox(owned, repo);
  }

  get docId(): DocumentId {
    return this.owned.docId;
  }

  read(fleetId?: string): OutboxContent {
    return readOutbox(this.owned.opened().doc(), fleetId);
  }

  /**
   * Keeps `parts` (one deployment) and the new seq counter; durable when this resolves. `push`:
   * its closure is pushed before it is submitted (flush's `prepare`).
   */
  async queue(
    parts: readonly SignedPart[],
    lastSeq: number,
    opts: { push?: boolean } = {},
  ): Promise<QueuedDeployment> {
    const id = parts[0]?.id;
    if (id === undefined || parts.some((p) => p.id !== id))
      throw new FltError('INTERNAL', 'outbox: parts of one deployment expected');
    const q: QueuedDeployment = {
      id,
      parts: [...parts],
      queuedAt: new Date().toISOString(),
      ...(opts.push === true ? { push: true as const } : {}),
    };
    this.owned.opened().change((d) => writeQueued(d, q, lastSeq));
    await this.repo.flush([this.docId]);
    return q;
  }

  /**
   * Submits every queued deployment, oldest first, each moved to `sent` with the answer or the
   * refusal (durable before the next). Stops at the first that gets neither.
   */
  flush(submit: Submit, prepare?: Prepare): Promise<FlushResult> {
    const run = this.chain.then(() => this.flushNow(submit, prepare));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async flushNow(submit: Submit, prepare?: Prepare): Promise<FlushResult> {
    const sent: SentDeployment[] = [];
    const { queued } = this.read();
    for (const q of queued) {
      const first = q.parts[0]!;
      const base = {
        id: q.id,
        storePath: first.storePath,
        action: first.action,
        targets: q.parts.reduce((n, p) => n + Object.keys(p.targets).length, 0),
        queuedAt: q.queuedAt,
      };
      let record: SentDeployment;
      try {
        await prepare?.(q);
        const answer = await submit(q.parts);
        record = { ...base, sentAt: new Date().toISOString(), answer };
      } catch (err) {
        const code = codeOf(err);
        if (!REFUSALS.has(code))
          return {
            sent,
            unreachable: err instanceof FltError ? err : new FltError(code, messageOf(err)),
          };
        record = {
          ...base,
          sentAt: new Date().toISOString(),
          error: { code, message: messageOf(err) },
        };
      }
      this.owned.opened().change((d) => writeSent(d, record));
      await this.repo.flush([this.docId]);
      sent.push(record);
    }
    return { sent };
  }
}
