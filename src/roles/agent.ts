// The agent: owns its facts document (write key and id derived from its node key), enrolls
// with the coordinator (retrying with backoff until it answers), and publishes facts every
// interval, writing only what changed. Volatile values go to the coordinator by heartbeat,
// never into the document, so a year of publishing leaves a small history.
//
// Deployments (issue 11): it also owns its status document (like facts: derived key, signed
// heads in every heartbeat, restored from the coordinator when the state dir is lost), and
// syncs, read-only, its desired document and the fleet's admins document (ids from the enroll
// answer). The Deployer (deployer.ts) acts on them; an extra heartbeat follows each status write.

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, PeerId, Repo } from '@automerge/automerge-repo';
import { backoffDelay, sleep } from '../../sync/backoff.js';
import { messageOf } from '../../sync/errors.js';
import type { Logger } from '../../sync/log.js';
import { RpcChannel } from '../../sync/rpc-channel.js';
import { echoService } from '../../sync/echo.js';
import type { Config } from '../config/index.js';
import { factsPatch, writeFactsPatch } from '../docs/facts-doc.js';
import { FACTS_KEY, factsBase, type FactsDoc } from '../docs/types.js';
import { collectFacts, collectVolatile, isEmptyPatch, type Facts } from '../facts/index.js';
import { deriveKeyPair } from '../identity/index.js';
import { changesIn } from '../../sync/changes.js';
import { isStored, OwnedDoc, type SignedHeads } from '../../sync/owned-doc.js';
import type { NodeId } from '../../sync/ids.js';
import { createActivator, type Activator } from '../deploy/index.js';
import type { AdminsDoc } from '../docs/admins.js';
import { desiredSnapshot, type DesiredDoc } from '../docs/desired.js';
import { STATUS_KEY, statusBase, type StatusDoc } from '../docs/status.js';
import { Deployer } from './deployer.js';
import { ArtifactFetcher } from '../artifacts/fetcher.js';
import { blobHasher } from '../../sync/blob-hash.js';
import { FltNode, loadNodeKey, saveNow, type Versions } from '../node.js';
import { PushRoutes, PushSender } from '../../sync/push.js';
import { Liveness } from './liveness.js';
import { agentEnroll, agentHeartbeat } from '../rpc-methods.js';
import { parsePeerAddress } from '../../sync/address.js';
import { FltError } from '../../sync/errors.js';
import type { PeerAddr } from '../../sync/transport.js';

/** How often an agent that is not approved yet asks again. */
const APPROVAL_POLL_MS = 2000;
/**
 * How long a restored agent waits for the coordinator's copy of its own newer history before
 * writing anyway (which then forks its document, and the coordinator flags it for an admin).
 */
const CATCH_UP_MS = 60_000;
/**
 * Deadline of a sync dial's connect. Ten seconds (the adapter's default) was shorter than a
 * coordinator accepting 1,000 agents at once takes to get to a dial: every agent gave up and
 * dialed again about every 11 s, each new dial went to the back of the queue, and the given-up
 * ones were still handshaken and closed: 12,000 dials timed out in one 1,000-agent fan-in, and
 * no agent had a sync session (so none reached the table) for 150 s (issue 13). Waiting costs
 * nothing: the liveness pings find a restarted coordinator and give up a dial begun before it
 * (liveness.ts, dialNow), and a silent one drops the session after SILENCE_DROP_MS.
 */
export const SYNC_DIAL_TIMEOUT_MS = 120_000;

/** Retries of fetching the desired or admins document while the coordinator has none yet. */
const FETCH_RETRY = { initialMs: 1000, maxMs: 30_000 };
/** Retries of fetching our own document back (a lost state dir): every second, as before. */
const RESTORE_RETRY = { initialMs: 1000, maxMs: 1000 };

/** What the agent collects; tests replace it to drive facts without touching the machine. */
export type FactsSource = () => Promise<Facts>;

