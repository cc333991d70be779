// A long-lived RPC client to one peer: connects on first use, reconnects after the connection
// drops, and retries a call with backoff until it succeeds or the caller's deadline passes.
// Agents use it for enrollment and heartbeats; it owns its connection and closes it on close().
//
// `via`: a connection to the same peer that carries rpc already (an agent's sync session with a
// coordinator that said so: SyncAdapter.carry). While there is one, calls go there and the
// channel's own connection is closed: one QUIC connection per agent instead of two (issue 13:
// ~92 KiB each at the coordinator, and a handshake each after a restart). That connection is the
// sync session's, not the channel's: a call on it that gets no sign of the peer (see call) only
// makes the channel stop using it and dial its own, as before; whether the session itself is dead
// is the session's liveness to decide (src/roles/liveness.ts). A restarted peer's new session is
// used again once it is up.

import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.js';
import { withDeadline } from './deadline.js';
import { FltError, NO_ANSWER } from './errors.js';
import { ALPN } from './protocols.js';
import { RpcClient, type RpcMethod } from './rpc.js';
import type { Connection, PacketCounts, PeerAddr, Transport } from './transport.js';

/** Codes worth retrying: the peer may come back. Everything else is an answer. */
const RETRYABLE = new Set([...NO_ANSWER, 'BUSY']);

export interface RpcChannelOptions {
  readonly timeoutMs: number;
  readonly backoff?: BackoffPolicy;
  /** A connection to the peer that carries rpc, when there is one (see the header). */
  readonly via?: () => Connection | undefined;
}

export class RpcChannel {
  private client: Promise<RpcClient> | undefined;
  /** The `via` connection `client` runs on; undefined while it runs on a connection of our own. */
  private onVia: Connection | undefined;
  /** A `via` connection a call on which got no sign of the peer: not used again. */
  private shunned: Connection | undefined;
  private heardAt = 0;
  /** The client the last call ran on, connected; undefined once it was let go. */
  private used: RpcClient | undefined;
  private readonly stop = new AbortController();

  constructor(
    private readonly transport: Transport,
    readonly peer: PeerAddr,
    private readonly options: RpcChannelOptions,
  ) {}

  /**
   * One attempt: connects if needed. `timeoutMs` (default: the channel's) bounds the whole
   * attempt, connecting included: a liveness ping must fail within its own deadline even while a
   * dial hangs. A connect that did not complete within it is CONNECT_FAILED (the peer could not
   * be reached: down, or not accepting), a call that got no answer on a connection TIMEOUT
   * (reached, but slow or gone): the liveness check lets only the second lengthen its deadline.
   * A lost connection is dropped so that the next call redials; so is one whose call timed out,
   * unless the connection took in packets after the call was sent (lastHeard): the peer's QUIC
   * stack acknowledged it, so the peer is there and only busy, and a redial would only add a
   * handshake to its load (issue 13: in a 1,000-agent fan-in every slow ping cost a reconnect,
   * whose connects then failed for 15 s and took the agents' sync sessions with them).
   * A connect still in flight when a call's own deadline passes is kept for the next call: the
   * binding cannot cancel a dial, so giving it up would leave the peer its handshake and add
   * another (issue 13: after a coordinator restart, 500 agents renewing their dial every 3 s kept
   * a restarted coordinator accepting dials nobody waited for, and 346 of them got no ping answered
   * for 15 s). The connect itself gives up after the channel's timeoutMs; the next call dials
   * afresh, which is how a dial begun while the peer was down is renewed.
   */
  async call<Req, Res>(
    method: RpcMethod<Req, Res>,
    req: Req,
    options: { timeoutMs?: number } = {},
  ): Promise<Res> {
    if (this.stop.signal.aborted) throw new FltError('CLOSED', 'rpc channel closed');
    this.follow();
    if (this.client === undefined) {
      // A connect that fails is forgotten by itself; one still in flight stays for the next call.
      const attempt = this.connect();
      this.client = attempt;
      attempt.catch(() => {
        if (this.client === attempt) this.client = undefined;
      });
    }
    const client = this.client;
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const signal = this.stop.signal;
    let c: RpcClient | undefined;
    let received: number | undefined;
    try {
      // A deadline of the caller's own bounds the connect too; the channel's bounds each part.
      const bounded = options.timeoutMs !== undefined;
      const end = Date.now() + timeoutMs;
      c = bounded ? await this.connected(client, method.name, timeoutMs) : await client;
      received = c.conn.packets?.()?.received;
      this.used = c;
      const left = bounded ? Math.max(1, end - Date.now()) : timeoutMs;
      const res = await c.call(method, req, { timeoutMs: left, signal });
      this.heardAt = Date.now();
      return res;
    } catch (err) {
      const code = err instanceof FltError ? err.code : undefined;
      if (code === 'TIMEOUT' && heardSince(c, received)) {
        this.heardAt = Date.now(); // acknowledged, not answered: busy, not gone
      } else if (
        c !== undefined &&
        code !== undefined &&
        RETRYABLE.has(code) &&
        this.client === client
      ) {
        // A `via` connection is not ours to close: the next call dials one of our own (header).
        this.release(client, this.onVia !== undefined, 'reconnecting');
        this.shunned = this.onVia ?? this.shunned;
        this.client = undefined;
        this.onVia = undefined;
      }
      throw err;
    }
  }

