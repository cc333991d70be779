// automerge-repo NetworkAdapter over flt/sync/0. The peer id of a session is the iroh-
// authenticated node id of the connection; a hello or message claiming any other sender closes
// the connection. Peers in `dial` are kept connected with backoff; accepted connections come in
// through the Router. One connection per peer carries every document. disconnect() ends a run
// (sessions, dials, handshakes); connect() starts a fresh one, so a Repo can reconnect.
// An acceptor may also carry another protocol's streams on its sessions' connections (carry(): a
// coordinator serves its agents' rpc there), so that a peer needs one connection, not two
// (issue 13: each QUIC connection costs the coordinator ~92 KiB).

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
import { shortId, type NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { ALPN, MAX_FRAME } from './protocols.js';
import { decodeHello, decodeRepoMessage, SYNC_VERSION, type Hello } from './sync-wire.js';
import { RPC_VERSION } from './rpc-wire.js';
import type { Service } from './service.js';
import {
  decodePushMessage,
  isPushMessage,
  PUSH_VERSION,
  type PushHandler,
  type PushLink,
  type PushWireMessage,
} from './push-wire.js';
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
  /** Deadline for the hello exchange, and for a dial unless `dialTimeoutMs` says otherwise. */
  readonly handshakeTimeoutMs?: number;
  /**
   * Deadline for a dial's connect alone, when it should differ from `handshakeTimeoutMs`. A dial
   * given up does not leave the peer's queue (the binding cannot cancel it: the peer still runs
   * the handshake, and we close what arrives), and the next one joins at the back: a peer that
   * takes longer than the deadline to accept, under a fan-in, then completes none. A node that
   * learns otherwise that the peer restarted (an agent's liveness pings: dialNow) can wait.
   */
  readonly dialTimeoutMs?: number;
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
  /**
   * Answers a message from an authenticated peer itself, before `admit` and instead of the Repo:
   * the reply returned is sent to the peer and the message goes no further. The fleet answers an
   * agent that is in sync about a document that is not loaded (sync/stored-heads.ts).
   */
  readonly answer?: (peer: NodeId, message: Message) => Message | undefined;
  /** A peer's live session was replaced by a newer connection of the same node id. */
  readonly onReplaced?: (peer: NodeId) => void;
  /**
   * Called for every outgoing message. A promise holds that message, and every later one to the
   * same peer (order is kept), until it resolves; if it rejects, the connection is closed (the
   * peer reconnects and syncs again). The node uses it to make its own changes durable before
   * any peer holds them (node.ts, `durableBeforeSend`).
   */
  readonly beforeSend?: (message: Message) => Promise<void> | undefined;
  /**
   * Speaks push (sync/push.ts): says so in its hello, and hands the push messages of peers that
   * say so too to `handler`. Without it, push messages are ignored, as by an older version.
   */
  readonly push?: PushHandler;
  /**
   * Whether the Repo keeps its sync state with `peer` in storage (default: every peer). For a
   * peer that does not (told to the Repo as ephemeral), each session starts from the heads the
   * two sides send: one more round trip for a document that changed, and no storage read or
   * write per document and session.
   */
  readonly keepsSyncState?: (peer: NodeId) => boolean;
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
  /** Date.now() when the session opened (liveness asks whether it predates a restart). */
  readonly openedAt: number;
  /** The last message held by `beforeSend` and not yet written; later ones queue behind it. */
  held: Promise<void> | undefined;
  /** Both ends speak push (sync/push.ts). */
  readonly push: boolean;
  /** We dialed, and the peer serves rpc on further streams of this connection (carry()). */
  readonly rpc: boolean;
}

/** A dial loop's state, for redial() and dialNow(). */
interface Dial {
  /** Aborted to cut the loop's current connect attempt or backoff sleep short. */
  kick: AbortController;
  /** When the connect attempt in flight began; undefined while a session runs or it sleeps. */
  attemptSince: number | undefined;
}

/** One connect() .. disconnect() span: everything started in it stops on its signal. */
interface Run {
  readonly stop: AbortController;
  /** Dials whenReady() waits for: every target known when the run started. */
  readonly pendingDials: Set<NodeId>;
  /** Targets with a dial loop in this run (one loop per peer). */
  readonly dials: Map<NodeId, Dial>;
}

