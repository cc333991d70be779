// flt/rpc/0: typed request/response. A client opens one stream per connection and multiplexes
// requests over it by id, so many calls are in flight at once. Each request carries its
// deadline; errors come back as stable codes. Methods (enroll, submit, query) live in src/.
// Who may call what is declared on each method (`allow`) and checked here, before the request
// body is even validated; what the roles are is the server's owner's business (`RpcAccess`).
// Wire grammar: sync/PROTOCOL.md.

import { withDeadline } from './deadline.js';
import { FltError, isErrorCode, isProgrammingError, messageOf } from './errors.js';
import { FramedStream } from './framed-stream.js';
import { decodeCbor, encodeCbor } from './codec.js';
import type { NodeId } from './ids.js';
import { silentLogger, type Logger } from './log.js';
import { ALPN, MAX_FRAME } from './protocols.js';
import { ConnectionSet, serveStreams, type Service } from './service.js';
import type { Connection } from './transport.js';
import { decodeEnvelope, type Envelope } from './rpc-wire.js';
import { ANYONE, allows, type RpcMethod } from './rpc-method.js';

export { ANYONE, allows, type RpcMethod };

export interface RpcContext {
  readonly peer: NodeId;
  /** Aborted at the caller's deadline or when the connection goes. */
  readonly signal: AbortSignal;
}

type Handler = (req: unknown, ctx: RpcContext) => Promise<unknown>;

/** The server owner's view of its peers: their role now, and the error a refused call gets. */
export interface RpcAccess {
  roleOf(peer: NodeId): string;
  refuse(peer: NodeId, role: string, method: RpcMethod<unknown, unknown>): FltError;
}

/** Without an owner's access: every peer has the role `peer`. */
const PEERS: RpcAccess = {
  roleOf: () => 'peer',
  refuse: (peer, role, method) =>
    new FltError('UNAUTHORIZED_PEER', `${peer} (${role}) may not call ${method.name}`),
};

/** Requests one connection may have running at once; more get BUSY. */
export const MAX_IN_FLIGHT = 128;
/** Deadlines are capped so a peer cannot pin a handler forever. */
export const MAX_DEADLINE_MS = 10 * 60_000;

export class RpcServer implements Service {
  readonly alpn = ALPN.rpc;
  private readonly conns = new ConnectionSet();
  private readonly handlers = new Map<
    string,
    { method: RpcMethod<unknown, unknown>; fn: Handler }
  >();

  readonly access: RpcAccess;
  private readonly log: Logger;

  constructor(opts: { access?: RpcAccess; log?: Logger } = {}) {
    this.access = opts.access ?? PEERS;
    this.log = opts.log ?? silentLogger;
  }

  /**
   * Serves `method` with `fn` (replacing an earlier handler of the same name). A method that
   * allows nobody is a programming error, thrown here so that it never starts serving.
   */
  register<Req, Res>(
    method: RpcMethod<Req, Res>,
    fn: (req: Req, ctx: RpcContext) => Promise<Res>,
  ): this {
    if (!Array.isArray(method.allow) || method.allow.length === 0)
      throw new TypeError(`rpc method ${method.name} declares no caller (allow)`);
    this.handlers.set(method.name, { method, fn: fn as Handler });
    return this;
  }

  /** The registered methods, in registration order. */
  methods(): RpcMethod<unknown, unknown>[] {
    return [...this.handlers.values()].map((e) => e.method);
  }

  /** Serves every stream the peer opens on `conn` until it closes. */
  serve(conn: Connection): Promise<void> {
    return this.conns.serve(conn, (c) =>
      serveStreams(c, (framed) => this.serveStream(c.remoteId, framed), {
        maxFrame: MAX_FRAME[ALPN.rpc],
      }),
    );
  }

  /** Idempotent: refuses further connections, closes the live ones (SHUTDOWN). */
  close(): Promise<void> {
    return this.conns.close();
  }

  private async serveStream(peer: NodeId, framed: FramedStream): Promise<void> {
    const running = new Map<AbortController, Promise<void>>();
    try {
      for (;;) {
        const frame = await framed.readFrame();
        if (frame === null) break;
        const env = decodeEnvelope(decodeCbor(frame));
        if (env.t !== 'req') throw new FltError('BAD_MESSAGE', 'rpc server got a response');
        if (running.size >= MAX_IN_FLIGHT) {
          const busy = errorFrame(env.id, 'BUSY', `over ${MAX_IN_FLIGHT} requests in flight`);
          void framed.writeFrame(busy).catch(() => undefined);
          continue;
        }
        const ac = new AbortController();
        running.set(
          ac,
          this.handle(peer, framed, env, ac).finally(() => running.delete(ac)),
        );
      }
      await Promise.all(running.values()); // answer what was asked before the peer finished
      await framed.finish();
    } finally {
      for (const ac of running.keys()) ac.abort();
    }
  }

