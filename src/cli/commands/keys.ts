// `flt keygen` and `flt id`: make a node key, and print the node id of one.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { FltError } from '../../../sync/errors.js';
import type { Logger } from '../../../sync/log.js';
import type { Config } from '../../config/index.js';
import {
  generateNodeKey,
  loadPublicKeyFile,
  NODE_KEY_FILE,
  writeKeyPair,
} from '../../identity/index.js';
import { loadNodeKey } from '../../node.js';
import type { ParsedArgs } from '../args.js';
import type { Output } from '../output.js';

export async function runKeygen(
  args: ParsedArgs,
  config: Config,
  log: Logger,
  out: Output,
): Promise<void> {
  let file = args.options.out;
  if (!file) {
    log.info(`state dir ${config.stateDir}`);
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    file = join(config.stateDir, NODE_KEY_FILE);
  }
  const key = generateNodeKey();
  await writeKeyPair(file, key, { force: args.options.force ?? false });
  if (config.json) out.json({ nodeId: key.nodeId, file, publicKeyFile: `${file}.pub` });
  else out.line(key.nodeId);
}

export async function runId(
  args: ParsedArgs,
  config: Config,
  log: Logger,
  out: Output,
): Promise<void> {
  if (args.options.publicKey && config.secretKey) {
    throw new FltError('BAD_ARGUMENT', 'give either --secret-key or --public-key, not both');
  }
  let nodeId;
  if (args.options.publicKey) nodeId = await loadPublicKeyFile(args.options.publicKey);
  else {
    if (!config.secretKey) log.info(`state dir ${config.stateDir}`);
    nodeId = (await loadNodeKey(config, log)).nodeId;
  }
  if (config.json) out.json({ nodeId });
  else out.line(nodeId);
}
