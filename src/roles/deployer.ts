// The agent's deployment queue (issue 11, design §3): takes the part the coordinator placed in
// this agent's desired document, checks it against what the agent itself verified (signature,
// fleet, target, the admin trail of the admins document, seq, expiry, the store path), and
// activates it through the activation layer (src/deploy), exactly once across restarts (the
// journal's hwm is durable before anything runs). Every step is written to the agent's status
// document: received, refused (code), waiting, activating, checking, and the honest outcome.
//
// One queue, run on: a change of the desired or admins document, a recheck timer
// (`deploy_recheck`: a store path that is not there yet, an admin trail that is behind) and
// start-up. A run does, in order: finish an interrupted activation (resume), then evaluate the
// desired document's current part. The desired document holds only the newest part; one that
// replaces a part still waiting (or only received) marks that one `superseded`.
//
// The documents come as handles (DeployerDocs), so the agent and tests supply them alike: the
// agent opens them from its repo (synced with the coordinator), a test from a local Repo it
// writes to as a stand-in coordinator. Refusals are final for that part (same digest); a
// corrupt journal (STORE_CORRUPT) stops deploying (logged, reported in the system record) and
// leaves the agent running.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as A from '@automerge/automerge';
import type { DocHandle } from '@automerge/automerge-repo';
import { codeOf, messageOf } from '../../sync/errors.js';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import {
  activate,
  checkClosure,
  EMPTY_JOURNAL,
  Journal,
  resume,
  type ActivationContext,
  type ActivationOutcome,
  type Activator,
  type ActiveRecord,
  type Phase,
  type Reachable,
  type RunnerMode,
} from '../deploy/index.js';
import type { AdminsDoc } from '../docs/admins.js';
import { readDesired, type DesiredCurrent, type DesiredDoc } from '../docs/desired.js';
import { scalarString } from '../docs/scalars.js';
import {
  RAN_STATES as RAN,
  readStatus,
  TERMINAL_STATES,
  writeDeployment,
  writeSystem,
  type DeployCode,
  type DeploymentStatus,
  type DeployState,
  type FetchStatus,
  FETCH_CODES,
  type StatusDoc,
  type SystemStatus,
} from '../docs/status.js';
import { FltError } from '../errors.js';
import { AdminSet, checkAnchor, checkPin, decodePin, type TrailPin } from '../trust/admin-set.js';
import { DEPLOY_ACTIONS, isStorePath, partDigest, type DeployAction } from '../trust/deployment.js';
import type { EnsureOptions, EnsureResult, FetchProgress } from '../artifacts/fetcher.js';

/** The three documents the Deployer reads (desired, admins) and writes (status). */
export interface DeployerDocs {
  /** This agent's desired document (written by the coordinator). */
  readonly desired: DocHandle<DesiredDoc>;
  /** The fleet's admins document (written by the coordinator's gate). */
  readonly admins: DocHandle<AdminsDoc>;
  /** This agent's status document (written only here). */
  readonly status: DocHandle<StatusDoc>;
}

export interface DeployerOptions {
  /** The agent's state directory: `<stateDir>/deploy/{journal.json,trust.json,run/}`. */
  readonly stateDir: string;
  /** This agent's node id (its entry in a part's targets). */
  readonly nodeId: NodeId;
  /** The fleet the agent enrolled with (root document id): parts of another are WRONG_FLEET. */
  readonly fleet: string;
  /** Config `admins`: the admin trail must begin with them; empty = trust on first use. */
  readonly admins: readonly NodeId[];
  /** The configured activator; undefined (`none`) refuses every part with NO_ACTIVATOR. */
  readonly activator: Activator | undefined;
  /** Config `deploy_check`. */
  readonly check?: string | undefined;
  /** Config `deploy_health_timeout`. */
  readonly healthTimeoutMs: number;
  /** Config `deploy_recheck`: how often the queue runs without a change. */
  readonly recheckMs: number;
  /** "The coordinator answered again" (Liveness.answeredAfter); absent: not checked. */
  readonly reachable?: Reachable | undefined;
  readonly runnerMode?: RunnerMode;
  readonly activationTimeoutMs?: number;
  /**
   * Fetches a missing closure from the coordinator (issue 12); absent (no coordinator to fetch
   * from): a missing store path is only waited for.
   */
  readonly artifacts?: ClosureFetcher | undefined;
  /** Told after each status write (the agent flushes and sends a heartbeat with statusHeads). */
  readonly onStatus?: () => void | Promise<void>;
  readonly log: Logger;
}

