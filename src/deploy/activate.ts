// One activation of one store path, start to honest outcome (design §3 pipeline steps 3-4):
// snapshot, hwm + plan journaled durably BEFORE anything runs, the activator's command through a
// detached runner, the health check, and on failure the rollback, each phase journaled so that
// `resume` after a restart (SIGKILL, the agent's unit restarted by the switch, power loss)
// finishes it exactly once: it adopts the recorded runner and never starts one that may have run
// (one whose run directory was never made is started then).
// The caller (the Deployer) checks the deployment first and maps the outcome to its status.

import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { FltError } from '../errors.js';
import type { Activator, DeployAction, LastGood } from './activator.js';
import { checkHealth, type HealthOptions } from './health.js';
import type { ActiveRecord, Journal, Phase } from './journal.js';
import { toolEnv } from './nix.js';
import { LOG_TAIL_MAX, type ActivationOutcome, type FailureCode } from './outcome.js';
import {
  adoptRun,
  logTail,
  planRun,
  startRun,
  stopRun,
  waitRun,
  type RunnerMode,
  type RunnerRecord,
  type RunSpec,
} from './runner.js';

export type { ActivationOutcome, FailureCode, OutcomeState } from './outcome.js';

/** How long an activation (or a rollback) may run before it is killed and counted failed. */
export const ACTIVATION_TIMEOUT_MS = 60 * 60_000;

/** The deployment to activate, already verified by the caller (signature, seq, closure). */
export interface ActivationRequest {
  readonly id: string;
  readonly seq: number;
  readonly digest: string;
  readonly storePath: string;
  readonly action: DeployAction;
}

/** What an activation needs; one at a time per journal (the Deployer's queue). */
export interface ActivationContext {
  readonly activator: Activator;
  readonly journal: Journal;
  /** The agent's state directory: runs go to `<stateDir>/deploy/run`, FLT_STATE_DIR. */
  readonly stateDir: string;
  readonly health: HealthOptions;
  /** Extra environment for the activation and rollback commands. */
  readonly env?: Readonly<Record<string, string>>;
  readonly runnerMode?: RunnerMode;
  readonly activationTimeoutMs?: number;
  /** Told when a phase is durable (status `activating`, `checking`, ...), before it runs. */
  readonly onPhase?: (phase: Phase, active: ActiveRecord) => void | Promise<void>;
  readonly signal?: AbortSignal;
}

/**
 * Activates `req`: writes hwm = seq durably, then runs, checks, rolls back if need be, and
 * resolves with the outcome (also journaled, phase `done`). Throws BAD_ARGUMENT for a seq not
 * above hwm and BUSY while an earlier activation is unfinished (call {@link resume} first).
 */
export async function activate(
  ctx: ActivationContext,
  req: ActivationRequest,
): Promise<ActivationOutcome> {
  const { journal, activator } = ctx;
  if (req.seq <= journal.state.hwm)
    throw new FltError('BAD_ARGUMENT', `seq ${req.seq} is not above hwm ${journal.state.hwm}`);
  if (journal.state.active !== null && journal.state.active.phase !== 'done')
    throw new FltError('BUSY', `activation ${journal.state.active.id} is unfinished: resume it`);
  const previous = await activator.snapshot(journal.state.lastGood);
  const spec = activationSpec(ctx, req);
  const planned = await planRun(spec);
  const active: ActiveRecord = {
    ...req,
    phase: 'activating',
    previous,
    runner: planned,
    startedAt: new Date().toISOString(),
  };
  await journal.write({ ...journal.state, hwm: req.seq, active });
  return runActivation(ctx, active, spec);
}

/**
 * Finishes the journal's unfinished activation after a restart, exactly once: the outcome of a
 * `done` one again (to republish), undefined when there is none.
 */
export async function resume(ctx: ActivationContext): Promise<ActivationOutcome | undefined> {
  const active = ctx.journal.state.active;
  if (active === null) return undefined;
  switch (active.phase) {
    case 'done':
      return active.outcome;
    case 'activating':
      return neverStarted(active.runner)
        ? runActivation(ctx, active, activationSpec(ctx, active))
        : afterActivation(ctx, active);
    case 'checking':
      return check(ctx, active);
    case 'rolling-back':
      return neverStarted(active.runner) ? rollBack(ctx, active) : afterRollback(ctx, active);
  }
}

async function runActivation(
  ctx: ActivationContext,
  active: ActiveRecord,
  spec: RunSpec,
): Promise<ActivationOutcome> {
  await ctx.onPhase?.('activating', active);
  let started: RunnerRecord;
  try {
    started = await startRun(spec, active.runner!);
  } catch (err) {
    // Nothing ran: nothing to roll back.
    return finish(ctx, active, {
      state: 'failed',
      code: 'ACTIVATION_FAILED',
      reason: `could not start the activation: ${(err as Error).message}`,
    });
  }
  return afterActivation(ctx, await ctx.journal.update({ runner: started }));
}