export class Agent {
  private readonly stop = new AbortController();
  private running: Promise<void> | undefined;
  /** Pings the coordinator from enrollment on (see liveness.ts). */
  private liveness: Promise<void> | undefined;
  /** Resolves once the coordinator has answered the enrollment. */
  readonly enrolled: Promise<void>;
  private markEnrolled!: () => void;
  /** Rejects if the agent stops on its own: its enrollment was refused (a code says why). */
  readonly failed: Promise<never>;
  private fail!: (err: unknown) => void;
  private tokenUsed = false;
  private live: Liveness | undefined;
  /** Started once the status, desired and admins documents are open. */
  private deployer: Deployer | undefined;
  private deploying: Promise<void> | undefined;
  /** Fetches missing closures from the coordinator (issue 12); closed with the agent. */
  private fetcher: ArtifactFetcher | undefined;
  /** close() has begun: no Deployer starts any more. */
  private closing = false;

  readonly factsDocId: DocumentId;
  readonly statusDocId: DocumentId;

  private constructor(
    readonly node: FltNode,
    /** Our facts document: its id, signed heads and admit guard (sync/owned-doc.ts). */
    private readonly own: OwnedDoc<FactsDoc>,
    /** Our status document (deployments), owned like facts. */
    private readonly ownStatus: OwnedDoc<StatusDoc>,
    /** The desired and admins documents, once the enroll answer names them: synced read-only. */
    private readonly theirs: Set<DocumentId>,
    /** Our documents begun here: pushed from the start (see `begun` in open). */
    private readonly begun: Set<DocumentId>,
    private readonly activator: Activator | undefined,
    private readonly rpc: RpcChannel,
    private readonly coordinator: PeerAddr,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly source: FactsSource,
    /** Pushes our documents, once open and caught up, to a coordinator that speaks push. */
    private readonly pusher: PushSender,
  ) {
    this.factsDocId = own.docId;
    this.statusDocId = ownStatus.docId;
    this.enrolled = new Promise((resolve) => (this.markEnrolled = resolve));
    this.failed = new Promise((_, reject) => (this.fail = reject));
    this.failed.catch(() => undefined); // observed by whoever awaits it, if anyone
  }

