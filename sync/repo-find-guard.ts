// A find must never load a document again over changes it already holds.
//
// automerge-repo 2.5.6's `Repo.find` of a document whose handle is `requesting` (asked of peers,
// not ready yet) starts a second load: it reads the document from storage again and, if storage
// has it by then, replaces the handle's document with what it read (`handle.update(() =>
// loadedDoc)`). Its CollectionSynchronizer calls `find` for every sync message it receives, so
// while a new agent's first messages arrive, each one starts such a load. A change applied in
// memory meanwhile, and not yet saved (saves are throttled), was dropped when the older stored
// copy replaced the document, while the sync state of the peer that sent it said it was
// delivered: the agent never sent it again, the coordinator kept asking for it (`need`), and the
// two exchanged ~10 messages a second until a new session reset the sync state. In a 200-agent
// fan-in that was 171 sync messages per agent at the coordinator, most of its CPU (issue 13).
//
// The guard answers a find of a `requesting` handle with that handle: at once when the caller
// accepts `requesting` (the synchronizer does), else once the handle leaves that state, as
// automerge-repo's own find waits. Every other find takes automerge-repo's path unchanged.
//
// And a find ends when its own signal aborts, whatever it waits for. automerge-repo keeps one load
// per document, watched by the signal of the find that began it (a synchronizer's has none), and
// a later find only subscribes to it: its own signal went unheard. A revoked agent's close waited
// up to a minute for a find of a document the coordinator would no longer send.

import type { AnyDocumentId, DocHandle, Repo } from '@automerge/automerge-repo';
import { FltError } from './errors.js';

type Find = Repo['find'];
type FindOptions = NonNullable<Parameters<Find>[1]>;

/** The handle states a guarded find waits for when the caller does not accept `requesting`. */
const SETTLED = ['ready', 'unavailable', 'deleted', 'unloaded'] as const;

/** Installs the guard on `repo` (once; later calls do nothing). */
export function guardRepoFind(repo: Repo): void {
  const r = repo as Repo & { [guarded]?: true };
  if (r[guarded]) return;
  if (typeof repo.find !== 'function' || typeof repo.handles !== 'object')
    throw new FltError('INTERNAL', 'automerge-repo changed: Repo.find is not as expected');
  r[guarded] = true;
  const find: Find = repo.find.bind(repo);
  const guardedFind = async (id: AnyDocumentId, options: FindOptions) => {
    const handle = repo.handles[id as keyof typeof repo.handles] as DocHandle<unknown> | undefined;
    if (handle?.state !== 'requesting') return find(id, options);
    const allowable: readonly string[] = options.allowableStates ?? ['ready'];
    if (allowable.includes('requesting')) return handle;
    // The caller's signal ends this wait too (not left to its 60 s timeout and its log line).
    await handle.whenReady([...SETTLED], options.signal ? { signal: options.signal } : undefined);
    // Settled: automerge-repo's find answers from its cache now, without loading again.
    return find(id, options);
  };
  repo.find = ((id: AnyDocumentId, options: FindOptions = {}) =>
    untilAborted(guardedFind(id, options), options.signal)) as Find;
}

/** `p`, or a rejection with the signal's reason (an AbortError) as soon as `signal` aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) {
    p.catch(() => undefined); // given up on: its own end is nobody's
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const guarded = Symbol('flt.repoFindGuard');
