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
import { CloseCode, type Connection, type PeerAddr, type Transport } from './transport.js';

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
   * closed (UNAUTHORIZED_PEER: code 2, anything else: protocol error). The fleet layer uses it
   * to accept changes to a single-writer document only from its writer.
   */
  readonly admit?: (peer: NodeId, message: Message) => void;
}

const CLOSE_FOR: Partial<Record<string, number>> = {
  SENDER_MISMATCH: CloseCode.SENDER_MISMATCH,
  UNAUTHORIZED_PEER: CloseCode.UNAUTHORIZED,
};

interface Session {
  readonly remote: NodeId;
  readonly conn: Connection;
  readonly framed: FramedStream;
  /** Date.now() when the session opened (liveness asks whether it predates a restart). */
  readonly openedAt: number;
}

/** A dial loop's state, for redial() and dialNow(). */
interface Dial {
  /** Aborted to cut the loop's current connect attempt or backoff sleep short. */
  kick: AbortController;
  /** When the connect attempt in flight began; undefined while a session runs or it sleeps. */
  attemptSince: number | undefined;
}

export class SyncAdapter extends NetworkAdapter {
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly sessions = new Map<NodeId, Session>();
  private readonly stop = new AbortController();
  private readonly pendingDials = new Set<NodeId>();
  private readonly dials = new Map<NodeId, Dial>();
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

  // Liveness (src/roles/liveness.ts). QUIC notices a dead peer only at its idle timeout (~30 s,
  // not configurable through the iroh binding), so a node that learns it otherwise (a failed
  // ping) tells the adapter here.

  /** When the open session with `peer` began (Date.now()), or undefined without one. */
  sessionOpenedAt(peer: NodeId): number | undefined {
    return this.sessions.get(peer)?.openedAt;
  }

  /**
   * Drops the session with `peer` (if any: its connection is presumed dead) and, if we dial
   * it, dials again at once rather than after a backoff step.
   */
  redial(peer: NodeId, reason: string): void {
    const session = this.sessions.get(peer);
    if (session) {
      this.log.info('dropping sync session', { peer: peer.slice(0, 10), reason });
      session.conn.close(CloseCode.NORMAL, reason);
    }
    this.dials.get(peer)?.kick.abort();
  }

  /**
   * Without a session to `peer`, dials it now: cuts a backoff sleep short, and gives up a connect
   * attempt begun before `staleBefore` (a Date.now() time). One begun while the peer was down
   * can wait seconds for QUIC to resend its first packet; a younger one is left to finish.
   */
  dialNow(peer: NodeId, staleBefore: number): void {
    const dial = this.dials.get(peer);
    if (!dial || this.sessions.has(peer)) return;
    if (dial.attemptSince === undefined || dial.attemptSince < staleBefore) dial.kick.abort();
  }

  private deadline() {
    return { timeoutMs: this.options.handshakeTimeoutMs ?? 10_000, signal: this.stop.signal };
  }

  private async dialLoop(addr: PeerAddr): Promise<void> {
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    const dial: Dial = { kick: new AbortController(), attemptSince: undefined };
    this.dials.set(addr.nodeId, dial);
    for (let attempt = 0; !this.stop.signal.aborted; ) {
      let opened = false;
      const cut = AbortSignal.any([this.stop.signal, dial.kick.signal]);
      try {
        dial.attemptSince = Date.now();
        const conn = await this.transport.connect(addr, ALPN.sync, {
          ...this.deadline(),
          signal: cut,
        });
        const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.sync]);
        opened = await this.runSession(conn, framed, 'dialer', () => {
          dial.attemptSince = undefined;
          this.dialSettled(addr.nodeId);
        });
      } catch (err) {
        this.log.debug('dial failed', {
          peer: addr.nodeId.slice(0, 10),
          code: codeOf(err),
          err: messageOf(err),
        });
      }
      dial.attemptSince = undefined;
      this.dialSettled(addr.nodeId);
      attempt = opened ? 0 : attempt + 1;
      if (!dial.kick.signal.aborted)
        await sleep(
          backoffDelay(policy, attempt),
          AbortSignal.any([this.stop.signal, dial.kick.signal]),
        );
      if (dial.kick.signal.aborted) {
        dial.kick = new AbortController(); // redial() or dialNow(): at once, from the first step
        attempt = 0;
      }
    }
    if (this.dials.get(addr.nodeId) === dial) this.dials.delete(addr.nodeId);
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
    const session: Session = { remote, conn, framed, openedAt: Date.now() };
    this.open(session, theirs.meta);
    onOpen?.();
    try {
      await this.pump(session);
    } catch (err) {
      const code = codeOf(err);
      const fields = { peer: remote, code, err: messageOf(err) };
      if (code === 'UNAUTHORIZED_PEER') this.log.warn('refused a sync message', fields);
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
      // the old one go before the new one comes, or it keeps stale sync state.
      this.sessions.delete(session.remote);
      old.conn.close(CloseCode.REPLACED, 'replaced by a newer connection');
      this.emit('peer-disconnected', { peerId: session.remote as string as PeerId });
    }
    this.sessions.set(session.remote, session);
    this.log.info('sync peer connected', { peer: session.remote.slice(0, 10) });
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
      this.options.admit?.(session.remote, msg);
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
