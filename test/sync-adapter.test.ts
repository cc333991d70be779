import { Repo, type PeerId } from '@automerge/automerge-repo';
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { IrohTransport } from '../sync/iroh-transport.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import type { PeerAddr, Transport } from '../sync/transport.js';
import { waitFor } from './helpers/wait.js';

type Doc = { items: string[] };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function node(transport: Transport, dial: PeerAddr[] = []) {
  const adapter = new SyncAdapter({ transport, dial, backoff: { initialMs: 20, maxMs: 200 } });
  new Router(transport).route(ALPN.sync, (c) => adapter.accept(c)).start();
  const repo = new Repo({ network: [adapter], peerId: transport.nodeId as string as PeerId });
  cleanups.push(async () => {
    await repo.shutdown();
    await transport.close();
  });
  return { repo, adapter };
}

const iroh = () =>
  IrohTransport.bind({ secretKey: randomBytes(32), alpns: ALL_ALPNS, bind: '127.0.0.1:0', relay: 'disabled', discovery: 'none' });

describe.each([
  ['memory', () => { const net = new MemoryNetwork(); return () => Promise.resolve(net.bind(ALL_ALPNS)); }],
  ['iroh', () => iroh],
] as const)('sync adapter over %s', (_name, makeFactory) => {
  it('syncs one document both ways', async () => {
    const make = makeFactory();
    const ta = await make();
    const tb = await make();
    const a = await node(ta);
    const b = await node(tb, [ta.addr()]);
    const ha = a.repo.create<Doc>({ items: ['from-a'] });
    const hb = await waitFor('b finds the doc', async () => {
      try {
        return await b.repo.find<Doc>(ha.url);
      } catch {
        return undefined;
      }
    });
    hb.change((d) => void d.items.push('from-b'));
    await waitFor('a sees b', () => ha.doc().items.includes('from-b'));
    expect(hb.doc().items).toEqual(['from-a', 'from-b']);
  });
});