/** What the Deployer needs of an ArtifactFetcher (src/artifacts/fetcher.ts). */
export interface ClosureFetcher {
  ensure(storePath: string, options: EnsureOptions): Promise<EnsureResult>;
}

/** Progress writes of a running fetch: at most one per this long, and only when bytes moved. */
export const FETCH_PROGRESS_MS = 5000;

/**
 * The throttle of a fetch's progress writes (each one is ~100 B of status history for good):
 * `due(bytes, now)` is true at most once per FETCH_PROGRESS_MS from `start` on, and only when
 * `bytes` differs from the last write's (a stalled fetch writes nothing). A 10 min fetch thus
 * adds at most 120 records of history.
 */
export function progressThrottle(start: number): (bytes: number, now: number) => boolean {
  let lastWrite = start;
  let lastBytes = -1;
  return (bytes, now) => {
    if (now - lastWrite < FETCH_PROGRESS_MS || bytes === lastBytes) return false;
    lastWrite = now;
    lastBytes = bytes;
    return true;
  };
}

/** Fetch errors that are final for the part (issue 12, design §6); the rest are retried. */
const FETCH_REFUSALS: ReadonlySet<string> = new Set(['UNTRUSTED_SIGNATURE', 'BAD_STORE_PATH']);

/** A closure fetch started by the queue, running outside it. */
interface Fetching {
  readonly digest: string;
  readonly ctl: AbortController;
  readonly done: Promise<void>;
}

/** How the last fetch of a part ended, when it did not make the path valid. */
interface FetchOutcome {
  readonly digest: string;
  readonly patch: Partial<DeploymentStatus> & { state: 'waiting' | 'refused' };
  /** Written to the part's record: only then may a recheck arm a retry (else it is never seen). */
  shown: boolean;
  /** Set by the recheck timer once shown: a new attempt may start. */
  retry: boolean;
}

/** `<stateDir>/deploy/trust.json`: the admin trail pinned on first use and its prefix after. */
export const TRUST_FILE = 'trust.json';

/** What a status record says of the part, before its state. */
type Info = Pick<DeploymentStatus, 'id' | 'seq' | 'storePath' | 'action' | 'signer'> & {
  readonly digest: string;
};

/** A refusal: final for the part (its digest), nothing activated. */
class Refusal {
  constructor(
    readonly code: DeployCode,
    readonly reason: string,
  ) {}
}

export class Deployer {
  private journal: Journal | undefined;
  /** Why deploying stopped (a corrupt journal), once it has. */
  private stopped: FltError | undefined;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private queue: Promise<void> | undefined;
  private closed = false;
  private started = false;
  /** The admin trail verified last, by the admins document's heads. */
  private trailCache: { heads: string; set?: AdminSet; error?: FltError } | undefined;
  private readonly kick = () => this.schedule();
  /** The recheck timer: also lets a failed fetch be tried again. */
  private readonly tick = () => {
    if (this.fetchOutcome?.shown) this.fetchOutcome.retry = true;
    this.schedule();
  };
  /** The closure fetch running now (outside the queue), if any. */
  private fetching: Fetching | undefined;
  private fetchOutcome: FetchOutcome | undefined;

  constructor(
    private readonly docs: DeployerDocs,
    private readonly opts: DeployerOptions,
  ) {}

