// A protocol served on incoming connections: one `Service` per ALPN, registered on the Router
// (router.ts), which hands it each connection that passed the access checks. `serveStreams` is the
// loop that stream-per-request protocols (echo.ts, rpc.ts) share; `ConnectionSet` gives a service
// its lifecycle: after close() it refuses new connections and has closed the live ones.

import { codeOf, FltError } from './errors.js';
import { FramedStream } from './framed-stream.js';
import { CloseCode, type Connection } from './transport.js';

/** Serves one protocol. The Router calls `serve` for each connection on `alpn`. */
export interface Service {
  readonly alpn: string;
  /**
   * Serves `conn` until it ends. A rejection closes that connection (with the error's code) and
   * nothing else; the Router logs it.
   */
  serve(conn: Connection): Promise<void>;
  /** Idempotent. Stops accepting connections, closes the live ones, waits until they are gone. */
  close(): Promise<void>;
}

/** Serves one connection (the older name for what a Service does; see `Router.route`). */
export type ProtocolHandler = (conn: Connection) => Promise<void>;

/** Serves one stream of `conn` until the peer finishes it; throws to close the connection. */
export type StreamHandler = (framed: FramedStream, conn: Connection) => Promise<void>;

export interface StreamLimits {
  /** Frame cap of the protocol (`MAX_FRAME` in protocols.ts). */
  readonly maxFrame: number;
  /** Streams served at once on one connection; further ones wait to be accepted. */
  readonly maxStreams?: number;
}

/**
 * Default for `StreamLimits.maxStreams`. Our clients open one stream per session (RpcClient,
 * EchoClient); 64 leaves room for many sessions on one connection while bounding what one peer
 * can make us hold (QUIC's own limit, 100 concurrent streams in iroh, is above it).
 */
export const MAX_STREAMS = 64;

/**
 * Accepts the streams the peer opens on `conn` and serves each with `handle`, up to
 * `maxStreams` at once, until the connection closes. A stream that fails closes the whole
 * connection at once (with the error's code), and the first failure is thrown at the end.
 */
export async function serveStreams(
  conn: Connection,
  handle: StreamHandler,
  limits: StreamLimits,
): Promise<void> {
  const maxStreams = limits.maxStreams ?? MAX_STREAMS;
  const live = new Set<Promise<void>>();
  let failure: Error | undefined;
  for (;;) {
    if (live.size >= maxStreams) await Promise.race(live); // entries never reject (caught below)
    const stream = await conn.acceptStream();
    if (!stream) break;
    // A bad stream closes the connection at once. Left for Promise.all below, its rejection
    // would go unhandled (a crash) and the peer's connection would stay open.
    const served: Promise<void> = handle(new FramedStream(stream, limits.maxFrame), conn).catch(
      (err: unknown) => {
        failure ??= err instanceof Error ? err : new FltError('INTERNAL', String(err));
        conn.close(CloseCode.PROTOCOL_ERROR, codeOf(err));
      },
    );
    live.add(served);
    void served.finally(() => live.delete(served));
  }
  await Promise.all(live);
  if (failure) throw failure;
}

/** The connections a service is serving, for its close(). */
export class ConnectionSet {
  private readonly live = new Map<Connection, Promise<void>>();
  private closing: Promise<void> | undefined;

  /** Connections being served now. */
  get size(): number {
    return this.live.size;
  }

  /** Serves `conn` with `fn`, or closes it at once (SHUTDOWN) once close() was called. */
  serve(conn: Connection, fn: ProtocolHandler): Promise<void> {
    if (this.closing) {
      conn.close(CloseCode.SHUTDOWN, 'shutdown');
      return Promise.resolve();
    }
    const served = fn(conn).finally(() => this.live.delete(conn));
    this.live.set(conn, served);
    return served;
  }

  /**
   * Idempotent: closes every live connection (SHUTDOWN) and waits until each is gone. It does
   * not wait for their handlers: one may be in a request with a long deadline, and it learns of
   * the closed connection at its next read or write.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const conns = [...this.live.keys()];
      for (const conn of conns) conn.close(CloseCode.SHUTDOWN, 'shutdown');
      await Promise.all(conns.map((conn) => conn.closed));
    })();
    return this.closing;
  }
}

/** A Service from a per-connection handler (what `Router.route` registers). */
export function protocolService(alpn: string, handler: ProtocolHandler): Service {
  const conns = new ConnectionSet();
  return {
    alpn,
    serve: (conn) => conns.serve(conn, handler),
    close: () => conns.close(),
  };
}
