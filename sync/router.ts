// Routes incoming connections to protocol services by ALPN (the bindings have no Router).
// A service (service.ts) owns its connection; when it fails, only that connection closes, with a
// code the peer can see, and the process keeps serving everyone else. stop() closes every service.

import { codeOf, FltError, isProgrammingError, messageOf } from './errors.js';
import { shortId, type NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { protocolService, type ProtocolHandler, type Service } from './service.js';
import { CloseCode, type Connection, type Transport } from './transport.js';

export type { ProtocolHandler, Service };

/** Decides whether a peer may use a protocol at all, before any of its bytes are read. */
export type AccessCheck = (peer: NodeId, alpn: string) => boolean;

export interface RouterOptions {
  readonly logger?: Logger;
  /** Connections one peer may hold open at once (all ALPNs); protects against floods. */
  readonly maxConnectionsPerPeer?: number;
  readonly access?: AccessCheck;
}

export class Router {
  private readonly services = new Map<string, Service>();
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

  private stopping: Promise<void> | undefined;

  /** Registers the service for its ALPN. Call before `start()`; `stop()` closes it. */
  service(svc: Service): this {
    if (this.services.has(svc.alpn))
      throw new FltError('INTERNAL', `ALPN ${svc.alpn} routed twice`);
    this.services.set(svc.alpn, svc);
    return this;
  }

  /** Registers a bare per-connection handler for one ALPN, as a service of its own. */
  route(alpn: string, handler: ProtocolHandler): this {
    return this.service(protocolService(alpn, handler));
  }

  start(): void {
    this.transport.listen((conn) => this.dispatch(conn));
  }

  /**
   * Idempotent: closes every service (each refuses new connections and closes its live ones).
   * The transport stays open: it belongs to the caller.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const results = await Promise.allSettled([...this.services.values()].map((s) => s.close()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    })();
    return this.stopping;
  }

  private dispatch(conn: Connection): void {
    const svc = this.services.get(conn.alpn);
    const fields = { peer: shortId(conn.remoteId), alpn: conn.alpn };
    if (!svc) {
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
    void this.run(svc, conn, fields);
  }

  private async run(svc: Service, conn: Connection, fields: Record<string, string>) {
    try {
      await svc.serve(conn);
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

  /** How many connections `peer` has open to us now (for status displays and tests). */
  connectionsOf(peer: NodeId): number {
    return this.live.get(peer)?.size ?? 0;
  }

  /**
   * Closes every connection `peer` opened to us (a peer whose rights were just revoked); the
   * access check refuses its next ones. Connections we dialed are not tracked here.
   */
  disconnect(peer: NodeId, code: number = CloseCode.UNAUTHORIZED, reason = 'UNAUTHORIZED_PEER') {
    for (const conn of this.live.get(peer) ?? []) conn.close(code, reason);
  }
}
