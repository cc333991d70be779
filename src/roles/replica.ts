// The admin's local replica: what it learned of the fleet, kept in its state dir so that
// `--offline` can answer from it. `replica.json` remembers the coordinator, the root document
// id and the last presence snapshot with the time it was taken ("as of"). `reads.json` keeps the
// agents `facts` read one at a time (fleet.agent: the record and presence, without the root),
// each as of when it was read.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId } from '@automerge/automerge-repo';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { FltError } from '../../sync/errors.js';
import { contentChunks } from '../../sync/owned-doc.js';
import type { FsStore } from '../../stores/fs-store.js';
import { presenceEntry, type PresenceEntry } from '../rpc-methods.js';

export interface ReplicaInfo {
  coordinator: string;
  /** Pinned at first contact: a coordinator that later names another root is refused. */
  rootDocId: string;
  /** The root's signed heads as last verified; checked again whenever read (also offline). */
  rootSigned: unknown;
  /** When the replica last matched the coordinator. */
  asOf: string;
  presence: PresenceEntry[];
}

const FILE = 'replica.json';

export async function saveReplicaInfo(stateDir: string, info: ReplicaInfo): Promise<void> {
  const file = join(stateDir, FILE);
  await writeFileAtomic(file, JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });
}

export async function loadReplicaInfo(stateDir: string): Promise<ReplicaInfo> {
  let text: string;
  try {
    text = await readFile(join(stateDir, FILE), 'utf8');
  } catch {
    throw new FltError(
      'BAD_ARGUMENT',
      `no replica in ${stateDir}: run the command once with the coordinator reachable`,
    );
  }
  try {
    return JSON.parse(text) as ReplicaInfo;
  } catch (err) {
    throw new FltError('IO', `${join(stateDir, FILE)} is corrupt; run once online to rewrite it`, {
      cause: err,
    });
  }
}

/** One agent as fleet.agent answered: its root record (as the root holds it) and presence. */
export interface AgentRead {
  asOf: string;
  record: string;
  presence: PresenceEntry;
}

/** The agents `facts` read of one root, the newest last. */
export interface Reads {
  coordinator: string;
  rootDocId: string;
  agents: AgentRead[];
}

const READS_FILE = 'reads.json';
/** Agents reads.json keeps at most (the least recently read leave first): ~1 KB each. */
export const READS_KEPT = 1_000;

/** reads.json as stored: its root, and its entries unchecked; undefined when not of that shape. */
async function readReads(
  stateDir: string,
): Promise<{ coordinator: string; rootDocId: string; agents: unknown[] } | undefined> {
  try {
    const r = JSON.parse(await readFile(join(stateDir, READS_FILE), 'utf8')) as Partial<Reads>;
    if (typeof r.coordinator !== 'string' || typeof r.rootDocId !== 'string') return undefined;
    if (!Array.isArray(r.agents)) return undefined;
    return { coordinator: r.coordinator, rootDocId: r.rootDocId, agents: r.agents };
  } catch {
    return undefined;
  }
}

/** The root reads.json is of (what pins a state dir that has no replica.json); no entry read. */
export async function readsRoot(
  stateDir: string,
): Promise<{ coordinator: string; rootDocId: string } | undefined> {
  const r = await readReads(stateDir);
  return r && { coordinator: r.coordinator, rootDocId: r.rootDocId };
}

/**
 * reads.json; undefined when absent or not of its shape (a cache of what online reads answered:
 * losing it costs an offline `facts` of those agents, nothing else). Entries of another shape are
 * left out; their records are checked again when read (docs/root.ts decodeAgent).
 */
export async function loadReads(stateDir: string): Promise<Reads | undefined> {
  const r = await readReads(stateDir);
  if (!r) return undefined;
  const agents = r.agents.flatMap((a) => {
    const read = a as Partial<AgentRead> | null;
    const presence = presenceEntry.safeParse(read?.presence);
    if (typeof read?.asOf !== 'string' || typeof read.record !== 'string' || !presence.success)
      return [];
    return [{ asOf: read.asOf, record: read.record, presence: presence.data }];
  });
  return { coordinator: r.coordinator, rootDocId: r.rootDocId, agents };
}

/**
 * Adds `read` to reads.json (replacing that agent's earlier read; another root's are dropped).
 * The others are copied as they are, not checked: loadReads checks every entry it gives.
 */
export async function keepRead(
  stateDir: string,
  root: { coordinator: string; rootDocId: string },
  read: AgentRead,
): Promise<void> {
  const held = await readReads(stateDir);
  const same = held?.coordinator === root.coordinator && held.rootDocId === root.rootDocId;
  const id = read.presence.nodeId;
  const others = (same ? held.agents : []).filter(
    (a) => (a as Partial<AgentRead> | null)?.presence?.nodeId !== id,
  );
  const reads = { ...root, agents: [...others, read].slice(-READS_KEPT) };
  await writeFileAtomic(join(stateDir, READS_FILE), JSON.stringify(reads) + '\n', { mode: 0o600 });
}

/**
 * A document as the replica's store holds it, loaded without a Repo (for offline reads): its
 * snapshot chunks (largest first: contentChunks), then its incremental chunks. `A.load` (no
 * patches: at 5,000 agents the root loads in ~0.35 s instead of ~0.45 s); bytes it refuses go
 * through `loadIncremental` into an empty document, as automerge-repo's storage subsystem loads
 * them, which skips what it cannot read. Throws (as `Repo.find` does) when the store holds none.
 */
export async function loadStoredDoc<T>(store: FsStore, docId: DocumentId): Promise<A.Doc<T>> {
  const { snapshots, incrementals } = await contentChunks(store, docId);
  const parts = [...snapshots, ...incrementals].flatMap((c) => (c.data ? [c.data] : []));
  if (parts.length === 0) throw new Error(`Document ${docId} is unavailable`);
  const bytes = Buffer.concat(parts);
  try {
    return A.load<T>(bytes);
  } catch {
    return A.loadIncremental(A.init<T>(), bytes);
  }
}

/**
 * Resolves once `handle` contains every head in `heads` (hex change hashes: the peer's state has
 * arrived). A handle that is not ready yet (requesting, unavailable) counts as "not yet"; it is
 * checked on every `heads-changed`, whose document is current even before the handle is ready.
 */
export function whenHasHeads(
  handle: DocHandle<unknown>,
  heads: readonly string[],
  signal: AbortSignal,
): Promise<void> {
  const wanted = [...heads];
  if (handle.isReady() && A.hasHeads(handle.doc(), wanted)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = ({ doc }: { doc: A.Doc<unknown> }) => {
      if (!A.hasHeads(doc, wanted)) return;
      handle.off('heads-changed', check);
      resolve();
    };
    handle.on('heads-changed', check);
    signal.addEventListener('abort', () => {
      handle.off('heads-changed', check);
      reject(new FltError('TIMEOUT', 'the replica did not catch up with the coordinator in time'));
    });
  });
}
