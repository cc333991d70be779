// A test peer process: one Repo persisted in a state dir, syncing over iroh (flt/sync/0).
// Driven by JSON lines on stdin, it answers with JSON lines on stdout, so a test can SIGKILL
// it at any point and start it again on the same state.
//   argv: STATE_DIR SECRET_HEX BIND [DIAL_ADDR]
//   stdin: {"op":"create"} | {"op":"open","url":U} | {"op":"push","item":S} | {"op":"items"}

import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Repo, type AutomergeUrl, type DocHandle, type PeerId } from '@automerge/automerge-repo';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { parsePeerAddress } from '../../sync/address.js';
import { IrohTransport } from '../../sync/iroh-transport.js';
import { ALL_ALPNS, ALPN } from '../../sync/protocols.js';
import { Router } from '../../sync/router.js';
import { SyncAdapter } from '../../sync/sync-adapter.js';

type Doc = { items: string[] };
type Command =
  | { op: 'create' }
  | { op: 'open'; url: AutomergeUrl }
  | { op: 'push'; item: string }
  | { op: 'items' };

const [stateDir, secretHex, bind, dial] = process.argv.slice(2) as [
  string,
  string,
  string,
  string | undefined,
];
const say = (v: unknown) => process.stdout.write(JSON.stringify(v) + '\n');

const transport = await IrohTransport.bind({
  secretKey: Buffer.from(secretHex, 'hex'),
  alpns: ALL_ALPNS,
  bind,
  relay: 'disabled',
  discovery: 'none',
});
const adapter = new SyncAdapter({
  transport,
  dial: dial ? [parsePeerAddress(dial)] : [],
  backoff: { initialMs: 50, maxMs: 500 },
});
new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
const repo = new Repo({
  network: [adapter],
  storage: new NodeFSStorageAdapter(join(stateDir, 'repo')),
  peerId: transport.nodeId as string as PeerId,
});
adapter.on('peer-candidate', ({ peerId }) => say({ event: 'peer', peerId }));
let handle: DocHandle<Doc> | undefined;

function watch(h: DocHandle<Doc>): void {
  handle = h;
  h.on('change', () => say({ event: 'items', items: h.doc().items }));
}

async function run(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case 'create':
      watch(repo.create<Doc>({ items: [] }));
      await repo.flush();
      return { url: handle!.url };
    case 'open':
      watch(await repo.find<Doc>(cmd.url));
      return { items: handle!.doc().items };
    case 'push':
      handle!.change((d) => void d.items.push(cmd.item));
      await repo.flush(); // acknowledged only once durable
      return { items: handle!.doc().items };
    case 'items':
      return { items: handle!.doc().items };
  }
}

say({ event: 'ready', addr: `${transport.nodeId}@${bind}`, nodeId: transport.nodeId });
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as Command;
  try {
    say({ ok: await run(cmd) });
  } catch (err) {
    say({ error: (err as Error).message });
  }
}