  static async start(
    config: Config,
    log: Logger,
    source: FactsSource = () => collectFacts(),
    versions: Versions = {},
  ): Promise<Agent> {
    // A deploy_* configuration that cannot work ends the agent now (BAD_CONFIG naming the key).
    const activator = createActivator(config);
    if (!config.coordinator)
      throw new FltError(
        'BAD_ARGUMENT',
        'the agent needs --coordinator TICKET or NODE_ID@HOST:PORT',
      );
    const coordinator = parsePeerAddress(config.coordinator);
    // The key first: our documents (id, guard) exist before the node that syncs them opens.
    const key = await loadNodeKey(config, log);
    const own = new OwnedDoc<FactsDoc>(deriveKeyPair(key.secret, FACTS_KEY));
    const status = new OwnedDoc<StatusDoc>(deriveKeyPair(key.secret, STATUS_KEY));
    const theirs = new Set<DocumentId>();
    // Our documents go to a coordinator that speaks push by push (sync/push.ts) once they are
    // open and caught up; until then, and to an older coordinator, through automerge-repo.
    const routes = new PushRoutes();
    /**
     * Our documents begun here (nothing of them to take from the coordinator): pushed from the
     * start, never announced through automerge-repo to a coordinator that speaks push, even
     * before the sender tracks them. Else a sync session that opened before such a document was
     * made (a slow disk) synced it through the coordinator's Repo first.
     */
    const begun = new Set<DocumentId>();
    const pushed = (doc: DocumentId) =>
      routes.sender?.speaks() === true && (routes.sender.tracks(doc) || begun.has(doc));
    // The status document is synced only with a coordinator that deploys (it named a desired and
    // an admins document when we enrolled): an older one refuses anything but facts.
    const synced = (doc: DocumentId | undefined) =>
      doc !== undefined &&
      !pushed(doc) &&
      (doc === own.docId || (theirs.size > 0 && (doc === status.docId || theirs.has(doc))));
    const node = await FltNode.open({
      role: 'agent',
      config,
      log,
      key,
      repo: true,
      // No dial yet: the sync session opens once enrolled (see run()), so that the coordinator
      // already knows us as an agent and offers us our own document only.
      // Our document is ours to write: once it is open, changes to it from the coordinator
      // (which we would then sign over) are refused (OwnedDoc.admit). Before that, a lost state
      // dir is restored from the coordinator's copy (fetchOwn), the one time we take its changes;
      // restored from an older backup, we take the history our own signature covers (`behind`).
      // The status document likewise. We sync exactly four documents: facts and status (ours),
      // our desired document and the admins document (the coordinator's: their changes are taken,
      // their content is checked by admin signatures, never by who relayed it). Once facts is
      // open, no other document takes changes.
      admit: (peer, message) => {
        own.admit(peer, message);
        status.admit(peer, message);
        if (own.handle && !synced(message.documentId) && changesIn(message) > 0)
          throw new FltError(
            'UNAUTHORIZED_PEER',
            `${peer} sent changes to a document we do not sync`,
          );
      },
      durable: (doc) => doc === own.docId || doc === status.docId,
      // A sync dial waits for a busy coordinator (SYNC_DIAL_TIMEOUT_MS); liveness gives up one
      // begun before a restart (dialNow).
      dialTimeoutMs: SYNC_DIAL_TIMEOUT_MS,
      // No sync states kept, as the coordinator keeps none for agents: those of our two synced
      // documents cost an fsynced write each per session (after a coordinator restart every
      // agent reconnects at once) to save at most one round trip per document and session.
      keepsSyncState: () => false,
      ...(versions.push === false ? {} : { push: routes }),
      share: () => {
        const ours = (_: unknown, doc: DocumentId | undefined) => Promise.resolve(synced(doc));
        return { announce: ours, access: ours };
      },
    });
    const docs = { repo: node.repo!, store: node.store! };
    routes.sender = new PushSender({
      link: node.sync,
      peer: coordinator.nodeId,
      durable: (doc) => saveNow(docs, doc),
      logger: log,
    });
    // Once the sync session is open, calls go on its connection (sync/rpc-channel.ts `via`).
    const rpc = new RpcChannel(node.transport, coordinator, {
      timeoutMs: config.rpcTimeoutMs,
      via: () => node.sync.rpcConnection(coordinator.nodeId),
    });
    const agent = new Agent(
      node,
      own,
      status,
      theirs,
      begun,
      activator,
      rpc,
      coordinator,
      config,
      log,
      source,
      routes.sender,
    );
    node.router.service(echoService());
    node.start();
    agent.running = agent.run().catch((err: unknown) => {
      if (agent.stop.signal.aborted) return;
      log.error(`agent stopped: ${messageOf(err)}`);
      agent.fail(err);
    });
    return agent;
  }

  /** The facts document, once open. */
  get facts(): DocHandle<FactsDoc> | undefined {
    return this.own.handle;
  }

  /**
   * Every document this agent holds: facts and status (ours), and once a coordinator that
   * deploys answered our enrollment, our desired document and the admins document.
   */
  get documents(): DocumentId[] {
    return [this.factsDocId, this.statusDocId, ...this.theirs];
  }

  /** The status document, once open. */
  get status(): DocHandle<StatusDoc> | undefined {
    return this.ownStatus.handle;
  }

  /** The deployment queue, once started (after enrollment, when the coordinator deploys). */
  get deployments(): Deployer | undefined {
    return this.deployer;
  }

  async close(): Promise<void> {
    // The Deployer first: a health check it is waiting on is then stopped (no verdict, re-run at
    // the next start), never failed by the liveness check stopping under it (a rollback of a
    // healthy system on `systemctl restart`).
    this.closing = true;
    await this.deployer?.close();
    this.stop.abort();
    this.rpc.close();
    await this.running;
    await this.deploying;
    await this.deployer?.close();
    await this.fetcher?.close();
    await this.liveness;
    await this.node.close();
  }

