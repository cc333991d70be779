// Codec of flt/sync/0 frames: a hello that opens the session, then automerge-repo messages as
// CBOR maps (the shape automerge-repo's own adapters send). Every field is checked here; a
// frame that fails is a protocol error and costs the peer its connection.

import type { Message, PeerId, PeerMetadata, StorageId } from '@automerge/automerge-repo';
import { checkVersion, isRecord } from './codec.js';
import { FltError } from './errors.js';

export const SYNC_VERSION = 0;

export interface Hello {
  readonly v: typeof SYNC_VERSION;
  readonly type: 'hello';
  readonly peerId: PeerId;
  readonly meta: PeerMetadata;
  /** The push version the peer speaks (sync/push.ts), if any. */
  readonly push?: number;
  /**
   * The rpc version the acceptor serves on further streams of this connection (SyncAdapter.carry),
   * if it does: the dialer may then call it there instead of on a connection of its own.
   */
  readonly rpc?: number;
}

/** Message types automerge-repo 2.x sends between peers. */
const KNOWN_TYPES = new Set([
  'sync',
  'request',
  'doc-unavailable',
  'ephemeral',
  'remote-subscription-change',
  'remote-heads-changed',
]);

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `sync: ${what}`);
}

const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 128;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isIdList = (v: unknown) =>
  v === undefined || (Array.isArray(v) && v.length <= 1024 && v.every(isId));

export function decodeHello(value: unknown): Hello {
  if (!isRecord(value) || value.type !== 'hello') bad('expected hello');
  checkVersion(value, SYNC_VERSION, 'sync hello');
  if (!isId(value.peerId)) bad('hello: bad peerId');
  const meta = value.meta;
  if (!isRecord(meta)) bad('hello: bad meta');
  if (meta.storageId !== undefined && !isId(meta.storageId)) bad('hello: bad storageId');
  if (meta.isEphemeral !== undefined && typeof meta.isEphemeral !== 'boolean')
    bad('hello: bad isEphemeral');
  const peerMeta: PeerMetadata = {};
  if (meta.storageId !== undefined) peerMeta.storageId = meta.storageId as StorageId;
  if (meta.isEphemeral !== undefined) peerMeta.isEphemeral = meta.isEphemeral;
  if (meta.push !== undefined && !Number.isSafeInteger(meta.push)) bad('hello: bad push');
  if (meta.rpc !== undefined && !Number.isSafeInteger(meta.rpc)) bad('hello: bad rpc');
  return {
    v: SYNC_VERSION,
    type: 'hello',
    peerId: value.peerId as PeerId,
    meta: peerMeta,
    ...(meta.push === undefined ? {} : { push: meta.push as number }),
    ...(meta.rpc === undefined ? {} : { rpc: meta.rpc as number }),
  };
}

/** Validates one repo message; returns undefined for a well-formed message of an unknown type. */
export function decodeRepoMessage(value: unknown): Message | undefined {
  if (!isRecord(value)) bad('message is not a map');
  const { type } = value;
  if (typeof type !== 'string') bad('message without type');
  if (!isId(value.senderId) || !isId(value.targetId)) bad(`${type}: bad senderId/targetId`);
  if (!KNOWN_TYPES.has(type)) return undefined;
  if (type !== 'remote-subscription-change' && !isId(value.documentId))
    bad(`${type}: bad documentId`);
  switch (type) {
    case 'sync':
    case 'request':
      if (!isBytes(value.data)) bad(`${type}: data is not bytes`);
      break;
    case 'ephemeral':
      if (!isBytes(value.data) || !Number.isSafeInteger(value.count) || !isId(value.sessionId))
        bad('ephemeral: bad fields');
      break;
    case 'remote-subscription-change':
      if (!isIdList(value.add) || !isIdList(value.remove))
        bad('remote-subscription-change: bad lists');
      break;
    case 'remote-heads-changed':
      if (!isHeadsMap(value.newHeads)) bad('remote-heads-changed: bad newHeads');
      break;
  }
  return value as unknown as Message;
}

function isHeadsMap(v: unknown): boolean {
  if (!isRecord(v)) return false;
  const entries = Object.entries(v);
  return (
    entries.length <= 1024 &&
    entries.every(
      ([k, e]) =>
        isId(k) &&
        isRecord(e) &&
        typeof e.timestamp === 'number' &&
        Array.isArray(e.heads) &&
        e.heads.length <= 1024 &&
        e.heads.every(isId),
    )
  );
}
