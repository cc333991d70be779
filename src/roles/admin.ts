// The admin: reads the fleet from its own replica of the coordinator's documents. Online, it
// syncs the replica first (waiting until it holds the coordinator's heads) and asks for live
// presence; offline, it answers from the replica alone and says as of when. Offline reads the
// documents straight from the store with Automerge: neither the node (iroh, the router, the sync
// adapter) nor automerge-repo's Repo is loaded, which is most of the CLI's start-up time.
// `agents` and `facts` online (AdminOptions.reads) bring the replica up to the coordinator's heads
// by doc.fetch instead of sync: an endpoint and rpc calls, still no Repo (issue 13).

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError, NO_ANSWER, messageOf } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import type { RpcChannel } from '../../sync/rpc-channel.js';
import { FsStore } from '../../stores/fs-store.js';
import type { Config } from '../config/index.js';
import {
  agentsOf,
  decodeAgent,
  pickEntry,
  storedFacts,
  type AgentEntry,
  type FactsDoc,
  type ForkMark,
  type RootDoc,
} from '../docs/types.js';
import {
  sameHeads,
  trustedView,
  verifySignedHeads,
  type SignedHeads,
  type TrustedView,
} from '../../sync/owned-doc.js';

/** Extra fleet.info round trips fleet() makes while the root has changes newer than signed. */
const RESIGN_ATTEMPTS = 2;
import { validateFacts, type Facts, type VolatileFacts } from '../facts/index.js';
import {
  adminOp,
  deploySubmit,
  docFetch,
  docHeads,
  docsHeads,
  AUDIT_PAGE_ENTRIES,
  MAX_AGENT_QUERY,
  fleetAgent,
  fleetAudit,
  fleetInfo,
  fleetOnline,
  fleetPresence,
  presenceOfOnline,
  type PresenceEntry,
} from '../rpc-methods.js';
import { signOp, type OpBody, type SignedOp } from '../trust/admin-ops.js';
import { Authority, type AuditEntry } from '../trust/authority.js';
import { issueToken } from '../trust/tokens.js';
import { rootArtifacts, type ArtifactsSummary } from '../docs/root.js';
import { artifactsGc, artifactsStats } from '../rpc-methods.js';
import type { NodeKey } from '../identity/index.js';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { codeOf } from '../errors.js';
import { readStatus, type StatusContent } from '../docs/status.js';
import {
  assignSeqs,
  signDeployment,
  type DeployAction,
  type SignedPart,
} from '../trust/deployment.js';
import type { SentDeployment } from '../docs/outbox.js';
import { Outbox, outboxDocId, readStoredOutbox, type OutboxContent } from './outbox.js';
import type { Connection, PeerAddr } from '../../sync/transport.js';
import type { IrohTransport } from '../../sync/iroh-transport.js';
import type { PushProgress, PushSummary } from '../artifacts/push.js';
import type { SigningKey } from '../artifacts/nix-key.js';
import {
  agentStatus,
  configOf,
  deploymentViews,
  isTerminal,
  knownSeqs,
  progressKey,
  progressOf,
  resolveTargets,
  type AgentStatus,
  type ConfigView,
  type DeploymentView,
  type TargetProgress,
  type TargetQuery,
} from './rollout.js';
import {
  keepRead,
  loadReads,
  loadReplicaInfo,
  readsRoot,
  loadStoredDoc,
  saveReplicaInfo,
  whenHasHeads,
  type ReplicaInfo,
} from './replica.js';
import { applyFetch, storeFetched, type FetchAnswer } from './doc-fetch.js';
import {
  advance,
  contentOf,
  readRootView,
  saveRootView,
  viewOf,
  type RootView,
} from './root-view.js';

export interface AgentRow {
  nodeId: NodeId;
  hostname: string | null;
  os: string | null;
  nixosVersion: string | null;
  lastSeen: string;
  /** null when offline: the replica cannot know who is connected now. */
  online: boolean | null;
  factsDocId: DocumentId;
  /** Set when the coordinator marked the agent forked (src/trust/fork.ts): why and when. */
  forked: ForkMark | null;
  /** Whether it runs its desired configuration (null: never deployed); rollout.ts configOf. */
  config: ConfigView | null;
}

export interface FleetView {
  coordinator: string;
  asOf: string;
  offline: boolean;
  agents: AgentRow[];
  /** The root document has changes its signed heads do not cover (not shown). */
  unverified: boolean;
}

export interface AdminOptions {
  /**
   * Only fleet() and facts() will be asked (`flt admin agents` and `facts`). Online, the admin
   * then opens no Repo and no sync session: the root document and the facts document asked for
   * come by doc.fetch (src/roles/doc-fetch.ts) into the replica's store, which is what makes a
   * fresh admin of a large fleet fast (issue 13). Verified exactly as a synced replica is.
   */
  readonly reads?: boolean;
}

/**
 * Thrown by a reads-only admin (AdminOptions.reads) that cannot answer without a Repo: the
 * coordinator does not know doc.fetch, or a document is too large for it. The caller opens a
 * full admin and asks again (withAdmin does).
 */
export class NeedsRepo extends Error {}

export class Admin {
  /** Documents a reads-only admin fetched in this session (the newest state it holds). */
  private readonly fetched = new Map<DocumentId, A.Doc<unknown>>();
  /** Presence as of the last fleet(): live online, or the replica's snapshot offline. */
  private presence = new Map<NodeId, PresenceEntry>();
  /** The trusted root document's agents as of the last fleet(). */
  private entries = new Map<NodeId, AgentEntry>();
  /** The trusted root document's artifacts summary as of the last fleet() (issue 12). */
  private artifactsSummary: ArtifactsSummary | null = null;
  private identity: Promise<{ coordinator: NodeId; rootDocId: string }> | undefined;
  /** The root view cache, when the last fetchRoot found it current (reads-only admin). */
  private rootView: RootView | undefined;
  private rootReads = 0;

  /** The outbox's flush started by open(); close() waits for it (bounded). */
  private flushing: Promise<unknown> = Promise.resolve();