interface ReadyWaiter {
  resolve(): void;
  reject(err: FltError): void;
}

export class SyncAdapter extends NetworkAdapter implements PushLink {
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly sessions = new Map<NodeId, Session>();
  /** Peers kept connected while connected: `dial` plus addPeer(); they outlive a disconnect(). */
  private readonly targets = new Map<NodeId, PeerAddr>();
  /** The current run; undefined before connect() and after disconnect(). */
  private run: Run | undefined;
  /** Why the last connect() was refused; whenReady() rejects with it until a good connect(). */
  private failure: FltError | undefined;
  private ready = false;
  private readyWaiters: ReadyWaiter[] = [];
  /** Serves the further streams of accepted sessions' connections (carry()). */
  private carried: Service | undefined;

  constructor(private readonly options: SyncAdapterOptions) {
    super();
    this.transport = options.transport;
    this.log = options.logger ?? silentLogger;
    for (const t of options.dial ?? []) this.targets.set(t.nodeId, t);
  }

  isReady(): boolean {
    return this.ready;
  }

  /**
   * Resolves once every dial of this run has either connected or failed once (not
   * "connected"). Rejects with BAD_ARGUMENT after connect() refused the Repo's peer id, so that
   * the Repo's find() fails with the reason instead of waiting for peers that never come.
   */
  whenReady(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /**
   * Starts a run: dials every target and accepts connections, until disconnect(). The Repo's
   * peer id must be the transport's node id (peers check each other by it); any other id
   * throws BAD_ARGUMENT, logged as an error, and makes whenReady() reject: automerge-repo
   * swallows an exception from connect() into a debug log, and the Repo would otherwise never
   * connect without a word. Connecting again while connected only updates the metadata.
   */
  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    if (peerId !== (this.transport.nodeId as string)) this.refusePeerId(peerId);
    this.failure = undefined;
    this.peerId = peerId;
    // Repo.networkSubsystem.reconnect() passes no metadata: keep the storage id we had.
    this.peerMetadata = peerMetadata ?? this.peerMetadata ?? {};
    if (this.run) return;
    const run: Run = {
      stop: new AbortController(),
      pendingDials: new Set(this.targets.keys()),
      dials: new Map(),
    };
    // Every handshake in flight listens on `stop`: many agents connecting at once is normal.
    setMaxListeners(0, run.stop.signal);
    this.run = run;
    this.ready = false;
    this.settleIfDialed(run);
    for (const peer of this.targets.keys()) this.startDialing(run, peer);
  }

  /**
   * Dials one more peer and keeps it connected while the adapter is connected (also after a
   * disconnect() and connect()). Before the Repo has connected us (it does so only once its
   * storage id is read) there is no peer id to say hello with, so the dial waits for connect().
   * A known peer gets the new address for its next dial.
   */
  addPeer(addr: PeerAddr): void {
    this.targets.set(addr.nodeId, addr);
    if (this.run) this.startDialing(this.run, addr.nodeId);
  }

  /**
   * From now on, every further stream a peer opens on the connection of a session it dialed goes
   * to `service` (an RpcServer: flt/rpc/0 streams, whose access rules it checks per call), and
   * our hello says so (`meta.rpc`), so that the peer can call us there instead of on a
   * connection of its own. Only peers allowed to sync get a session, so nobody gains access.
   */
  carry(service: Service): void {
    this.carried = service;
  }

  /**
   * The connection of our session with `peer` when we dialed it and it carries rpc there (its
   * hello said so): RpcChannel's `via`. Undefined without such a session.
   */
  rpcConnection(peer: NodeId): Connection | undefined {
    const session = this.sessions.get(peer);
    return session?.rpc === true ? session.conn : undefined;
  }

