// The admin's root view (issue 13): the root document's content as its trusted view shows it,
// kept in `root-view.json` beside the replica. Loading a 5,000-agent fleet's root with Automerge
// is ~0.35-0.45 s of a reads-only `admin agents` (~1.1 s in all); when the replica holds the root
// the view was read from, at the heads the coordinator names and under the same signed heads,
// the view is read instead (a JSON parse) and the root is neither fetched nor loaded.
//
// A cache of the store, trusted as far as the store is (the same state dir and owner): it names
// the exact bytes it was read from (a SHA-256 over the root's stored chunks) and the signed heads
// it was read at, so any change to the replica's root (a doc.fetch, a sync by a Repo admin, a
// quarantined chunk) or another signature makes it miss. Missing, unreadable or of another shape,
// it is ignored and written again after the next load. Its content is checked again on every read
// as the document's is (agentsOf, rootArtifacts).

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { TrustedView } from '../../sync/owned-doc.js';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { scalarString } from '../docs/scalars.js';
import type { ChunkStore } from './doc-fetch.js';

const FILE = 'root-view.json';
const VERSION = 1;

/** The root's trusted view as the cache holds it. */
export interface RootView {
  /** The heads of the replica's root it was read from. */
  heads: string[];
  /** The signed heads it was read at (TrustedView's). */
  signed: string[];
  unverified: boolean;
  /** The view's content, immutable strings as plain strings (which readers take alike). */
  content: Record<string, unknown>;
}

/** SHA-256 over the root's stored chunks (keys and bytes, in key order). */
async function digestOf(store: Pick<ChunkStore, 'loadRange'>, docId: string): Promise<string> {
  const chunks = [
    ...(await store.loadRange([docId, 'snapshot'])),
    ...(await store.loadRange([docId, 'incremental'])),
  ].sort((a, b) => (a.key.join('/') < b.key.join('/') ? -1 : 1));
  const hash = createHash('sha256');
  for (const c of chunks) {
    if (!c.data) continue;
    hash.update(`${c.key.join('/')}\n${c.data.length}\n`);
    hash.update(c.data);
  }
  return hash.digest('hex');
}

const isHeads = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h));

/** The cached view of `docId`, when it was read from the replica's root as it is now. */
export async function readRootView(
  stateDir: string,
  store: Pick<ChunkStore, 'loadRange'>,
  docId: string,
): Promise<RootView | undefined> {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(await readFile(join(stateDir, FILE), 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || v.v !== VERSION || v.docId !== docId) return undefined;
  const { heads, signed, unverified, content, digest } = v;
  if (!isHeads(heads) || !isHeads(signed) || typeof unverified !== 'boolean') return undefined;
  if (typeof content !== 'object' || content === null || Array.isArray(content)) return undefined;
  if (digest !== (await digestOf(store, docId))) return undefined;
  return { heads, signed, unverified, content: content as Record<string, unknown> };
}

/**
 * Keeps `view` of `doc` (the replica's root as its store holds it now) for the next command.
 * Nothing is kept for a view without content or with values JSON does not carry.
 */
export async function keepRootView(
  stateDir: string,
  store: Pick<ChunkStore, 'loadRange'>,
  docId: string,
  doc: A.Doc<unknown>,
  signed: readonly string[],
  view: TrustedView<unknown>,
): Promise<void> {
  const content = view.doc === undefined ? undefined : plain(view.doc);
  if (typeof content !== 'object' || content === null) return;
  const record = {
    v: VERSION,
    docId,
    digest: await digestOf(store, docId),
    heads: A.getHeads(doc),
    signed,
    unverified: view.unverified,
    content,
  };
  await writeFileAtomic(join(stateDir, FILE), JSON.stringify(record), { mode: 0o600 });
}

/** A document's content as JSON values; undefined when it holds anything else (bytes, counters). */
function plain(v: unknown): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string')
    return v;
  const text = scalarString(v);
  if (text !== undefined) return text;
  if (Array.isArray(v)) {
    const out = v.map(plain);
    return out.includes(undefined) ? undefined : out;
  }
  if (typeof v !== 'object' || Object.getPrototypeOf(v) !== Object.prototype) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const p = plain(x);
    if (p === undefined) return undefined;
    out[k] = p;
  }
  return out;
}
