// An agent's liveness check of its coordinator: a small `agent.ping` rpc every PING_INTERVAL_MS,
// independent of --facts-interval. QUIC tells a node that its peer is gone only at the idle
// timeout (about 30 s; the iroh Node binding has no setting for it nor for keep-alives), and a
// coordinator restarted on the same address does not end its predecessor's connections either.
// So when a ping fails, the agent drops its rpc connection (RpcChannel does on any transport
// failure) and its sync session, and redials both at once; while the coordinator stays away,
// pings retry with a short bounded backoff, and the first one answered also redials a sync dial
// that is still waiting. The coordinator counts each ping as "heard from" (Presence).

import { backoffDelay, sleep, type BackoffPolicy } from '../../sync/backoff.js';
import { FltError, isProgrammingError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import type { RpcChannel } from '../../sync/rpc-channel.js';
import type { SyncAdapter } from '../../sync/sync-adapter.js';
import { agentPing } from '../rpc-methods.js';

/**
 * Between two pings of a healthy coordinator (plus up to 10 % jitter, so that a fleet started
 * at once does not ping in step). With PING_TIMEOUT_MS, a dead or restarted coordinator is
 * noticed within 4.2 s. At 5,000 agents that is ~2,500 empty rpcs a second at the coordinator.
 */
export const PING_INTERVAL_MS = 2000;
/**
 * A ping's deadline, connecting included. Generous against a round trip (loopback: under 1 ms;
 * relayed across continents: a few hundred ms), short against the 30 s idle timeout.
 */
export const PING_TIMEOUT_MS = 2000;
/**
 * Retries while the coordinator does not answer: 250 ms doubling to 1 s, so that a restarted
 * coordinator is reached within about a second of being ready (each attempt dials afresh).
 */
const RETRY: BackoffPolicy = { initialMs: 250, maxMs: 1000 };

/** Failures that say nothing answered. Any other answer, even an error, proves it alive. */
const SILENT = new Set(['CONNECT_FAILED', 'CONNECTION_LOST', 'TIMEOUT', 'TRANSPORT']);

export class Liveness {
  constructor(
    private readonly rpc: RpcChannel,
    private readonly sync: SyncAdapter,
    private readonly peer: NodeId,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /** Pings until `signal` aborts. Rejects only on a programming error. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.signal.aborted) {
      const sent = Date.now();
      const failure = await this.ping();
      if (this.signal.aborted) return;
      if (failure === undefined) {
        // A sync dial begun while the coordinator was away may wait seconds more for QUIC to
        // resend: dial now. After failures, any dial older than this ping is such a dial; else
        // only one older than a ping may take (a dial just begun is left to finish).
        this.sync.dialNow(this.peer, failures > 0 ? sent : Date.now() - PING_TIMEOUT_MS);
        if (failures > 0) this.log.info('the coordinator answers again', { after: failures });
        failures = 0;
        await sleep(PING_INTERVAL_MS * (1 + 0.1 * Math.random()), this.signal);
        continue;
      }
      if (failures === 0) {
        this.log.info(`the coordinator did not answer a ping (${failure}); reconnecting`);
        this.sync.redial(this.peer, `ping failed: ${failure}`);
      }
      await sleep(backoffDelay(RETRY, failures++), this.signal);
    }
  }

  /** undefined when the coordinator answered; else the failure's code. */
  private async ping(): Promise<string | undefined> {
    try {
      await this.rpc.call(agentPing, {}, { timeoutMs: PING_TIMEOUT_MS });
      return undefined;
    } catch (err) {
      if (err instanceof FltError && SILENT.has(err.code)) return err.code;
      if (isProgrammingError(err)) throw err;
      return undefined;
    }
  }
}