  /**
   * Opens the journal (recovering hwm from the status document when the state dir lost it),
   * writes the system record, and starts the queue. A corrupt journal does not throw: deploying
   * stops, the agent runs on.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      this.journal = await this.openJournal();
    } catch (err) {
      if (!(err instanceof FltError) || err.code !== 'STORE_CORRUPT') throw err;
      this.stopped = err;
      this.opts.log.error(`deployments stopped: ${err.message}`);
    }
    await this.writeSystemRecord();
    // Closed while it awaited: attach nothing (close() has already detached).
    if (this.stopped || this.closed) return;
    this.docs.desired.on('change', this.kick);
    this.docs.admins.on('change', this.kick);
    this.timer = setInterval(this.tick, this.opts.recheckMs);
    this.timer.unref();
    this.schedule();
  }

  /**
   * The agent's connection to the coordinator came back (its pings are answered again after
   * failing, or a restarted coordinator answered): a fetch that ended waiting (the coordinator
   * unreachable, or lacking paths it may hold now) is tried again at once, not at the next
   * `deploy_recheck` tick. Refusals stay final; a fetch running now is left alone.
   */
  reconnected(): void {
    if (this.fetchOutcome === undefined || this.fetchOutcome.patch.state !== 'waiting') return;
    this.tick();
  }

  /** Resolves once the queue has nothing left to do right now. */
  async idle(): Promise<void> {
    while (this.queue) await this.queue;
  }

  /** The journal's high-water mark (the highest seq this agent started to activate). */
  get hwm(): number {
    return this.journal?.state.hwm ?? 0;
  }

  /**
   * Stops the queue and waits for it. An activation in flight keeps running in its own process
   * group (or unit); the next start resumes it. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return this.idle();
    this.closed = true;
    clearInterval(this.timer);
    this.docs.desired.off('change', this.kick);
    this.docs.admins.off('change', this.kick);
    this.abort.abort();
    this.fetching?.ctl.abort();
    await this.fetching?.done;
    await this.idle();
  }

  private schedule(): void {
    if (this.closed || this.stopped) return;
    this.pending = true;
    this.queue ??= this.drain().finally(() => (this.queue = undefined));
  }

  private async drain(): Promise<void> {
    while (this.pending && !this.closed && !this.stopped) {
      this.pending = false;
      try {
        await this.run();
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err instanceof FltError && err.code === 'STORE_CORRUPT') {
          this.stopped = err;
          this.opts.log.error(`deployments stopped: ${err.message}`);
          await this.writeSystemRecord().catch(() => undefined);
          return;
        }
        this.opts.log.error(`deployment queue: ${messageOf(err)}`);
      }
    }
  }

  // --- one run of the queue ---------------------------------------------------------------------

  private async run(): Promise<void> {
    const journal = this.journal!;
    const active = journal.state.active;
    if (active !== null) {
      try {
        await this.resumeActive(active);
      } catch (err) {
        // Only a finished activation's status write may fail without holding up the queue (it
        // is retried on every run); anything else must not let another activation begin.
        const done = journal.state.active?.phase === 'done';
        if (!done || this.abort.signal.aborted || codeOf(err) === 'STORE_CORRUPT') throw err;
        this.opts.log.error(
          `could not publish deployment ${active.id.slice(0, 8)}: ${messageOf(err)}`,
        );
      }
    }
    await this.evaluate();
  }

  /** Finishes (or republishes, once) the journal's activation. */
  private async resumeActive(active: ActiveRecord): Promise<void> {
    const existing = this.recordOf(active.id);
    const published =
      existing?.digest === active.digest &&
      active.outcome !== undefined &&
      existing.state === active.outcome.state;
    if (active.phase === 'done' && published) return;
    if (active.phase !== 'done') this.opts.log.info(`resuming deployment ${active.id.slice(0, 8)}`);
    const info: Info = {
      id: active.id,
      seq: active.seq,
      digest: active.digest,
      storePath: active.storePath,
      action: active.action,
      signer: existing?.digest === active.digest ? existing.signer : null,
    };
    const outcome = await resume(this.context(info));
    if (outcome === undefined) return;
    await this.publishOutcome(info, outcome, active.phase !== 'done');
  }

