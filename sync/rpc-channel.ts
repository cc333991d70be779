// A long-lived RPC client to one peer: connects on first use, reconnects after the connection
// drops, and retries a call with backoff until it succeeds or the caller's deadline passes.
// Agents use it for enrollment and heartbeats; it owns its connection and closes it on close().

import { backoffDelay, DEFAULT_BACKOFF, sleep, type BackoffPolicy } from './backoff.js';
import { withDeadline } from './deadline.js';
import { FltError, NO_ANSWER } from './errors.js';
import { ALPN } from './protocols.js';
import { RpcClient, type RpcMethod } from './rpc.js';
import type { PeerAddr, Transport } from './transport.js';

/** Codes worth retrying: the peer may come back. Everything else is an answer. */
const RETRYABLE = new Set([...NO_ANSWER, 'BUSY']);

export class RpcChannel {
  private client: Promise<RpcClient> | undefined;
  private readonly stop = new AbortController();

  constructor(
    private readonly transport: Transport,
    readonly peer: PeerAddr,
    private readonly options: { timeoutMs: number; backoff?: BackoffPolicy },
  ) {}

  /**
   * One attempt: connects if needed; a lost connection is dropped so the next call redials.
   * `timeoutMs` (default: the channel's) bounds the whole attempt, connecting included: a
   * liveness ping must fail within its own deadline even while a dial hangs. A connect that did
   * not complete within it is CONNECT_FAILED (the peer could not be reached: down, or not
   * accepting), a call that got no answer on a connection TIMEOUT (reached, but slow or gone):
   * the liveness check lets only the second lengthen its deadline.
   */
  async call<Req, Res>(
    method: RpcMethod<Req, Res>,
    req: Req,
    options: { timeoutMs?: number } = {},
  ): Promise<Res> {
    if (this.stop.signal.aborted) throw new FltError('CLOSED', 'rpc channel closed');
    this.client ??= this.connect();
    const client = this.client;
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const signal = this.stop.signal;
    try {
      if (options.timeoutMs === undefined)
        return await (await client).call(method, req, { timeoutMs, signal });
      const end = Date.now() + timeoutMs;
      const c = await withDeadline(client, { timeoutMs, signal }, `${method.name}: connect`).catch(
        (err: unknown) => {
          if (!(err instanceof FltError) || err.code !== 'TIMEOUT') throw err;
          throw new FltError('CONNECT_FAILED', `${method.name}: not connected in ${timeoutMs} ms`, {
            cause: err,
          });
        },
      );
      return await c.call(method, req, { timeoutMs: Math.max(1, end - Date.now()), signal });
    } catch (err) {
      if (err instanceof FltError && RETRYABLE.has(err.code) && this.client === client) {
        this.client = undefined;
        void client.then(
          (c) => c.conn.close(0, 'reconnecting'),
          () => undefined,
        );
      }
      throw err;
    }
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
    void this.client?.then(
      (c) => c.conn.close(0, 'closed'),
      () => undefined,
    );
    this.client = undefined;
  }

  private async connect(): Promise<RpcClient> {
    const conn = await this.transport.connect(this.peer, ALPN.rpc, {
      timeoutMs: this.options.timeoutMs,
      signal: this.stop.signal,
    });
    return RpcClient.open(conn, this.options.timeoutMs);
  }
}