  /** Router handler for incoming flt/sync/0 connections. */
  async accept(conn: Connection): Promise<void> {
    const run = this.run;
    if (!run) {
      // Not connected (before the Repo's connect(), after disconnect()): the dialer retries.
      this.log.debug('refused sync connection: not connected', {
        peer: shortId(conn.remoteId),
      });
      conn.close(CloseCode.SHUTDOWN, 'not connected');
      return;
    }
    try {
      const stream = await withDeadline(conn.acceptStream(), this.deadline(run), 'sync hello');
      if (!stream) return;
      const framed = new FramedStream(stream, MAX_FRAME[ALPN.sync]);
      await this.runSession(run, conn, framed, 'acceptor');
    } catch (err) {
      // Our own disconnect() cut the handshake short: the peer did nothing wrong.
      if (!run.stop.signal.aborted) throw err;
      conn.close(CloseCode.SHUTDOWN, 'shutdown');
    }
  }

  send(message: Message): void {
    const session = this.sessions.get(message.targetId as string as NodeId);
    if (!session) {
      this.log.debug('dropping message for unconnected peer', {
        peer: shortId(message.targetId),
      });
      return;
    }
    if (this.overLimit(session)) return;
    const gate = this.options.beforeSend?.(message);
    if (gate === undefined && session.held === undefined) return this.write(session, message);
    const held = Promise.all([session.held, gate]).then(
      () => this.write(session, message),
      (err: unknown) => {
        this.log.warn('cannot send: the message is held and its gate failed; reconnecting', {
          peer: shortId(session.remote),
          err: messageOf(err),
        });
        session.conn.close(CloseCode.SHUTDOWN, 'cannot make changes durable');
      },
    );
    session.held = held;
    void held.finally(() => {
      if (session.held === held) session.held = undefined;
    });
  }

  get nodeId(): NodeId {
    return this.transport.nodeId;
  }

  /** Whether a session with `peer` is open and both ends speak push. */
  speaksPush(peer: NodeId): boolean {
    return this.sessions.get(peer)?.push === true;
  }

  /** Sends a push message (sync/push.ts) if a session that speaks push is open with its target. */
  sendPush(message: PushWireMessage): void {
    const session = this.sessions.get(message.targetId as NodeId);
    if (session?.push !== true || this.overLimit(session)) return;
    this.write(session, message);
  }

  /** Whether `session`'s peer does not read: then its connection is dropped (and true). */
  private overLimit(session: Session): boolean {
    const limit = this.options.maxQueuedBytes ?? 256 * 1024 * 1024;
    if (session.framed.queuedBytes <= limit) return false;
    this.log.warn('peer does not read; dropping its connection', {
      peer: shortId(session.remote),
    });
    session.conn.close(CloseCode.LIMIT, 'send queue over limit');
    return true;
  }

  private write(session: Session, message: Message | PushWireMessage): void {
    try {
      session.framed.writeFrame(encodeCbor(message)).catch(() => undefined); // a lost peer is seen by its read loop
    } catch (err) {
      this.log.warn('cannot send message', { type: message.type, err: messageOf(err) });
    }
  }

