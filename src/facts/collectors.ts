// The list of fact collectors: one entry per fact, in the order of the Facts fields (and of
// their notes). To add a
// fact, write its collector in a file of its own (like disks.ts), add its field to Facts and its
// validator in schema.ts, and register it here; collect.ts runs the list and needs no change.

import { collectDisks } from './disks.js';
import type { ExecFn } from './exec.js';
import { collectNixos } from './nixos.js';
import { DEFAULT_OS, readOsRelease } from './os-release.js';
import type { Facts, OsInfo } from './schema.js';
import * as system from './system.js';
import { collectFacter, collectNix } from './tools.js';

/** What a collector may use: the filesystem root, tools, and the facts collected before it. */
export interface CollectContext {
  /** Filesystem root that /etc, /proc and /run are read under; tests pass a temp dir. */
  readonly root: string;
  /** Runs an external tool (bounded in time and output, aborted with the collection). */
  readonly run: ExecFn;
  /** os-release, for the collectors that run after the first round (`after: 'os'`). */
  readonly os: OsInfo;
}

/** The facts a collector can fill: everything but the envelope. */
export type FactKey = Exclude<keyof Facts, 'schema' | 'collectedAt' | 'notes'>;

export interface Collector<K extends FactKey = FactKey> {
  /** The Facts field it fills, and the prefix of its note when it throws. */
  readonly key: K;
  readonly name: string;
  /** Its value when it throws; `undefined` leaves an optional fact out. */
  readonly fallback: Facts[K];
  /** Runs after the first round, with `os` in the context (NixOS needs to know it is NixOS). */
  readonly afterOs?: boolean;
  collect(ctx: CollectContext, note: (text: string) => void): Facts[K] | Promise<Facts[K]>;
}

/** Keeps each entry's key, fallback and result types tied together. */
const collector = <K extends FactKey>(c: Collector<K>): Collector => c;

export const COLLECTORS: readonly Collector[] = [
  collector({ key: 'hostname', name: 'hostname', fallback: '', collect: () => system.hostname() }),
  collector({
    key: 'os',
    name: 'os-release',
    fallback: DEFAULT_OS,
    collect: (ctx, note) => readOsRelease(ctx.root, note),
  }),
  collector({
    key: 'kernel',
    name: 'kernel',
    fallback: { name: '', release: '', version: '' },
    collect: () => system.kernel(),
  }),
  collector({ key: 'arch', name: 'arch', fallback: '', collect: () => system.arch() }),
  collector({
    key: 'cpus',
    name: 'cpus',
    fallback: { model: '', count: 0 },
    collect: (_, note) => system.cpus(note),
  }),
  collector({
    key: 'memory',
    name: 'memory',
    fallback: { totalBytes: 0 },
    collect: () => system.memory(),
  }),
  collector({
    key: 'disks',
    name: 'disks',
    fallback: [],
    collect: (ctx, note) => collectDisks(ctx.root, note),
  }),
  collector({
    key: 'network',
    name: 'network',
    fallback: [],
    collect: (_, note) => system.network(note),
  }),
  collector({
    key: 'machineIdHash',
    name: 'machine-id',
    fallback: undefined,
    collect: (ctx, note) => system.machineIdHash(ctx.root, note),
  }),
  collector({
    key: 'nix',
    name: 'nix',
    fallback: undefined,
    collect: (ctx, note) => collectNix(ctx.run, note),
  }),
  collector({
    key: 'nixos',
    name: 'nixos',
    fallback: undefined,
    afterOs: true,
    collect: (ctx, note) => collectNixos(ctx.root, ctx.run, ctx.os, note),
  }),
  collector({
    key: 'facter',
    name: 'facter',
    fallback: undefined,
    collect: (ctx, note) => collectFacter(ctx.run, note),
  }),
];
