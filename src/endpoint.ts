// A node's identity and its iroh endpoint, without automerge-repo: what `FltNode` (node.ts) builds
// on, and all that a command which only makes rpc calls needs (`flt admin agents` and `facts`
// read through doc.fetch: src/roles/admin.ts). Importing automerge-repo costs a short command
// about 150 ms of CPU, so it stays out of this module.

import { join } from 'node:path';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from './errors.js';
import { IrohTransport, type RelaySetting } from '../sync/iroh-transport.js';
import type { Logger } from '../sync/log.js';
import { ALL_ALPNS } from '../sync/protocols.js';
import type { PeerAddr } from '../sync/transport.js';
import { formatHostPort, type Config } from './config/index.js';
import { BIND_PER_ROLE, type Role } from './config-keys.js';
import { loadOrCreateNodeKey, loadSecretKeyFile, type NodeKey } from './identity/index.js';

/** The node key: `--secret-key FILE` if given, else `<state-dir>/node.key` (created once). */
export async function loadNodeKey(config: Config, log: Logger): Promise<NodeKey> {
  if (config.secretKey) return loadSecretKeyFile(config.secretKey);
  const { key, created } = await loadOrCreateNodeKey(config.stateDir);
  if (created) log.info('created a new node key', { file: join(config.stateDir, 'node.key') });
  return key;
}

export function relaySetting(relay: string): RelaySetting {
  return relay === 'disabled' || relay === 'default' ? relay : { url: relay };
}

/** The node's iroh endpoint, bound as the config and the role say. */
export function bindEndpoint(
  config: Config,
  log: Logger,
  key: NodeKey,
  role: Role,
): Promise<IrohTransport> {
  return IrohTransport.bind({
    secretKey: key.secret,
    alpns: ALL_ALPNS,
    bind: config.bind ? formatHostPort(config.bind) : BIND_PER_ROLE[role],
    relay: relaySetting(config.relay),
    discovery: config.discovery,
    logger: log,
  });
}

/** The coordinator address from `--coordinator` / FLT_COORDINATOR / the config file. */
export function requireCoordinator(config: Config): PeerAddr {
  if (!config.coordinator) {
    throw new FltError(
      'BAD_ARGUMENT',
      'no coordinator: pass --coordinator TICKET or NODE_ID@HOST:PORT',
    );
  }
  return parsePeerAddress(config.coordinator);
}