  private async run(): Promise<void> {
    const repo = this.node.repo!;
    const store = this.node.store!;
    const local = await this.own.load(repo, store);
    const localStatus = await this.ownStatus.load(repo, store);
    const answer = await this.enroll();
    this.own.behind = this.ownSigned(this.own, answer.factsHeads);
    this.ownStatus.behind = this.ownSigned(this.ownStatus, answer.statusHeads);
    const { desiredDocId, adminsDocId } = answer;
    if (desiredDocId !== undefined && adminsDocId !== undefined) {
      this.theirs.add(desiredDocId as DocumentId);
      this.theirs.add(adminsDocId as DocumentId);
    }
    this.node.sync.addPeer(this.coordinator);
    this.live = new Liveness(
      this.rpc,
      this.node.sync,
      this.coordinator.nodeId,
      this.log,
      this.stop.signal,
      () => this.deployer?.reconnected(),
    );
    this.liveness = this.live.run().catch((err: unknown) => {
      this.log.error(`liveness check stopped: ${messageOf(err)}`);
      this.fail(err);
    });
    const handle =
      local ??
      (answer.known
        ? this.own.adopt(await this.fetchDoc<FactsDoc>(repo, this.factsDocId, 'facts'))
        : await this.create(repo));
    await this.catchUp(this.own, handle, 'facts');
    this.push(handle);
    // The status document as facts: ours; restored from the coordinator's copy if it has one.
    const status =
      localStatus ??
      (answer.statusKnown === true
        ? this.ownStatus.adopt(await this.fetchDoc<StatusDoc>(repo, this.statusDocId, 'status'))
        : await this.beginStatus(repo));
    await this.catchUp(this.ownStatus, status, 'status');
    if (this.theirs.size > 0) this.push(status);
    if (desiredDocId !== undefined && adminsDocId !== undefined)
      this.deploying = this.startDeployer(
        repo,
        status,
        { docId: desiredDocId as DocumentId, baseHead: answer.desiredBase },
        adminsDocId as DocumentId,
        answer.rootDocId,
      ).catch((err: unknown) => {
        if (!this.stop.signal.aborted) this.log.error(`deployments stopped: ${messageOf(err)}`);
      });
    else this.log.warn('the coordinator does not deploy (an older flt): deployments are off');
    while (!this.stop.signal.aborted) {
      await this.publish(handle);
      await sleep(this.config.factsIntervalMs, this.stop.signal);
    }
  }

  /**
   * Enrolls: retries while the coordinator is unreachable and, without a token, while no admin
   * has approved us yet (polling every APPROVAL_POLL_MS). A refused token, a revocation or any
   * other refusal ends the agent (see `failed`). The token is sent until one enrollment succeeds.
   */
  private async enroll() {
    let waiting = false;
    let unapproved = false;
    for (;;) {
      const token = this.tokenUsed ? undefined : this.config.enrollToken;
      try {
        const answer = await this.rpc.callUntilAnswered(
          agentEnroll,
          {
            factsDocId: this.factsDocId,
            factsWriteKey: this.own.writeKey,
            statusDocId: this.statusDocId,
            statusWriteKey: this.ownStatus.writeKey,
            ...(token === undefined ? {} : { token }),
          },
          (err) => {
            if (!waiting)
              this.log.info(`waiting for the coordinator (${err.code}); retrying with backoff`);
            waiting = true;
          },
        );
        this.tokenUsed = true;
        this.log.info('enrolled', { facts: this.factsDocId, enrolledAt: answer.enrolledAt });
        this.markEnrolled();
        return answer;
      } catch (err) {
        if (!(err instanceof FltError) || err.code !== 'UNAUTHORIZED_PEER' || token) throw err;
        if (!unapproved)
          this.log.warn(
            `not approved yet: an admin runs \`flt admin approve ${this.node.key.nodeId}\` ` +
              '(or start the agent with --enroll-token); asking again',
          );
        unapproved = true;
        await sleep(APPROVAL_POLL_MS, this.stop.signal);
      }
    }
  }

  /**
   * A document only the coordinator holds (ours after a lost state dir, or the desired and
   * admins documents, which it writes): asked for until it answers with it, with backoff. Only
   * while the sync session is open: without it automerge-repo says "unavailable" at once, and
   * agents enrolled in a burst (sessions open seconds after the enrollment) each paid a find, a
   * retry and up to a 30 s backoff for nothing (167 of 200 agents in one fan-in).
   */
  private async fetchDoc<T>(
    repo: Repo,
    docId: DocumentId,
    what: string,
    retry = RESTORE_RETRY,
  ): Promise<DocHandle<T>> {
    for (let attempt = 0; ; attempt++) {
      await this.coordinatorPeer(repo);
      try {
        return await repo.find<T>(docId, { signal: this.stop.signal });
      } catch (err) {
        if (this.stop.signal.aborted) throw err;
        const log = attempt === 0 ? this.log.info : this.log.debug;
        log(`fetching the ${what} document from the coordinator: ${messageOf(err)}`);
        await sleep(backoffDelay(retry, attempt), this.stop.signal);
      }
    }
  }

