// Runs every collector of collectors.ts and assembles Facts (stable), or samples VolatileFacts.
// Each collector fails soft: whatever it throws becomes a note and its fact is left out or empty, so a broken
// tool or a bug in one collector never stops an agent from publishing the rest.

import { FltError } from '../../sync/errors.js';
import { MAX_STRING } from './bounded.js';
import { COLLECTORS, type CollectContext, type Collector, type FactKey } from './collectors.js';
import { describeError, execTool, type ExecFn } from './exec.js';
import { DEFAULT_OS } from './os-release.js';
import { FACTS_SCHEMA_VERSION, type Facts, type OsInfo, type VolatileFacts } from './schema.js';
import * as system from './system.js';

/** Options of {@link collectFacts} and {@link collectVolatile}; all default to the real host. */
export interface CollectOptions {
  /** Filesystem root that /etc, /proc and /run are read under; tests pass a temp dir. */
  readonly root?: string;
  /** Runs external tools; defaults to {@link execTool}. */
  readonly exec?: ExecFn;
  readonly now?: () => Date;
  /** Stops waiting on tools; the collection then rejects with FltError `ABORTED`. */
  readonly signal?: AbortSignal;
}

/** Notes kept per collection and their length, so a chatty failure cannot bloat the document. */
const MAX_NOTES = 64;
const MAX_NOTE = 300;

type Soft<T> = { readonly value: T; readonly notes: string[] };

/**
 * Runs one collector with its own note list (so notes keep a fixed order however the
 * collectors interleave). Deliberately catches everything, programming errors included: the
 * brief wants a buggy collector reported in the facts, not a dead agent.
 */
async function soft<T>(
  name: string,
  fallback: T,
  fn: (note: (text: string) => void) => T | Promise<T>,
): Promise<Soft<T>> {
  const notes: string[] = [];
  try {
    return { value: await fn((text) => notes.push(text)), notes };
  } catch (err) {
    notes.push(`${name}: ${describeError(err)}`);
    return { value: fallback, notes };
  }
}

/** Collects the stable facts of this machine (or of the tree under `options.root`). */
export async function collectFacts(options: CollectOptions = {}): Promise<Facts> {
  const root = options.root ?? '/';
  const { signal } = options;
  const exec = options.exec ?? execTool;
  const run: ExecFn = (file, args, o) => exec(file, args, { ...o, signal });
  const collectedAt = (options.now ?? (() => new Date()))().toISOString();

  const results = new Map<FactKey, Soft<unknown>>();
  const round = (list: readonly Collector[], ctx: CollectContext) =>
    Promise.all(
      list.map(async (c) =>
        results.set(c.key, await soft(c.name, c.fallback, (note) => c.collect(ctx, note))),
      ),
    );
  await round(
    COLLECTORS.filter((c) => !c.afterOs),
    { root, run, os: DEFAULT_OS },
  );
  const os = (results.get('os')?.value ?? DEFAULT_OS) as OsInfo;
  await round(
    COLLECTORS.filter((c) => c.afterOs),
    { root, run, os },
  );
  if (signal?.aborted === true) {
    throw new FltError('ABORTED', 'facts collection aborted', { cause: signal.reason });
  }

  const facts: Record<string, unknown> = { schema: FACTS_SCHEMA_VERSION, collectedAt };
  for (const c of COLLECTORS) {
    const value = results.get(c.key)?.value;
    if (value !== undefined) facts[c.key] = value;
  }
  facts.notes = clipNotes(COLLECTORS.flatMap((c) => results.get(c.key)?.notes ?? []));
  return facts as Facts;
}

function clipNotes(notes: readonly string[]): string[] {
  const kept = notes.slice(0, MAX_NOTES).map((n) => n.slice(0, Math.min(MAX_NOTE, MAX_STRING)));
  if (notes.length > MAX_NOTES) kept.push(`notes: ${notes.length - MAX_NOTES} more left out`);
  return kept;
}

/**
 * Samples the volatile facts. Never throws: a value that cannot be read is 0 (load and uptime
 * come from node:os and cannot fail on Linux; memory falls back to os.freemem()).
 */
export async function collectVolatile(
  options: Pick<CollectOptions, 'root' | 'now'> = {},
): Promise<VolatileFacts> {
  const sampledAt = (options.now ?? (() => new Date()))().toISOString();
  const [uptime, load, available] = await Promise.all([
    soft('uptime', 0, () => system.uptimeSeconds()),
    soft('load', [0, 0, 0] as [number, number, number], () => system.load()),
    soft('memory', 0, () => system.memoryAvailableBytes(options.root ?? '/')),
  ]);
  return {
    uptimeSeconds: uptime.value,
    load: load.value,
    memoryAvailableBytes: available.value,
    sampledAt,
  };
}