  /**
   * When the peer last showed it is there (Date.now(); 0 before): an answer, or a call that timed
   * out but was acknowledged (see call).
   */
  get lastHeard(): number {
    return this.heardAt;
  }

  /**
   * Packets the connection of the last call has taken in and sent so far (Connection.packets:
   * QUIC's keep-alives and acknowledgements included), or undefined before a call connected, after
   * the connection was let go, or where the transport cannot tell. While `received` grows, the
   * peer process that answered on it is there (src/roles/liveness.ts defers pings on it).
   */
  packets(): PacketCounts | undefined {
    return this.used?.conn.packets?.();
  }

  /** Calls until an answer arrives (retrying transport failures with backoff) or close(). */
  async callUntilAnswered<Req, Res>(
    method: RpcMethod<Req, Res>,
    req: Req,
    onRetry?: (err: FltError) => void,
  ): Promise<Res> {
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.call(method, req);
      } catch (err) {
        if (!(err instanceof FltError) || !RETRYABLE.has(err.code) || this.stop.signal.aborted)
          throw err;
        onRetry?.(err);
        await sleep(backoffDelay(policy, attempt), this.stop.signal);
      }
    }
  }

  close(): void {
    this.stop.abort();
    this.release(this.client, this.onVia !== undefined, 'closed');
    this.client = undefined;
    this.onVia = undefined;
  }

  /** Calls go to the `via` connection while there is one; to our own connection otherwise. */
  private follow(): void {
    const via = this.options.via?.();
    const usable = via !== undefined && via !== this.shunned ? via : undefined;
    if (usable === this.onVia && (usable === undefined || this.client !== undefined)) return;
    const onVia = this.onVia !== undefined;
    if (this.client !== undefined && (usable !== undefined || onVia)) {
      this.release(this.client, onVia, 'rpc moved to the sync connection');
      this.client = undefined;
    }
    this.onVia = usable;
    if (usable === undefined) return; // our own connection: dialed by call() when needed
    const attempt = RpcClient.open(usable, this.options.timeoutMs);
    this.client = attempt;
    attempt.catch(() => {
      if (this.client !== attempt) return;
      this.client = undefined;
      this.onVia = undefined;
    });
  }

  /** Lets go of a client: ends its stream on a `via` connection, closes a connection of ours. */
  private release(client: Promise<RpcClient> | undefined, onVia: boolean, why: string): void {
    this.used = undefined;
    void client?.then(
      (c) => (onVia ? void c.close() : c.conn.close(0, why)),
      () => undefined,
    );
  }

  /** The client once connected, within `timeoutMs`; CONNECT_FAILED past it. */
  private connected(
    client: Promise<RpcClient>,
    name: string,
    timeoutMs: number,
  ): Promise<RpcClient> {
    const what = `${name}: connect`;
    return withDeadline(client, { timeoutMs, signal: this.stop.signal }, what).catch(
      (err: unknown) => {
        if (!(err instanceof FltError) || err.code !== 'TIMEOUT') throw err;
        throw new FltError('CONNECT_FAILED', `${name}: not connected in ${timeoutMs} ms`, {
          cause: err,
        });
      },
    );
  }

  private async connect(): Promise<RpcClient> {
    const conn = await this.transport.connect(this.peer, ALPN.rpc, {
      timeoutMs: this.options.timeoutMs,
      signal: this.stop.signal,
    });
    return RpcClient.open(conn, this.options.timeoutMs);
  }
}

/** Whether `c`'s connection took in packets since it counted `before` (unknown: no). */
function heardSince(c: RpcClient | undefined, before: number | undefined): boolean {
  const now = c?.conn.packets?.()?.received;
  return before !== undefined && now !== undefined && now > before;
}
