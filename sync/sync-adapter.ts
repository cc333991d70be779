// automerge-repo NetworkAdapter over flt/sync/0. The peer id of a session is the iroh-
// authenticated node id of the connection; a hello or message claiming any other sender closes
// the connection. Peers in `dial` are kept connected with backoff; accepted connections come in
// through the Router. One connection per peer carries every document.

import { setMaxListeners } from 'node:events';
import {
  NetworkAdapter,
  type Message,
  type PeerId,
  type PeerMetadata,
} from '@automerge/automerge-repo';
import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.js';
import { decodeCbor, encodeCbor } from './codec.js';
import { withDeadline } from './deadline.js';
import { codeOf, FltError, messageOf } from './errors.js';
import { FramedStream } from './framed-stream.js';
import type { NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { ALPN, MAX_FRAME } from './protocols.js';
import { decodeHello, decodeRepoMessage, SYNC_VERSION, type Hello } from './sync-wire.js';
import {
  CloseCode,
  type CloseInfo,
  type Connection,
  type PeerAddr,
  type Transport,
} from './transport.js';

export interface SyncAdapterOptions {
  readonly transport: Transport;
  /** Peers this node keeps a connection to (agents and admins dial the coordinator). */
  readonly dial?: readonly PeerAddr[];
  readonly logger?: Logger;
  readonly backoff?: BackoffPolicy;
  /** Deadline for a dial and for the hello exchange. */
  readonly handshakeTimeoutMs?: number;
  /** Bytes queued for one peer that does not read before its connection is dropped. */
  readonly maxQueuedBytes?: number;
  /**
   * Checks every message from an authenticated peer before the Repo sees it. Throwing refuses
   * it: the message is dropped, the refusal logged with the peer's node id, and the connection
   * closed (UNAUTHORIZED_PEER: code 2, anything else: protocol error). Returning false drops
   * the message quietly and keeps the connection. The fleet layer uses it to accept changes to a
   * single-writer document only from its writer (and none from a forked one).
   */
  readonly admit?: (peer: NodeId, message: Message) => boolean | void;
  /** A peer's live session was replaced by a newer connection of the same node id. */
  readonly onReplaced?: (peer: NodeId) => void;
}

/**
 * Redials after our session was replaced by another connection with our node id (close code
 * REPLACED from the peer): another instance runs with our key. Backing off (1 s doubling to
 * 60 s, jittered) turns two clones' replacement loop (10 a second) into a few a minute, while
 * the coordinator flags the fork; a lone instance is never replaced while it is connected.
 */
export const REPLACED_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 60_000 };

/** How long to wait for a finished session's close reason (it comes with the connection's end). */
const CLOSE_INFO_MS = 2000;

const CLOSE_FOR: Partial<Record<string, number>> = {
  SENDER_MISMATCH: CloseCode.SENDER_MISMATCH,
  UNAUTHORIZED_PEER: CloseCode.UNAUTHORIZED,
};

interface Session {
  readonly remote: NodeId;
  readonly conn: Connection;
  readonly framed: FramedStream;
}

export class SyncAdapter extends NetworkAdapter {
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly sessions = new Map<NodeId, Session>();
  private readonly stop = new AbortController();
  private readonly pendingDials = new Set<NodeId>();
  /** addPeer() calls made before connect(). */
  private readonly laterDials: PeerAddr[] = [];
  private ready = false;
  private readyWaiters: (() => void)[] = [];

