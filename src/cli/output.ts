// What commands print: results on stdout (lines or one JSON document), never logs.

import { parsePeerAddress } from '../../sync/address.js';
import { FltError } from '../../sync/errors.js';
import type { PeerAddr } from '../../sync/transport.js';
import type { Config } from '../config/index.js';

export interface Output {
  line(text: string): void;
  json(value: unknown): void;
}

export const stdout: Output = {
  line: (text) => void process.stdout.write(text + '\n'),
  json: (value) => void process.stdout.write(JSON.stringify(value, null, 2) + '\n'),
};

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
