// The outbox document (issue 11; key `flt/v1/doc/outbox`), one per admin, local only (never
// announced to the coordinator): deployments the admin signed and has not yet delivered, the
// answers to the ones it did, and its seq counter. Its durable queue across coordinator outages
// and admin restarts (roles/outbox.ts); written and read only by the same admin.

import * as A from '@automerge/automerge';
import type { NodeId } from '../../sync/ids.js';
import type { DerivePurpose } from '../identity/derive.js';
import { isIsoTime, plainRecord } from '../trust/canonical.js';
import {
  DEPLOY_ACTIONS,
  MAX_PARTS,
  type DeployAction,
  type SignedPart,
  verifyPart,
} from '../trust/deployment.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

export const OUTBOX_KIND = 'flt/outbox';
/** The purpose its write key is derived for (identity/derive.ts). */
export const OUTBOX_KEY = 'flt/v1/doc/outbox' satisfies DerivePurpose;
/** Longest queued record read: MAX_PARTS parts of ~6 KB. */
const MAX_QUEUED_TEXT = MAX_PARTS * 8 * 1024;
const MAX_SENT_TEXT = 1024 * 1024;
/** Node ids kept per list of a sent record's answer (the counts are kept whole). */
export const MAX_SENT_IDS = 50;
/** Sent records kept: the newest by sentAt; older ones are deleted when one is added. */
export const MAX_SENT_RECORDS = 100;
const MAX_MESSAGE = 1024;

export interface OutboxDoc {
  kind: typeof OUTBOX_KIND;
  schema: number;
  owner: NodeId;
  /** The highest seq this admin gave (assignSeqs); 0 before the first deployment. */
  lastSeq: number;
  /** Deployment id -> JSON of QueuedDeployment: signed, not yet acknowledged by the coordinator. */
  queued: Record<string, A.ImmutableString>;
  /** Deployment id -> JSON of SentDeployment: what the coordinator answered. */
  sent: Record<string, A.ImmutableString>;
}

/** A deployment signed and kept until the coordinator acknowledges it. */
export interface QueuedDeployment {
  id: string;
  parts: SignedPart[];
  queuedAt: string;
  /** Its closure is pushed to the coordinator before it is submitted (issue 12). */
  push?: true;
}

/** What the coordinator answered `deploy.submit` (or the error it refused with). */
export interface SentDeployment {
  id: string;
  storePath: string;
  action: DeployAction;
  targets: number;
  queuedAt: string;
  sentAt: string;
  /**
   * As the coordinator answered. As stored, each list holds at most MAX_SENT_IDS ids and
   * `counts` has their full lengths (absent in records written before).
   */
  answer?: {
    index: number;
    placed: NodeId[];
    stale: NodeId[];
    unknown: NodeId[];
    counts?: { placed: number; stale: number; unknown: number };
  };
  error?: { code: string; message: string };
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function outboxBase(owner: NodeId): OutboxDoc {
  return { kind: OUTBOX_KIND, schema: DOC_SCHEMA, owner, lastSeq: 0, queued: {}, sent: {} };
}

/** Queues a deployment (inside a change) and raises lastSeq to `lastSeq`. */
export function writeQueued(d: OutboxDoc, q: QueuedDeployment, lastSeq: number): void {
  d.queued[q.id] = new A.ImmutableString(JSON.stringify(q));
  if (lastSeq > d.lastSeq) d.lastSeq = lastSeq;
}

/**
 * Moves a deployment from queued to sent (inside a change): its answer's lists cut to
 * MAX_SENT_IDS ids (with the counts), and only the newest MAX_SENT_RECORDS records kept.
 */
export function writeSent(d: OutboxDoc, s: SentDeployment): void {
  const a = s.answer;
  const stored: SentDeployment =
    a === undefined
      ? s
      : {
          ...s,
          answer: {
            index: a.index,
            placed: a.placed.slice(0, MAX_SENT_IDS),
            stale: a.stale.slice(0, MAX_SENT_IDS),
            unknown: a.unknown.slice(0, MAX_SENT_IDS),
            counts: a.counts ?? {
              placed: a.placed.length,
              stale: a.stale.length,
              unknown: a.unknown.length,
            },
          },
        };
  d.sent[s.id] = new A.ImmutableString(JSON.stringify(stored));
  delete d.queued[s.id];
  const keys = Object.keys(d.sent);
  if (keys.length <= MAX_SENT_RECORDS) return;
  // Newest first; an unreadable record sorts last (sentAt '') and goes first.
  const aged = keys
    .map((k) => ({ k, at: decodeSent(d.sent[k])?.sentAt ?? '' }))
    .sort((x, y) => (x.at < y.at ? 1 : x.at > y.at ? -1 : 0));
  for (const { k } of aged.slice(MAX_SENT_RECORDS)) delete d.sent[k];
}

/** A queued record, its parts verified (verifyPart); undefined when malformed. */
export function decodeQueued(value: unknown, fleetId?: string): QueuedDeployment | undefined {
  const r = parse(value, MAX_QUEUED_TEXT);
  if (r === undefined || typeof r.id !== 'string' || !isIsoTime(r.queuedAt)) return undefined;
  const parts = r.parts;
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_PARTS) return undefined;
  try {
    const verified = parts.map((p: unknown) => verifyPart(p, fleetId));
    if (verified.some((p) => p.id !== r.id)) return undefined;
    const q: QueuedDeployment = { id: r.id, parts: verified, queuedAt: r.queuedAt };
    return r.push === true ? { ...q, push: true } : q;
  } catch {
    return undefined;
  }
}