  /** The desired document's current part: checks in design §5 order, then activation. */
  private async evaluate(): Promise<void> {
    const doc = this.docs.desired.doc();
    const raw = (doc as { current?: unknown } | undefined)?.current;
    if (raw === undefined || raw === null) return;
    let current: DesiredCurrent;
    try {
      current = readDesired(doc, this.opts.fleet)!;
    } catch (err) {
      if (!(err instanceof FltError)) throw err;
      const info = this.unverifiedInfo(raw);
      if (this.isFinal(info)) return;
      await this.supersede(info.digest);
      return this.refuse(info, new Refusal(err.code as DeployCode, err.message));
    }
    const { part, adminOps } = current;
    const seq = part.targets[this.opts.nodeId];
    const digest = partDigest(part);
    const info: Info = {
      id: this.recordId(part.id, digest),
      seq: seq ?? 0,
      digest,
      storePath: part.storePath,
      action: part.action,
      signer: part.signer,
    };
    if (this.fetching !== undefined && this.fetching.digest !== info.digest) this.stopFetch();
    if (this.isFinal(info) || this.journal!.state.active?.digest === info.digest) return;
    await this.supersede(info.digest);
    if (this.recordOf(info.id)?.digest !== info.digest)
      await this.write(info, { state: 'received' });
    const now = Date.now();
    const expired = () =>
      now > Date.parse(part.expires)
        ? new Refusal(
            'DEPLOYMENT_EXPIRED',
            `expired at ${part.expires}; this agent's clock says ${new Date(now).toISOString()}`,
          )
        : undefined;
    if (seq === undefined)
      return this.refuse(info, new Refusal('NOT_TARGETED', `${this.opts.nodeId} is not a target`));
    // The admin trail must hold what the coordinator held when it placed the part (an admin
    // added just before is not refused for a trail that is merely behind).
    if (!this.trailHas(adminOps)) {
      const stale = expired();
      if (stale) return this.refuse(info, stale);
      return this.write(info, { state: 'waiting', waitingFor: 'admin-trail' });
    }
    let set: AdminSet;
    try {
      set = await this.trail();
      set.checkSigner(part);
    } catch (err) {
      if (!(err instanceof FltError)) throw err;
      return this.refuse(info, new Refusal(err.code as DeployCode, err.message));
    }
    const hwm = this.journal!.state.hwm;
    if (seq <= hwm)
      return this.refuse(
        info,
        new Refusal('SEQ_NOT_NEWER', `seq ${seq} is not above ${hwm}, the last one activated`),
      );
    const stale = expired();
    if (stale) return this.refuse(info, stale);
    const activator = this.opts.activator;
    if (activator === undefined)
      return this.refuse(
        info,
        new Refusal('NO_ACTIVATOR', 'this agent is not configured to deploy (deploy_activator)'),
      );
    const closure = await checkClosure(part.storePath, activator.nixStore);
    if (closure.state === 'refused')
      return this.refuse(info, new Refusal(closure.code, closure.reason));
    if (closure.state === 'waiting') {
      if (this.opts.artifacts === undefined)
        return this.write(info, { state: 'waiting', waitingFor: 'store-path' });
      return this.fetch(info);
    }
    if (this.fetchOutcome?.digest === info.digest) this.fetchOutcome = undefined;
    await this.activate(info, part.action);
  }

  // --- fetching a missing closure (issue 12) --------------------------------------------------------

