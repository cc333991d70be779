// The admin: reads the fleet from its own replica of the coordinator's documents. Online, it
// syncs the replica first (waiting until it holds the coordinator's heads) and asks for live
// presence; offline, it answers from the replica alone and says as of when. Offline reads the
// documents straight from the store with Automerge: neither the node (iroh, the router, the sync
// adapter) nor automerge-repo's Repo is loaded, which is most of the CLI's start-up time.

import { join } from 'node:path';
import type * as A from '@automerge/automerge';
import type { DocumentId, Repo } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import { shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import type { RpcChannel } from '../../sync/rpc-channel.js';
import { FsStore } from '../../stores/fs-store.js';
import type { Config } from '../config/index.js';
import {
  agentsOf,
  storedFacts,
  type AgentEntry,
  type FactsDoc,
  type ForkMark,
  type RootDoc,
} from '../docs/types.js';
import {
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
  docHeads,
  fleetAudit,
  fleetInfo,
  fleetPresence,
  type PresenceEntry,
} from '../rpc-methods.js';
import { signOp, type OpBody, type SignedOp } from '../trust/admin-ops.js';
import { Authority, type AuditEntry } from '../trust/authority.js';
import { issueToken } from '../trust/tokens.js';
import type { NodeKey } from '../identity/index.js';
import {
  loadReplicaInfo,
  loadStoredDoc,
  saveReplicaInfo,
  whenHasHeads,
  type ReplicaInfo,
} from './replica.js';

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
}

export interface FleetView {
  coordinator: string;
  asOf: string;
  offline: boolean;
  agents: AgentRow[];
  /** The root document has changes its signed heads do not cover (not shown). */
  unverified: boolean;
}

export class Admin {
  /** Presence as of the last fleet(): live online, or the replica's snapshot offline. */
  private presence = new Map<NodeId, PresenceEntry>();
  /** The trusted root document's agents as of the last fleet(). */
  private entries = new Map<NodeId, AgentEntry>();
  private identity: Promise<{ coordinator: NodeId; rootDocId: string }> | undefined;

  private constructor(
    /** Online: the node's Repo. Offline: undefined, documents come from `store`. */
    private readonly repo: Repo | undefined,
    private readonly store: FsStore | undefined,
    private readonly close_: () => Promise<void>,
    private readonly config: Config,
    private readonly rpc: RpcChannel | undefined,
    /** This admin's node key: it signs every operation (online only). */
    private readonly key: NodeKey | undefined,
  ) {}

  static async open(config: Config, log: Logger, offline: boolean): Promise<Admin> {
    if (offline) {
      const store = await FsStore.open(join(config.stateDir, 'repo'), {
        logger: (l) => log.warn(l),
      });
      return new Admin(undefined, store, () => store.close(), config, undefined, undefined);
    }
    const { FltNode, requireCoordinator } = await import('../node.js');
    const { RpcChannel } = await import('../../sync/rpc-channel.js');
    const coordinator = requireCoordinator(config);
    const node = await FltNode.open({
      role: 'admin',
      config,
      log,
      repo: true,
      dial: [coordinator],
    });
    node.start();
    const rpc = new RpcChannel(node.transport, coordinator, { timeoutMs: config.rpcTimeoutMs });
    const close = () => (rpc.close(), node.close());
    return new Admin(node.repo, undefined, close, config, rpc, node.key);
  }

  close(): Promise<void> {
    return this.close_();
  }

  /** The fleet table: synced from the coordinator, or from the replica when offline. */
  async fleet(): Promise<FleetView> {
    let info: ReplicaInfo;
    let view: TrustedView<RootDoc>;
    // Online, changes that landed after the coordinator signed are normally signed a moment
    // later: ask again (a few times) before calling them unverified.
    for (let attempt = 0; ; attempt++) {
      info = this.rpc ? await this.sync(this.rpc) : await loadReplicaInfo(this.config.stateDir);
      const rootDocId = info.rootDocId as DocumentId;
      const signed = verifySignedHeads(info.rootSigned, { docId: rootDocId });
      view = trustedView(await this.doc<RootDoc>(rootDocId), signed);
      if (!view.unverified || !this.rpc || attempt === RESIGN_ATTEMPTS) break;
    }
    this.presence = new Map(info.presence.map((p) => [p.nodeId, p]));
    this.entries = new Map(agentsOf(view.doc ?? {}).map((a) => [a.nodeId, a]));
    const agents = [...this.entries.values()].map((a): AgentRow => {
      const live = this.presence.get(a.nodeId);
      return {
        nodeId: a.nodeId,
        hostname: a.summary?.hostname ?? null,
        os: a.summary?.os ?? null,
        nixosVersion: a.summary?.nixosVersion ?? null,
        lastSeen: live?.lastSeen ?? a.lastSeen,
        online: this.rpc ? (live?.online ?? false) : null,
        factsDocId: a.factsDocId,
        forked: a.forked ?? null,
      };
    });
    return {
      coordinator: info.coordinator,
      asOf: info.asOf,
      offline: !this.rpc,
      agents,
      unverified: view.unverified,
    };
  }

