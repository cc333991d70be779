// Runs every collector and assembles Facts (stable) or VolatileFacts (sampled). Each collector
// fails soft: whatever it throws becomes a note and its fact is left out or empty, so a broken
// tool or a bug in one collector never stops an agent from publishing the rest.

import { FltError } from '../../sync/errors.js';
import { MAX_STRING } from './bounded.js';
import { collectDisks } from './disks.js';
import { describeError, execTool, type ExecFn } from './exec.js';
import { collectNixos } from './nixos.js';
import { DEFAULT_OS, readOsRelease } from './os-release.js';
import { FACTS_SCHEMA_VERSION, type Facts, type VolatileFacts } from './schema.js';
import * as system from './system.js';
import { collectFacter, collectNix } from './tools.js';

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

  const osP = soft('os-release', DEFAULT_OS, (note) => readOsRelease(root, note));
  const [os, hostname, kernel, arch, cpus, memory, disks, network, machineIdHash, nix, facter] =
    await Promise.all([
      osP,
      soft('hostname', '', () => system.hostname()),
      soft('kernel', { name: '', release: '', version: '' }, () => system.kernel()),
      soft('arch', '', () => system.arch()),
      soft('cpus', { model: '', count: 0 }, (note) => system.cpus(note)),
      soft('memory', { totalBytes: 0 }, () => system.memory()),
      soft('disks', [], (note) => collectDisks(root, note)),
      soft('network', [], (note) => system.network(note)),
      soft('machine-id', undefined, (note) => system.machineIdHash(root, note)),
      soft('nix', undefined, (note) => collectNix(run, note)),
      soft('facter', undefined, (note) => collectFacter(run, note)),
    ]);
  const nixos = await soft('nixos', undefined, (note) => collectNixos(root, run, os.value, note));
  if (signal?.aborted === true) {
    throw new FltError('ABORTED', 'facts collection aborted', { cause: signal.reason });
  }

  const parts: readonly Soft<unknown>[] = [os, hostname, kernel, arch, cpus, memory, disks];
  const notes = [...parts, network, machineIdHash, nix, nixos, facter].flatMap((r) => r.notes);
  return {
    schema: FACTS_SCHEMA_VERSION,
    collectedAt,
    hostname: hostname.value,
    os: os.value,
    kernel: kernel.value,
    arch: arch.value,
    cpus: cpus.value,
    memory: memory.value,
    disks: disks.value,
    network: network.value,
    ...(machineIdHash.value === undefined ? {} : { machineIdHash: machineIdHash.value }),
    ...(nix.value === undefined ? {} : { nix: nix.value }),
    ...(nixos.value === undefined ? {} : { nixos: nixos.value }),
    ...(facter.value === undefined ? {} : { facter: facter.value }),
    notes: clipNotes(notes),
  };
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