async function afterActivation(
  ctx: ActivationContext,
  active: ActiveRecord,
): Promise<ActivationOutcome> {
  const runner = await adoptRun(active.runner!);
  const deadline = Date.parse(active.startedAt) + timeout(ctx);
  const ended = await endRun(runner, deadline, ctx.signal);
  const log = await logTail(runner);
  if (ended.state === 'exited' && ended.rc === 0) {
    const next = await ctx.journal.update({
      phase: 'checking',
      activatedAt: new Date().toISOString(),
      log,
    });
    return check(ctx, next);
  }
  const code: FailureCode = ended.state === 'exited' ? 'ACTIVATION_FAILED' : 'INTERRUPTED';
  const why = ended.state === 'exited' ? `exit code ${ended.rc}` : ended.why;
  return rollBack(ctx, {
    ...active,
    log,
    failure: { code, reason: `activation: ${why}${lastLine(log)}` },
  });
}

async function check(ctx: ActivationContext, active: ActiveRecord): Promise<ActivationOutcome> {
  await ctx.onPhase?.('checking', active);
  const env = runEnv(ctx, active.id, active.storePath, active.action, false);
  // Throws ABORTED when the agent stops meanwhile: the phase stays `checking`, and the next
  // start runs the check again (stopping is no verdict on the new system).
  const sick = await checkHealth(ctx.activator, active.previous, active.storePath, active.action, {
    ...ctx.health,
    env: { ...env, ...ctx.health.env },
    signal: ctx.signal,
  });
  if (ctx.signal?.aborted) throw new FltError('ABORTED', 'stopped during the health check');
  if (sick === undefined) {
    const system = await ctx.activator.system({ storePath: active.storePath, generation: null });
    const lastGood: LastGood = { storePath: active.storePath, generation: system.generation };
    return finish(ctx, active, { state: 'succeeded' }, lastGood);
  }
  return rollBack(ctx, {
    ...active,
    failure: { code: 'HEALTH_CHECK_FAILED', reason: `health check: ${sick}` },
  });
}

/** Starts the rollback of `active` (whose `failure` says why), or finishes when impossible. */
async function rollBack(ctx: ActivationContext, active: ActiveRecord): Promise<ActivationOutcome> {
  const failure = active.failure!;
  const argv = ctx.activator.rollbackCommand(active.previous, active.action);
  if (argv === undefined)
    return finish(ctx, active, {
      state: 'failed',
      code: failure.code,
      reason: `${failure.reason}; no rollback: first deployment (no previous generation)`,
      rollback: 'impossible-first-deployment',
    });
  const spec = runSpec(ctx, `rollback-${active.seq}`, argv, {
    id: active.id,
    storePath: active.previous.storePath ?? active.previous.running ?? '',
    action: active.action,
    rollback: true,
  });
  const planned = await planRun(spec);
  const rolling = await ctx.journal.update({
    phase: 'rolling-back',
    failure,
    runner: planned,
    ...(active.log === undefined ? {} : { log: active.log }),
  });
  await ctx.onPhase?.('rolling-back', rolling);
  try {
    return afterRollback(ctx, await ctx.journal.update({ runner: await startRun(spec, planned) }));
  } catch (err) {
    return rollbackFailed(ctx, rolling, `could not start: ${(err as Error).message}`);
  }
}

async function afterRollback(
  ctx: ActivationContext,
  active: ActiveRecord,
): Promise<ActivationOutcome> {
  const runner = await adoptRun(active.runner!);
  const ended = await endRun(runner, Date.now() + timeout(ctx), ctx.signal);
  const rollbackLog = await logTail(runner);
  const log = joinLogs(active.log, rollbackLog);
  const done = { ...active, log };
  if (ended.state === 'exited' && ended.rc === 0) {
    // Exit 0 is not enough (deploy-rs#214): the system must be the one rolled back to.
    const missed = await notBack(ctx, active);
    if (missed !== undefined) return rollbackFailed(ctx, done, `exited 0, but ${missed}`);
    return finish(ctx, done, {
      state: 'rolled-back',
      code: active.failure!.code,
      reason: active.failure!.reason,
      rollback: 'done',
    });
  }
  const why = ended.state === 'exited' ? `exit code ${ended.rc}` : ended.why;
  return rollbackFailed(ctx, done, `${why}${lastLine(rollbackLog)}`);
}

/**
 * Why the system is not where the rollback was to take it, if it is not: the profile (not for
 * `test`, which leaves it alone) on the previous generation's path, and for `nixos`
 * /run/current-system on the system that ran before (not for `boot`). The `command` activator
 * has no view of the system: its exit code is all there is.
 */
async function notBack(ctx: ActivationContext, active: ActiveRecord): Promise<string | undefined> {
  if (ctx.activator.kind === 'command') return undefined;
  const { previous, action } = active;
  let now;
  try {
    now = await ctx.activator.system(ctx.journal.state.lastGood);
  } catch (err) {
    return `the system cannot be read afterwards: ${(err as Error).message}`;
  }
  if (action !== 'test' && previous.storePath !== null && now.profile !== previous.storePath)
    return `the profile is ${now.profile ?? 'unset'}, not ${previous.storePath}`;
  const running = action === 'test' ? previous.running : previous.storePath;
  if (ctx.activator.kind === 'nixos' && action !== 'boot' && running && now.current !== running)
    return `the running system is ${now.current ?? 'unknown'}, not ${running}`;
  return undefined;
}

