// The agent side of test/artifacts-resume.test.ts in a process of its own, so that the test can
// SIGKILL it mid-transfer: one ArtifactFetcher.ensure() of ROOT from the coordinator at TICKET into
// the store STORE, state in STATE, as the node SECRET (hex), `artifact_parallel` PARALLEL, `nix_trusted_keys` TRUSTED.
//   argv: STATE STORE TICKET ROOT SECRET PARALLEL TRUSTED
//   stdout: `progress BYTES TOTAL` lines, then `ready FETCHED BYTES` or `missing ...`; exit 0.
//   stderr and exit 1: the error's code and message.

import { pathToFileURL } from 'node:url';
import { parsePeerAddress } from '../../sync/address.js';
import { blobHasher } from '../../sync/blob-hash.js';
import { IrohTransport } from '../../sync/iroh-transport.js';
import { createLogger } from '../../sync/log.js';
import { ALL_ALPNS } from '../../sync/protocols.js';
import { ArtifactFetcher } from '../../src/artifacts/fetcher.js';
import { codeOf, messageOf } from '../../src/errors.js';

async function main(argv: string[]): Promise<void> {
  const [state, store, ticket, root, secret, parallel, trusted] = argv as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const transport = await IrohTransport.bind({
    secretKey: Buffer.from(secret, 'hex'),
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });
  const fetcher = new ArtifactFetcher({
    transport,
    coordinator: parsePeerAddress(ticket),
    stateDir: state,
    nixStore: store,
    parallel: Number(parallel),
    trustedKeys: [trusted],
    minFree: 0,
    hasher: await blobHasher(),
    log: createLogger('error', 'fetch-child', () => undefined),
  });
  const r = await fetcher.ensure(root, {
    progress: (p) => process.stdout.write(`progress ${p.bytes} ${p.total}\n`),
  });
  process.stdout.write(
    r.state === 'ready' ? `ready ${r.fetched} ${r.bytes}\n` : `missing ${r.missing.join(' ')}\n`,
  );
  await fetcher.close();
  await transport.close();
  process.exit(0);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${codeOf(err)}: ${messageOf(err)}\n`);
    process.exit(1);
  });
}