  private constructor(
    /** Online: the node's Repo. Offline: undefined, documents come from `store`. */
    private readonly repo: Repo | undefined,
    private readonly store: FsStore | undefined,
    private readonly close_: () => Promise<void>,
    private readonly config: Config,
    private readonly rpc: RpcChannel | undefined,
    /** This admin's node key: it signs every operation (online only). */
    private readonly key: NodeKey | undefined,
    /** Deployments signed and not yet delivered (online only; offline reads the store). */
    private readonly outbox: Outbox | undefined,
    private readonly log: Logger,
    /** A connection to the coordinator on flt/blobs/0 (online only; opened on first use). */
    private readonly blobs?: () => Promise<Connection>,
  ) {}

  /**
   * Opens the admin. Online, it also starts delivering the outbox's queued deployments (design
   * §2.4): every online admin command delivers what an earlier one could not.
   */
  static async open(
    config: Config,
    log: Logger,
    offline: boolean,
    options: AdminOptions = {},
  ): Promise<Admin> {
    if (offline) {
      const store = await FsStore.open(join(config.stateDir, 'repo'), {
        logger: (l) => log.warn(l),
      });
      const close = () => store.close();
      return new Admin(undefined, store, close, config, undefined, undefined, undefined, log);
    }
    const { requireCoordinator, loadNodeKey } = await import('../endpoint.js');
    const coordinator = requireCoordinator(config);
    const key = await loadNodeKey(config, log);
    if (options.reads === true) {
      const reader = await Admin.openReads(config, log, key, coordinator);
      if (reader) return reader;
    }
    const { FltNode } = await import('../node.js');
    const { RpcChannel } = await import('../../sync/rpc-channel.js');
    const outboxId = outboxDocId(key);
    // The outbox is ours alone: never offered to the coordinator (it would refuse its changes
    // and close the connection), never taken from it. Everything else as before.
    const notOutbox = (_: unknown, doc: DocumentId | undefined) =>
      Promise.resolve(doc !== outboxId);
    const node = await FltNode.open({
      role: 'admin',
      config,
      log,
      key,
      repo: true,
      dial: [coordinator],
      durable: (doc) => doc === outboxId,
      share: () => ({ announce: notOutbox, access: notOutbox }),
    });
    const outbox = await Outbox.open(node.repo!, node.store!, key);
    node.start();
    const rpc = new RpcChannel(node.transport, coordinator, { timeoutMs: config.rpcTimeoutMs });
    const { ALPN } = await import('../../sync/protocols.js');
    let blobs: Promise<Connection> | undefined;
    const connectBlobs = () => {
      blobs ??= node.transport.connect(coordinator, ALPN.blobs).catch((err: unknown) => {
        blobs = undefined; // a failed dial is not kept: the next push dials again
        throw err;
      });
      return blobs;
    };
    const close = async () => {
      rpc.close();
      await blobs?.then((c) => c.close(0, 'done')).catch(() => undefined);
      return node.close();
    };
    const admin = new Admin(
      node.repo,
      undefined,
      close,
      config,
      rpc,
      key,
      outbox,
      log,
      connectBlobs,
    );
    admin.flushing = admin.deliver().catch((err: unknown) => {
      log.warn(`outbox: ${err instanceof Error ? err.message : String(err)}`);
    });
    return admin;
  }