function rollbackFailed(
  ctx: ActivationContext,
  active: ActiveRecord,
  why: string,
): Promise<ActivationOutcome> {
  return finish(ctx, active, {
    state: 'failed',
    code: 'ROLLBACK_FAILED',
    reason: `${active.failure!.reason}; rollback: ${why}`,
    rollback: 'failed',
  });
}

/** Journals the outcome (phase `done`, lastGood if it succeeded) and returns it. */
async function finish(
  ctx: ActivationContext,
  active: ActiveRecord,
  result: Omit<ActivationOutcome, 'times' | 'log'>,
  lastGood?: LastGood,
): Promise<ActivationOutcome> {
  const outcome: ActivationOutcome = {
    ...result,
    times: {
      activating: active.startedAt,
      ...(active.activatedAt === undefined ? {} : { activated: active.activatedAt }),
      finished: new Date().toISOString(),
    },
    ...(active.log === undefined || active.log === '' ? {} : { log: active.log }),
  };
  const state = ctx.journal.state;
  await ctx.journal.write({
    ...state,
    lastGood: lastGood ?? state.lastGood,
    active: { ...active, phase: 'done', outcome },
  });
  await removeOldRuns(ctx, active.seq);
  return outcome;
}

/**
 * Removes the run directories of earlier activations (their outcome is journaled and
 * published), keeping this one's `activate-SEQ` and `rollback-SEQ`. Each holds one log of all a
 * run printed (no limit: a chatty activation's log can be as big as its output; only the last
 * LOG_TAIL_MAX bytes are ever read), so at most two such logs stay on disk. Best effort.
 */
async function removeOldRuns(ctx: ActivationContext, seq: number): Promise<void> {
  const dir = path.join(ctx.stateDir, 'deploy', 'run');
  const keep = new Set([`activate-${seq}`, `rollback-${seq}`]);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.slice(0, 1000))
    if (!keep.has(name) && /^(activate|rollback)-\d+$/.test(name))
      await rm(path.join(dir, name), { recursive: true, force: true }).catch(() => undefined);
}

/** Waits for a run until `deadline`; one still running then is killed and counted gone. */
async function endRun(runner: RunnerRecord, deadline: number, signal?: AbortSignal) {
  const ended = await waitRun(runner, deadline, signal);
  if (ended.state !== 'running') return ended;
  await stopRun(runner);
  return { state: 'gone', why: 'did not finish in time and was killed' } as const;
}

function activationSpec(ctx: ActivationContext, a: ActivationRequest): RunSpec {
  const argv = ctx.activator.command(a.storePath, a.action);
  return runSpec(ctx, `activate-${a.seq}`, argv, { ...a, rollback: false });
}

function runSpec(
  ctx: ActivationContext,
  name: string,
  argv: string[],
  d: { id: string; storePath: string; action: DeployAction; rollback: boolean },
): RunSpec {
  return {
    name,
    dir: path.join(ctx.stateDir, 'deploy', 'run'),
    argv,
    env: runEnv(ctx, d.id, d.storePath, d.action, d.rollback),
    ...(ctx.runnerMode === undefined ? {} : { mode: ctx.runnerMode }),
  };
}

/** The runner's environment (design §3 "Runner env"). */
function runEnv(
  ctx: ActivationContext,
  id: string,
  storePath: string,
  action: DeployAction,
  rollback: boolean,
): Record<string, string> {
  return {
    ...toolEnv(),
    ...ctx.env,
    FLT_STORE_PATH: storePath,
    FLT_ACTION: action,
    FLT_DEPLOYMENT: id,
    FLT_STATE_DIR: ctx.stateDir,
    ...(rollback ? { FLT_ROLLBACK: '1' } : {}),
  };
}

/** A run whose directory was never made never started (crash between journal and start). */
function neverStarted(runner: RunnerRecord | null): boolean {
  return runner === null || !existsSync(path.dirname(runner.rcFile));
}

function timeout(ctx: ActivationContext): number {
  return ctx.activationTimeoutMs ?? ACTIVATION_TIMEOUT_MS;
}

function lastLine(log: string): string {
  const line = log.trimEnd().split('\n').at(-1)?.trim().slice(0, 200) ?? '';
  return line === '' ? '' : ` (${line})`;
}

/** Activation log, then the rollback's, keeping the newest {@link LOG_TAIL_MAX} bytes. */
function joinLogs(activation: string | undefined, rollback: string): string {
  const all = `${activation ?? ''}${rollback === '' ? '' : `--- rollback ---\n${rollback}`}`;
  if (Buffer.byteLength(all) <= LOG_TAIL_MAX) return all;
  const buf = Buffer.from(all);
  const cut = buf.subarray(buf.length - LOG_TAIL_MAX).toString('utf8');
  return cut.slice(cut.indexOf('\n') + 1);
}
