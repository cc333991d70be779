// The coordinator: the fleet's always-on meeting point. It owns the root document (write key
// derived from its node key), enrolls agents over rpc, replicates every document peers sync
// with it, and serves the fleet from its own storage at once after a restart.
// When ready it writes its ticket to <state-dir>/coordinator.ticket.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocumentId, PeerId } from '@automerge/automerge-repo';
import { writeFileAtomic } from '../../stores/atomic-write.js';
import { echoService } from '../../sync/echo.js';
import { FltError } from '../../sync/errors.js';
import { isNodeId, nodeIdBytes, type NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { RpcServer } from '../../sync/rpc.js';
import type { Config } from '../config/index.js';
import { docIdFor } from '../docs/doc-id.js';
import { isStored, openOwned } from '../docs/open.js';
import type { RootDoc } from '../docs/types.js';
import { deriveKeyPair, loadPublicKeyFile } from '../identity/index.js';
import { assertAdmissibleKey } from '../trust/ed25519.js';
import { Gate } from './gate.js';
import { FltNode } from '../node.js';
import {
  adminOp,
  agentEnroll,
  agentHeartbeat,
  agentPing,
  docHeads,
  fleetAudit,
  fleetInfo,
  fleetPresence,
  nodeInfo,
  refusal,
} from '../rpc-methods.js';
import { VERSION } from '../version.js';
import { Fleet } from './fleet.js';

export const TICKET_FILE = 'coordinator.ticket';

export class Coordinator {
  private readonly flushTimer: NodeJS.Timeout;

  private constructor(
    readonly node: FltNode,
    readonly fleet: Fleet,
    /** Its rpc server: every method it answers, with who may call each (`rpc.methods()`). */
    readonly rpc: RpcServer,
    readonly ticket: string,
  ) {
    this.flushTimer = setInterval(() => fleet.presence.flush(), 60_000);
    this.flushTimer.unref();
  }

  static async start(config: Config, log: Logger): Promise<Coordinator> {
    const admins = await resolveAdmins(config.admins);
    // Bound once the documents are open; until then (no peer can be connected yet) nothing is
    // offered and every connection is refused.
    let fleet: Fleet | undefined;
    let gate: Gate | undefined;
    const offers = (peer: NodeId, doc: DocumentId | undefined) =>
      gate?.role(peer) === 'admin' || (fleet?.offers(peer, doc) ?? false);
    const node = await FltNode.open({
      role: 'coordinator',
      config,
      log,
      repo: true,
      share: () => ({
        announce: (peer, doc) => Promise.resolve(offers(peer as string as NodeId, doc)),
        access: (peer, doc) => Promise.resolve(offers(peer as string as NodeId, doc)),
      }),
      admit: (peer, message) => fleet?.admit(peer, message),
      onReplaced: (peer) => fleet?.replaced(peer),
      access: (peer, alpn) => gate?.allows(peer, alpn) ?? false,
    });
    try {
      const rootKey = deriveKeyPair(node.key.secret, 'flt/v1/doc/root');
      const rootDocId = docIdFor(rootKey.publicKey);
      const root = await openOwned<RootDoc>(
        node.repo!,
        node.store!,
        rootDocId,
        Fleet.base(node.key.nodeId),
      );
      fleet = new Fleet(root, rootKey, node.repo!, log);
      gate = await Gate.open({
        repo: node.repo!,
        store: node.store!,
        key: node.key,
        fleetId: rootDocId,
        admins,
        log,
        onRevoked: (peer) => node.router.disconnect(peer),
      });
      const rpc = rpcServer(node, fleet, gate, rootDocId, log);
      node.router.service(echoService()).service(rpc);
      trackPeers(node, fleet);
      node.start();
      const ticket = node.transport.ticket();
      // Readers of the ticket file never see half a ticket.
      await writeFileAtomic(join(config.stateDir, TICKET_FILE), ticket + '\n', { mode: 0o644 });
      return new Coordinator(node, fleet, rpc, ticket);
    } catch (err) {
      await node.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    this.fleet.presence.flush(true);
    await this.node.close();
  }
}

function rpcServer(
  node: FltNode,
  fleet: Fleet,
  gate: Gate,
  rootDocId: DocumentId,
  log: Logger,
): RpcServer {
  const started = Date.now();
  /** Told to agents in every ping answer: a new value means a new process (liveness.ts). */
  const boot = randomBytes(8).toString('hex');
  const repo = node.repo!;
  // Who may call each method is declared on it (src/rpc-methods.ts) and checked by the server
  // before the request is read: the handlers below only run for callers their method allows.
  const access = { roleOf: (peer: NodeId) => gate.role(peer), refuse: refusal };
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
      const known = await isHeld(node, factsDocId);
      const entry = fleet.enroll(ctx.peer, factsDocId, req.factsWriteKey);
      // A forked agent is not told which history to follow: an admin decides that.
      const factsHeads = entry.forked ? null : entry.factsHeads;
      return { rootDocId, enrolledAt: entry.enrolledAt, known, factsHeads };
    })
    .register(agentHeartbeat, (req, ctx) => {
      const entry = fleet.agent(ctx.peer);
      if (!entry) throw new FltError('UNAUTHORIZED_PEER', 'not enrolled');
      fleet.presence.heartbeat(ctx.peer, req.volatile);
      if (req.factsHeads !== undefined) fleet.recordHeads(ctx.peer, req.factsHeads);
      fleet.watch(entry); // a first enrollment comes before the document exists: fetch it now
      return Promise.resolve({});
    })
    .register(agentPing, (_, ctx) => {
      // Every few seconds from every agent: map lookups only, no signature, no document write.
      if (fleet.agent(ctx.peer)) fleet.presence.heard(ctx.peer);
      return Promise.resolve({ boot });
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
      Promise.resolve({
        now: new Date().toISOString(),
        agents: fleet.agents().map((a) => ({
          nodeId: a.nodeId,
          online: fleet.presence.isOnline(a.nodeId),
          lastSeen: fleet.presence.lastSeen(a.nodeId) ?? a.lastSeen,
          volatile: fleet.presence.volatileOf(a.nodeId),
          pending: fleet.pending(a.nodeId),
        })),
      }),
    )
    .register(docHeads, async (req) => {
      const docId = req.docId as DocumentId;
      if (!(await isHeld(node, docId))) return { heads: null };
      return { heads: A.getHeads((await repo.find(docId)).doc()) };
    })
    .register(adminOp, (req) => {
      gate.apply(req.op);
      return Promise.resolve({ index: gate.size - 1 });
    })
    .register(fleetAudit, () => Promise.resolve({ fleet: rootDocId, ...gate.trail() }));
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
 * Whether this coordinator has the document (loaded, or in its storage). A handle that is not
 * ready does not count, nor does a stored sync state: fleet.watch() asks for an enrolled agent's
 * facts document before the agent has written it, which leaves both, and finding it then fails.
 */
async function isHeld(node: FltNode, docId: DocumentId): Promise<boolean> {
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
