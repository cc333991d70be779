// An agent's liveness check of its coordinator: a small `agent.ping` rpc every PING_INTERVAL_MS,
// independent of --facts-interval. QUIC tells a node that its peer is gone only at the idle
// timeout (about 30 s; the iroh Node binding has no setting for it nor for keep-alives), and a
// coordinator restarted on the same address does not end its predecessor's connections either.
//
// - A ping that fails drops the rpc connection (RpcChannel does on any transport failure), and
//   the next ping, after a short bounded backoff, dials afresh.
// - Every answer names the coordinator process (`boot`). An answer from a new process means the
//   sync session, if older than that process's first answer, is dead: it is dropped and redialed
//   at once. This is how a restart is found without waiting for anything to time out twice.
// - After DROP_AFTER failures in a row (the coordinator is down or cut off) the sync session is
//   dropped as well, and when pings are answered again any sync dial begun before is restarted.
// A slow answer therefore costs one rpc reconnect, never the sync session, so an overloaded
// coordinator (or a starved agent) does not set off a storm of resyncs. The coordinator counts
// each ping as "heard from" (Presence).

import { backoffDelay, sleep, type BackoffPolicy } from '../../sync/backoff.js';
import { FltError, NO_ANSWER, isProgrammingError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import type { RpcChannel } from '../../sync/rpc-channel.js';
import type { SyncAdapter } from '../../sync/sync-adapter.js';
import { agentPing } from '../rpc-methods.js';

/**
 * Between two pings of a healthy coordinator (plus up to 10 % jitter, so that a fleet started
 * at once does not ping in step). With PING_TIMEOUT_MS, a dead or restarted coordinator is
 * noticed within 3.7 s. At 5,000 agents that is ~2,400 empty rpcs a second at the coordinator.
 */
export const PING_INTERVAL_MS = 2000;
/**
 * A ping's deadline, connecting included. Generous against a round trip (loopback: under 1 ms;
 * relayed across continents: a few hundred ms), short against the 30 s idle timeout. Missing
 * it costs one rpc reconnect, not the sync session (see above).
 */
export const PING_TIMEOUT_MS = 1500;
/**
 * Retries while the coordinator does not answer: 100 ms doubling to 1 s, so that a restarted
 * coordinator is reached within about a second of being ready (each attempt dials afresh).
 */
const RETRY: BackoffPolicy = { initialMs: 100, maxMs: 1000 };

/** Failed pings in a row (at least 3 s of silence) after which the sync session is dropped. */
const DROP_AFTER = 2;

export class Liveness {
  /** The coordinator process that answered last. */
  private boot: string | undefined;
  /** When the current run of failed pings began (Date.now()); 0 while pings are answered. */
  private silentSince = 0;
  /** When the newest answered ping was sent (Date.now()); 0 before the first answer. */
  private answeredSent = 0;
  /** Who waits for an answer (answeredAfter), told on each one. */
  private readonly waiters = new Set<() => void>();
  /** Set by answeredAfter: the next ping goes out now, not after the pause. */
  private pingSoon = false;
  /** Ends the pause between two pings early (set while pausing). */
  private wakePause: (() => void) | undefined;

  constructor(
    private readonly rpc: RpcChannel,
    private readonly sync: SyncAdapter,
    private readonly peer: NodeId,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
    /**
     * Told when the coordinator answers again after failed pings, or a new coordinator process
     * answers (the agent's deployer retries a fetch that found it unreachable).
     */
    private readonly onReconnect?: () => void,
  ) {}

  /** Pings until `signal` aborts. Rejects only on a programming error. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.signal.aborted) {
      this.pingSoon = false;
      const sent = Date.now();
      const answer = await this.ping();
      if (this.signal.aborted) return;
      if (typeof answer === 'object') {
        this.answered(answer.boot, failures, sent);
        failures = 0;
        await this.pause(PING_INTERVAL_MS * (1 + 0.1 * Math.random()));
        continue;
      }
      if (failures === 0) {
        this.silentSince = sent;
        this.log.info(`the coordinator did not answer a ping (${answer}); reconnecting`);
      }
      if (++failures === DROP_AFTER) this.sync.redial(this.peer, `no ping answered: ${answer}`);
      await this.pause(backoffDelay(RETRY, failures - 1));
    }
  }

  /**
   * Sleeps `ms` between pings, or less when answeredAfter wants a ping sent after its call: a
   * health budget shorter than PING_INTERVAL_MS (deploy_health_timeout may be 1 s) would else
   * often see no ping at all and fail a healthy deployment.
   */
  private async pause(ms: number): Promise<void> {
    if (this.pingSoon) return;
    const cut = new AbortController();
    const stop = () => cut.abort();
    this.signal.addEventListener('abort', stop, { once: true });
    this.wakePause = stop;
    try {
      await sleep(ms, cut.signal);
    } finally {
      this.wakePause = undefined;
      this.signal.removeEventListener('abort', stop);
    }
  }

  /**
   * Resolves true once a ping sent at or after `since` (epoch ms) has been answered, false at
   * `deadlineMs`: the health check's "the coordinator answers again after the activation". A new
   * process's first answers count (a restarted agent has no older ones). Rejects (ABORTED) when
   * pinging stops or `signal` aborts: stopping is no answer either way.
   */
  answeredAfter(since: number, deadlineMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.answeredSent >= since) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      const done = (ok: boolean | Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        this.signal.removeEventListener('abort', stop);
        signal?.removeEventListener('abort', stop);
        if (ok instanceof Error) reject(ok);
        else resolve(ok);
      };
      const check = () => {
        if (this.answeredSent >= since) done(true);
      };
      const stop = () => done(new FltError('ABORTED', 'stopped waiting for the coordinator'));
      const timer = setTimeout(() => done(false), Math.max(0, deadlineMs - Date.now()));
      if (this.signal.aborted || signal?.aborted) return stop();
      this.signal.addEventListener('abort', stop);
      signal?.addEventListener('abort', stop);
      this.waiters.add(check);
      this.pingSoon = true;
      this.wakePause?.();
    });
  }

  private answered(boot: string | undefined, failures: number, sent: number): void {
    this.answeredSent = Math.max(this.answeredSent, sent);
    for (const check of [...this.waiters]) check();
    const previous = this.boot;
    const opened = this.sync.sessionOpenedAt(this.peer);
    if (boot !== undefined && previous !== undefined && boot !== previous) {
      this.log.info('the coordinator restarted; reconnecting');
      // A session opened once the old process had gone silent is already the new one's.
      if (opened === undefined || failures === 0 || opened <= this.silentSince)
        this.sync.redial(this.peer, 'the coordinator restarted');
    } else if (failures > 0) {
      this.log.info('the coordinator answers again', { after: failures });
    }
    // A sync dial begun while the coordinator was away may wait seconds more for QUIC to resend:
    // after failures, any dial older than this ping is such a dial; else only one older than a
    // ping may take (a dial just begun is left to finish).
    this.sync.dialNow(this.peer, failures > 0 ? sent : Date.now() - PING_TIMEOUT_MS);
    const restarted = boot !== undefined && previous !== undefined && boot !== previous;
    if (boot !== undefined) this.boot = boot;
    this.silentSince = 0;
    if (failures > 0 || restarted) this.onReconnect?.();
  }

  /** The answer (boot undefined: a coordinator without boot ids), or the failure's code. */
  private async ping(): Promise<{ boot: string | undefined } | string> {
    try {
      const { boot } = await this.rpc.call(agentPing, {}, { timeoutMs: PING_TIMEOUT_MS });
      return { boot };
    } catch (err) {
      // Any answer but silence, even an error, proves it alive.
      if (err instanceof FltError && NO_ANSWER.has(err.code)) return err.code;
      if (isProgrammingError(err)) throw err;
      return { boot: undefined }; // an error answer (unknown method, not enrolled): alive
    }
  }
}
