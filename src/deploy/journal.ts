// The agent's durable deployment state (design §3): one file, `<state>/deploy/journal.json`,
// replaced atomically (stores/atomic-write.ts: temp, fsync, rename, fsync dir). It holds the
// high-water mark (written before anything runs: a restart never repeats an activation), the
// last good system, and the activation in flight (with its runner, to be adopted after a restart).
//
// A journal that does not parse or validate is STORE_CORRUPT, with the path and what is wrong.
// Decision: it is never reset automatically (that would forget hwm and allow a replay); the
// caller stops deploying, reports the code, and keeps the agent running (no crash loop). An
// operator moves the file away; the hwm is then recovered from the status document (design §3).

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { FltError } from '../errors.js';
import { FAILURE_CODES } from './outcome.js';
import type { ActivationOutcome, FailureCode } from './outcome.js';
import type { DeployAction, LastGood, Previous } from './activator.js';
import type { RunnerRecord } from './runner.js';

/** The journal is a few KB (log tail 4 KiB at most); anything much larger is not ours. */
export const JOURNAL_MAX_BYTES = 256 * 1024;
export const JOURNAL_FILE = 'journal.json';

export type Phase = 'activating' | 'checking' | 'rolling-back' | 'done';

/** The activation in flight (or the last one, `done`, with its outcome). */
export interface ActiveRecord {
  readonly id: string;
  readonly seq: number;
  readonly digest: string;
  readonly storePath: string;
  readonly action: DeployAction;
  readonly phase: Phase;
  readonly previous: Previous;
  /** The runner of the current phase: the activation's, then the rollback's. */
  readonly runner: RunnerRecord | null;
  readonly startedAt: string;
  readonly activatedAt?: string;
  /** Why it is rolling back (set with phase `rolling-back`). */
  readonly failure?: { readonly code: FailureCode; readonly reason: string };
  /** The activation's log tail, kept when the rollback's runner replaces it. */
  readonly log?: string;
  readonly outcome?: ActivationOutcome;
}

export interface JournalState {
  readonly v: 1;
  /** The highest seq this agent started to activate; never lowered. */
  readonly hwm: number;
  readonly lastGood: LastGood | null;
  readonly active: ActiveRecord | null;
}

export const EMPTY_JOURNAL: JournalState = { v: 1, hwm: 0, lastGood: null, active: null };

const str = z.string().max(4096);
const iso = z.string().max(64);
const storePathOrNull = str.nullable();
const failureCode = z.enum(FAILURE_CODES);
const runner = z.union([
  z.strictObject({
    kind: z.literal('systemd-run'),
    unit: str,
    rcFile: str,
    logFile: str,
    bootId: str.nullable(),
  }),
  z.strictObject({
    kind: z.literal('child'),
    pid: z.number().int().positive().nullable(),
    pidFile: str,
    rcFile: str,
    logFile: str,
    bootId: str.nullable(),
  }),
]);
const outcome = z.strictObject({
  state: z.enum(['succeeded', 'failed', 'rolled-back']),
  code: failureCode.optional(),
  reason: z.string().max(8192).optional(),
  rollback: z.enum(['done', 'failed', 'impossible-first-deployment']).optional(),
  times: z.strictObject({ activating: iso, activated: iso.optional(), finished: iso }),
  log: z.string().max(8192).optional(),
});
const schema = z.strictObject({
  v: z.literal(1),
  hwm: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  lastGood: z
    .strictObject({ storePath: str, generation: z.number().int().positive().nullable() })
    .nullable(),
  active: z
    .strictObject({
      id: str,
      seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
      digest: str,
      storePath: str,
      action: z.enum(['switch', 'boot', 'test']),
      phase: z.enum(['activating', 'checking', 'rolling-back', 'done']),
      previous: z.strictObject({
        storePath: storePathOrNull,
        generation: z.number().int().positive().nullable(),
        failedUnits: z.array(str).max(10_000),
        running: storePathOrNull.optional(),
      }),
      runner: runner.nullable(),
      startedAt: iso,
      activatedAt: iso.optional(),
      failure: z.strictObject({ code: failureCode, reason: z.string().max(8192) }).optional(),
      log: z.string().max(8192).optional(),
      outcome: outcome.optional(),
    })
    .nullable(),
});

/** The journal file of one agent; one writer (the agent's deployment queue) at a time. */
export class Journal {
  #state: JournalState;

  private constructor(
    readonly file: string,
    state: JournalState,
  ) {
    this.#state = state;
  }

  /** `<stateDir>/deploy/journal.json`; a missing file is the empty journal. */
  static fileIn(stateDir: string): string {
    return path.join(stateDir, 'deploy', JOURNAL_FILE);
  }

  /** Reads and validates the journal; throws STORE_CORRUPT (path and what) when it is not one. */
  static async open(stateDir: string): Promise<Journal> {
    const file = Journal.fileIn(stateDir);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ENOENT') return new Journal(file, EMPTY_JOURNAL);
      throw err;
    }
    return new Journal(file, parseJournal(text, file));
  }

  get state(): JournalState {
    return this.#state;
  }

  /** Replaces the journal durably (returns once on disk); hwm may never go down. */
  async write(next: JournalState): Promise<void> {
    if (next.hwm < this.#state.hwm)
      throw new TypeError(`journal hwm would go down: ${this.#state.hwm} -> ${next.hwm}`);
    await writeFileAtomic(this.file, JSON.stringify(next, null, 1) + '\n', { createDir: true });
    this.#state = next;
  }

  /** Writes `active` with `patch` applied. */
  async update(patch: Partial<ActiveRecord>): Promise<ActiveRecord> {
    const active = this.#state.active;
    if (active === null) throw new TypeError('journal: no active record to update');
    const next = { ...active, ...patch };
    await this.write({ ...this.#state, active: next });
    return next;
  }
}

/** Parses a journal's text; STORE_CORRUPT (naming `file` and the first problem) when invalid. */
export function parseJournal(text: string, file: string): JournalState {
  if (text.length > JOURNAL_MAX_BYTES)
    throw corrupt(file, `larger than ${JOURNAL_MAX_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, `not JSON (${(err as Error).message})`);
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw corrupt(file, `${issue?.path.join('.') || 'top'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

function corrupt(file: string, why: string): FltError {
  return new FltError(
    'STORE_CORRUPT',
    `deployment journal ${file} is corrupt: ${why}; no deployment runs until it is moved away`,
  );
}