  /**
   * Starts fetching the part's closure outside the queue (it may take minutes), unless it runs
   * already; after a failed attempt, writes how it ended and waits for the recheck timer.
   */
  private async fetch(info: Info): Promise<void> {
    if (this.fetching?.digest === info.digest) return;
    const last = this.fetchOutcome?.digest === info.digest ? this.fetchOutcome : undefined;
    if (last !== undefined) {
      if (last.patch.state === 'refused') {
        this.fetchOutcome = undefined;
        return this.refuse(info, new Refusal(last.patch.code!, last.patch.reason ?? ''));
      }
      if (!last.retry) {
        await this.write(info, last.patch);
        last.shown = true;
        return;
      }
    }
    this.fetchOutcome = undefined;
    await this.write(info, { state: 'fetching' });
    const ctl = new AbortController();
    const signal = AbortSignal.any([ctl.signal, this.abort.signal]);
    const due = progressThrottle(Date.now());
    const progress = (p: FetchProgress) => {
      if (signal.aborted || this.fetching?.digest !== info.digest) return;
      if (!due(p.bytes, Date.now())) return;
      void this.write(info, { state: 'fetching', fetch: fetchStatus(p) }).catch((err: unknown) =>
        this.opts.log.debug(`fetch progress: ${messageOf(err)}`),
      );
    };
    const done = this.opts
      .artifacts!.ensure(info.storePath, { signal, progress })
      .then(
        (r) => this.fetched(info, r),
        (err: unknown) => this.fetchFailed(info, err),
      )
      .catch((err: unknown) => this.opts.log.error(`after a fetch: ${messageOf(err)}`))
      .finally(() => {
        if (this.fetching?.ctl === ctl) this.fetching = undefined;
        if (!signal.aborted) this.schedule();
      });
    this.fetching = { digest: info.digest, ctl, done };
  }

  private fetched(info: Info, r: EnsureResult): void {
    if (r.state === 'ready') return;
    this.opts.log.warn(`deployment ${info.id.slice(0, 8)}: ${r.reason}`);
    this.fetchOutcome = {
      digest: info.digest,
      patch: { state: 'waiting', waitingFor: 'store-path', reason: r.reason },
      shown: false,
      retry: false,
    };
  }

  private fetchFailed(info: Info, err: unknown): void {
    const code = codeOf(err);
    if (code === 'ABORTED') return;
    const reason = messageOf(err);
    this.opts.log.warn(`fetching deployment ${info.id.slice(0, 8)}: ${code}: ${reason}`);
    this.fetchOutcome = {
      digest: info.digest,
      patch: FETCH_REFUSALS.has(code)
        ? { state: 'refused', code: code as DeployCode, reason }
        : {
            state: 'waiting',
            waitingFor: 'artifacts',
            code: (FETCH_CODES as readonly string[]).includes(code) ? (code as DeployCode) : 'IO',
            reason,
          },
      shown: false,
      retry: false,
    };
  }

  /** Aborts the running fetch (a newer part, a refusal); its partial downloads stay. */
  private stopFetch(): void {
    this.fetching?.ctl.abort();
    this.fetching = undefined;
  }

  private async activate(info: Info, action: DeployAction): Promise<void> {
    this.opts.log.info(`activating deployment ${info.id.slice(0, 8)}`, {
      storePath: info.storePath,
      action,
      seq: info.seq,
    });
    let outcome: ActivationOutcome;
    try {
      outcome = await activate(this.context(info), {
        id: info.id,
        seq: info.seq,
        digest: info.digest,
        storePath: info.storePath,
        action,
      });
    } catch (err) {
      if (this.abort.signal.aborted || (err instanceof FltError && err.code === 'STORE_CORRUPT'))
        throw err;
      // Nothing ran (the snapshot or the journal write failed): say so, once, for this part.
      if (this.journal!.state.active?.digest === info.digest) throw err;
      const now = new Date().toISOString();
      outcome = {
        state: 'failed',
        code: 'ACTIVATION_FAILED',
        reason: `could not start the activation: ${messageOf(err)}`,
        times: { activating: now, finished: now },
      };
    }
    await this.publishOutcome(info, outcome, true);
  }