  /**
   * Ends the run: stops dialing, closes every connection and reports each peer gone at once
   * (nothing is sent after this returns). Idempotent. connect() starts again; the adapter
   * never emits `close`, which would unregister it from the Repo for good.
   */
  disconnect(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    run.stop.abort();
    for (const s of [...this.sessions.values()]) {
      s.conn.close(CloseCode.SHUTDOWN, 'shutdown');
      this.close(s);
    }
    this.markReady();
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
   * Packets the session with `peer` has taken in so far (QUIC's keep-alives and acknowledgements
   * included: Connection.packets), or undefined without a session or where the transport cannot
   * tell. A count that grows says the peer's process is there: a restarted peer cannot answer on
   * its predecessor's connection.
   */
  received(peer: NodeId): number | undefined {
    return this.sessions.get(peer)?.conn.packets?.()?.received;
  }

  /**
   * Drops the session with `peer` (if any: its connection is presumed dead) and, if we dial
   * it, dials again at once rather than after a backoff step.
   */
  redial(peer: NodeId, reason: string): void {
    const session = this.sessions.get(peer);
    if (session) {
      this.log.info('dropping sync session', { peer: shortId(peer), reason });
      session.conn.close(CloseCode.NORMAL, reason);
    }
    this.run?.dials.get(peer)?.kick.abort();
  }

  /**
   * Without a session to `peer`, dials it now: cuts a backoff sleep short, and gives up a connect
   * attempt begun before `staleBefore` (a Date.now() time). One begun while the peer was down
   * can wait seconds for QUIC to resend its first packet; a younger one is left to finish.
   */
  dialNow(peer: NodeId, staleBefore: number): void {
    const dial = this.run?.dials.get(peer);
    if (!dial || this.sessions.has(peer)) return;
    if (dial.attemptSince === undefined || dial.attemptSince < staleBefore) dial.kick.abort();
  }

  private deadline(run: Run) {
    return { timeoutMs: this.options.handshakeTimeoutMs ?? 10_000, signal: run.stop.signal };
  }

  private refusePeerId(peerId: PeerId): never {
    const err = new FltError(
      'BAD_ARGUMENT',
      `the Repo's peer id ${JSON.stringify(peerId.slice(0, 80))} is not this node's id ` +
        `${this.transport.nodeId}: flt peers know each other by node id, so create the Repo ` +
        `with peerId set to the transport's nodeId`,
    );
    this.log.error('sync adapter refused to connect', { code: err.code, err: err.message });
    if (!this.run) {
      this.failure = err;
      for (const w of this.readyWaiters.splice(0)) w.reject(err);
    }
    throw err;
  }

  private startDialing(run: Run, peer: NodeId): void {
    if (run.dials.has(peer)) return;
    const dial: Dial = { kick: new AbortController(), attemptSince: undefined };
    run.dials.set(peer, dial);
    void this.dialLoop(run, peer, dial).finally(() => run.dials.delete(peer));
  }

  /**
   * Keeps one target connected for as long as the run lasts; reads its address each attempt.
   * redial()/dialNow() abort `dial.kick` to cut a connect attempt or a backoff sleep short.
   */
  private async dialLoop(run: Run, peer: NodeId, dial: Dial): Promise<void> {
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    let replaced = 0;
    for (let attempt = 0; !run.stop.signal.aborted; ) {
      const addr = this.targets.get(peer);
      if (!addr) return;
      let opened = false;
      let ended: CloseInfo | undefined;
      try {
        dial.attemptSince = Date.now();
        const signal = AbortSignal.any([run.stop.signal, dial.kick.signal]);
        const conn = await this.transport.connect(addr, ALPN.sync, {
          timeoutMs: this.options.dialTimeoutMs ?? this.deadline(run).timeoutMs,
          signal,
        });
        const framed = new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.sync]);
        opened = await this.runSession(run, conn, framed, 'dialer', () => {
          dial.attemptSince = undefined;
          this.dialSettled(run, peer);
        });
        // redial() closed it on purpose: no need to learn why it ended.
        if (!dial.kick.signal.aborted) ended = await closeInfo(conn);
      } catch (err) {
        this.log.debug('dial failed', {
          peer: shortId(peer),
          code: codeOf(err),
          err: messageOf(err),
        });
      }
      dial.attemptSince = undefined;
      this.dialSettled(run, peer);
      if (ended?.byPeer && ended.code === CloseCode.REPLACED) {
        // Not cut short by dialNow(): the liveness pings of a clone are answered all along.
        await this.replacedPause(peer, replaced++, run.stop.signal);
        dial.kick = new AbortController();
        continue;
      }
      replaced = 0;
      // A session that ended in a refusal (ours or theirs) would end the same way at once.
      attempt = opened && !refusal(ended) ? 0 : attempt + 1;
      if (!dial.kick.signal.aborted)
        await sleep(
          backoffDelay(policy, attempt),
          AbortSignal.any([run.stop.signal, dial.kick.signal]),
        );
      if (dial.kick.signal.aborted) {
        dial.kick = new AbortController(); // redial() or dialNow(): at once, from the first step
        attempt = 0;
      }
    }
  }

  private async replacedPause(peer: NodeId, times: number, signal: AbortSignal): Promise<void> {
    const delay = backoffDelay(REPLACED_BACKOFF, times);
    (times === 0 ? this.log.warn : this.log.debug)(
      'another node with our node id connected and replaced our sync connection ' +
        '(is this state dir or machine image cloned?); redialing with backoff',
      { peer: shortId(peer), times: times + 1, retryMs: Math.round(delay) },
    );
    await sleep(delay, signal);
  }

  /**
   * Exchanges hellos, announces the peer, and pumps its messages until the connection ends.
   * Returns whether the session got as far as being announced.
   */
  private async runSession(
    run: Run,
    conn: Connection,
    framed: FramedStream,
    role: 'dialer' | 'acceptor',
    onOpen?: () => void,
  ): Promise<boolean> {
    const remote = conn.remoteId;
    let theirs: Hello;
    try {
      theirs = await this.handshake(run, framed, role);
    } catch (err) {
      const stopped = run.stop.signal.aborted;
      conn.close(stopped ? CloseCode.SHUTDOWN : CloseCode.PROTOCOL_ERROR, codeOf(err));
      throw err;
    }
    if ((theirs.peerId as string) !== remote) {
      this.refuseImpostor(conn, theirs.peerId);
      return false;
    }
    if (role === 'acceptor') await this.sendHello(framed, true);
    if (run.stop.signal.aborted) {
      // disconnect() came during the handshake: this session belongs to a run that is over.
      conn.close(CloseCode.SHUTDOWN, 'shutdown');
      return false;
    }
    const push = this.options.push !== undefined && theirs.push === PUSH_VERSION;
    const rpc = role === 'dialer' && theirs.rpc === RPC_VERSION;
    const session: Session = {
      remote,
      conn,
      framed,
      openedAt: Date.now(),
      held: undefined,
      push,
      rpc,
    };
    this.open(session, theirs.meta);
    onOpen?.();
    if (role === 'acceptor' && this.carried) this.serveCarried(this.carried, conn);
    try {
      await this.pump(session);
    } catch (err) {
      const code = codeOf(err);
      const fields = { peer: remote, code, err: messageOf(err) };
      if (code === 'UNAUTHORIZED_PEER') this.log.warn('refused a sync message', fields);
      else if (this.sessions.get(remote) !== session)
        this.log.debug('replaced sync connection closed', { ...fields, peer: shortId(remote) });
      else if (!run.stop.signal.aborted)
        this.log.info('sync connection closed', { ...fields, peer: shortId(remote) });
      conn.close(CLOSE_FOR[code] ?? CloseCode.PROTOCOL_ERROR, code);
    } finally {
      this.close(session);
    }
    return true;
  }

  /** Serves the carried protocol on `conn`'s further streams; its failure closes `conn`. */
  private serveCarried(service: Service, conn: Connection): void {
    service.serve(conn).catch((err: unknown) => {
      const code = codeOf(err);
      const fields = { peer: shortId(conn.remoteId), code, err: messageOf(err) };
      if (code === 'CONNECTION_LOST') this.log.debug('carried streams ended', fields);
      else this.log.warn('closing sync connection: a carried stream failed', fields);
      conn.close(CloseCode.PROTOCOL_ERROR, code);
    });
  }

  /** The dialer's hello, or the acceptor's (`carries`: says what carry() serves). */
  private sendHello(framed: FramedStream, carries = false): Promise<void> {
    const push = this.options.push ? { push: PUSH_VERSION } : {};
    const rpc = carries && this.carried ? { rpc: RPC_VERSION } : {};
    return framed.writeFrame(
      encodeCbor({
        v: SYNC_VERSION,
        type: 'hello',
        peerId: this.peerId,
        meta: { ...this.peerMetadata, ...push, ...rpc },
      }),
    );
  }

  /** The dialer speaks first; the acceptor answers only after checking the dialer's hello. */
  private async handshake(
    run: Run,
    framed: FramedStream,
    role: 'dialer' | 'acceptor',
  ): Promise<Hello> {
    if (role === 'dialer') await this.sendHello(framed);
    const first = await withDeadline(framed.readFrame(), this.deadline(run), 'sync hello');
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
        peer: shortId(session.remote),
      });
      this.options.onReplaced?.(session.remote);
    } else this.log.info('sync peer connected', { peer: shortId(session.remote) });
    if (old?.push) this.options.push?.session?.(session.remote, false);
    this.sessions.set(session.remote, session);
    const peerMetadata =
      this.options.keepsSyncState?.(session.remote) === false
        ? { ...meta, isEphemeral: true }
        : meta;
    this.emit('peer-candidate', { peerId: session.remote as string as PeerId, peerMetadata });
    if (session.push) this.options.push?.session?.(session.remote, true);
  }

  private close(session: Session): void {
    if (this.sessions.get(session.remote) !== session) return; // already replaced
    this.sessions.delete(session.remote);
    this.emit('peer-disconnected', { peerId: session.remote as string as PeerId });
    if (session.push) this.options.push?.session?.(session.remote, false);
  }

  private async pump(session: Session): Promise<void> {
    for (;;) {
      const frame = await session.framed.readFrame();
      if (frame === null) return;
      const value = decodeCbor(frame);
      if (isPushMessage(value)) {
        if (session.push) this.receivePush(session, decodePushMessage(value));
        continue; // a peer that did not say it speaks push: ignored, as by an older version
      }
      const msg = decodeRepoMessage(value);
      if (!msg) continue; // a newer automerge-repo message type: ignore, stay compatible
      if ((msg.senderId as string) !== session.remote) {
        throw new FltError('SENDER_MISMATCH', `message claims sender ${shortId(msg.senderId)}`);
      }
      if (msg.targetId !== this.peerId) continue; // not for us (we do not relay)
      const reply = this.options.answer?.(session.remote, msg);
      if (reply !== undefined) {
        this.send(reply);
        continue;
      }
      if (this.options.admit?.(session.remote, msg) === false) continue;
      this.emit('message', msg);
    }
  }

  /**
   * Hands a push message on, without waiting for it: a push being applied (a document loading)
   * holds up neither this peer's other documents nor its other messages (the handler keeps one
   * document's pushes in order). A refusal, sync or not, closes the connection as in pump().
   */
  private receivePush(session: Session, message: PushWireMessage): void {
    if (message.senderId !== session.remote)
      throw new FltError('SENDER_MISMATCH', `message claims sender ${shortId(message.senderId)}`);
    if (message.targetId !== this.peerId) return;
    const fail = (err: unknown) => {
      const code = codeOf(err);
      const fields = { peer: session.remote, code, err: messageOf(err) };
      if (code === 'UNAUTHORIZED_PEER') this.log.warn('refused a push message', fields);
      else this.log.info('push message refused; closing the connection', fields);
      session.conn.close(CLOSE_FOR[code] ?? CloseCode.PROTOCOL_ERROR, code);
    };
    try {
      void Promise.resolve(this.options.push?.receive(session.remote, message)).catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  private refuseImpostor(conn: Connection, claimed: string): void {
    this.log.warn('refused sync peer: claimed sender differs from its node id', {
      peer: shortId(conn.remoteId),
      claimed: shortId(claimed),
    });
    conn.close(CloseCode.SENDER_MISMATCH, 'SENDER_MISMATCH');
  }

  private dialSettled(run: Run, peer: NodeId): void {
    if (run.pendingDials.delete(peer)) this.settleIfDialed(run);
  }

  private settleIfDialed(run: Run): void {
    if (run === this.run && run.pendingDials.size === 0) this.markReady();
  }

  private markReady(): void {
    if (this.ready) return;
    this.ready = true;
    for (const w of this.readyWaiters.splice(0)) w.resolve();
  }
}

/** Why a finished session's connection closed, if it says so within CLOSE_INFO_MS. */
function closeInfo(conn: Connection): Promise<CloseInfo | undefined> {
  return withDeadline(conn.closed, { timeoutMs: CLOSE_INFO_MS }, 'close reason').catch(
    () => undefined,
  );
}

/** A close that refused the session (either side), as opposed to a shutdown or a lost path. */
function refusal(info: CloseInfo | undefined): boolean {
  const code = info?.code;
  return code !== undefined && code !== CloseCode.NORMAL && code !== CloseCode.SHUTDOWN;
}
