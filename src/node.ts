// A running flt node: its identity, its one iroh endpoint, the ALPN router and, for roles that
// replicate documents, an automerge-repo Repo persisted in the state dir. Roles build on this;
// close() runs every shutdown step even when one fails, and is idempotent.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Repo,
  type DocumentId,
  type Message,
  type PeerId,
  type RepoConfig,
} from '@automerge/automerge-repo';
import { FltError, messageOf } from './errors.js';
import type { IrohTransport } from '../sync/iroh-transport.js';
import type { Logger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { guardRepoFind } from '../sync/repo-find-guard.js';
import { guardRepoTimeouts } from '../sync/repo-timeouts.js';
import { keepWasmHeadroom } from '../sync/wasm-headroom.js';
import { Router, type AccessCheck } from '../sync/router.js';
import { SyncAdapter, type SyncAdapterOptions } from '../sync/sync-adapter.js';
import type { PushHandler } from '../sync/push-wire.js';
import type { PeerAddr } from '../sync/transport.js';
import { scopePeers, type PeerScopes } from '../sync/peer-scopes.js';
import { bindEndpoint, loadNodeKey } from './endpoint.js';
import type { Config } from './config/index.js';
import type { Role } from './config-keys.js';
import { FsStore, type FsStoreOptions } from '../stores/fs-store.js';
import type { NodeKey } from './identity/index.js';

/** automerge-repo's share configuration (its type is not exported by name). */
export type ShareConfig = NonNullable<RepoConfig['shareConfig']>;

export type { Role } from './config-keys.js';

/** How long automerge-repo may delay a document save (its throttle; 100 ms is its default). */
export const SAVE_DEBOUNCE_MS = 100;

/**
 * A node's documents: its store and Repo, which can open before the node does (its network is
 * attached by FltNode.open), so that a role opens the documents it owns, and builds what depends
 * on them, before any peer can reach it.
 */
export interface NodeDocuments {
  readonly repo: Repo;
  readonly store: FsStore;
}

/**
 * How a coordinator opens its store (FsStore). Indexed: enrolling an agent asks whether its
 * documents are stored, and under a fan-in those listings waited seconds behind the saves. Read
 * worker: a restart reads thousands of documents at once. Logged: every change of every agent's
 * document is saved as it comes, one append for all saved at once (stores/chunk-log.ts).
 */
export const COORDINATOR_STORE = { index: true, readWorker: true, log: true } as const;

/** Opens `<state-dir>/repo` and a Repo on it, with no network yet. */
export async function openDocuments(
  config: Config,
  key: NodeKey,
  log: Logger,
  options: Pick<FsStoreOptions, 'index' | 'readWorker' | 'log'> = {},
): Promise<NodeDocuments> {
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  const store = await FsStore.open(join(config.stateDir, 'repo'), {
    logger: (line) => log.warn(line),
    ...options,
  });
  guardRepoTimeouts(log);
  keepWasmHeadroom({ log });
  const repo = new Repo({
    storage: store,
    peerId: key.nodeId as string as PeerId,
    saveDebounceRate: SAVE_DEBOUNCE_MS,
  });
  guardRepoFind(repo);
  return { repo, store };
}

/**
 * Makes the ready documents of `docs` durable: for documents opened without a node yet (the
 * node's own close() does this once it exists), e.g. when binding the endpoint fails.
 */
export async function flushDocuments(docs: NodeDocuments): Promise<void> {
  const ready = Object.values(docs.repo.handles).filter((h) => h.isReady());
  await docs.repo.flush(ready.map((h) => h.documentId));
  await docs.store.idle();
}

/** Saves `doc` and waits for the store to have it on disk (flush, then settled). */
export async function saveNow(docs: NodeDocuments, doc: DocumentId): Promise<void> {
  await docs.repo.flush([doc]);
  await docs.store.settled(doc);
}

/** Saves a document this node writes before a message about it leaves (NodeOptions.durable). */
export function persistBeforeSend(
  docs: NodeDocuments,
  message: Message,
  durable: (documentId: DocumentId) => boolean,
): Promise<void> | undefined {
  const id = 'documentId' in message ? message.documentId : undefined;
  if (id === undefined || !('data' in message) || !durable(id)) return undefined;
  if (docs.repo.handles[id]?.isReady() !== true) return undefined;
  return saveNow(docs, id);
}

export { loadNodeKey, relaySetting, requireCoordinator } from './endpoint.js';

/** What a node of another flt version does differently: tests of mixed fleets set them. */
export interface Versions {
  /** Speaks push (sync/push.ts); default true. False: as flt before it. */
  readonly push?: boolean;
}

export interface NodeOptions {
  readonly role: Role;
  readonly config: Config;
  readonly log: Logger;
  /**
   * The node key, when the role loaded it beforehand (loadNodeKey) to derive its documents
   * before the node opens; else loaded here.
   */
  readonly key?: NodeKey;
  /** Peers whose documents this node keeps in sync (agents and admins: the coordinator). */
  readonly dial?: readonly PeerAddr[];
  /** Deadline of a sync dial's connect (SyncAdapterOptions.dialTimeoutMs). */
  readonly dialTimeoutMs?: number;
  /** Open a Repo on `<state-dir>/repo` (roles that replicate documents). */
  readonly repo?: boolean;
  /** The Repo, opened beforehand with openDocuments (with `key`); implies `repo`. */
  readonly documents?: NodeDocuments;
  /**
   * Which documents the Repo offers to (announce) and accepts from (access) each peer; by
   * default every document to and from every peer. Given the node key, since documents are
   * derived from it. Announcing everything to everyone costs O(N²) when N agents connect.
   */
  readonly share?: (key: NodeKey) => ShareConfig;
  /** Peers that sync only named documents, kept out of automerge-repo's per-peer loops. */
  readonly scopes?: PeerScopes;
  /** Checks each incoming sync message (see SyncAdapterOptions.admit). */
  readonly admit?: SyncAdapterOptions['admit'];
  /** Answers some incoming sync messages itself (see SyncAdapterOptions.answer). */
  readonly answer?: SyncAdapterOptions['answer'];
  /** Told when a peer's live sync session is replaced by another of its connections. */
  readonly onReplaced?: SyncAdapterOptions['onReplaced'];
  /** Which peers may open which protocols, checked before any of their bytes are read. */
  readonly access?: AccessCheck;
  /**
   * The documents this node writes. A sync message about one of them leaves only once the
   * document is saved (and fsynced): a change sent and then lost in a crash would come back from
   * a peer as a change this node never made, refused by its own admit guard, and the node would
   * write other changes under the same Automerge (actor, seq), which readers see as a fork.
   */
  readonly durable?: (documentId: DocumentId) => boolean;
  /** Speaks push (sync/push.ts): single-writer documents pushed by their writers. */
  readonly push?: PushHandler;
  /** Peers whose sync states the Repo keeps in storage (SyncAdapterOptions.keepsSyncState). */
  readonly keepsSyncState?: SyncAdapterOptions['keepsSyncState'];
}

export class FltNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly key: NodeKey,
    readonly transport: IrohTransport,
    readonly router: Router,
    readonly sync: SyncAdapter,
    readonly repo: Repo | undefined,
    readonly store: FsStore | undefined,
    private readonly log: Logger,
  ) {}

  /** Loads the key, binds the endpoint and, if asked, opens the Repo. Call `start()` after routing. */
  static async open(options: NodeOptions): Promise<FltNode> {
    const { config, log } = options;
    log.info(`state dir ${config.stateDir}`);
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    const key = options.key ?? (await loadNodeKey(config, log));
    const transport = await bindEndpoint(config, log, key, options.role);
    const router = new Router(transport, {
      logger: log,
      ...(options.access ? { access: options.access } : {}),
    });
    const docs =
      options.documents ?? (options.repo ? await openDocuments(config, key, log) : undefined);
    const durable = options.durable;
    const sync = new SyncAdapter({
      transport,
      dial: options.dial ?? [],
      ...(options.dialTimeoutMs !== undefined ? { dialTimeoutMs: options.dialTimeoutMs } : {}),
      logger: log,
      ...(options.admit ? { admit: options.admit } : {}),
      ...(options.answer ? { answer: options.answer } : {}),
      ...(options.onReplaced ? { onReplaced: options.onReplaced } : {}),
      ...(options.push ? { push: options.push } : {}),
      ...(options.keepsSyncState ? { keepsSyncState: options.keepsSyncState } : {}),
      ...(docs && durable
        ? { beforeSend: (m: Message) => persistBeforeSend(docs, m, durable) }
        : {}),
    });
    router.route(ALPN.sync, (conn) => sync.accept(conn));
    if (docs) {
      if (options.share) docs.repo.shareConfig = options.share(key);
      if (options.scopes) scopePeers(docs.repo, options.scopes);
      docs.repo.networkSubsystem.addNetworkAdapter(sync);
    }
    return new FltNode(key, transport, router, sync, docs?.repo, docs?.store, log);
  }

  start(): void {
    this.router.start();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /**
   * automerge-repo's throttled saves can still fire up to SAVE_DEBOUNCE_MS after shutdown();
   * wait until a whole window passes with nothing running, so that exiting never interrupts a
   * save (bounded: a few windows at most).
   */
  private async settleStore(): Promise<void> {
    const store = this.store;
    if (!store) return;
    for (let i = 0; i < 10; i++) {
      await store.idle();
      await new Promise((resolve) => setTimeout(resolve, SAVE_DEBOUNCE_MS + 20));
      if (!store.busy) return;
    }
  }

  /** Documents that are loaded (flush refuses handles still loading or requesting). */
  private readyDocuments(): DocumentId[] {
    return Object.values(this.repo?.handles ?? {})
      .filter((h) => h.isReady())
      .map((h) => h.documentId);
  }

  private async shutdown(): Promise<void> {
    const failures: string[] = [];
    const step = async (name: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${name}: ${messageOf(err)}`);
      }
    };
    // Stop the network first so no new changes or sync states arrive, then make documents
    // durable. The store is left open: automerge-repo's throttled saves may still fire after
    // shutdown(), and they must land rather than fail (FsStore writes atomically either way).
    await step('stop sync', () => this.sync.disconnect());
    await step('stop services', () => this.router.stop());
    await step('flush documents', () => this.repo?.flush(this.readyDocuments()));
    // Not repo.shutdown(): it would also save handles still loading or requesting (and fail);
    // the network is stopped and every ready document is flushed above.
    await step('settle store', () => this.settleStore());
    await step('close endpoint', () => this.transport.close());
    if (failures.length > 0) {
      for (const f of failures) this.log.error(`shutdown step failed: ${f}`);
      throw new FltError('IO', `shutdown incomplete: ${failures.join('; ')}`);
    }
  }
}