  private context(info: Info): ActivationContext {
    const o = this.opts;
    return {
      activator: o.activator!,
      journal: this.journal!,
      stateDir: o.stateDir,
      health: { check: o.check, timeoutMs: o.healthTimeoutMs, reachable: o.reachable },
      ...(o.runnerMode === undefined ? {} : { runnerMode: o.runnerMode }),
      ...(o.activationTimeoutMs === undefined
        ? {}
        : { activationTimeoutMs: o.activationTimeoutMs }),
      onPhase: (phase: Phase, active: ActiveRecord) => this.onPhase(info, phase, active),
      signal: this.abort.signal,
    };
  }

  private async onPhase(info: Info, phase: Phase, active: ActiveRecord): Promise<void> {
    if (phase !== 'activating' && phase !== 'checking') return;
    await this.write(info, { state: phase, times: { activating: active.startedAt } });
  }

  /**
   * Writes the outcome's record; with `withSystem`, the system record read afterwards in the same
   * change, so no reader sees `succeeded` next to the system from before the activation.
   */
  private async publishOutcome(
    info: Info,
    outcome: ActivationOutcome,
    withSystem: boolean,
  ): Promise<void> {
    this.opts.log.info(`deployment ${info.id.slice(0, 8)}: ${outcome.state}`, {
      ...(outcome.code === undefined ? {} : { code: outcome.code }),
      ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
    });
    const { times, ...rest } = outcome;
    const system = withSystem ? await this.systemRecord() : undefined;
    await this.write(
      info,
      { ...rest, times: { activating: times.activating, finished: times.finished } },
      system,
    );
  }

  private async refuse(info: Info, refusal: Refusal): Promise<void> {
    if (this.fetching?.digest === info.digest) this.stopFetch();
    this.opts.log.warn(
      `refused deployment ${info.id.slice(0, 8)}: ${refusal.code}: ${refusal.reason}`,
    );
    await this.write(info, {
      state: 'refused',
      code: refusal.code,
      reason: refusal.reason,
      times: { finished: new Date().toISOString() },
    });
  }

  // --- status records -----------------------------------------------------------------------------

  private recordOf(id: string): DeploymentStatus | undefined {
    return readStatus(this.docs.status.doc()).deployments.find((r) => r.id === id);
  }

  /** A terminal record of this very part exists: nothing more to do with it. */
  private isFinal(info: Info): boolean {
    const r = this.recordOf(info.id);
    return r !== undefined && r.digest === info.digest && TERMINAL_STATES.has(r.state);
  }

  /** Parts received or waiting that the desired document no longer holds are `superseded`. */
  private async supersede(digest: string): Promise<void> {
    for (const r of readStatus(this.docs.status.doc()).deployments) {
      if (!SUPERSEDABLE.has(r.state) || r.digest === digest) continue;
      const { waitingFor: _, fetch: _f, code: _c, ...rest } = r;
      await this.write(rest as Info & DeploymentStatus, {
        state: 'superseded',
        reason: 'a newer deployment replaced it before it activated',
        times: { finished: new Date().toISOString() },
      });
    }
  }

  /**
   * Writes the part's record with `patch` (times merged into the record's), unless it says
   * nothing new, and `system` when given, in one change; then tells the agent (onStatus).
   */
  private async write(
    info: Info,
    patch: Partial<Omit<DeploymentStatus, keyof Info>> & { state: DeployState },
    system?: SystemStatus,
  ): Promise<void> {
    const existing = this.recordOf(info.id);
    const same = existing?.digest === info.digest ? existing : undefined;
    const now = new Date().toISOString();
    const record: DeploymentStatus = {
      id: info.id,
      seq: info.seq,
      digest: info.digest,
      storePath: info.storePath,
      action: info.action,
      signer: info.signer,
      ...patch,
      times: { received: same?.times.received ?? now, ...same?.times, ...patch.times },
    };
    const unchanged =
      same !== undefined &&
      same.state === record.state &&
      same.code === record.code &&
      same.reason === record.reason &&
      same.waitingFor === record.waitingFor &&
      JSON.stringify(same.fetch) === JSON.stringify(record.fetch);
    if (unchanged && system === undefined) return;
    this.docs.status.change((d) => {
      if (!unchanged) writeDeployment(d, record);
      if (system !== undefined) writeSystem(d, system);
    });
    await this.told();
  }

