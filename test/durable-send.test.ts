// A node's own changes are on disk before any peer holds them (NodeOptions.durable). Otherwise
// a crash right after sending loses a change a peer keeps: the peer pushes it back as a change
// the writer never made (refused by its admit guard), and the writer reuses its Automerge
// (actor, seq) for other changes, which readers see as a fork.

import {
  Repo,
  type DocumentId,
  type PeerId,
  type StorageAdapterInterface,
  type StorageKey,
} from '@automerge/automerge-repo';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { persistBeforeSend } from '../src/node.js';
import { FsStore } from '../stores/fs-store.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { SyncAdapter } from '../sync/sync-adapter.js';
import { waitFor } from './helpers/wait.js';

type Doc = { items: string[] };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A disk that takes 200 ms per write, and says when each write ends. */
function slowDisk(store: FsStore, log: string[]): StorageAdapterInterface {
  return {
    load: (key: StorageKey) => store.load(key),
    loadRange: (prefix: StorageKey) => store.loadRange(prefix),
    remove: (key: StorageKey) => store.remove(key),
    removeRange: (prefix: StorageKey) => store.removeRange(prefix),
    save: async (key: StorageKey, data: Uint8Array) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      await store.save(key, data);
      log.push('saved');
    },
  };
}

async function pair(durable: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'flt-durable-'));
  const store = await FsStore.open(dir);
  const log: string[] = [];
  const net = new MemoryNetwork();
  const [ta, tb] = [net.bind(ALL_ALPNS), net.bind(ALL_ALPNS)];
  const owned = new Set<DocumentId>();
  // The writer's Repo needs its adapter, whose gate needs the Repo: filled in just below.
  const docs = { store, repo: undefined as unknown as Repo };
  const writerAdapter = new SyncAdapter({
    transport: ta,
    ...(durable ? { beforeSend: (m) => persistBeforeSend(docs, m, (id) => owned.has(id)) } : {}),
  });
  new Router(ta).route(ALPN.sync, (c) => writerAdapter.accept(c)).start();
  docs.repo = new Repo({
    network: [writerAdapter],
    storage: slowDisk(store, log),
    peerId: ta.nodeId as string as PeerId,
  });
  const readerAdapter = new SyncAdapter({ transport: tb, dial: [ta.addr()] });
  new Router(tb).route(ALPN.sync, (c) => readerAdapter.accept(c)).start();
  const reader = new Repo({ network: [readerAdapter], peerId: tb.nodeId as string as PeerId });
  cleanups.push(async () => {
    await reader.shutdown();
    await docs.repo.shutdown();
    await store.close();
    await Promise.all([ta.close(), tb.close()]);
    await rm(dir, { recursive: true, force: true });
  });
  const writer = docs.repo.create<Doc>({ items: [] });
  owned.add(writer.documentId);
  const copy = await waitFor('the reader has the document', async () => {
    try {
      return await reader.find<Doc>(writer.url);
    } catch {
      return undefined;
    }
  });
  await docs.repo.flush();
  await store.idle();
  return { writer, copy, log };
}

describe('a document the node writes', () => {
  it('reaches a peer only after the change is saved', async () => {
    const { writer, copy, log } = await pair(true);
    copy.on('change', () => void log.push('received'));
    log.length = 0;
    writer.change((d) => void d.items.push('x'));
    log.push('changed');
    await waitFor('the reader has the change', () => copy.doc().items.includes('x'));
    const received = log.indexOf('received');
    expect(log.slice(0, received)).toEqual(expect.arrayContaining(['changed', 'saved']));
    expect(log.indexOf('saved')).toBeGreaterThan(log.indexOf('changed'));
  });

  it('without it (the old behaviour) a peer can hold a change the disk does not have yet', async () => {
    const { writer, copy, log } = await pair(false);
    copy.on('change', () => void log.push('received'));
    log.length = 0;
    writer.change((d) => void d.items.push('x'));
    log.push('changed');
    await waitFor('the reader has the change', () => copy.doc().items.includes('x'));
    expect(log.slice(0, log.indexOf('received'))).toEqual(['changed']);
  });
});
