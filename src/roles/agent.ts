// The agent: owns its facts document (write key and id derived from its node key), enrolls
// with the coordinator (retrying with backoff until it answers), and publishes facts every
// interval, writing only what changed. Volatile values go to the coordinator by heartbeat,
// never into the document, so a year of publishing leaves a small history.

import * as A from '@automerge/automerge';
import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import { sleep } from '../../sync/backoff.js';
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
import { OwnedDoc, type SignedHeads } from '../../sync/owned-doc.js';
import { FltNode, loadNodeKey } from '../node.js';
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

  readonly factsDocId: DocumentId;

  private constructor(
    readonly node: FltNode,
    /** Our facts document: its id, signed heads and admit guard (sync/owned-doc.ts). */
    private readonly own: OwnedDoc<FactsDoc>,
    private readonly rpc: RpcChannel,
    private readonly coordinator: PeerAddr,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly source: FactsSource,
  ) {
    this.factsDocId = own.docId;
    this.enrolled = new Promise((resolve) => (this.markEnrolled = resolve));
    this.failed = new Promise((_, reject) => (this.fail = reject));
    this.failed.catch(() => undefined); // observed by whoever awaits it, if anyone
  }

  static async start(
    config: Config,
    log: Logger,
    source: FactsSource = () => collectFacts(),
  ): Promise<Agent> {
    if (!config.coordinator)
      throw new FltError(
        'BAD_ARGUMENT',
        'the agent needs --coordinator TICKET or NODE_ID@HOST:PORT',
      );
    const coordinator = parsePeerAddress(config.coordinator);
    // The key first: our document (id, guard) exists before the node that syncs it opens.
    const key = await loadNodeKey(config, log);
    const own = new OwnedDoc<FactsDoc>(deriveKeyPair(key.secret, FACTS_KEY));
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
      // We sync our own document only, so once it is open no other document takes changes.
      admit: (peer, message) => {
        own.admit(peer, message);
        if (own.handle && message.documentId !== own.docId && changesIn(message) > 0)
          throw new FltError(
            'UNAUTHORIZED_PEER',
            `${peer} sent changes to a document we do not sync`,
          );
      },
      durable: (doc) => doc === own.docId,
      share: () => {
        const mine = (_: unknown, doc: DocumentId | undefined) =>
          Promise.resolve(doc === own.docId);
        return { announce: mine, access: mine };
      },
    });
    const rpc = new RpcChannel(node.transport, coordinator, { timeoutMs: config.rpcTimeoutMs });
    const agent = new Agent(node, own, rpc, coordinator, config, log, source);
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

  async close(): Promise<void> {
    this.stop.abort();
    this.rpc.close();
    await this.running;
    await this.liveness;
    await this.node.close();
  }

  private async run(): Promise<void> {
    const repo = this.node.repo!;
    const local = await this.own.load(repo, this.node.store!);
    const { known, factsHeads } = await this.enroll();
    this.own.behind = this.ownSigned(factsHeads);
    this.node.sync.addPeer(this.coordinator);
    this.liveness = new Liveness(
      this.rpc,
      this.node.sync,
      this.coordinator.nodeId,
      this.log,
      this.stop.signal,
    )
      .run()
      .catch((err: unknown) => {
        this.log.error(`liveness check stopped: ${messageOf(err)}`);
        this.fail(err);
      });
    const handle =
      local ?? (known ? this.own.adopt(await this.fetchOwn(repo)) : await this.create(repo));
    await this.catchUp(handle);
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
  private async enroll(): Promise<{ known: boolean; factsHeads?: unknown }> {
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

  /** Our document exists only at the coordinator (state dir lost, key kept): fetch, then write. */
  private async fetchOwn(repo: Repo): Promise<DocHandle<FactsDoc>> {
    for (;;) {
      try {
        return await repo.find<FactsDoc>(this.factsDocId, { signal: this.stop.signal });
      } catch (err) {
        if (this.stop.signal.aborted) throw err;
        this.log.info(`fetching our facts document from the coordinator: ${messageOf(err)}`);
        await sleep(1000, this.stop.signal);
      }
    }
  }

  /** Signed heads of our document from the coordinator, if our own write key signed them. */
  private ownSigned(value: unknown): SignedHeads | undefined {
    if (value === undefined || value === null) return undefined;
    try {
      return this.own.verifyOwn(value);
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
  private async catchUp(handle: DocHandle<FactsDoc>): Promise<void> {
    const target = this.own.behind;
    const has = () => !target || A.hasHeads(handle.doc(), [...target.heads]);
    if (has()) return void (this.own.behind = undefined);
    this.log.info(
      'our facts document is older than heads we signed before (restored from a backup?); ' +
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
    this.own.behind = undefined;
    if (has()) this.log.info('caught up with our own history');
    else if (!this.stop.signal.aborted)
      this.log.warn(
        'could not catch up with our own newer history; writing on our copy (the ' +
          'coordinator will flag the agent forked for an admin to decide)',
      );
  }

  private create(repo: Repo): Promise<DocHandle<FactsDoc>> {
    const base = factsBase(this.node.key.nodeId);
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
      const factsHeads = this.own.signed();
      await this.rpc.call(agentHeartbeat, { volatile: await collectVolatile(), factsHeads });
    } catch (err) {
      // A coordinator that lost its state no longer knows us: enroll again (idempotent).
      if (err instanceof FltError && err.code === 'UNAUTHORIZED_PEER') {
        this.log.warn('the coordinator does not know this agent; enrolling again');
        await this.enroll();
      } else this.log.debug(`heartbeat failed: ${messageOf(err)}`);
    }
  }
}
