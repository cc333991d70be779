// The coordinator: the fleet's always-on meeting point. It owns the root document (write key
// derived from its node key), enrolls agents over rpc, replicates every document peers sync
// with it, and serves the fleet from its own storage at once after a restart.
// When ready it writes its ticket to <state-dir>/coordinator.ticket.

import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import type { DocumentId, PeerId } from '@automerge/automerge-repo';
import { serveEcho } from '../../sync/echo.js';
import { FltError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import type { Logger } from '../../sync/log.js';
import { ALPN } from '../../sync/protocols.js';
import { RpcServer } from '../../sync/rpc.js';
import type { Config } from '../config/index.js';
import { docIdFor } from '../docs/doc-id.js';
import { isStored, openOwned } from '../docs/open.js';
import type { RootDoc } from '../docs/types.js';
import { deriveKeyPair } from '../identity/index.js';
import { FltNode } from '../node.js';
import {
  agentEnroll,
  agentHeartbeat,
  docHeads,
  fleetInfo,
  fleetPresence,
  nodeInfo,
} from '../rpc-methods.js';
import { VERSION } from '../version.js';
import { Fleet } from './fleet.js';

export const TICKET_FILE = 'coordinator.ticket';

export class Coordinator {
  private readonly flushTimer: NodeJS.Timeout;

  private constructor(
    readonly node: FltNode,
    readonly fleet: Fleet,
    readonly ticket: string,
  ) {
    this.flushTimer = setInterval(() => fleet.presence.flush(), 60_000);
    this.flushTimer.unref();
  }

  static async start(config: Config, log: Logger): Promise<Coordinator> {
    let fleet: Fleet | undefined;
    const node = await FltNode.open({
      role: 'coordinator',
      config,
      log,
      repo: true,
      share: () => ({
        announce: (peer, doc) =>
          Promise.resolve(fleet?.offers(peer as string as NodeId, doc) ?? false),
        access: (peer, doc) =>
          Promise.resolve(fleet?.offers(peer as string as NodeId, doc) ?? false),
      }),
      admit: (peer, message) => fleet?.admit(peer, message),
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
      const rpc = rpcServer(node, fleet, rootDocId, log);
      node.router.route(ALPN.echo, serveEcho).route(ALPN.rpc, (conn) => rpc.serve(conn));
      trackPeers(node, fleet);
      node.start();
      const ticket = node.transport.ticket();
      await writeAtomically(join(config.stateDir, TICKET_FILE), ticket + '\n');
      return new Coordinator(node, fleet, ticket);
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

function rpcServer(node: FltNode, fleet: Fleet, rootDocId: DocumentId, log: Logger): RpcServer {
  const started = Date.now();
  const repo = node.repo!;
  return new RpcServer(log)
    .register(nodeInfo, () =>
      Promise.resolve({
        nodeId: node.key.nodeId,
        role: 'coordinator',
        version: VERSION,
        uptimeMs: Date.now() - started,
      }),
    )
    .register(agentEnroll, async (req, ctx) => {
      const factsDocId = req.factsDocId as DocumentId;
      const known = await isHeld(node, factsDocId);
      const entry = fleet.enroll(ctx.peer, factsDocId, req.factsWriteKey);
      return { rootDocId, enrolledAt: entry.enrolledAt, known };
    })
    .register(agentHeartbeat, (req, ctx) => {
      const entry = fleet.agent(ctx.peer);
      if (!entry) throw new FltError('UNAUTHORIZED_PEER', 'not enrolled');
      fleet.presence.heartbeat(ctx.peer, req.volatile);
      if (req.factsHeads !== undefined) fleet.recordHeads(ctx.peer, req.factsHeads);
      fleet.watch(entry); // a first enrollment comes before the document exists: fetch it now
      return Promise.resolve({});
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
        })),
      }),
    )
    .register(docHeads, async (req) => {
      const docId = req.docId as DocumentId;
      if (!(await isHeld(node, docId))) return { heads: null };
      return { heads: A.getHeads((await repo.find(docId)).doc()) };
    });
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

/** Readers of the ticket file never see half a ticket. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, file);
}