  /**
   * One agent's facts (AGENT = node id, unique prefix or hostname) from the replica, as of the
   * newest signed heads the root document holds for it (the trusted view): a change its writer
   * did not sign is never shown, whoever relayed it; `unverified` says whether one exists.
   */
  async facts(query: string): Promise<{
    agent: AgentRow;
    asOf: string;
    facts: Partial<Facts> | null;
    volatile: VolatileFacts | null;
    unverified: boolean;
    /** The agent signed newer facts than the coordinator holds yet; `facts` is older. */
    pending: boolean;
  }> {
    const view = await this.fleet();
    const agent = pick(view.agents, query);
    const entry = this.entries.get(agent.nodeId)!;
    const signed = verifiedFactsHeads(entry);
    if (this.rpc) await this.syncDoc(this.rpc, agent.factsDocId);
    let doc: FactsDoc | undefined;
    try {
      doc = await this.doc<FactsDoc>(agent.factsDocId);
    } catch {
      if (this.rpc)
        throw new FltError(
          'NOT_FOUND',
          `the coordinator has no facts from ${shortId(agent.nodeId)} yet`,
        );
      throw new FltError(
        'NOT_FOUND',
        `no facts of ${shortId(agent.nodeId)} in the replica; run once online`,
      );
    }
    const trusted = trustedView(doc, signed);
    const stored = trusted.doc ? storedFacts(trusted.doc) : null;
    const facts = stored ? validateFacts(stored) : null;
    const live = this.presence.get(agent.nodeId);
    // Signed heads we lack after syncing to the coordinator's heads are heads it lacks too
    // (a record a crash left ahead of its document): shown as pending, never waited for.
    const pending = live?.pending === true || (signed !== undefined && trusted.doc === undefined);
    const volatile = live?.volatile ?? null;
    return { agent, asOf: view.asOf, facts, volatile, unverified: trusted.unverified, pending };
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
    const trail = await rpc.call(fleetAudit, {});
    if (trail.initialAdmins.length === 0) throw new FltError('NOT_FOUND', 'the fleet has no admin');
    const authority = Authority.replay(trail.fleet, trail.initialAdmins, trail.entries);
    return { authority, entries: authority.entries() };
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

  /** A document of the replica: through the Repo online, straight from the store offline. */
  private async doc<T>(docId: DocumentId): Promise<A.Doc<T>> {
    if (this.repo) return (await this.repo.find<T>(docId)).doc();
    return loadStoredDoc<T>(this.store!, docId);
  }

  private online(): { rpc: RpcChannel; key: NodeKey } {
    if (!this.rpc || !this.key)
      throw new FltError('BAD_ARGUMENT', 'this command needs the coordinator (not --offline)');
    return { rpc: this.rpc, key: this.key };
  }

  /** Brings the replica's root document up to the coordinator's heads; saves what it learned. */
  private async sync(rpc: RpcChannel): Promise<ReplicaInfo> {
    const info = await rpc.call(fleetInfo, {});
    const pinned = await loadReplicaInfo(this.config.stateDir).catch(() => undefined);
    if (pinned?.coordinator === info.coordinator && pinned.rootDocId !== info.rootDocId)
      throw new FltError(
        'WRONG_FLEET',
        `the coordinator now names root ${info.rootDocId}, not ${pinned.rootDocId} as before; ` +
          `refusing (use a new --state-dir to trust it)`,
      );
    const rootDocId = info.rootDocId as DocumentId;
    const signed = verifySignedHeads(info.rootSigned, { docId: rootDocId });
    const repo = this.repo!; // online: the node's Repo
    const root = await repo.find<RootDoc>(rootDocId);
    const deadline = AbortSignal.timeout(this.config.rpcTimeoutMs);
    await whenHasHeads(root, [...signed.heads, ...info.rootHeads], deadline);
    const presence = await rpc.call(fleetPresence, {});
    await repo.flush([root.documentId]);
    const replica = {
      coordinator: info.coordinator,
      rootDocId: info.rootDocId,
      rootSigned: signed,
      asOf: presence.now,
      presence: presence.agents,
    };
    await saveReplicaInfo(this.config.stateDir, replica);
    return replica;
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

/** Finds one agent by node id, unique node id prefix, or hostname. */
export function pick(agents: readonly AgentRow[], query: string): AgentRow {
  const q = query.trim().toLowerCase();
  const byId = agents.filter((a) => a.nodeId.startsWith(q));
  const matches = byId.length > 0 ? byId : agents.filter((a) => a.hostname?.toLowerCase() === q);
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0)
    throw new FltError('NOT_FOUND', `no agent matches ${JSON.stringify(query)}`);
  const ids = matches.map((a) => `${shortId(a.nodeId)} (${a.hostname ?? '?'})`).join(', ');
  throw new FltError(
    'BAD_ARGUMENT',
    `${JSON.stringify(query)} matches ${matches.length} agents: ${ids}; give more of the node id`,
  );
}