  constructor(private readonly options: SyncAdapterOptions) {
    super();
    this.transport = options.transport;
    this.log = options.logger ?? silentLogger;
    // Every handshake in flight listens on `stop`: many agents connecting at once is normal.
    setMaxListeners(0, this.stop.signal);
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Resolves once every initial dial has either connected or failed once (not "connected"). */
  whenReady(): Promise<void> {
    return this.ready
      ? Promise.resolve()
      : new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    if (peerId !== (this.transport.nodeId as string)) {
      throw new FltError('INTERNAL', 'the Repo peerId must be the node id of the transport');
    }
    this.peerId = peerId;
    this.peerMetadata = peerMetadata ?? {};
    const targets = [...(this.options.dial ?? []), ...this.laterDials.splice(0)];
    for (const t of targets) this.pendingDials.add(t.nodeId);
    this.settleIfDialed();
    for (const t of targets) void this.dialLoop(t);
  }

  /**
   * Dials one more peer at runtime and keeps it connected until disconnect(). Before the Repo
   * has connected us (it does so only once its storage id is read) there is no peer id to say
   * hello with, so the dial waits for connect().
   */
  addPeer(addr: PeerAddr): void {
    if (this.stop.signal.aborted) return;
    if (this.peerId) void this.dialLoop(addr);
    else this.laterDials.push(addr);
  }

  /** Router handler for incoming flt/sync/0 connections. */
  async accept(conn: Connection): Promise<void> {
    if (!this.peerId) throw new FltError('CLOSED', 'sync adapter not connected to a Repo');
    const stream = await withDeadline(conn.acceptStream(), this.deadline(), 'sync hello');
    if (!stream) return;
    await this.runSession(conn, new FramedStream(stream, MAX_FRAME[ALPN.sync]), 'acceptor');
  }

  send(message: Message): void {
    const session = this.sessions.get(message.targetId as string as NodeId);
    if (!session) {
      this.log.debug('dropping message for unconnected peer', {
        peer: message.targetId.slice(0, 10),
      });
      return;
    }
    const limit = this.options.maxQueuedBytes ?? 256 * 1024 * 1024;
    if (session.framed.queuedBytes > limit) {
      this.log.warn('peer does not read; dropping its connection', {
        peer: session.remote.slice(0, 10),
      });
      session.conn.close(CloseCode.LIMIT, 'send queue over limit');
      return;
    }
    try {
      session.framed.writeFrame(encodeCbor(message)).catch(() => undefined); // a lost peer is seen by its read loop
    } catch (err) {
      this.log.warn('cannot send message', { type: message.type, err: messageOf(err) });
    }
  }

  disconnect(): void {
    if (this.stop.signal.aborted) return;
    this.stop.abort();
    for (const s of this.sessions.values()) s.conn.close(CloseCode.SHUTDOWN, 'shutdown');
    this.markReady();
    this.emit('close');
  }

  /** Node ids with a live session (for status displays and tests). */
  connectedPeers(): NodeId[] {
    return [...this.sessions.keys()];
  }

  private deadline() {
    return { timeoutMs: this.options.handshakeTimeoutMs ?? 10_000, signal: this.stop.signal };
  }

  private async dialLoop(addr: PeerAddr): Promise<void> {
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    let replaced = 0;
    for (let attempt = 0; !this.stop.signal.aborted; ) {
      let opened = false;
      let ended: CloseInfo | undefined;
      try {
        const conn = await this.transport.connect(addr, ALPN.sync, this.deadline());
        const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.sync]);
        opened = await this.runSession(conn, framed, 'dialer', () => this.dialSettled(addr.nodeId));
        ended = await closeInfo(conn);
      } catch (err) {
        this.log.debug('dial failed', {
          peer: addr.nodeId.slice(0, 10),
          code: codeOf(err),
          err: messageOf(err),
        });
      }
      this.dialSettled(addr.nodeId);
      if (ended?.byPeer && ended.code === CloseCode.REPLACED) {
        const delay = backoffDelay(REPLACED_BACKOFF, replaced++);
        const say = replaced === 1 ? this.log.warn : this.log.debug;
        say(
          'another node with our node id connected and replaced our sync connection ' +
            '(is this state dir or machine image cloned?); redialing with backoff',
          { peer: addr.nodeId.slice(0, 10), times: replaced, retryMs: Math.round(delay) },
        );
        await sleep(delay, this.stop.signal);
        continue;
      }
      replaced = 0;
      // A session that ended in a refusal (ours or theirs) would end the same way at once.
      attempt = opened && !refusal(ended) ? 0 : attempt + 1;
      await sleep(backoffDelay(policy, attempt), this.stop.signal);
    }
  }

  /**
   * Exchanges hellos, announces the peer, and pumps its messages until the connection ends.
   * Returns whether the session got as far as being announced.
   */
  private async runSession(
    conn: Connection,
    framed: FramedStream,
    role: 'dialer' | 'acceptor',
    onOpen?: () => void,
  ): Promise<boolean> {
    const remote = conn.remoteId;
    let theirs: Hello;
    try {
      theirs = await this.handshake(framed, role);
    } catch (err) {
      conn.close(CloseCode.PROTOCOL_ERROR, codeOf(err));
      throw err;
    }
    if ((theirs.peerId as string) !== remote) {
      this.refuseImpostor(conn, theirs.peerId);
      return false;
    }
    if (role === 'acceptor') await this.sendHello(framed);
    const session: Session = { remote, conn, framed };
    this.open(session, theirs.meta);
    onOpen?.();
    try {
      await this.pump(session);
    } catch (err) {
      const code = codeOf(err);
      const fields = { peer: remote, code, err: messageOf(err) };
      if (code === 'UNAUTHORIZED_PEER') this.log.warn('refused a sync message', fields);
      else if (this.sessions.get(remote) !== session)
        this.log.debug('replaced sync connection closed', { ...fields, peer: remote.slice(0, 10) });
      else this.log.info('sync connection closed', { ...fields, peer: remote.slice(0, 10) });
      conn.close(CLOSE_FOR[code] ?? CloseCode.PROTOCOL_ERROR, code);
    } finally {
      this.close(session);
    }
    return true;
  }

  private sendHello(framed: FramedStream): Promise<void> {
    return framed.writeFrame(
      encodeCbor({ v: SYNC_VERSION, type: 'hello', peerId: this.peerId, meta: this.peerMetadata }),
    );
  }

  /** The dialer speaks first; the acceptor answers only after checking the dialer's hello. */
  private async handshake(framed: FramedStream, role: 'dialer' | 'acceptor'): Promise<Hello> {
    if (role === 'dialer') await this.sendHello(framed);
    const first = await withDeadline(framed.readFrame(), this.deadline(), 'sync hello');
    if (first === null) throw new FltError('CONNECTION_LOST', 'peer left before its hello');
    return decodeHello(decodeCbor(first));
  }

  private open(session: Session, meta: PeerMetadata): void {
    const old = this.sessions.get(session.remote);
    if (old) {
      // A peer that reconnects (restart, new path) replaces its old session; the Repo must see
      // the old one go before the new one comes, or it keeps stale sync state. Logged at debug:
      // two instances of one node do this on every redial (the owner of onReplaced says so once).
      this.sessions.delete(session.remote);
      old.conn.close(CloseCode.REPLACED, 'replaced by a newer connection');
      this.emit('peer-disconnected', { peerId: session.remote as string as PeerId });
      this.log.debug('sync peer reconnected, replacing its connection', {
        peer: session.remote.slice(0, 10),
      });
      this.options.onReplaced?.(session.remote);
    } else this.log.info('sync peer connected', { peer: session.remote.slice(0, 10) });
    this.sessions.set(session.remote, session);
    this.emit('peer-candidate', { peerId: session.remote as string as PeerId, peerMetadata: meta });
  }

  private close(session: Session): void {
    if (this.sessions.get(session.remote) !== session) return; // already replaced
    this.sessions.delete(session.remote);
    this.emit('peer-disconnected', { peerId: session.remote as string as PeerId });
  }

  private async pump(session: Session): Promise<void> {
    for (;;) {
      const frame = await session.framed.readFrame();
      if (frame === null) return;
      const msg = decodeRepoMessage(decodeCbor(frame));
      if (!msg) continue; // a newer automerge-repo message type: ignore, stay compatible
      if ((msg.senderId as string) !== session.remote) {
        throw new FltError('SENDER_MISMATCH', `message claims sender ${msg.senderId.slice(0, 10)}`);
      }
      if (msg.targetId !== this.peerId) continue; // not for us (we do not relay)
      if (this.options.admit?.(session.remote, msg) === false) continue;
      this.emit('message', msg);
    }
  }

  private refuseImpostor(conn: Connection, claimed: string): void {
    this.log.warn('refused sync peer: claimed sender differs from its node id', {
      peer: conn.remoteId.slice(0, 10),
      claimed: claimed.slice(0, 10),
    });
    conn.close(CloseCode.SENDER_MISMATCH, 'SENDER_MISMATCH');
  }

  private dialSettled(peer: NodeId): void {
    if (this.pendingDials.delete(peer)) this.settleIfDialed();
  }

  private settleIfDialed(): void {
    if (this.pendingDials.size === 0) this.markReady();
  }

  private markReady(): void {
    if (this.ready) return;
    this.ready = true;
    for (const w of this.readyWaiters.splice(0)) w();
  }
}

/** Why a finished session's connection closed, if it says so within CLOSE_INFO_MS. */
async function closeInfo(conn: Connection): Promise<CloseInfo | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), CLOSE_INFO_MS);
  });
  try {
    return await Promise.race([conn.closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A close that refused the session (either side), as opposed to a shutdown or a lost path. */
function refusal(info: CloseInfo | undefined): boolean {
  const code = info?.code;
  return code !== undefined && code !== CloseCode.NORMAL && code !== CloseCode.SHUTDOWN;
}
