// The coordinator: the fleet's always-on meeting point. For now it answers echo and rpc and
// replicates documents for whoever syncs with it; enrollment and the root document come with
// the fleet core. When ready it writes its ticket to <state-dir>/coordinator.ticket.

import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serveEcho } from '../../sync/echo.js';
import type { Logger } from '../../sync/log.js';
import { ALPN } from '../../sync/protocols.js';
import { RpcServer } from '../../sync/rpc.js';
import type { Config } from '../config/index.js';
import { FltNode } from '../node.js';
import { nodeInfo } from '../rpc-methods.js';
import { VERSION } from '../version.js';

export const TICKET_FILE = 'coordinator.ticket';

export class Coordinator {
  private constructor(
    readonly node: FltNode,
    readonly ticket: string,
  ) {}

  static async start(config: Config, log: Logger): Promise<Coordinator> {
    const node = await FltNode.open({ role: 'coordinator', config, log, repo: true });
    try {
      const started = Date.now();
      const rpc = new RpcServer(log).register(nodeInfo, () =>
        Promise.resolve({
          nodeId: node.key.nodeId,
          role: 'coordinator',
          version: VERSION,
          uptimeMs: Date.now() - started,
        }),
      );
      node.router.route(ALPN.echo, serveEcho).route(ALPN.rpc, (conn) => rpc.serve(conn));
      node.start();
      const ticket = node.transport.ticket();
      await writeAtomically(join(config.stateDir, TICKET_FILE), ticket + '\n');
      return new Coordinator(node, ticket);
    } catch (err) {
      await node.close().catch(() => undefined);
      throw err;
    }
  }

  close(): Promise<void> {
    return this.node.close();
  }
}

/** Readers of the ticket file never see half a ticket. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, file);
}