  private async writeSystemRecord(): Promise<void> {
    const record = await this.systemRecord();
    if (record === undefined) return;
    this.docs.status.change((d) => writeSystem(d, record));
    await this.told();
  }

  /** The system record now, or undefined when the document's says the same but for its time. */
  private async systemRecord(): Promise<SystemStatus | undefined> {
    const o = this.opts;
    const lastGood = this.journal?.state.lastGood ?? null;
    let system: Omit<SystemStatus, 'hwm' | 'at'> = {
      activator: o.activator?.kind ?? 'none',
      current: null,
      booted: null,
      profile: null,
      generation: null,
      rebootNeeded: null,
    };
    if (o.activator !== undefined) {
      try {
        system = await o.activator.system(lastGood);
      } catch (err) {
        o.log.warn(`could not read the system's state: ${messageOf(err)}`);
      }
    }
    const previous = readStatus(this.docs.status.doc()).system;
    const record = {
      ...system,
      hwm: this.journal?.state.hwm ?? previous?.hwm ?? 0,
      at: new Date().toISOString(),
      // Read by whoever knows it (decodeSystem keeps the fields it knows): why nothing deploys.
      ...(this.stopped === undefined
        ? {}
        : { error: { code: this.stopped.code, reason: this.stopped.message } }),
    };
    // Unchanged but for its time: not written (a restart adds no history; a cloned machine,
    // started from the same state, writes nothing the original would have to refuse).
    const { at: _at, ...now } = record;
    return sameSystem(this.docs.status.doc().system?.val, now) ? undefined : record;
  }

  private async told(): Promise<void> {
    try {
      await this.opts.onStatus?.();
    } catch (err) {
      this.opts.log.debug(`after a status write: ${messageOf(err)}`);
    }
  }

  /**
   * The key of a part's record: its deployment id, unless a record of another part under that
   * id ran (a forged copy, or a validly signed sibling part of the same deployment for other
   * targets): then its digest, so the record of what ran is never overwritten (nor made to
   * flip-flop between the two on every recheck).
   */
  private recordId(id: string, digest: string): string {
    const existing = this.recordOf(id);
    return existing !== undefined && existing.digest !== digest && RAN.has(existing.state)
      ? digest
      : id;
  }

  /** Best-effort fields of a part that did not verify (a malformed one: its raw digest). */
  private unverifiedInfo(raw: unknown): Info {
    const text = scalarString(raw) ?? JSON.stringify(raw) ?? '';
    const digest = createHash('sha256').update(text).digest('hex');
    let part: Record<string, unknown> = {};
    try {
      const parsed = (JSON.parse(text) as { part?: unknown }).part;
      if (typeof parsed === 'object' && parsed !== null) part = parsed as Record<string, unknown>;
    } catch {
      // not JSON: nothing readable
    }
    const targets = part.targets as Record<string, unknown> | undefined;
    const seq = typeof targets === 'object' && targets !== null ? targets[this.opts.nodeId] : 0;
    const id = typeof part.id === 'string' && /^[0-9a-f]{32}$/.test(part.id) ? part.id : digest;
    return {
      id: this.recordId(id, digest),
      seq: Number.isSafeInteger(seq) && (seq as number) >= 0 ? (seq as number) : 0,
      digest,
      storePath: isStorePath(part.storePath) ? part.storePath : '',
      action: DEPLOY_ACTIONS.includes(part.action as DeployAction)
        ? (part.action as DeployAction)
        : null,
      signer: isNodeId(part.signer) ? part.signer : null,
    };
  }

  // --- the admin trail ----------------------------------------------------------------------------

  /** Whether the admins document has begun and holds at least `ops` ops (verified or not). */
  private trailHas(ops: number): boolean {
    const d = this.docs.admins.doc() as Partial<AdminsDoc> | undefined;
    if (d === undefined || scalarString(d.fleet) === undefined) return false;
    return Array.isArray(d.ops) && d.ops.length >= ops;
  }