  /**
   * A reads-only admin (AdminOptions.reads): the replica's store, an endpoint and an rpc channel
   * to the coordinator; no Repo, no sync. Undefined when the outbox holds queued deployments:
   * every online command delivers them, and that needs the Repo.
   */
  private static async openReads(
    config: Config,
    log: Logger,
    key: NodeKey,
    coordinator: PeerAddr,
  ): Promise<Admin | undefined> {
    const store = await FsStore.open(join(config.stateDir, 'repo'), {
      logger: (l) => log.warn(l),
    });
    let transport: IrohTransport | undefined;
    try {
      if ((await readStoredOutbox(store, key)).queued.length > 0) {
        await store.close();
        return undefined;
      }
      const { bindEndpoint } = await import('../endpoint.js');
      const { RpcChannel } = await import('../../sync/rpc-channel.js');
      transport = await bindEndpoint(config, log, key, 'admin');
      const rpc = new RpcChannel(transport, coordinator, { timeoutMs: config.rpcTimeoutMs });
      const opened = transport;
      const close = async () => {
        rpc.close();
        await opened.close();
        await store.settled();
        await store.close();
      };
      return new Admin(undefined, store, close, config, rpc, key, undefined, log);
    } catch (err) {
      await transport?.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    // Queued deployments being delivered get one rpc_timeout to finish (then stay queued).
    const limit = new Promise((resolve) => setTimeout(resolve, this.config.rpcTimeoutMs).unref());
    await Promise.race([this.flushing, limit]);
    return this.close_();
  }

  /**
   * Submits the outbox's queued deployments (all of them, oldest first); one queued with
   * `push` has its closure pushed first (a path no longer in the store: NOT_IN_STORE, recorded
   * as its refusal).
   */
  private deliver() {
    const { rpc } = this.online();
    return this.outbox!.flush(
      async (parts) => rpc.call(deploySubmit, { parts }),
      async (q) => {
        if (q.push === true) await this.push([q.parts[0]!.storePath]);
      },
    );
  }

  // --- artifacts (issue 12) -----------------------------------------------------------------

  /**
   * Pushes the closure of `paths` from the admin's store (`nix_store`) to the coordinator,
   * signed with `nix_signing_key` (design §5). The store and the key are checked before any
   * network use (NOT_IN_STORE, NO_SIGNING_KEY, BAD_SIGNING_KEY); every missing path is then
   * tried, and the first failure's code is thrown after the others were (UNKNOWN_SIGNING_KEY,
   * DISK_FULL, ...).
   */
  async push(
    paths: readonly string[],
    onProgress?: (p: PushProgress) => void,
    /** The key when the caller checked paths and key already (preparePush), before opening. */
    prepared?: SigningKey,
  ): Promise<PushSummary> {
    const key = prepared ?? (await this.preparePush(paths));
    return this.pushPrepared(paths, key, onProgress);
  }

  private async preparePush(paths: readonly string[]) {
    const { preparePush } = await import('../artifacts/push.js');
    return preparePush(paths, this.config.nixSigningKey, this.config.nixStore);
  }

  private async pushPrepared(
    paths: readonly string[],
    key: Awaited<ReturnType<Admin['preparePush']>>,
    onProgress?: (p: PushProgress) => void,
  ): Promise<PushSummary> {
    this.online();
    const { pushOrThrow } = await import('../artifacts/push.js');
    return pushOrThrow(paths, {
      store: this.config.nixStore,
      key,
      connect: this.blobs!,
      parallel: this.config.artifactParallel,
      stateDir: this.config.stateDir,
      ...(onProgress ? { onProgress } : {}),
    });
  }

  /** The fleet table: synced from the coordinator, or from the replica when offline. */
  async fleet(): Promise<FleetView> {
    return (await this.root(false)).fleet;
  }

  /**
   * The trusted root view: synced online; from the replica offline, or online when
   * `fallback` and the coordinator does not answer (`reachable` false then). `held`: replica.json
   * as the caller read it already (offline).
   */
  private async root(
    fallback: boolean,
    held?: ReplicaInfo,
  ): Promise<{ fleet: FleetView; info: ReplicaInfo; reachable: boolean }> {
    let info: ReplicaInfo;
    let view: TrustedView<RootDoc>;
    let reachable = this.rpc !== undefined;
    // Online, changes that landed after the coordinator signed are normally signed a moment
    // later: ask again (a few times) before calling them unverified.
    for (let attempt = 0; ; attempt++) {
      // The root view cache serves an admin's first read of the root (a command's); later reads
      // (a retry, a polling admin) keep the document loaded in memory instead, as before.
      const first = this.rootReads++ === 0;
      if (reachable) {
        try {
          info = this.repo ? await this.sync(this.rpc!) : await this.fetchRoot(this.rpc!, first);
        } catch (err) {
          if (!fallback || !NO_ANSWER.has(codeOf(err))) throw err;
          reachable = false;
          info = await loadReplicaInfo(this.config.stateDir);
        }
      } else info = held ?? (await loadReplicaInfo(this.config.stateDir));
      const rootDocId = info.rootDocId as DocumentId;
      const signed = verifySignedHeads(info.rootSigned, { docId: rootDocId });
      view = await this.trustedRoot(rootDocId, signed, first);
      if (!view.unverified || !reachable || attempt === RESIGN_ATTEMPTS) break;
    }
    this.presence = new Map(info.presence.map((p) => [p.nodeId, p]));
    this.entries = new Map(agentsOf(view.doc ?? {}).map((a) => [a.nodeId, a]));
    this.artifactsSummary = rootArtifacts(view.doc ?? {}) ?? null;
    const agents = [...this.entries.values()].map((a) =>
      rowOf(a, this.presence.get(a.nodeId), reachable),
    );
    const fleet = {
      coordinator: info.coordinator,
      asOf: info.asOf,
      offline: !reachable,
      agents,
      unverified: view.unverified,
    };
    return { fleet, info, reachable };
  }

  /**
   * One agent's facts (AGENT = node id, unique prefix or hostname) as of the newest signed heads
   * its root record holds (the trusted view): a change its writer did not sign is never shown,
   * whoever relayed it; `unverified` says whether one exists. Online, the admin asks the
   * coordinator for that one record and its presence (fleet.agent) and reads no root; offline it
   * takes the record from the replica's root or from reads.json, whichever is newer (and from the
   * root online, with a coordinator before fleet.agent).
   */
  async facts(query: string): Promise<FactsAnswer> {
    if (query.trim() === '' || query.length > MAX_AGENT_QUERY)
      throw new FltError(
        'BAD_ARGUMENT',
        `AGENT ${query.trim() === '' ? 'is empty' : 'is too long'}: give a node id, a unique prefix of one, or a hostname`,
      );
    if (this.rpc) {
      const read = await this.askAgent(this.rpc, query);
      if (read) return this.factsOf(read);
    }
    return this.factsOf(this.rpc ? await this.tableAgent(query) : await this.keptAgent(query));
  }

  /**
   * fleet.agent: the agent's record and presence now, kept in reads.json for --offline; refused
   * (WRONG_FLEET) when it names another root than the state dir pinned. Undefined from a
   * coordinator before fleet.agent.
   */
  private async askAgent(rpc: RpcChannel, query: string): Promise<Picked | undefined> {
    const stateDir = this.config.stateDir;
    const [answer, pinned] = await Promise.all([
      rpc.call(fleetAgent, { query }).catch((err: unknown) => {
        if (codeOf(err) === 'RPC_UNKNOWN_METHOD') return undefined;
        throw err;
      }),
      pinnedRoot(stateDir),
    ]);
    if (!answer) return undefined;
    assertPinned(pinned, answer);
    const entry = decodeAgent(answer.nodeId, answer.record);
    if (!entry || answer.presence.nodeId !== answer.nodeId)
      throw new FltError(
        'BAD_MESSAGE',
        `fleet.agent: the answer about ${answer.nodeId} is malformed`,
      );
    const { now: asOf, record, presence } = answer;
    await keepRead(stateDir, answer, { asOf, record, presence });
    return { entry, presence, asOf, reachable: true };
  }

  /** The agent as the replica's root (synced or fetched first: a coordinator before fleet.agent). */
  private async tableAgent(query: string): Promise<Picked> {
    const { fleet: view } = await this.root(false);
    const entry = pickEntry([...this.entries.values()], query);
    const presence = this.presence.get(entry.nodeId);
    return { entry, presence, asOf: view.asOf, reachable: !view.offline };
  }

  /**
   * Offline: the agent from the replica's root, or from reads.json where it was read later (or
   * the replica has no root: an admin that only ever ran `facts`).
   */
  private async keptAgent(query: string): Promise<Picked> {
    const stateDir = this.config.stateDir;
    const [reads, replica] = await Promise.all([
      loadReads(stateDir),
      loadReplicaInfo(stateDir).catch(() => undefined),
    ]);
    const rows = new Map<NodeId, Picked>();
    // Without replica.json nor reads, root() says there is no replica.
    if (replica || !reads) {
      const { info } = await this.root(false, replica);
      for (const [id, entry] of this.entries)
        rows.set(id, { entry, presence: this.presence.get(id), asOf: info.asOf, reachable: false });
    }
    const sameRoot = !replica || replica.rootDocId === reads?.rootDocId;
    for (const r of sameRoot ? (reads?.agents ?? []) : []) {
      const entry = decodeAgent(r.presence.nodeId, r.record);
      const held = rows.get(r.presence.nodeId);
      if (entry && (!held || held.asOf < r.asOf))
        rows.set(entry.nodeId, { entry, presence: r.presence, asOf: r.asOf, reachable: false });
    }
    const entry = pickEntry(
      [...rows.values()].map((r) => r.entry),
      query,
    );
    return rows.get(entry.nodeId)!;
  }

  /** `read`'s facts: its facts document brought to the coordinator's heads online, then read. */
  private async factsOf(read: Picked): Promise<FactsAnswer> {
    const { entry, presence, asOf } = read;
    const signed = verifiedFactsHeads(entry);
    if (this.rpc && this.repo) await this.syncDoc(this.rpc, entry.factsDocId);
    else if (this.rpc) await this.fetchDoc(this.rpc, entry.factsDocId);
    let doc: FactsDoc | undefined;
    try {
      doc = await this.doc<FactsDoc>(entry.factsDocId);
    } catch {
      if (this.rpc)
        throw new FltError(
          'NOT_FOUND',
          `the coordinator has no facts from ${shortId(entry.nodeId)} yet`,
        );
      throw new FltError(
        'NOT_FOUND',
        `no facts of ${shortId(entry.nodeId)} in the replica; run once online`,
      );
    }
    const trusted = trustedView(doc, signed);
    const stored = trusted.doc ? storedFacts(trusted.doc) : null;
    const facts = stored ? validateFacts(stored) : null;
    // Signed heads we lack after syncing to the coordinator's heads are heads it lacks too
    // (a record a crash left ahead of its document): shown as pending, never waited for.
    const pending =
      presence?.pending === true || (signed !== undefined && trusted.doc === undefined);
    const volatile = presence?.volatile ?? null;
    const agent = rowOf(entry, presence, read.reachable);
    return { agent, asOf, facts, volatile, unverified: trusted.unverified, pending };
  }

  // --- deployments (issue 11) ---------------------------------------------------------------

  /**
   * Signs a deployment of `req.storePath` to the agents `req` names (resolved from the replica;
   * `onTargets` is told them before anything is kept or sent), keeps it in the outbox (durable),
   * then delivers the outbox (every queued deployment, oldest first, this one among them).
   * Unreachable coordinator: `queued`, delivered by a later online open.
   */
  async deploy(
    req: TargetQuery & {
      storePath: string;
      action: DeployAction;
      expiresInMs: number;
      /**
       * Push the path's closure first (design §5): checked before anything is signed, pushed
       * before the deployment is submitted (a push error refuses it: nothing kept or sent);
       * unreachable, the queued record is marked and the flush pushes it.
       */
      push?: { onProgress?: (p: PushProgress) => void; key?: SigningKey };
    },
    onTargets: (targets: readonly AgentEntry[]) => void = () => undefined,
  ): Promise<DeployOutcome> {
    const { key } = this.online();
    const signingKey = req.push
      ? (req.push.key ?? (await this.preparePush([req.storePath])))
      : undefined;
    const { info, reachable } = await this.root(true);
    const targets = resolveTargets([...this.entries.values()], req);
    onTargets(targets);
    let pushed: PushSummary | undefined;
    if (reachable && signingKey)
      pushed = await this.pushPrepared([req.storePath], signingKey, req.push?.onProgress);
    if (reachable)
      await this.syncDocs(targets.flatMap((t) => (t.statusDocId ? [t.statusDocId] : [])));
    const statuses = await this.statuses(targets);
    const outbox = this.outbox;
    if (!outbox) throw new NeedsRepo('deploy needs the Repo');
    const { lastSeq, queued } = outbox.read(info.rootDocId);
    const known = knownSeqs(targets, statuses, queued);
    const ids = targets.map((t) => t.nodeId);
    const seqs = assignSeqs(ids, lastSeq, (t) => known.get(t) ?? 0);
    const spec = { targets: seqs.seqs, storePath: req.storePath, action: req.action };
    const parts = signDeployment({ ...spec, expiresInMs: req.expiresInMs }, info.rootDocId, key);
    // Pushed already when reachable; otherwise the flush pushes it before submitting.
    await outbox.queue(parts, seqs.lastSeq, { push: signingKey !== undefined && !pushed });
    const id = parts[0]!.id;
    const base = { id, parts, targets: ids, ...(pushed ? { pushed } : {}) };
    if (!reachable) return { ...base, queued: true };
    // Outbox.flush runs after the flush open() started: never two submits of one at once.
    const sent = await this.deliverOne(id);
    return sent ? { ...base, queued: false, sent } : { ...base, queued: true };
  }

  /** Delivers the outbox; the record of deployment `id` once sent (undefined: still queued). */
  async deliverOne(id: string): Promise<SentDeployment | undefined> {
    const run = this.deliver();
    this.flushing = run.catch(() => undefined);
    const result = await run;
    return (
      result.sent.find((s) => s.id === id) ?? this.outbox!.read().sent.find((s) => s.id === id)
    );
  }

  /**
   * The progress of deployment `id` on `targets` (node ids) as their status documents' trusted
   * views show it, synced from the coordinator now. `stale`/`unknown` are what the coordinator
   * answered (never placed: terminal).
   */
  async progress(
    id: string,
    targets: readonly NodeId[],
    answer?: SentDeployment['answer'],
  ): Promise<TargetProgress[]> {
    await this.root(false);
    const entries = targets.map((t) => this.entries.get(t));
    const known = entries.filter((e): e is AgentEntry => e !== undefined);
    if (this.rpc) await this.syncDocs(known.flatMap((e) => (e.statusDocId ? [e.statusDocId] : [])));
    const statuses = await this.statuses(known);
    return targets.map((t): TargetProgress => {
      const e = this.entries.get(t);
      if (!e || answer?.unknown.includes(t)) return { nodeId: t, hostname: null, state: 'unknown' };
      const p = progressOf(id, e, statuses.get(t) ?? null);
      if (p.state === 'pending' && answer?.stale.includes(t)) return { ...p, state: 'stale' };
      // A newer deployment placed for the agent replaces this one before it ran.
      if (p.state === 'pending' && e.desired && e.desired.id !== id && answer?.placed.includes(t))
        return { ...p, state: 'superseded' };
      return p;
    });
  }

  /**
   * Waits until every target of deployment `id` is terminal, or `signal` aborts (TIMEOUT with the
   * unfinished ones); `onChange` is told each target's new state, and a fetching target's new
   * figures. Re-reads every `pollMs`.
   */
  async wait(
    id: string,
    targets: readonly NodeId[],
    opts: {
      signal: AbortSignal;
      answer?: SentDeployment['answer'];
      onChange?: (p: TargetProgress) => void;
      pollMs?: number;
    },
  ): Promise<TargetProgress[]> {
    const seen = new Map<NodeId, string>();
    let last: TargetProgress[] = [];
    for (;;) {
      try {
        last = await this.progress(id, targets, opts.answer);
      } catch (err) {
        if (!NO_ANSWER.has(codeOf(err)) || opts.signal.aborted) throw err;
      }
      for (const p of last) {
        const said = progressKey(p);
        if (seen.get(p.nodeId) !== said) {
          seen.set(p.nodeId, said);
          opts.onChange?.(p);
        }
      }
      if (last.length === targets.length && last.every(isTerminal)) return last;
      if (opts.signal.aborted) {
        const open = targets.filter((t) => !last.some((p) => p.nodeId === t && isTerminal(p)));
        throw new FltError(
          'TIMEOUT',
          `not finished in time: ${open.map((t) => `${shortId(t)} (${stateOf(last, t)})`).join(', ')}`,
        );
      }
      await sleepUnless(opts.pollMs ?? 500, opts.signal);
    }
  }

  /** `admin status`: every agent, or one (AGENT) with all its deployment records. */
  async status(query?: string): Promise<{
    asOf: string;
    offline: boolean;
    agents: AgentStatus[];
    /** The coordinator's artifact store in short, from the root document (null: none yet). */
    artifacts: ArtifactsSummary | null;
  }> {
    const { fleet } = await this.root(false);
    const all = [...this.entries.values()];
    const chosen = query === undefined ? all : [pickEntry(all, query)];
    if (this.rpc)
      await this.syncDocs(chosen.flatMap((e) => (e.statusDocId ? [e.statusDocId] : [])));
    const statuses = await this.statuses(chosen);
    const agents = chosen.map((e) => agentStatus(e, statuses.get(e.nodeId) ?? null, !!query));
    return { asOf: fleet.asOf, offline: fleet.offline, agents, artifacts: this.artifactsSummary };
  }

  /**
   * `admin deployments`: the verified trail's deployments (online: fetched and kept in the
   * state dir; offline: that copy, replayed again), per-state counts from the status documents,
   * and the outbox's queued and refused ones. Newest first.
   */
  async deployments(): Promise<{ asOf: string; offline: boolean; deployments: DeploymentView[] }> {
    const { fleet, info } = await this.root(false);
    const all = [...this.entries.values()];
    let trail: AuditEntry[] = [];
    if (this.rpc) {
      trail = replayTrail(await this.fetchTrail(this.rpc));
      await this.syncDocs(all.flatMap((e) => (e.statusDocId ? [e.statusDocId] : [])));
    } else {
      const text = await readFile(join(this.config.stateDir, AUDIT_FILE), 'utf8').catch(() => null);
      if (text !== null) trail = replayTrail(JSON.parse(text) as unknown);
    }
    const statuses = await this.statuses(all);
    const outbox = await this.outboxContent(info.rootDocId);
    return {
      asOf: fleet.asOf,
      offline: fleet.offline,
      deployments: deploymentViews(trail, statuses, outbox),
    };
  }

  /** Sets (KEY=VALUE) or removes (KEY=, null) labels of one agent: a signed agent.label op. */
  async label(query: string, labels: Record<string, string | null>): Promise<number> {
    await this.root(false);
    const e = pickEntry([...this.entries.values()], query);
    return this.submit({ op: 'agent.label', node: e.nodeId, labels });
  }

  /**
   * `admin artifacts stats` (issue 12): the coordinator's figures now (rpc artifacts.stats);
   * offline, the summary its root document holds (null: none).
   */
  async artifacts(): Promise<{ asOf: string; offline: boolean; stats: ArtifactsSummary | null }> {
    if (this.rpc) {
      const stats = await this.rpc.call(artifactsStats, {});
      return { asOf: new Date().toISOString(), offline: false, stats };
    }
    const { fleet } = await this.root(false);
    return { asOf: fleet.asOf, offline: true, stats: this.artifactsSummary };
  }

  /** `admin artifacts gc [--dry-run]`: the coordinator's artifact GC, now (rpc artifacts.gc). */
  artifactsGc(dryRun: boolean) {
    return this.online().rpc.call(artifactsGc, { dryRun });
  }

  private async outboxContent(fleetId: string): Promise<OutboxContent> {
    if (this.outbox) return this.outbox.read(fleetId);
    const { loadNodeKey } = await import('../node.js');
    const key = await loadNodeKey(this.config, this.log);
    return readStoredOutbox(this.store!, key, fleetId);
  }

  /** The status documents' trusted views (signed heads in root), null where none is held. */
  private async statuses(
    entries: readonly AgentEntry[],
  ): Promise<Map<NodeId, StatusContent | null>> {
    const out = new Map<NodeId, StatusContent | null>();
    for (const e of entries) out.set(e.nodeId, await this.statusOf(e));
    return out;
  }

  private async statusOf(e: AgentEntry): Promise<StatusContent | null> {
    if (!e.statusDocId || !e.statusWriteKey || !e.statusHeads) return null;
    let signed: SignedHeads;
    try {
      signed = verifySignedHeads(e.statusHeads, {
        docId: e.statusDocId,
        writeKey: e.statusWriteKey,
      });
    } catch {
      return null;
    }
    let doc: A.Doc<unknown>;
    try {
      doc = await this.doc<unknown>(e.statusDocId, true);
    } catch {
      return null;
    }
    const trusted = trustedView(doc as A.Doc<object>, signed);
    return trusted.doc ? readStatus(trusted.doc) : null;
  }

  /** Brings many documents up to the coordinator's heads (one docs.heads round trip). */
  private async syncDocs(docIds: readonly DocumentId[]): Promise<void> {
    if (docIds.length === 0) return;
    const { rpc } = this.online();
    if (!this.repo) throw new NeedsRepo('syncing many documents needs the Repo');
    const { heads } = await rpc.call(docsHeads, { docIds: [...docIds] });
    const repo = this.repo;
    const deadline = AbortSignal.timeout(this.config.rpcTimeoutMs);
    const wanted = docIds.filter((id) => heads[id]);
    await Promise.all(
      wanted.map(async (id) => {
        const handle = await repo.find(id, { allowableStates: ['ready', 'unavailable'] });
        await whenHasHeads(handle, heads[id]!, deadline);
      }),
    );
    await repo.flush([...wanted]);
  }

  /** Signs `body` with this admin's key and has the coordinator apply it; returns its index. */
  async submit(body: OpBody): Promise<number> {
    const { key } = this.online();
    const { rootDocId } = await this.fleetIdentity();
    return this.submitSigned(signOp(body, rootDocId, key));
  }

  /** Hands an already signed operation to the coordinator (it checks the signer's rights). */
  async submitSigned(op: SignedOp): Promise<number> {
    const { index } = await this.online().rpc.call(adminOp, { op });
    return index;
  }

  /** A one-time enrollment token, recorded in the trail before it is handed out. */
  async enrollToken(expiresInMs: number): Promise<{ token: string; expires: string }> {
    const { rpc, key } = this.online();
    const info = await this.fleetIdentity();
    const issued = issueToken(
      { fleetId: info.rootDocId, coordinator: info.coordinator, expiresInMs },
      key,
    );
    await rpc.call(adminOp, { op: issued.op });
    return { token: issued.token, expires: issued.payload.expires };
  }

  /**
   * The audit trail, replayed here: every signature and every right is checked again, so what
   * this returns is what the trail proves, not what the coordinator says.
   */
  async audit(): Promise<{ authority: Authority; entries: readonly AuditEntry[] }> {
    const { rpc } = this.online();
    const trail = await this.fetchTrail(rpc);
    if (trail.initialAdmins.length === 0) throw new FltError('NOT_FOUND', 'the fleet has no admin');
    const authority = Authority.replay(trail.fleet, trail.initialAdmins, trail.entries);
    return { authority, entries: authority.entries() };
  }

  /**
   * The audit trail as the coordinator stores it, kept in the state dir (AUDIT_FILE): only the
   * entries after the kept copy are fetched, page by page (fleet.audit `{from, limit}`), from
   * its last entry, which must come back the same (else the copy is dropped and all fetched).
   * Not trusted: whoever reads it replays it (Authority.replay).
   */
  private async fetchTrail(rpc: RpcChannel): Promise<RawTrail> {
    const file = join(this.config.stateDir, AUDIT_FILE);
    const kept = rawTrailOf(await readFile(file, 'utf8').catch(() => null));
    const page = async (from: number) => {
      try {
        return await rpc.call(fleetAudit, { from, limit: AUDIT_PAGE_ENTRIES });
      } catch (err) {
        // A coordinator before paging refuses the fields: it answers all of it to `{}`.
        if (codeOf(err) !== 'BAD_MESSAGE') throw err;
        return rpc.call(fleetAudit, {});
      }
    };
    let entries: unknown[] = [];
    let first = await page(kept ? Math.max(kept.entries.length - 1, 0) : 0);
    if (kept && first.total !== undefined) {
      const at = Math.max(kept.entries.length - 1, 0);
      const same =
        first.fleet === kept.fleet &&
        JSON.stringify(first.initialAdmins) === JSON.stringify(kept.initialAdmins) &&
        first.total >= kept.entries.length &&
        (kept.entries.length === 0 ||
          JSON.stringify(first.entries[0]) === JSON.stringify(kept.entries[at]));
      if (same) entries = kept.entries.slice(0, at);
      else first = await page(0); // not a prefix of this trail (another fleet, a restore): all
    }
    entries.push(...first.entries);
    const total = first.total ?? entries.length;
    // Each page holds at least one entry: at most `total` more calls.
    for (let calls = 0; entries.length < total && calls < total; calls++) {
      const next = await page(entries.length);
      if (next.entries.length === 0 || next.total === undefined) break;
      entries.push(...next.entries);
    }
    const raw: RawTrail = { fleet: first.fleet, initialAdmins: first.initialAdmins, entries };
    await writeFileAtomic(file, JSON.stringify(raw), { mode: 0o600 });
    return raw;
  }

  /** The coordinator and its root document id (the fleet id): asked once per Admin. */
  private fleetIdentity(): Promise<{ coordinator: NodeId; rootDocId: string }> {
    this.identity ??= this.online()
      .rpc.call(fleetInfo, {})
      .catch((err: unknown) => {
        this.identity = undefined; // a failed answer is not kept
        throw err;
      });
    return this.identity;
  }

  /**
   * The root's trusted view. At the first read without a Repo (reads-only or offline), from the
   * root view cache (root-view.ts) when it is at the signed heads; else from the document, then
   * kept there.
   */
  private async trustedRoot(
    docId: DocumentId,
    signed: SignedHeads,
    first: boolean,
  ): Promise<TrustedView<RootDoc>> {
    if (this.repo || !first) return trustedView(await this.doc<RootDoc>(docId), signed);
    const stateDir = this.config.stateDir;
    // Online, fetchRoot brought the cache up to the coordinator's root when it could.
    const cached = this.rpc ? this.rootView : await readRootView(stateDir, this.store!, docId);
    if (cached && sameHeads(cached.heads, signed.heads))
      return { doc: contentOf(cached) as unknown as RootDoc, unverified: false };
    const doc = await this.doc<RootDoc>(docId);
    const view = viewOf(doc, signed.heads);
    if (view)
      await saveRootView(stateDir, this.store!, docId, view).catch((err: unknown) =>
        this.log.debug(`root view not kept: ${messageOf(err)}`),
      );
    return trustedView(doc, signed);
  }

  /** A document of the replica: through the Repo online, straight from the store offline. */
  private async doc<T>(docId: DocumentId, held = false): Promise<A.Doc<T>> {
    if (!this.repo) {
      const fetched = this.fetched.get(docId);
      return fetched ? (fetched as A.Doc<T>) : loadStoredDoc<T>(this.store!, docId);
    }
    if (!held) return (await this.repo.find<T>(docId)).doc();
    // A document synced by syncDocs (or not at all): never wait for peers to send it.
    const handle = await this.repo.find<T>(docId, { allowableStates: ['ready', 'unavailable'] });
    if (!handle.isReady()) throw new FltError('NOT_FOUND', `${docId} is not in the replica`);
    return handle.doc();
  }

  private online(): { rpc: RpcChannel; key: NodeKey } {
    if (!this.rpc || !this.key)
      throw new FltError('BAD_ARGUMENT', 'this command needs the coordinator (not --offline)');
    return { rpc: this.rpc, key: this.key };
  }

  /** Brings the replica's root document up to the coordinator's heads; saves what it learned. */
  private async sync(rpc: RpcChannel): Promise<ReplicaInfo> {
    const info = await this.fleetInfoPinned(rpc);
    const rootDocId = info.rootDocId as DocumentId;
    const signed = verifySignedHeads(info.rootSigned, { docId: rootDocId });
    const repo = this.repo!; // online: the node's Repo
    const root = await repo.find<RootDoc>(rootDocId);
    const deadline = AbortSignal.timeout(this.config.rpcTimeoutMs);
    await whenHasHeads(root, [...signed.heads, ...info.rootHeads], deadline);
    const presence = await askPresence(rpc);
    await repo.flush([root.documentId]);
    return this.keepReplica(info, signed, presence);
  }

  /** Writes replica.json for a root now held up to `info`'s heads, with live presence. */
  private async keepReplica(
    info: { coordinator: string; rootDocId: string },
    rootSigned: ReplicaInfo['rootSigned'],
    presence: { now: string; agents: ReplicaInfo['presence'] },
  ): Promise<ReplicaInfo> {
    const replica = replicaOf(info, rootSigned, presence);
    await saveReplicaInfo(this.config.stateDir, replica);
    return replica;
  }

  /**
   * fleet.info, refused (WRONG_FLEET) when it names another root than the state dir pinned
   * (`replica`: replica.json, when the caller read it already).
   */
  private async fleetInfoPinned(rpc: RpcChannel, replica?: Promise<ReplicaInfo | undefined>) {
    const [info, pinned] = await Promise.all([
      rpc.call(fleetInfo, {}),
      pinnedRoot(this.config.stateDir, replica),
    ]);
    assertPinned(pinned, info);
    return info;
  }

  /**
   * sync() for a reads-only admin: the root document by doc.fetch (with live presence, asked at
   * the same time), kept in the replica's store; the same checks as sync().
   */
  private async fetchRoot(rpc: RpcChannel, first: boolean): Promise<ReplicaInfo> {
    const stateDir = this.config.stateDir;
    const pinning = loadReplicaInfo(stateDir).catch(() => undefined);
    const pinnedId = first ? ((await pinning)?.rootDocId as DocumentId | undefined) : undefined;
    // The root view cache is read while fleet.info is on its way.
    const [cached, info] = await Promise.all([
      pinnedId ? readRootView(stateDir, this.store!, pinnedId) : undefined,
      this.fleetInfoPinned(rpc, pinning),
    ]);
    const signed = verifySignedHeads(info.rootSigned, { docId: info.rootDocId as DocumentId });
    const [view, presence] = await Promise.all([
      this.bringRoot(rpc, info, signed, pinnedId === info.rootDocId ? cached : undefined),
      askPresence(rpc),
    ]);
    this.rootView = view;
    return this.keepReplica(info, signed, presence);
  }

  /**
   * The replica's root brought to the coordinator's, as `info` names it: through the root view
   * cache when it can (root-view.ts: nothing to fetch, or the changes applied to the view), else
   * the document by doc.fetch. Gives the view when it is at the signed heads, else undefined.
   */
  private async bringRoot(
    rpc: RpcChannel,
    info: { coordinator: string; rootDocId: string; rootHeads: string[] },
    signed: SignedHeads,
    cached: RootView | undefined,
  ): Promise<RootView | undefined> {
    const docId = info.rootDocId as DocumentId;
    let answer: FetchAnswer | undefined;
    if (cached) {
      const atSigned = (h: readonly string[]) => sameHeads(h, signed.heads);
      if (atSigned(cached.heads) && sameHeads(cached.heads, info.rootHeads)) return cached;
      answer = await this.askFetch(rpc, docId, cached.heads);
      const next =
        answer.changes && answer.heads ? advance(cached, answer.changes, answer.heads) : undefined;
      if (next && atSigned(next.view.heads) && info.rootHeads.every((h) => next.passed.has(h))) {
        const store = this.store!;
        await storeFetched(store, docId, () => loadStoredDoc(store, docId), answer);
        await saveRootView(this.config.stateDir, store, docId, next.view);
        this.log.debug('root view advanced to the signed heads');
        return next.view;
      }
    }
    // An answer to the cached view's heads is one to the stored root's (the view matched it).
    const root = await this.fetchDoc(rpc, docId, answer);
    // The coordinator signed these heads and named them a moment ago: its root holds them.
    if (!root || !A.hasHeads(root, [...signed.heads, ...info.rootHeads]))
      throw new FltError(
        'BAD_MESSAGE',
        `the coordinator's root document lacks the heads it signed (${shortId(info.coordinator)})`,
      );
    return undefined;
  }

  /** doc.fetch of `docId` from `have`; NeedsRepo when the coordinator does not know it. */
  private askFetch(rpc: RpcChannel, docId: DocumentId, have: string[]): Promise<FetchAnswer> {
    return rpc.call(docFetch, { docId, have }).catch((err: unknown) => {
      if (codeOf(err) === 'RPC_UNKNOWN_METHOD') throw new NeedsRepo('doc.fetch unknown');
      throw err;
    });
  }

  /**
   * One document brought to the coordinator's heads by doc.fetch and kept in the replica's store
   * (reads-only admin). Undefined when neither holds it. NeedsRepo when the coordinator cannot
   * send it this way. `asked`: an answer already asked for, from the heads the store holds.
   */
  private async fetchDoc(
    rpc: RpcChannel,
    docId: DocumentId,
    asked?: FetchAnswer,
  ): Promise<A.Doc<unknown> | undefined> {
    const store = this.store!;
    const local = await this.loadLocal(docId);
    const answer = asked ?? (await this.askFetch(rpc, docId, local ? A.getHeads(local) : []));
    if (answer.heads === null) {
      if (local) this.fetched.set(docId, local);
      return local;
    }
    const doc = applyFetch(local, answer, docId);
    if (doc === undefined) throw new NeedsRepo(`${docId} is too large for doc.fetch`);
    await storeFetched(store, docId, doc, answer, local === undefined);
    this.fetched.set(docId, doc);
    return doc;
  }

  /** A document of the replica (fetched in this session, or stored), undefined when none. */
  private async loadLocal(docId: DocumentId): Promise<A.Doc<unknown> | undefined> {
    const fetched = this.fetched.get(docId);
    if (fetched) return fetched;
    return loadStoredDoc<unknown>(this.store!, docId).catch(() => undefined);
  }

  /**
   * Brings one document up to the coordinator's heads. Not to signed heads beyond them: those
   * the coordinator does not hold, and waiting for them would only time out (facts() then says
   * newer changes are pending).
   */
  private async syncDoc(rpc: RpcChannel, docId: DocumentId): Promise<void> {
    const { heads } = await rpc.call(docHeads, { docId });
    if (!heads) return;
    // Our handle may already be "unavailable": a coordinator still waiting for the document asks
    // its peers for it, we answer that we lack it, and find() then fails at once. The coordinator
    // sends it to us when it arrives, so wait for its heads whatever the handle's state.
    const repo = this.repo!; // online: the node's Repo
    const handle = await repo.find(docId, { allowableStates: ['ready', 'unavailable'] });
    await whenHasHeads(handle, heads, AbortSignal.timeout(this.config.rpcTimeoutMs));
    await repo.flush([docId]);
  }
}

/** What replica.json holds: the root as `info` names it, and presence as of `presence.now`. */
function replicaOf(
  info: { coordinator: string; rootDocId: string },
  rootSigned: ReplicaInfo['rootSigned'],
  presence: { now: string; agents: ReplicaInfo['presence'] },
): ReplicaInfo {
  const { coordinator, rootDocId } = info;
  return { coordinator, rootDocId, rootSigned, asOf: presence.now, presence: presence.agents };
}

/** What facts() answers. */
export interface FactsAnswer {
  agent: AgentRow;
  asOf: string;
  facts: Partial<Facts> | null;
  volatile: VolatileFacts | null;
  unverified: boolean;
  /** The agent signed newer facts than the coordinator holds yet; `facts` is older. */
  pending: boolean;
}

/** One agent's record as a read found it, with its presence as of then. */
interface Picked {
  entry: AgentEntry;
  presence: PresenceEntry | undefined;
  asOf: string;
  /** The presence is live (else the agent's row says nobody knows whether it is online). */
  reachable: boolean;
}

/** The fleet table's row of `a`, with its presence (online only when `reachable`). */
function rowOf(a: AgentEntry, live: PresenceEntry | undefined, reachable: boolean): AgentRow {
  return {
    nodeId: a.nodeId,
    hostname: a.summary?.hostname ?? null,
    os: a.summary?.os ?? null,
    nixosVersion: a.summary?.nixosVersion ?? null,
    lastSeen: live?.lastSeen ?? a.lastSeen,
    online: reachable ? (live?.online ?? false) : null,
    factsDocId: a.factsDocId,
    forked: a.forked ?? null,
    config: configOf(a),
  };
}

/**
 * Every agent's presence as the table shows it: fleet.online (no volatile facts: `facts` asks
 * for them); all of fleet.presence from a coordinator before it.
 */
function askPresence(rpc: RpcChannel): Promise<{ now: string; agents: PresenceEntry[] }> {
  return rpc.call(fleetOnline, {}).then(
    (a) => ({ now: a.now, agents: presenceOfOnline(a) }),
    (err: unknown) => {
      if (codeOf(err) === 'RPC_UNKNOWN_METHOD') return rpc.call(fleetPresence, {});
      throw err;
    },
  );
}

/** The root the state dir trusts: replica.json's, else reads.json's (first contact pins it). */
async function pinnedRoot(
  stateDir: string,
  replica = loadReplicaInfo(stateDir).catch(() => undefined),
) {
  return (await replica) ?? (await readsRoot(stateDir));
}

/** WRONG_FLEET when the same coordinator now names another root than `pinned`. */
function assertPinned(
  pinned: { coordinator: string; rootDocId: string } | undefined,
  info: { coordinator: string; rootDocId: string },
): void {
  if (pinned?.coordinator === info.coordinator && pinned.rootDocId !== info.rootDocId)
    throw new FltError(
      'WRONG_FLEET',
      `the coordinator now names root ${info.rootDocId}, not ${pinned.rootDocId} as before; ` +
        `refusing (use a new --state-dir to trust it)`,
    );
}

/** The agent's facts heads as the root document holds them, if they verify; else undefined. */
function verifiedFactsHeads(entry: AgentEntry): SignedHeads | undefined {
  if (!entry.factsHeads) return undefined;
  try {
    return verifySignedHeads(entry.factsHeads, {
      docId: entry.factsDocId,
      writeKey: entry.factsWriteKey,
    });
  } catch {
    return undefined;
  }
}

/** What `deploy` did: the signed parts, and the coordinator's answer unless queued. */
export interface DeployOutcome {
  id: string;
  parts: SignedPart[];
  targets: NodeId[];
  /** Kept in the outbox: the coordinator did not answer; a later online command delivers it. */
  queued: boolean;
  /** The coordinator's answer (or its refusal, `sent.error`). */
  sent?: SentDeployment;
  /** What was pushed before it was submitted (deploy with `push`, coordinator reachable). */
  pushed?: PushSummary;
}

/** The verified audit trail of the state dir: where `deployments --offline` reads. */
const AUDIT_FILE = 'audit.json';

/** The trail as fleet.audit answers it (and AUDIT_FILE keeps it). */
interface RawTrail {
  fleet: string;
  initialAdmins: NodeId[];
  entries: unknown[];
}

/** AUDIT_FILE's text as a trail; undefined when absent or not of that shape. */
function rawTrailOf(text: string | null): RawTrail | undefined {
  if (text === null) return undefined;
  try {
    const t = JSON.parse(text) as Partial<RawTrail> | null;
    if (typeof t?.fleet !== 'string' || !Array.isArray(t.initialAdmins)) return undefined;
    if (!Array.isArray(t.entries)) return undefined;
    return { fleet: t.fleet, initialAdmins: t.initialAdmins, entries: t.entries };
  } catch {
    return undefined;
  }
}

function replayTrail(raw: unknown): AuditEntry[] {
  const t = raw as { fleet: string; initialAdmins: NodeId[]; entries: unknown[] };
  if (!t || !Array.isArray(t.initialAdmins) || t.initialAdmins.length === 0) return [];
  return [...Authority.replay(t.fleet, t.initialAdmins, t.entries).entries()];
}

function stateOf(progress: readonly TargetProgress[], t: NodeId): string {
  return progress.find((p) => p.nodeId === t)?.state ?? 'pending';
}

function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
