// Routes incoming connections to protocol handlers by ALPN (the bindings have no Router).
// A handler owns its connection; when it fails, only that connection closes, with a code the
// peer can see, and the process keeps serving everyone else.

import { codeOf, FltError, isProgrammingError, messageOf } from './errors.js';
import { shortId, type NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { CloseCode, type Connection, type Transport } from './transport.js';

export type ProtocolHandler = (conn: Connection) => Promise<void>;

/** Decides whether a peer may use a protocol at all, before any of its bytes are read. */
export type AccessCheck = (peer: NodeId, alpn: string) => boolean;

export interface RouterOptions {
  readonly logger?: Logger;
  /** Connections one peer may hold open at once (all ALPNs); protects against floods. */
  readonly maxConnectionsPerPeer?: number;
  readonly access?: AccessCheck;
}

export class Router {
  private readonly handlers = new Map<string, ProtocolHandler>();
  /** Open connections per peer (for the per-peer cap and for disconnect()). */
  private readonly live = new Map<NodeId, Set<Connection>>();
  private readonly log: Logger;
  private readonly maxPerPeer: number;

  constructor(
    readonly transport: Transport,
    private readonly options: RouterOptions = {},
  ) {
    this.log = options.logger ?? silentLogger;
    this.maxPerPeer = options.maxConnectionsPerPeer ?? 32;
  }

  /** Registers the handler for one ALPN. Call before `start()`. */
  route(alpn: string, handler: ProtocolHandler): this {
    if (this.handlers.has(alpn)) throw new FltError('INTERNAL', `ALPN ${alpn} routed twice`);
    this.handlers.set(alpn, handler);
    return this;
  }

  start(): void {
    this.transport.listen((conn) => this.dispatch(conn));
  }

  private dispatch(conn: Connection): void {
    const handler = this.handlers.get(conn.alpn);
    const fields = { peer: shortId(conn.remoteId), alpn: conn.alpn };
    if (!handler) {
      this.log.warn('refused connection: unknown protocol', fields);
      conn.close(CloseCode.PROTOCOL_ERROR, 'UNKNOWN_ALPN');
      return;
    }
    if (this.options.access && !this.options.access(conn.remoteId, conn.alpn)) {
      this.log.warn('refused connection: unauthorized peer', { ...fields, peer: conn.remoteId });
      conn.close(CloseCode.UNAUTHORIZED, 'UNAUTHORIZED_PEER');
      return;
    }
    const open = this.live.get(conn.remoteId) ?? new Set<Connection>();
    if (open.size >= this.maxPerPeer) {
      this.log.warn('refused connection: too many from this peer', fields);
      conn.close(CloseCode.LIMIT, 'too many connections');
      return;
    }
    open.add(conn);
    this.live.set(conn.remoteId, open);
    void this.run(handler, conn, fields);
  }

  private async run(handler: ProtocolHandler, conn: Connection, fields: Record<string, string>) {
    try {
      await handler(conn);
    } catch (err) {
      // A misbehaving peer loses its connection; a bug in our code is logged loudly.
      // Called as methods: a Logger may be a class that needs its `this`.
      const msg = `closing connection: ${messageOf(err)}`;
      const at = { ...fields, code: codeOf(err) };
      // The peer going away mid-read is how connections normally end: not worth a warning.
      if (codeOf(err) === 'CONNECTION_LOST') this.log.debug(msg, at);
      else if (isProgrammingError(err)) this.log.error(msg, at);
      else this.log.warn(msg, at);
      if (isProgrammingError(err) && err instanceof Error) this.log.error(err.stack ?? '');
      conn.close(CloseCode.PROTOCOL_ERROR, codeOf(err));
    } finally {
      const open = this.live.get(conn.remoteId);
      open?.delete(conn);
      if (open?.size === 0) this.live.delete(conn.remoteId);
    }
  }

  /**
   * Closes every connection `peer` opened to us (a peer whose rights were just revoked); the
   * access check refuses its next ones. Connections we dialed are not tracked here.
   */
  disconnect(peer: NodeId, code: number = CloseCode.UNAUTHORIZED, reason = 'UNAUTHORIZED_PEER') {
    for (const conn of this.live.get(peer) ?? []) conn.close(code, reason);
  }
}
