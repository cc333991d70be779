// The coordinator: the fleet's always-on meeting point. It owns the root document (write key
// derived from its node key), enrolls agents over rpc, replicates every document peers sync
// with it, and serves the fleet from its own storage at once after a restart. Deployments
// (issue 11): it records admin-signed parts and places them in each target's desired document
// (deployments.ts), and keeps every agent's status summary (fleet.ts).
// When ready it writes its ticket to <state-dir>/coordinator.ticket.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocumentId, PeerId } from '@automerge/automerge-repo';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { Journal } from '../../stores/journal.js';
import { echoService } from '../../sync/echo.js';
import { Compactor } from '../../sync/compact.js';
import { EVICT_IDLE_MS, Eviction } from '../../sync/evict.js';
import { PlainDocs } from '../../sync/plain-docs.js';
import { StoredHeads } from '../../sync/stored-heads.js';
import { PushReceiver, PushRoutes } from '../../sync/push.js';
import type { Versions } from '../node.js';
import { FltError } from '../../sync/errors.js';
import { isNodeId, nodeIdBytes, shortId, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { contentChunks, docIdFor, isStored, OwnedDoc } from '../../sync/owned-doc.js';
import { RpcServer } from '../../sync/rpc.js';
import type { Config } from '../config/index.js';
import {
  ROOT_KEY,
  encodeAgent,
  encodeArtifacts,
  pickEntry,
  rootAdminsDocId,
  rootArtifacts,
  rootBase,
  type AgentEntry,
  type ArtifactsSummary,
  type RootDoc,
} from '../docs/types.js';
import { deriveKeyPair, loadPublicKeyFile, type NodeKey } from '../identity/index.js';
import { assertAdmissibleKey } from '../../sync/ed25519.js';
import { Deployments } from './deployments.js';
import { Gate } from './gate.js';
import {
  COORDINATOR_STORE,
  flushDocuments,
  FltNode,
  loadNodeKey,
  openDocuments,
  type NodeDocuments,
} from '../node.js';
import {
  AUDIT_PAGE_BYTES,
  AUDIT_PAGE_ENTRIES,
  adminOp,
  agentEnroll,
  artifactsGc,
  artifactsStats,
  agentHeartbeat,
  agentPing,
  deploySubmit,
  docFetch,
  docHeads,
  docsHeads,
  fleetAudit,
  fleetAgent,
  fleetInfo,
  fleetOnline,
  fleetPresence,
  fleetPresenceOf,
  GC_LIST_MAX,
  nodeInfo,
  refusal,
  type PresenceEntry,
} from '../rpc-methods.js';
import { VERSION } from '../version.js';
import { blobHasher } from '../../sync/blob-hash.js';
import { ArtifactGc, type GcResult, type GcRoot } from '../artifacts/gc.js';
import { SummaryWriter } from '../artifacts/summary.js';
import { BlobServer } from '../artifacts/server.js';
import { openArtifacts } from '../artifacts/store.js';
import type { ArtifactIndex } from '../artifacts/index.js';
import { parsePublicKey, type PublicKey } from '../artifacts/nix-key.js';
import type { BlobStore } from '../../stores/blob-store.js';
import { groupSave } from '../../sync/group-save.js';
import { Fleet } from './fleet.js';
import { PING_QUIET_MS, SCAN_MS } from './presence.js';
import { answerFetch, SnapshotCache } from './doc-fetch.js';
import { memoryMode } from '../memory-mode.js';

export const TICKET_FILE = 'coordinator.ticket';
/**
 * Its marks (stores/journal.ts), inside the Repo's directory so that they travel with the chunks
 * they name (a copy or a restore of `repo/` takes both); FsStore skips dot directories.
 */
export const MARKS_FILE = join('repo', '.flt-marks', 'journal');
/**
 * Incremental chunks of a kept document that make it worth one snapshot (sync/compact.ts): any.
 * A chunk holds every change of one debounced save, so their count says little (a 1,000-agent
 * root killed after a fan-in, with fewer than 8, took 9.2 s of a restart to load).
 */
const COMPACT_MIN_INCREMENTALS = 1;
/** How often the kept documents are looked at for compaction. */
const COMPACT_EVERY_MS = 30_000;

/** Settings of the coordinator's artifact store (issue 12), from its config (artifactSettings). */
export interface ArtifactSettings {
  /** `nix_trusted_keys`: when non-empty a push needs a signature by one of them. */
  readonly trustedKeys?: readonly PublicKey[];
  /** `artifact_gc_grace` in ms (default 14 days). */
  readonly gcGraceMs?: number;
  /** `artifact_min_free` in bytes (default 1 GiB). */
  readonly minFree?: number;
  /** Throttle of the root document's `artifacts` summary after pushes (default 60 s; tests). */
  readonly summaryIntervalMs?: number;
}

/** `nix_trusted_keys`, `artifact_gc_grace` and `artifact_min_free`, as the artifact store takes them. */
export function artifactSettings(config: Config): ArtifactSettings {
  return {
    trustedKeys: config.nixTrustedKeys.map(parsePublicKey),
    gcGraceMs: config.artifactGcGraceMs,
    minFree: config.artifactMinFree,
  };
}

/**
 * How long an agent's documents stay loaded once idle (sync/evict.ts: EVICT_IDLE_MS,
 * EVICT_MAX_LIVE, EVICT_QUIET_MS by default); tests shorten them.
 */
export interface EvictionSettings {
  readonly idleMs?: number;
  readonly maxLive?: number;
  readonly quietMs?: number;
}

/** The coordinator's artifact store: NAR blobs, the path index, its server and GC. */
export interface CoordinatorArtifacts {
  readonly dir: string;
  readonly blobs: BlobStore;
  readonly index: ArtifactIndex;
  readonly server: BlobServer;
  readonly gc: ArtifactGc;
  /** Keeps the root document's `artifacts` summary current. */
  readonly summary: SummaryWriter;
  /** The figures now (rpc `artifacts.stats`, the root summary). */
  stats(): Promise<ArtifactsSummary>;
}

export class Coordinator {
  private readonly flushTimer: NodeJS.Timeout;
  /** Counts packets on agents' sessions as hearing from them (Presence.scan). */
  private readonly scanTimer: NodeJS.Timeout;

  private constructor(
    readonly node: FltNode,
    readonly fleet: Fleet,
    readonly gate: Gate,
    /** Desired documents and deploy.submit; `place` lets a test forge what an agent receives. */
    readonly deployments: Deployments,
    /** Its rpc server: every method it answers, with who may call each (`rpc.methods()`). */
    readonly rpc: RpcServer,
    readonly ticket: string,
    /** Its artifact store (issue 12): blobs, index, the flt/blobs/0 server and GC. */
    readonly artifacts: CoordinatorArtifacts,
    /** Evicts its agents' idle documents from the Repo (sync/evict.ts). */
    readonly eviction: Eviction,
    /** Takes agents' pushed documents (sync/push.ts); undefined if it does not speak push. */
    private readonly receiver: PushReceiver | undefined,
    /** Its marks (sync/stored-heads.ts), written until the node has closed. */
    readonly marks: Journal,
    /** Keeps its root, audit and admins documents in one snapshot (sync/compact.ts). */
    readonly compactor: Compactor,
    /** Agents' documents that pushes were taken into, outside the Repo (sync/plain-docs.ts). */
    readonly plain: PlainDocs,
  ) {
    this.flushTimer = setInterval(() => fleet.presence.flush(), 60_000);
    this.flushTimer.unref();
    this.scanTimer = setInterval(
      () => fleet.presence.scan((id) => node.sync.received(id)),
      SCAN_MS,
    );
    this.scanTimer.unref();
  }

  static async start(
    config: Config,
    log: Logger,
    settings: ArtifactSettings = artifactSettings(config),
    evictionSettings: EvictionSettings = {},
    versions: Versions = {},
  ): Promise<Coordinator> {
    const admins = await resolveAdmins(config.admins);
    // The documents first, then the node: what decides about peers (fleet, gate) exists before
    // any peer can reach it.
    const key = await loadNodeKey(config, log);
    const documents = await openDocuments(config, key, log, COORDINATOR_STORE);
    const { repo, store } = documents;
    // Every mark read here, at once, before any agent can reconnect (sync/stored-heads.ts).
    const journal = await Journal.open(join(config.stateDir, MARKS_FILE), {
      accept: StoredHeads.accepts,
    });
    const root = new OwnedDoc<RootDoc>(deriveKeyPair(key.secret, ROOT_KEY));
    const rootDocId = root.docId;
    // The documents every enrollment's and admin's answer waits on (the root now, the audit and
    // admins documents once the gate is open) go ahead in the store and save in lanes of their own.
    store.prioritize(rootDocId);
    /**
     * Saves the given documents (repo flush, then their store writes settled): before an answer.
     * Group-committed: the prioritized documents each in a lane of their own, the others together
     * (sync/group-save.ts).
     */
    const flush = groupSave<DocumentId>(
      async (ids) => {
        // Only loaded documents have anything in memory to save (repo.flush throws for the others).
        await repo.flush(ids.filter((id) => repo.handles[id]?.isReady() === true));
        await Promise.all(ids.map((id) => store.settled(id)));
      },
      (id) => (store.prioritized(id) ? id : 'bulk'),
    );
    // Agents push their facts and status documents: taken as plain documents, not Repo handles
    // (sync/plain-docs.ts: a handle costs several times the CPU and memory), unless something
    // finds one in the Repo (an admin's sync): then it is handed over.
    let following: Fleet | undefined;
    memoryMode.onChange = (speed) =>
      log.info(speed ? 'a burst of document work: V8 at speed' : 'V8 favours memory again');
    const plain = new PlainDocs({
      store,
      idleMs: evictionSettings.idleMs ?? EVICT_IDLE_MS,
      onSaved: (doc, heads) => following?.savedPlain(doc, heads),
      onEvict: (doc, heads) => following?.evicted(doc, heads),
      onHandedOver: (doc, handle) => following?.handedOver(doc, handle),
      // A reconnect storm loads many at once, many agents change at once: V8 at speed
      // meanwhile (memory-mode.ts).
      onWork: () => memoryMode.worked(),
      log,
    });
    plain.handOver(repo);
    const { node, receiver, fleet, gate, deployments } = await (async () => {
      try {
        await root.open(repo, store, rootBase(key.nodeId));
        // One instance: marks of agents' documents (Fleet) and of desired documents (Deployments).
        const marks = new StoredHeads(journal);
        const fleet = new Fleet(root, repo, log, marks, (doc) => store.holds([doc]), plain);
        following = fleet;
        const gate = await Gate.open({ repo, store, key, fleetId: rootDocId, admins, log });
        store.prioritize(gate.audit.documentId);
        store.prioritize(gate.adminsDoc.documentId);
        linkAdmins(root, fleet, gate);
        const deployments = new Deployments({
          repo,
          store,
          secret: key.secret,
          fleetId: rootDocId,
          fleet,
          gate,
          log,
          flush,
          marks,
        });
        const { node, receiver } = await openNode(config, log, key, documents, versions, {
          root,
          fleet,
          gate,
          deployments,
          plain,
        });
        return { node, receiver, fleet, gate, deployments };
      } catch (err) {
        // No node to close yet (e.g. the port is taken): keep what the documents already hold.
        await plain.close();
        await flushDocuments(documents).catch(() => undefined);
        await journal.close();
        throw err;
      }
    })();
    let gc: ArtifactGc | undefined;
    let summary: SummaryWriter | undefined;
    // The root, audit and admins documents stay loaded and gather changes all the time: kept in
    // one snapshot, so that a restart loads them fast (sync/compact.ts).
    const compactor = new Compactor({
      store,
      handles: () => [fleet.root, gate.audit, gate.adminsDoc],
      minIncrementals: COMPACT_MIN_INCREMENTALS,
      everyMs: COMPACT_EVERY_MS,
      log,
    });
    // An agent's documents (facts, status, desired) leave the Repo once idle and saved; the
    // root, audit and admins documents stay. A desired document being written stays (its mark
    // must not name the heads before the write: deployments.ts), asked again right before onEvict.
    const eviction = new Eviction({
      repo,
      store,
      evictable: (doc) =>
        fleet.isAgentDoc(doc) || (deployments.isDesired(doc) && !deployments.writing(doc)),
      onEvict: (doc, heads) => {
        fleet.evicted(doc, heads);
        deployments.evicted(doc, heads);
      },
      ...evictionSettings,
      log,
    });
    try {
      const { dir, blobs, index } = await openArtifacts(config.stateDir, await blobHasher(), (l) =>
        log.warn(l),
      );
      const stats = async (): Promise<ArtifactsSummary> => {
        const s = await blobs.stats();
        const last = gc?.lastRun;
        return {
          paths: index.size,
          blobs: s.blobs,
          bytes: s.bytes,
          partialBytes: s.partialBytes,
          quarantined: s.quarantined,
          lastGc: last ? new Date(last.at).toISOString() : null,
        };
      };
      const writer = new SummaryWriter({
        stats,
        current: () => rootArtifacts(fleet.root.doc()),
        write: (s) => fleet.root.change((d) => void (d.artifacts = encodeArtifacts(s))),
        ...(settings.summaryIntervalMs !== undefined
          ? { intervalMs: settings.summaryIntervalMs }
          : {}),
        log,
      });
      summary = writer;
      const server = new BlobServer({
        blobs,
        index,
        hasher: await blobHasher(),
        roleOf: (peer) => gate.role(peer),
        desiredPathOf: (agent) => fleet.agent(agent)?.desired?.storePath,
        ...(settings.trustedKeys ? { trustedKeys: settings.trustedKeys } : {}),
        ...(settings.minFree !== undefined ? { minFree: settings.minFree } : {}),
        onChange: () => writer.changed(),
        log,
      });
      gc = new ArtifactGc({
        index,
        blobs,
        roots: () => gcRoots(fleet, gate),
        ...(settings.gcGraceMs !== undefined ? { graceMs: settings.gcGraceMs } : {}),
        onRun: () => void writer.flush(),
        log,
      });
      const artifacts: CoordinatorArtifacts = {
        dir,
        blobs,
        index,
        server,
        gc,
        summary: writer,
        stats,
      };
      const rpc = rpcServer(
        node,
        { fleet, gate, deployments, flush, artifacts, plain },
        rootDocId,
        log,
      );
      node.router.service(echoService()).service(rpc).service(server);
      // Agents call rpc on their sync connection too: one connection each (sync-adapter.ts carry).
      node.sync.carry(rpc);
      trackPeers(node, fleet);
      node.start();
      const ticket = node.transport.ticket();
      // Readers of the ticket file never see half a ticket.
      await writeFileAtomic(join(config.stateDir, TICKET_FILE), ticket + '\n', { mode: 0o644 });
      gc.start();
      compactor.start();
      return new Coordinator(
        node,
        fleet,
        gate,
        deployments,
        rpc,
        ticket,
        artifacts,
        eviction,
        receiver,
        journal,
        compactor,
        plain,
      );
    } catch (err) {
      await compactor.stop();
      await eviction.stop();
      await plain.close();
      await gc?.stop();
      await summary?.close();
      await node.close().catch(() => undefined);
      await journal.close();
      throw err;
    }
  }

  /** Pushes taken from agents, and answered without a load (sync/push.ts): status, tests. */
  get pushes(): { taken: number; answeredUnloaded: number } {
    return this.receiver?.counts ?? { taken: 0, answeredUnloaded: 0 };
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    clearInterval(this.scanTimer);
    this.fleet.presence.flush(true);
    this.fleet.commit();
    this.fleet.stop();
    await this.compactor.stop();
    await this.eviction.stop();
    await this.plain.close();
    await this.artifacts.gc.stop();
    await this.artifacts.summary.close();
    await this.node.close();
    await this.marks.close();
  }
}

/** The coordinator's node: its share policy, admit guard and access check come from fleet and gate. */
async function openNode(
  config: Config,
  log: Logger,
  key: NodeKey,
  documents: NodeDocuments,
  versions: Versions,
  {
    root,
    fleet,
    gate,
    deployments,
    plain,
  }: {
    root: OwnedDoc<RootDoc>;
    fleet: Fleet;
    gate: Gate;
    deployments: Deployments;
    plain: PlainDocs;
  },
): Promise<{ node: FltNode; receiver: PushReceiver | undefined }> {
  const offers = (peer: NodeId, doc: DocumentId | undefined) =>
    gate.role(peer) === 'admin' || fleet.offers(peer, doc);
  // Agents push their own documents (sync/push.ts): taken here, without automerge-repo's sync.
  const routes = new PushRoutes();
  const push = versions.push !== false;
  const node = await FltNode.open({
    role: 'coordinator',
    config,
    log,
    key,
    documents,
    share: () => ({
      announce: (peer, doc) => Promise.resolve(offers(peer as string as NodeId, doc)),
      access: (peer, doc) => Promise.resolve(offers(peer as string as NodeId, doc)),
    }),
    // An agent syncs only its own documents and the admins document (fleet.offers): kept out of
    // automerge-repo's loops over every peer (sync/peer-scopes.ts). Admins see everything.
    scopes: {
      scopeOf: (peer) => {
        const id = peer as string as NodeId;
        return gate.role(id) === 'admin' ? undefined : fleet.scopeOf(id, node.sync.speaksPush(id));
      },
    },
    answer: (peer, message) => fleet.answer(peer, message, (doc) => deployments.writing(doc)),
    admit: (peer, message) => fleet.admit(peer, message),
    // Every document this coordinator writes is saved before a sync message about it leaves.
    durable: (doc) =>
      doc === root.docId ||
      doc === gate.audit.documentId ||
      doc === gate.adminsDoc.documentId ||
      deployments.isDesired(doc),
    onReplaced: (peer) => fleet.replaced(peer),
    access: (peer, alpn) => gate.allows(peer, alpn),
    ...(push ? { push: routes } : {}),
    // Sync states are kept for admins only. An agent syncs two small documents here (its desired
    // document and the admins document; it pushes its own), and a stored state saves it at most
    // one round trip for a storage read per document and session and an fsynced write per
    // exchange; after a restart every agent reconnects at once (issue 13; no effect measurable
    // at 500 agents on the bench machine, README "Scale").
    keepsSyncState: (peer) => gate.role(peer) === 'admin',
  });
  if (!push) return { node, receiver: undefined };
  const { repo, store } = documents;
  // The answer says what is held, not saved: as for automerge-repo's sync of these documents,
  // the Repo saves them on its own schedule, and an agent asks again at every session, pushing
  // whatever a coordinator that crashed in between lost.
  routes.receiver = new PushReceiver({
    repo,
    link: node.sync,
    authorize: (peer, doc) => fleet.authorizePush(peer, doc),
    storedHeads: (peer, doc, pushed) => fleet.storedHeads(peer, doc, pushed),
    stored: (doc) => store.holds([doc]),
    onHandle: (peer, handle) => fleet.pushed(peer, handle),
    plain,
    onPlain: (peer, doc) => fleet.pushedPlain(peer, doc),
    logger: log,
  });
  return { node, receiver: routes.receiver };
}

function rpcServer(
  node: FltNode,
  {
    fleet,
    gate,
    deployments,
    flush,
    artifacts,
    plain,
  }: {
    fleet: Fleet;
    gate: Gate;
    deployments: Deployments;
    flush: (ids: readonly DocumentId[]) => Promise<void>;
    artifacts: CoordinatorArtifacts;
    plain: PlainDocs;
  },
  rootDocId: DocumentId,
  log: Logger,
): RpcServer {
  const started = Date.now();
  /** Told to agents in every ping answer: a new value means a new process (liveness.ts). */
  const boot = randomBytes(8).toString('hex');
  /** doc.fetch's last A.save, for a document the store has no chunks of (not expected). */
  const snapshots = new SnapshotCache();
  /**
   * A whole document for doc.fetch, flushed by its caller: its chunks as the store holds them
   * (they load to at least the heads it has now), read back at the cost of the disk. A.save of a
   * 5,000-agent root instead held this event loop 0.2-1.4 s (issue 13).
   */
  const stored = async (docId: DocumentId, doc: A.Doc<unknown>): Promise<Uint8Array> => {
    const held = await contentChunks(node.store!, docId);
    const chunks = [...held.snapshots, ...held.incrementals].flatMap((c) =>
      c.data ? [c.data] : [],
    );
    return chunks.length > 0 ? Buffer.concat(chunks) : snapshots.get(docId, doc);
  };
  // Who may call each method is declared on it (src/rpc-methods.ts) and checked by the server
  // before the request is read: the handlers below only run for callers their method allows.
  const access = { roleOf: (peer: NodeId) => gate.role(peer), refuse: refusal };
  /** Before the root document is read for a peer: every agent record put so far is in it. */
  const current = (docId: DocumentId) => {
    if (docId === rootDocId) fleet.commit();
  };
  /**
   * A document to read for an admin, and how to save what it shows: an agent's own document not
   * in the Repo from the plain table (loaded there from the store, as its pushes are; a find
   * would move it into the Repo), any other from the Repo. Undefined: not held here.
   */
  const readable = async (
    docId: DocumentId,
  ): Promise<{ doc: A.Doc<unknown>; save: () => Promise<void> } | undefined> => {
    current(docId);
    const repo = node.repo!;
    if (fleet.isAgentDoc(docId) && repo.handles[docId] === undefined) {
      const doc = (await plain.open(docId)) ? plain.get(docId) : undefined;
      if (doc !== undefined && repo.handles[docId] === undefined)
        return { doc, save: () => plain.saved(docId) };
    }
    if (!(await isHeld(node, docId))) return undefined;
    return { doc: (await repo.find(docId)).doc(), save: () => flush([docId]) };
  };
  /**
   * Heads for an admin about to sync documents through automerge-repo (Admin.syncDoc): found in
   * the Repo, which then syncs them with the admin (a plain document is handed over first).
   */
  const headsHere = async (docId: DocumentId) => {
    current(docId);
    if (!(await isHeld(node, docId, plain))) return null;
    return A.getHeads((await node.repo!.find(docId)).doc());
  };
  /** What fleet.presence says of one agent. */
  const presenceOf = (a: AgentEntry): PresenceEntry => ({
    nodeId: a.nodeId,
    online: fleet.presence.isOnline(a.nodeId),
    lastSeen: fleet.presence.lastSeen(a.nodeId) ?? a.lastSeen,
    volatile: fleet.presence.volatileOf(a.nodeId),
    pending: fleet.pending(a.nodeId),
  });
  /** Who writes `doc`, if not `agent`: this coordinator, or another agent (facts or status). */
  const ownerOf = (doc: DocumentId, agent: NodeId): string | undefined => {
    if (doc === rootDocId || doc === gate.audit.documentId || doc === gate.adminsDoc.documentId)
      return 'the coordinator';
    if (deployments.isDesired(doc)) return "the coordinator's desired document of an agent";
    const other = fleet.writerOf(doc);
    return other === undefined || other === agent ? undefined : `agent ${shortId(other)}'s`;
  };
  return new RpcServer({ access, log })
    .register(nodeInfo, () =>
      Promise.resolve({
        nodeId: node.key.nodeId,
        role: 'coordinator',
        version: VERSION,
        uptimeMs: Date.now() - started,
      }),
    )
    .register(agentEnroll, async (req, ctx) => {
      // Open to anyone (even unknown peers): approved beforehand, or with a token now.
      const factsDocId = req.factsDocId as DocumentId;
      const key = Buffer.from(req.factsWriteKey, 'hex');
      assertAdmissibleKey(key, 'facts write key');
      if (docIdFor(key) !== factsDocId)
        throw new FltError('BAD_ARGUMENT', 'the facts document id does not belong to that key');
      const status = statusOf(req);
      // Checked before a token is spent: a refused request changes nothing.
      for (const doc of [factsDocId, status?.docId]) {
        const owner = doc === undefined ? undefined : ownerOf(doc, ctx.peer);
        if (owner !== undefined)
          throw new FltError('BAD_ARGUMENT', `${doc} is not the agent's to write: it is ${owner}`);
      }
      const role = gate.role(ctx.peer);
      if (role !== 'agent') {
        if (req.token === undefined) {
          if (role === 'revoked') throw refusal(ctx.peer, role, agentEnroll);
          throw new FltError(
            'UNAUTHORIZED_PEER',
            `${ctx.peer} is not approved: an admin runs \`flt admin approve ${ctx.peer}\`, ` +
              'or the agent enrolls with --enroll-token',
          );
        }
        gate.enroll(req.token, ctx.peer);
      }
      const approvedNow = role !== 'agent';
      const known = await isHeld(node, factsDocId, plain);
      const desired = deployments.desiredOf(ctx.peer);
      const statusKnown = status ? await isHeld(node, status.docId, plain) : undefined;
      const entry = fleet.enroll(ctx.peer, factsDocId, req.factsWriteKey, { status, desired });
      // The agent syncs it next: it exists here from now on (its base, until a deployment),
      // saved and marked.
      const desiredBase = await deployments.ready(ctx.peer);
      // An answer is an acknowledgement: the agent's record (and the approval its token made) is
      // saved first, or a coordinator killed right after would refuse an agent it had enrolled.
      current(rootDocId);
      const gateDocs = approvedNow ? [gate.audit.documentId, gate.adminsDoc.documentId] : [];
      await flush([rootDocId, ...gateDocs]);
      // A forked agent is not told which history to follow: an admin decides that.
      const factsHeads = entry.forked ? null : entry.factsHeads;
      return {
        rootDocId,
        enrolledAt: entry.enrolledAt,
        known,
        factsHeads,
        desiredDocId: desired.docId,
        ...(desiredBase !== undefined ? { desiredBase } : {}),
        adminsDocId: gate.adminsDoc.documentId,
        ...(statusKnown !== undefined
          ? { statusKnown, statusHeads: entry.forked ? null : (entry.statusHeads ?? null) }
          : {}),
      };
    })
    .register(agentHeartbeat, (req, ctx) => {
      const entry = fleet.agent(ctx.peer);
      if (!entry) throw new FltError('UNAUTHORIZED_PEER', 'not enrolled');
      fleet.presence.heartbeat(ctx.peer, req.volatile);
      if (req.factsHeads !== undefined) fleet.recordHeads(ctx.peer, req.factsHeads);
      if (req.statusHeads !== undefined) fleet.recordHeads(ctx.peer, req.statusHeads, 'status');
      fleet.watch(entry); // a first enrollment comes before the document exists: fetch it now
      return Promise.resolve({});
    })
    .register(agentPing, (_, ctx) => {
      // Every few seconds from every agent: map lookups only, no signature, no document write.
      if (!fleet.agent(ctx.peer)) return Promise.resolve({ boot });
      return Promise.resolve({
        boot,
        every: fleet.presence.pinged(ctx.peer),
        quiet: PING_QUIET_MS,
      });
    })
    .register(fleetInfo, () =>
      Promise.resolve({
        coordinator: node.key.nodeId,
        rootDocId,
        rootHeads: A.getHeads(fleet.root.doc()),
        rootSigned: fleet.signedRoot(),
      }),
    )
    .register(fleetPresence, () =>
      Promise.resolve({ now: new Date().toISOString(), agents: fleet.agents().map(presenceOf) }),
    )
    .register(fleetOnline, () => {
      const now = Date.now();
      const agents: [NodeId, boolean, number | null, boolean][] = [];
      for (const a of fleet.agents()) {
        const online = fleet.presence.isOnline(a.nodeId);
        const seen = fleet.presence.seenAt(a.nodeId);
        const pending = fleet.pending(a.nodeId);
        // Nothing beyond the record: left out (the admin shows the record's lastSeen).
        if (!online && seen === undefined && !pending) continue;
        const since = seen === undefined ? null : Math.max(0, now - seen);
        agents.push([a.nodeId, online, since, pending]);
      }
      return Promise.resolve({ now: new Date(now).toISOString(), agents });
    })
    .register(fleetPresenceOf, (req) => {
      const known = [...new Set(req.nodeIds)].flatMap((id) => fleet.agent(id) ?? []);
      return Promise.resolve({ now: new Date().toISOString(), agents: known.map(presenceOf) });
    })
    .register(fleetAgent, (req) => {
      const entry = pickEntry(fleet.agents(), req.query);
      return Promise.resolve({
        now: new Date().toISOString(),
        coordinator: node.key.nodeId,
        rootDocId,
        nodeId: entry.nodeId,
        record: encodeAgent(entry).val,
        presence: presenceOf(entry),
      });
    })
    .register(docHeads, async (req) => ({ heads: await headsHere(req.docId as DocumentId) }))
    .register(docFetch, async (req) => {
      const docId = req.docId as DocumentId;
      const held = await readable(docId);
      // What the answer shows is saved first, as before a sync message (`durable` above).
      await held?.save();
      return answerFetch(held?.doc, req.have, () => stored(docId, held!.doc));
    })
    .register(docsHeads, async (req) => {
      const heads: Record<string, string[] | null> = {};
      for (const docId of new Set(req.docIds)) heads[docId] = await headsHere(docId as DocumentId);
      return { heads };
    })
    .register(deploySubmit, (req, ctx) => deployments.submit(req.parts, ctx.peer))
    .register(adminOp, async (req) => {
      const { entry, revoked } = gate.apply(req.op);
      if (revoked) node.router.disconnect(revoked);
      if (entry.kind === 'op' && 'node' in entry.op.body) mirror(fleet, gate, entry.op.body.node);
      const index = gate.size - 1;
      // An answer is an acknowledgement: the trail, the admins document and the root records
      // the op changed are saved first (as deploy.submit does).
      await flush([gate.audit.documentId, gate.adminsDoc.documentId, fleet.root.documentId]);
      return { index };
    })
    .register(artifactsStats, () => artifacts.stats())
    .register(artifactsGc, async (req, ctx) => {
      const r = await artifacts.gc.run({ dryRun: req.dryRun === true });
      log.info(`artifacts gc${r.dryRun ? ' (dry run)' : ''} asked by an admin`, {
        admin: shortId(ctx.peer),
        paths: r.paths.length,
        blobs: r.blobs.length,
        bytes: r.bytes,
      });
      // The root summary is rewritten by the run itself (onRun): saved before the answer.
      if (!r.dryRun) {
        await artifacts.summary.flush();
        await flush([fleet.root.documentId]);
      }
      return gcAnswer(r);
    })
    .register(fleetAudit, (req) =>
      Promise.resolve(
        req.from === undefined && req.limit === undefined
          ? { fleet: rootDocId, ...gate.trail() }
          : {
              fleet: rootDocId,
              ...gate.trailPage(req.from ?? 0, req.limit ?? AUDIT_PAGE_ENTRIES, AUDIT_PAGE_BYTES),
            },
      ),
    );
}

/** A GC run as rpc `artifacts.gc` answers it: counts, and the first GC_LIST_MAX names of each. */
function gcAnswer(r: GcResult) {
  return {
    at: new Date(r.at).toISOString(),
    dryRun: r.dryRun,
    counts: { paths: r.paths.length, blobs: r.blobs.length, partials: r.partials.length },
    bytes: r.bytes,
    paths: r.paths.slice(0, GC_LIST_MAX),
    blobs: r.blobs.slice(0, GC_LIST_MAX),
    partials: r.partials.slice(0, GC_LIST_MAX),
  };
}

/**
 * What GC keeps (with their closures): every agent's desired store path (now), and the store path
 * of every deployment part in the audit trail (as of its signing time: live for the grace).
 */
function gcRoots(fleet: Fleet, gate: Gate): GcRoot[] {
  const now = Date.now();
  const roots: GcRoot[] = [];
  for (const a of fleet.agents())
    if (a.desired?.storePath !== undefined) roots.push({ path: a.desired.storePath, at: now });
  for (const e of gate.trail().entries) {
    const part = (e as { kind?: unknown; part?: { storePath?: unknown; at?: unknown } }).part;
    if ((e as { kind?: unknown }).kind !== 'deploy' || typeof part?.storePath !== 'string')
      continue;
    const at = typeof part.at === 'string' ? Date.parse(part.at) : NaN;
    roots.push({ path: part.storePath, at: Number.isNaN(at) ? now : at });
  }
  return roots;
}

/**
 * The configured initial admins: node ids, or OpenSSH public key files (`ssh-ed25519 ...`). Each
 * is checked as a key before it is trusted (a small-order key never becomes an admin).
 */
async function resolveAdmins(values: readonly string[]): Promise<NodeId[]> {
  const out: NodeId[] = [];
  for (const v of values) {
    const id = isNodeId(v) ? v : await loadPublicKeyFile(v);
    assertAdmissibleKey(nodeIdBytes(id), `admin ${v}`);
    out.push(id);
  }
  return out;
}

/**
 * Joins the gate's admins document to the fleet: named in the root document (for admins) and
 * offered to every agent; and the root records' labels and revoked marks mirrored from the trail
 * (an op whose root write a crash lost, or a fleet begun before the mark, is mirrored at start).
 */
function linkAdmins(root: OwnedDoc<RootDoc>, fleet: Fleet, gate: Gate): void {
  const id = gate.adminsDoc.documentId;
  fleet.adminsDocId = id;
  const handle = root.opened();
  if (rootAdminsDocId(handle.doc()) !== id)
    handle.change((d) => void (d.adminsDocId = new A.ImmutableString(id)));
  for (const entry of fleet.agents()) mirror(fleet, gate, entry.nodeId);
}

/** Mirrors what the trail says of `node` into its root record: its labels and whether revoked. */
function mirror(fleet: Fleet, gate: Gate, node: NodeId): void {
  fleet.setLabels(node, gate.labels(node));
  fleet.setRevoked(node, gate.role(node) === 'revoked');
}

/** The status document an enrolling agent names (both fields or neither), checked. */
function statusOf(req: {
  statusDocId?: string | undefined;
  statusWriteKey?: string | undefined;
}): { docId: DocumentId; writeKey: string } | undefined {
  const { statusDocId, statusWriteKey } = req;
  if (statusDocId === undefined && statusWriteKey === undefined) return undefined;
  if (statusDocId === undefined || statusWriteKey === undefined)
    throw new FltError('BAD_ARGUMENT', 'statusDocId and statusWriteKey go together');
  const key = Buffer.from(statusWriteKey, 'hex');
  assertAdmissibleKey(key, 'status write key');
  if (docIdFor(key) !== statusDocId)
    throw new FltError('BAD_ARGUMENT', 'the status document id does not belong to that key');
  return { docId: statusDocId as DocumentId, writeKey: statusWriteKey };
}

/**
 * Whether this coordinator has the document (loaded, or in its storage). A handle that is not
 * ready does not count, nor does a stored sync state: fleet.watch() asks for an enrolled agent's
 * facts document before the agent has written it, which leaves both, and finding it then fails.
 */
async function isHeld(node: FltNode, docId: DocumentId, plain?: PlainDocs): Promise<boolean> {
  if (plain?.holds(docId) === true) return true;
  return node.repo!.handles[docId]?.isReady() === true || (await isStored(node.store!, docId));
}

/** Online state from sync sessions; an agent that connects gets its facts document watched. */
function trackPeers(node: FltNode, fleet: Fleet): void {
  node.sync.on('peer-candidate', ({ peerId }) => {
    const entry = fleet.agent(peerId as string as NodeId);
    if (!entry) return;
    fleet.presence.connected(entry.nodeId);
    fleet.watch(entry);
  });
  node.sync.on('peer-disconnected', ({ peerId }: { peerId: PeerId }) => {
    if (fleet.agent(peerId as string as NodeId))
      fleet.presence.disconnected(peerId as string as NodeId);
  });
}
