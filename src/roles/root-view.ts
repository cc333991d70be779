// The admin's root view (issue 13): the root document's state as its signed heads show it, kept
// in `root-view.json` beside the replica. Loading a 5,000-agent fleet's root with Automerge is
// ~0.35-0.45 s of a reads-only `admin agents` (~1.1 s in all). With the view:
// - the replica's root at the heads the coordinator names and signed: the view is read (a JSON
//   parse), nothing fetched or loaded;
// - the root moved by a few changes (an agent connected, a GC ran): doc.fetch sends them as
//   always, and they are applied to the view (`advance`) instead of to the loaded document, when
//   they are of the kind the coordinator writes: a linear chain of plain values set or deleted in
//   maps the view holds, each replacing exactly the value it names (its `pred`). Anything else
//   (concurrent changes, new objects, counters, lists) makes the caller load the document.
//
// Only a verified view is kept: one whose heads are the signed heads. The chain checks keep what
// Automerge guarantees: every change's hash is computed from its bytes, each depends on the heads
// before it, and the last is the head the coordinator signed, so the signature covers exactly
// what is applied.
//
// A cache of the store, trusted as far as the store is (the same state dir and owner): it names
// the exact bytes of the root's stored chunks it matches (a SHA-256 over them), so any other
// change to the replica's root (a sync by a Repo admin, a quarantined chunk) makes it miss.
// Missing, unreadable or of another shape, it is ignored and written again after the next load.
// The content it gives is checked again on every read as the document's is (agentsOf).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { contentChunks, sameHeads } from '../../sync/owned-doc.js';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import type { ChunkStore } from './doc-fetch.js';

const FILE = 'root-view.json';
const VERSION = 1;
const ROOT = '_root';

/** A value the view holds: a JSON scalar, or a map (by object id). */
type Value = string | number | boolean | null | { map: string };
/** Each map's keys: the value and the id of the operation that set it. */
type Maps = Record<string, Record<string, [Value, string]>>;

/** The root's state at its signed heads, as the cache holds it. */
export interface RootView {
  heads: string[];
  maps: Maps;
}

type Store = Pick<ChunkStore, 'loadRange'>;

/** SHA-256 over the root's stored chunks (keys and bytes, in key order). */
async function digestOf(store: Store, docId: string): Promise<string> {
  const { snapshots, incrementals } = await contentChunks(store, docId);
  const chunks = [...snapshots, ...incrementals].sort((a, b) =>
    a.key.join('/') < b.key.join('/') ? -1 : 1,
  );
  const hash = createHash('sha256');
  for (const c of chunks) {
    if (!c.data) continue;
    hash.update(`${c.key.join('/')}\n${c.data.length}\n`);
    hash.update(c.data);
  }
  return hash.digest('hex');
}

const HEAD = /^[0-9a-f]{64}$/;
const isHeads = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((h) => typeof h === 'string' && HEAD.test(h));

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The cached view of `docId`, when it matches the replica's root as stored now. The file is a
 * header line (version, document, the store's digest, a SHA-256 of the rest) and the view's JSON:
 * a damaged or foreign file is a miss, never an error or a wrong table.
 */
export async function readRootView(
  stateDir: string,
  store: Store,
  docId: string,
): Promise<RootView | undefined> {
  let text: string;
  try {
    text = await readFile(join(stateDir, FILE), 'utf8');
  } catch {
    return undefined;
  }
  const cut = text.indexOf('\n');
  const body = text.slice(cut + 1);
  let view: unknown;
  try {
    const h = JSON.parse(text.slice(0, cut)) as Record<string, unknown>; // null throws here
    if (h.v !== VERSION || h.docId !== docId || h.sum !== sha256(body)) return undefined;
    if (h.digest !== (await digestOf(store, docId))) return undefined;
    view = JSON.parse(body);
  } catch {
    return undefined;
  }
  return isView(view) ? view : undefined;
}

/** Writes `view` as the view of the replica's root as stored now. */
export async function saveRootView(
  stateDir: string,
  store: Store,
  docId: string,
  view: RootView,
): Promise<void> {
  const body = JSON.stringify({ heads: view.heads, maps: view.maps });
  const header = { v: VERSION, docId, digest: await digestOf(store, docId), sum: sha256(body) };
  await writeFileAtomic(join(stateDir, FILE), `${JSON.stringify(header)}\n${body}`, {
    mode: 0o600,
  });
}

/** A view of the shape viewOf makes: every entry a value and an op id, every map it names held. */
function isView(v: unknown): v is RootView {
  if (typeof v !== 'object' || v === null) return false;
  const { heads, maps } = v as Record<string, unknown>;
  if (!isHeads(heads) || typeof maps !== 'object' || maps === null) return false;
  const all = maps as Record<string, unknown>;
  if (typeof all[ROOT] !== 'object') return false;
  const shaped = Object.values(all).every(
    (map) =>
      typeof map === 'object' &&
      map !== null &&
      Object.values(map).every(
        (e) =>
          Array.isArray(e) &&
          e.length === 2 &&
          typeof e[1] === 'string' &&
          (isScalar(e[0]) || (isMapRef(e[0]) && typeof all[e[0].map] === 'object')),
      ),
  );
  // Each map reached once from the root: contentOf walks it.
  const seen = new Set<string>();
  const tree = (id: string): boolean => {
    if (seen.has(id)) return false;
    seen.add(id);
    const map = all[id] as Record<string, [unknown, string]>;
    return Object.values(map).every(([value]) => !isMapRef(value) || tree(value.map));
  };
  return shaped && tree(ROOT);
}

const isScalar = (v: unknown) =>
  v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
const isMapRef = (v: unknown): v is { map: string } =>
  typeof v === 'object' && v !== null && typeof (v as { map?: unknown }).map === 'string';

/**
 * The view of `doc` when its heads are `signed` (a verified view) and it holds only maps of
 * plain values without conflicts; undefined otherwise (nothing is cached then).
 */
export function viewOf(doc: A.Doc<unknown>, signed: readonly string[]): RootView | undefined {
  const heads = A.getHeads(doc);
  if (!sameHeads(heads, signed)) return undefined;
  const backend = A.getBackend(doc);
  const maps: Maps = {};
  const walk = (obj: string, keys: string[]): boolean => {
    const map: Record<string, [Value, string]> = (maps[obj] = {});
    for (const key of keys) {
      const all = backend.getAll(obj, key) as [string, unknown, string?][];
      if (all.length !== 1) return false; // a conflict: not the coordinator's single writer
      const [type, value, id] = all[0]!;
      if (type === 'map') {
        const child = value as string;
        map[key] = [{ map: child }, child];
        if (!walk(child, backend.keys(child))) return false;
      } else if (type === 'text') {
        // Text the root was begun with (kind, coordinator), shown as a string; a change that
        // edits it is refused by advance (no map of that id), one that replaces it is not.
        const text = value as string;
        map[key] = [backend.text(text), text];
      } else if (PLAIN_TYPES.has(type) && id !== undefined) map[key] = [value as Value, id];
      else return false;
    }
    return true;
  };
  return walk(ROOT, backend.keys(ROOT)) ? { heads, maps } : undefined;
}

/** Automerge's scalar types the view carries as they are (a map's id is its creating op). */
const PLAIN_TYPES = new Set(['str', 'int', 'uint', 'f64', 'boolean', 'null']);

/** The view's content as the document shows it (strings plain: readers take both alike). */
export function contentOf(view: RootView, obj = ROOT): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, [value]] of Object.entries(view.maps[obj] ?? {}))
    out[key] = typeof value === 'object' && value !== null ? contentOf(view, value.map) : value;
  return out;
}

