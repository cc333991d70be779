// Codec of the push messages of flt/sync/0 (sync/push.ts): a single-writer document's changes,
// pushed by its writer, and the holder's answer with the heads it has made durable. They travel
// in the same session as automerge-repo's messages, told apart by `type`; a peer that does not
// speak push never gets one (the hello's `meta.push` says who does). Every field is checked here;
// a message that fails is a protocol error and costs the peer its connection.

import { isRecord } from './codec.js';
import { FltError } from './errors.js';
import type { NodeId } from './ids.js';

/** The push version a node speaks, announced in its hello (`meta.push`). */
export const PUSH_VERSION = 0;

/** At most this many heads in a message: a single writer's document has one, rarely a few. */
export const MAX_PUSH_HEADS = 256;
/** At most this many changes in one push (a writer sends more in several pushes). */
export const MAX_PUSH_CHANGES = 4096;

export const PUSH_TYPES = new Set(['flt-push', 'flt-have']);

/**
 * The writer's changes since what the holder last said it had (none: "what do you have?"),
 * and the writer's heads once they are applied.
 */
export interface PushMessage {
  readonly type: 'flt-push';
  readonly senderId: string;
  readonly targetId: string;
  readonly documentId: string;
  readonly heads: readonly string[];
  readonly changes: readonly Uint8Array[];
}

/**
 * The holder's heads, all of them durable, in answer to a push; `covers`: whether it holds the
 * pushed heads (false: it refused the changes or still misses some of their dependencies).
 */
export interface HaveMessage {
  readonly type: 'flt-have';
  readonly senderId: string;
  readonly targetId: string;
  readonly documentId: string;
  readonly heads: readonly string[];
  readonly covers: boolean;
}

export type PushWireMessage = PushMessage | HaveMessage;

const HASH = /^[0-9a-f]{64}$/;
const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 128;

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `sync: ${what}`);
}

function heads(v: unknown, type: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_PUSH_HEADS) bad(`${type}: bad heads`);
  for (const h of v) if (typeof h !== 'string' || !HASH.test(h)) bad(`${type}: bad head`);
  return v as string[];
}

/** Validates a message whose `type` is one of PUSH_TYPES (senderId and targetId included). */
export function decodePushMessage(value: Record<string, unknown>): PushWireMessage {
  const { type } = value;
  if (!isId(value.senderId) || !isId(value.targetId)) bad(`${String(type)}: bad senderId/targetId`);
  if (!isId(value.documentId)) bad(`${String(type)}: bad documentId`);
  const base = {
    senderId: value.senderId,
    targetId: value.targetId,
    documentId: value.documentId,
  };
  if (type === 'flt-push') {
    const changes = value.changes;
    if (!Array.isArray(changes) || changes.length > MAX_PUSH_CHANGES) bad('flt-push: bad changes');
    for (const c of changes)
      if (!(c instanceof Uint8Array) || c.length === 0) bad('flt-push: bad change');
    return { type, ...base, heads: heads(value.heads, type), changes: changes as Uint8Array[] };
  }
  if (type === 'flt-have') {
    if (typeof value.covers !== 'boolean') bad('flt-have: bad covers');
    return { type, ...base, heads: heads(value.heads, type), covers: value.covers };
  }
  return bad(`unknown push message type ${String(type)}`);
}

/** Whether a decoded frame is a push message (by its type), before any other check. */
export function isPushMessage(value: unknown): value is Record<string, unknown> {
  return isRecord(value) && typeof value.type === 'string' && PUSH_TYPES.has(value.type);
}

/** What push needs of the sync session (SyncAdapter). */
export interface PushLink {
  /** Our node id (senderId of what we send). */
  readonly nodeId: NodeId;
  /** Sends a push message to its `targetId` if a session with it is open (else drops it). */
  sendPush(message: PushMessage | HaveMessage): void;
  /** Whether a session with `peer` is open and the peer speaks push. */
  speaksPush(peer: NodeId): boolean;
}

/** Where a node's push messages go (sync/push.ts: PushSender, PushReceiver). */
export interface PushHandler {
  /** A push message from `peer`; a rejection closes its connection (as a refused message). */
  receive(peer: NodeId, message: PushWireMessage): Promise<void> | void;
  /** A session with `peer`, which speaks push, opened (true) or ended (false). */
  session?(peer: NodeId, open: boolean): void;
}