  /**
   * The admin set from the admins document, verified by replay, checked against the configured
   * anchor and the pinned prefix (pinned on first use, extended after); UNTRUSTED_TRAIL when not.
   */
  private async trail(): Promise<AdminSet> {
    const doc = this.docs.admins.doc();
    const heads = A.getHeads(doc).join(',');
    let cache = this.trailCache;
    if (cache?.heads !== heads) {
      cache = { heads };
      try {
        cache.set = await this.verifyTrail(doc);
      } catch (err) {
        if (!(err instanceof FltError)) throw err;
        cache.error =
          err.code === 'UNTRUSTED_TRAIL'
            ? err
            : new FltError('UNTRUSTED_TRAIL', `admin trail: ${err.message}`, { cause: err });
        this.opts.log.error(`no deployment activates: ${cache.error.message}`);
      }
      this.trailCache = cache;
    }
    if (cache.error) throw cache.error;
    return cache.set!;
  }

  private async verifyTrail(doc: unknown): Promise<AdminSet> {
    const set = AdminSet.fromDoc(doc, this.opts.fleet);
    checkAnchor(set, this.opts.admins);
    const file = path.join(this.opts.stateDir, 'deploy', TRUST_FILE);
    const pin = await readPin(file);
    if (pin !== undefined) checkPin(set, pin);
    else if (this.opts.admins.length === 0)
      this.opts.log.warn(
        `no admins configured: trusting the admin trail on first use (admins ${set
          .admins()
          .join(', ')}), pinned in ${file}`,
      );
    const next = set.pin();
    if (pin === undefined || pin.opsSeen !== next.opsSeen || pin.opsDigest !== next.opsDigest)
      await writeFileAtomic(file, JSON.stringify(next, null, 1) + '\n', { createDir: true });
    return set;
  }

  // --- the journal ------------------------------------------------------------------------------

  /**
   * The journal; when the state dir has none but the status document says this agent activated
   * before (state dir lost, key kept, status restored from the coordinator), hwm (and the last
   * good system) are recovered from it first, so that nothing older runs again.
   */
  private async openJournal(): Promise<Journal> {
    const file = Journal.fileIn(this.opts.stateDir);
    const had = existsSync(file);
    const journal = await Journal.open(this.opts.stateDir);
    if (had) return journal;
    const { system, deployments } = readStatus(this.docs.status.doc());
    let hwm = system?.hwm ?? 0;
    for (const r of deployments) if (RAN.has(r.state)) hwm = Math.max(hwm, r.seq);
    if (hwm === 0) return journal;
    const lastGood =
      system?.current != null ? { storePath: system.current, generation: system.generation } : null;
    await journal.write({ ...EMPTY_JOURNAL, hwm, lastGood });
    this.opts.log.info(`deployment journal recovered from the status document: hwm ${hwm}`);
    return journal;
  }
}

/** States a newer part supersedes (nothing ran yet). */
const SUPERSEDABLE: ReadonlySet<DeployState> = new Set(['received', 'waiting', 'fetching']);

function fetchStatus(p: FetchProgress): FetchStatus {
  return {
    bytes: p.bytes,
    total: p.total,
    paths: p.paths,
    pathsDone: p.pathsDone,
    rate: p.rate,
  };
}

async function readPin(file: string): Promise<TrailPin | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return decodePin(JSON.parse(text));
  } catch (err) {
    throw new FltError(
      'UNTRUSTED_TRAIL',
      `the pinned admin trail ${file} is unreadable (${messageOf(err)}): move it away to pin again`,
    );
  }
}

/** Whether the stored system record (JSON) is `next` in everything but `at`. */
function sameSystem(stored: string | undefined, next: object): boolean {
  if (stored === undefined) return false;
  try {
    const { at: _at, ...rest } = JSON.parse(stored) as { at?: unknown };
    return JSON.stringify(rest) === JSON.stringify(next);
  } catch {
    return false;
  }
}