  private async handle(
    peer: NodeId,
    framed: FramedStream,
    env: Envelope & { t: 'req' },
    ac: AbortController,
  ) {
    let reply: Uint8Array;
    try {
      const entry = this.handlers.get(env.m);
      if (!entry) throw new FltError('RPC_UNKNOWN_METHOD', `unknown method ${env.m}`);
      const role = this.access.roleOf(peer);
      if (!allows(entry.method, role)) throw this.access.refuse(peer, role, entry.method);
      const req = entry.method.request(env.b);
      const timeoutMs = Math.min(env.ms, MAX_DEADLINE_MS);
      const res = await withDeadline(
        entry.fn(req, { peer, signal: ac.signal }),
        { timeoutMs },
        env.m,
      );
      reply = encodeCbor({ v: 0, t: 'res', id: env.id, b: entry.method.response(res) });
    } catch (err) {
      ac.abort();
      if (isProgrammingError(err))
        this.log.error(`rpc ${env.m} crashed: ${messageOf(err)}`, { stack: (err as Error).stack });
      reply =
        err instanceof FltError
          ? errorFrame(env.id, err.code, err.message)
          : errorFrame(env.id, 'INTERNAL', 'internal error');
    }
    await framed.writeFrame(reply).catch(() => undefined); // the peer may be gone; nothing to do
  }
}

function errorFrame(id: number, code: string, msg: string): Uint8Array {
  return encodeCbor({ v: 0, t: 'err', id, code, msg: msg.slice(0, 1000) });
}

interface Call {
  readonly method: RpcMethod<unknown, unknown>;
  readonly resolve: (v: unknown) => void;
  readonly reject: (err: unknown) => void;
}

export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Client side of one connection: any number of concurrent calls over one stream. */
export class RpcClient {
  private nextId = 1;
  private readonly calls = new Map<number, Call>();
  private failure: FltError | undefined;

  private constructor(
    private readonly framed: FramedStream,
    readonly conn: Connection,
    private readonly defaultTimeoutMs: number,
  ) {
    void this.readLoop();
  }

  static async open(conn: Connection, defaultTimeoutMs = 10_000): Promise<RpcClient> {
    return new RpcClient(
      new FramedStream(await conn.openStream(), MAX_FRAME[ALPN.rpc]),
      conn,
      defaultTimeoutMs,
    );
  }

  async call<Req, Res>(
    method: RpcMethod<Req, Res>,
    req: Req,
    options: CallOptions = {},
  ): Promise<Res> {
    if (this.failure) throw this.failure;
    // Checked before sending: a call aborted up front must not run on the server at all.
    if (options.signal?.aborted)
      throw new FltError('ABORTED', `${method.name}: aborted before it was sent`);
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffff_ffff) + 1;
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const answer = new Promise<unknown>((resolve, reject) => {
      this.calls.set(id, { method: method, resolve, reject });
    });
    // The read loop may reject `answer` while the write below is still pending, or the write may
    // fail and leave `answer` unawaited: either way that rejection must not go unhandled.
    answer.catch(() => undefined);
    // The deadline covers the write too: on a connection whose peer died without closing, a
    // write can wait for QUIC's idle timeout (~30 s), and a liveness ping must fail in time.
    const exchange = this.framed
      .writeFrame(encodeCbor({ v: 0, t: 'req', id, m: method.name, ms: timeoutMs, b: req }))
      .then(() => answer);
    exchange.catch(() => undefined);
    try {
      return (await withDeadline(
        exchange,
        { timeoutMs, signal: options.signal },
        method.name,
      )) as Res;
    } finally {
      this.calls.delete(id);
    }
  }

  /** Ends our side; the connection itself belongs to the caller. */
  async close(): Promise<void> {
    await this.framed.finish().catch(() => undefined);
  }

  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.framed.readFrame();
        if (frame === null) throw new FltError('CONNECTION_LOST', 'rpc stream ended');
        this.settle(decodeEnvelope(decodeCbor(frame)));
      }
    } catch (err) {
      this.failure =
        err instanceof FltError
          ? err
          : new FltError('CONNECTION_LOST', messageOf(err), { cause: err });
      if (this.failure.code === 'BAD_MESSAGE') this.conn.close(1, 'BAD_MESSAGE');
      for (const c of this.calls.values()) c.reject(this.failure);
      this.calls.clear();
    }
  }

  private settle(env: Envelope): void {
    const call = this.calls.get(env.id);
    if (!call) return; // answer to a call that already timed out
    if (env.t === 'res') {
      try {
        call.resolve(call.method.response(env.b));
      } catch (err) {
        call.reject(err);
      }
    } else if (env.t === 'err') {
      const code = isErrorCode(env.code) ? env.code : 'RPC_REMOTE';
      call.reject(new FltError(code, `remote: ${env.msg}`));
    } else {
      throw new FltError('BAD_MESSAGE', 'rpc client got a request');
    }
  }
}