  /** Resolves once the coordinator is a peer of our Repo (a sync session is open), or on stop. */
  private coordinatorPeer(repo: Repo): Promise<void> {
    const id = this.coordinator.nodeId as string as PeerId;
    const signal = this.stop.signal;
    if (repo.peers.includes(id) || signal.aborted) return Promise.resolve();
    const net = repo.networkSubsystem;
    return new Promise((resolve) => {
      const done = () => {
        net.off('peer', onPeer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      // Repo's own listener (registered first) has added the peer when this one runs.
      const onPeer = ({ peerId }: { peerId: PeerId }) => void (peerId === id && done());
      net.on('peer', onPeer);
      signal.addEventListener('abort', done);
    });
  }

  /**
   * Opens the desired and admins documents (stored here, or fetched from the coordinator) and
   * starts the Deployer over them and our status document.
   */
  private async startDeployer(
    repo: Repo,
    status: DocHandle<StatusDoc>,
    desired: { docId: DocumentId; baseHead: string | undefined },
    adminsDocId: DocumentId,
    fleet: string,
  ): Promise<void> {
    /** Stored here, else begun from `base` (bytes the coordinator began it from), else fetched. */
    const open = async <T>(docId: DocumentId, what: string, base?: Uint8Array) =>
      (await isStored(this.node.store!, docId))
        ? repo.find<T>(docId, { signal: this.stop.signal })
        : base !== undefined
          ? repo.import<T>(base, { docId })
          : this.fetchDoc<T>(repo, docId, what, FETCH_RETRY);
    // The coordinator began our desired document now: from the base we make too (same head), so
    // it need not load the document to answer our first sync (enroll answer, `desiredBase`).
    const base =
      desired.baseHead === undefined
        ? undefined
        : desiredSnapshot(this.node.key.nodeId, desired.docId);
    const [desiredDoc, admins] = await Promise.all([
      open<DesiredDoc>(
        desired.docId,
        'desired',
        base !== undefined && base.heads[0] === desired.baseHead ? base.bytes : undefined,
      ),
      open<AdminsDoc>(adminsDocId, 'admins'),
    ]);
    if (this.stop.signal.aborted || this.closing) return;
    const c = this.config;
    const live = this.live!;
    // Without an activator nothing is deployed, so nothing is fetched either.
    if (this.activator !== undefined)
      this.fetcher = new ArtifactFetcher({
        transport: this.node.transport,
        coordinator: this.coordinator,
        stateDir: c.stateDir,
        nixStore: this.activator.nixStore,
        trustedKeys: c.nixTrustedKeys,
        parallel: c.artifactParallel,
        minFree: c.artifactMinFree,
        hasher: await blobHasher(),
        log: this.log,
      });
    this.deployer = new Deployer(
      { desired: desiredDoc, admins, status },
      {
        stateDir: c.stateDir,
        nodeId: this.node.key.nodeId,
        fleet,
        admins: c.admins as NodeId[],
        activator: this.activator,
        check: c.deployCheck,
        healthTimeoutMs: c.deployHealthTimeoutMs,
        recheckMs: c.deployRecheckMs,
        reachable: (deadline, signal) => live.answeredAfter(Date.now(), deadline, signal),
        onStatus: () => this.statusWritten(),
        artifacts: this.fetcher,
        log: this.log,
      },
    );
    await this.deployer.start();
  }

  /** After a status write: saved, then an extra heartbeat so that admins see it at once. */
  private async statusWritten(): Promise<void> {
    await this.node.repo!.flush([this.statusDocId]);
    await this.heartbeat();
  }

  /**
   * From now on `handle` (ours, open and caught up) goes to the coordinator by push if it speaks
   * push: automerge-repo stops offering it (the share policy asks the pusher).
   */
  private push(handle: DocHandle<unknown>): void {
    this.pusher.track(handle);
    this.node.repo!.shareConfigChanged();
  }

  /** Signed heads of our document from the coordinator, if our own write key signed them. */
  private ownSigned<T extends object>(doc: OwnedDoc<T>, value: unknown): SignedHeads | undefined {
    if (value === undefined || value === null) return undefined;
    try {
      return doc.verifyOwn(value);
    } catch (err) {
      this.log.warn(`ignoring the coordinator's signed heads of our document: ${messageOf(err)}`);
      return undefined;
    }
  }

  /**
   * Before writing, brings our document up to the heads we signed last, when the coordinator
   * holds newer ones than our copy (a restored backup): writing on the old copy would fork our
   * own history. Waits up to CATCH_UP_MS for sync to bring them.
   */
  private async catchUp<T extends object>(
    own: OwnedDoc<T>,
    handle: DocHandle<T>,
    what: string,
  ): Promise<void> {
    const target = own.behind;
    const has = () => !target || A.hasHeads(handle.doc(), [...target.heads]);
    if (has()) return void (own.behind = undefined);
    this.log.info(
      `our ${what} document is older than heads we signed before (restored from a backup?); ` +
        'catching up from the coordinator',
    );
    await new Promise<void>((resolve) => {
      const done = () => {
        handle.off('change', check);
        clearTimeout(timer);
        this.stop.signal.removeEventListener('abort', done);
        resolve();
      };
      const check = () => void (has() && done());
      const timer = setTimeout(done, CATCH_UP_MS);
      this.stop.signal.addEventListener('abort', done);
      handle.on('change', check);
      check();
    });
    own.behind = undefined;
    if (has()) this.log.info(`caught up with our own ${what} history`);
    else if (!this.stop.signal.aborted)
      this.log.warn(
        'could not catch up with our own newer history; writing on our copy (the ' +
          'coordinator will flag the agent forked for an admin to decide)',
      );
  }

  private beginStatus(repo: Repo): Promise<DocHandle<StatusDoc>> {
    this.begun.add(this.statusDocId);
    return this.ownStatus.open(repo, this.node.store!, statusBase(this.node.key.nodeId));
  }

  private create(repo: Repo): Promise<DocHandle<FactsDoc>> {
    const base = factsBase(this.node.key.nodeId);
    this.begun.add(this.factsDocId);
    return this.own.open(repo, this.node.store!, base);
  }

  /** Collects, writes the difference (if any), and sends the volatile facts. */
  async publish(handle: DocHandle<FactsDoc>): Promise<void> {
    const facts = await this.source();
    const patch = factsPatch(handle.doc(), facts);
    if (!isEmptyPatch(patch)) {
      handle.change((d) => writeFactsPatch(d, patch, facts.collectedAt));
      await this.node.repo!.flush([this.factsDocId]);
      this.log.debug('facts changed', { fields: patch.length });
    }
    try {
      await this.heartbeat(true);
    } catch (err) {
      // A coordinator that lost its state no longer knows us: enroll again (idempotent).
      if (err instanceof FltError && err.code === 'UNAUTHORIZED_PEER') {
        this.log.warn('the coordinator does not know this agent; enrolling again');
        await this.enroll();
      } else this.log.debug(`heartbeat failed: ${messageOf(err)}`);
    }
  }

  /**
   * Volatile facts and the signed heads of facts and status. Errors are thrown when `strict`
   * (publish handles them), else logged at debug (the extra heartbeat after a status write).
   */
  private async heartbeat(strict = false): Promise<void> {
    try {
      const factsHeads = this.own.handle ? this.own.signed() : undefined;
      const statusHeads =
        this.ownStatus.handle && this.theirs.size > 0 ? this.ownStatus.signed() : undefined;
      await this.rpc.call(agentHeartbeat, {
        volatile: await collectVolatile(),
        ...(factsHeads === undefined ? {} : { factsHeads }),
        ...(statusHeads === undefined ? {} : { statusHeads }),
      });
    } catch (err) {
      if (strict) throw err;
      this.log.debug(`heartbeat after a status write failed: ${messageOf(err)}`);
    }
  }
}
