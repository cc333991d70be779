// `flt keygen` and `flt id`: make a node key, and print the node id of one.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { FltError } from '../../../sync/errors.js';
import {
  generateNodeKey,
  loadPublicKeyFile,
  NODE_KEY_FILE,
  writeKeyPair,
} from '../../identity/index.js';
import { loadNodeKey } from '../../node.js';
import { textOption } from '../args.js';
import type { Invocation } from '../invocation.js';

export async function runKeygen({ opts, config, log, out }: Invocation): Promise<void> {
  let file = textOption(opts, 'out');
  if (!file) {
    log.info(`state dir ${config.stateDir}`);
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    file = join(config.stateDir, NODE_KEY_FILE);
  }
  const key = generateNodeKey();
  await writeKeyPair(file, key, { force: opts.force === true });
  if (config.json) out.json({ nodeId: key.nodeId, file, publicKeyFile: `${file}.pub` });
  else out.line(key.nodeId);
}

export async function runId({ opts, config, log, out }: Invocation): Promise<void> {
  const publicKey = textOption(opts, 'publicKey');
  if (publicKey && config.secretKey) {
    throw new FltError('BAD_ARGUMENT', 'give either --secret-key or --public-key, not both');
  }
  let nodeId;
  if (publicKey) nodeId = await loadPublicKeyFile(publicKey);
  else {
    if (!config.secretKey) log.info(`state dir ${config.stateDir}`);
    nodeId = (await loadNodeKey(config, log)).nodeId;
  }
  if (config.json) out.json({ nodeId });
  else out.line(nodeId);
}