/**
 * `view` with `changes` (doc.fetch's: every change after the view's heads) applied, ending at
 * `heads`; undefined when they are not a linear chain from the view's heads to `heads` of plain
 * values set or deleted in maps it holds, each replacing what it names. Also gives every head the
 * chain went through (fleet.info's heads may be any of them).
 */
export function advance(
  view: RootView,
  changes: Uint8Array,
  heads: readonly string[],
): { view: RootView; passed: Set<string> } | undefined {
  const chunks = changeChunks(changes);
  if (chunks === undefined) return undefined;
  const maps: Maps = { ...view.maps }; // a map is copied when first written (the view stays)
  let current = [...view.heads];
  const passed = new Set(current);
  for (const bytes of chunks) {
    let change: A.DecodedChange;
    try {
      change = A.decodeChange(bytes);
    } catch {
      return undefined;
    }
    if (!sameHeads(change.deps, current)) return undefined;
    let counter = change.startOp;
    for (const op of change.ops) {
      const id = `${counter++}@${change.actor}`;
      if (maps[op.obj] === view.maps[op.obj] && maps[op.obj]) maps[op.obj] = { ...maps[op.obj] };
      const map = maps[op.obj];
      if (map === undefined || typeof op.key !== 'string') return undefined;
      const before = map[op.key];
      if (!sameHeads(op.pred, before ? [before[1]] : [])) return undefined;
      if (op.action === 'del') delete map[op.key];
      else if (op.action === 'set' && isPlainSet(op)) map[op.key] = [op.value as Value, id];
      else return undefined;
    }
    current = [change.hash];
    passed.add(change.hash);
  }
  return sameHeads(current, heads) ? { view: { heads: current, maps }, passed } : undefined;
}

type Op = A.DecodedChange['ops'][number];

function isPlainSet(op: Op): boolean {
  const { value, datatype } = op as Omit<Op, 'datatype'> & { datatype?: string | null };
  if (typeof value === 'number')
    return datatype === 'int' || datatype === 'uint' || datatype === 'float64';
  if (datatype !== undefined && datatype !== null) return false;
  return typeof value === 'string' || typeof value === 'boolean' || value === null;
}

/** Automerge's chunk magic bytes, then a checksum (4), a type (1) and a LEB128 length. */
const MAGIC = [0x85, 0x6f, 0x4a, 0x83];
const CHANGE = 1;
const COMPRESSED_CHANGE = 2;

/** The change chunks `bytes` is made of; undefined for anything else (a document chunk). */
function changeChunks(bytes: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (!MAGIC.every((m, i) => bytes[at + i] === m)) return undefined;
    const type = bytes[at + 8];
    if (type !== CHANGE && type !== COMPRESSED_CHANGE) return undefined;
    let length = 0;
    let shift = 0;
    let p = at + 9;
    for (;;) {
      if (p >= bytes.length || shift > 28) return undefined;
      const b = bytes[p++]!;
      length += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) break;
    }
    const end = p + length;
    if (end > bytes.length) return undefined;
    out.push(bytes.subarray(at, end));
    at = end;
  }
  return out;
}