/** A sent record, validated; undefined when malformed. */
export function decodeSent(value: unknown): SentDeployment | undefined {
  const r = parse(value, MAX_SENT_TEXT);
  if (r === undefined) return undefined;
  const { id, storePath, action, targets, queuedAt, sentAt, answer, error } = r;
  if (typeof id !== 'string' || typeof storePath !== 'string') return undefined;
  if (!DEPLOY_ACTIONS.includes(action as DeployAction) || !Number.isSafeInteger(targets))
    return undefined;
  if (!isIsoTime(queuedAt) || !isIsoTime(sentAt)) return undefined;
  const out: SentDeployment = {
    id,
    storePath,
    action: action as DeployAction,
    targets: targets as number,
    queuedAt,
    sentAt,
  };
  const a = plainRecord(answer);
  if (a !== undefined) {
    const lists = [a.placed, a.stale, a.unknown];
    if (!Number.isSafeInteger(a.index) || !lists.every(Array.isArray)) return undefined;
    out.answer = {
      index: a.index as number,
      placed: a.placed as NodeId[],
      stale: a.stale as NodeId[],
      unknown: a.unknown as NodeId[],
    };
    const c = plainRecord(a.counts);
    if (c !== undefined && [c.placed, c.stale, c.unknown].every(Number.isSafeInteger))
      out.answer.counts = {
        placed: c.placed as number,
        stale: c.stale as number,
        unknown: c.unknown as number,
      };
  }
  const e = plainRecord(error);
  if (e !== undefined) {
    if (typeof e.code !== 'string' || typeof e.message !== 'string') return undefined;
    out.error = { code: e.code.slice(0, 64), message: e.message.slice(0, MAX_MESSAGE) };
  }
  return out;
}

/** The outbox's content: lastSeq, queued (oldest first) and sent (newest first), valid ones. */
export function readOutbox(
  doc: unknown,
  fleetId?: string,
): { lastSeq: number; queued: QueuedDeployment[]; sent: SentDeployment[] } {
  const d = (typeof doc === 'object' && doc !== null ? doc : {}) as Partial<OutboxDoc>;
  const lastSeq = Number.isSafeInteger(d.lastSeq) ? (d.lastSeq as number) : 0;
  const queued = Object.values(d.queued ?? {})
    .map((v) => decodeQueued(v, fleetId))
    .filter((q): q is QueuedDeployment => q !== undefined)
    .sort((a, b) => (a.queuedAt < b.queuedAt ? -1 : a.queuedAt > b.queuedAt ? 1 : 0));
  const sent = Object.values(d.sent ?? {})
    .map(decodeSent)
    .filter((s): s is SentDeployment => s !== undefined)
    .sort((a, b) => (a.sentAt < b.sentAt ? 1 : a.sentAt > b.sentAt ? -1 : 0));
  return { lastSeq, queued, sent };
}

function parse(value: unknown, max: number): Readonly<Record<string, unknown>> | undefined {
  const text = scalarString(value);
  if (text === undefined || text.length > max) return undefined;
  try {
    return plainRecord(JSON.parse(text));
  } catch {
    return undefined;
  }
}
