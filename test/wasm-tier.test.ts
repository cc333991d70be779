// src/cli/wasm-tier.ts: the size of an admin replica's root, read before Automerge is imported,
// from the files FsStore writes.

import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { generateAutomergeUrl, parseAutomergeUrl } from '@automerge/automerge-repo';
import { afterEach, describe, expect, it } from 'vitest';
import { LARGE_ROOT_BYTES, replicaRootBytes } from '../src/cli/wasm-tier.js';
import { FsStore } from '../stores/fs-store.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'flt-wasm-tier-'));
  dirs.push(d);
  return d;
}

describe('replicaRootBytes', () => {
  it('sums the snapshot and incremental chunks of the root named in replica.json', async () => {
    const dir = await stateDir();
    const { documentId } = parseAutomergeUrl(generateAutomergeUrl());
    const doc = A.from<{ agents: Record<string, string> }>({ agents: { a: 'x'.repeat(1000) } });
    const snapshot = A.save(doc);
    const change = A.getLastLocalChange(A.change(doc, (d) => (d.agents.b = 'y')))!;
    const store = await FsStore.open(join(dir, 'repo'));
    await store.save([documentId, 'snapshot', 'a'.repeat(64)], snapshot);
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    await store.save([documentId, 'incremental', sha(change)], change);
    const other = parseAutomergeUrl(generateAutomergeUrl()).documentId;
    await store.save([other, 'snapshot', 'c'.repeat(64)], new Uint8Array(snapshot));
    await store.close();
    // As admin.ts writes it (pretty-printed, the root named before a long presence list).
    const presence = Array.from({ length: 50 }, (_, i) => ({ nodeId: 'n'.repeat(64), i }));
    const replica = { coordinator: 'c'.repeat(64), rootDocId: documentId, presence };
    await writeFile(join(dir, 'replica.json'), JSON.stringify(replica, null, 2));
    expect(replicaRootBytes(dir)).toBe(snapshot.length + change.length);
    expect(snapshot.length + change.length).toBeLessThan(LARGE_ROOT_BYTES);
  });

  it('is undefined without a replica; 0 with a corrupt one, or with a root it cannot name', async () => {
    const dir = await stateDir();
    expect(replicaRootBytes(dir)).toBeUndefined();
    await writeFile(join(dir, 'replica.json'), '{not json');
    expect(replicaRootBytes(dir)).toBe(0);
    await writeFile(join(dir, 'replica.json'), JSON.stringify({ rootDocId: 42 }));
    expect(replicaRootBytes(dir)).toBe(0);
    await writeFile(join(dir, 'replica.json'), JSON.stringify({ rootDocId: '../../etc' }));
    expect(replicaRootBytes(dir)).toBe(0);
    await writeFile(join(dir, 'replica.json'), JSON.stringify({ rootDocId: 'a\\"b' }));
    expect(replicaRootBytes(dir)).toBe(0);
  });
});
