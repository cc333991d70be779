// An admin's replica written directly (no fleet running): the root document and replica.json as
// `flt admin agents` leaves them, for tests of what the CLI does with a replica offline.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { FsStore } from '../../stores/fs-store.js';
import { baseDocument, docIdFor, signHeads } from '../../sync/owned-doc.js';
import { encodeAgent, rootBase, type AgentEntry, type RootDoc } from '../../src/docs/types.js';
import { deriveKeyPair, generateNodeKey } from '../../src/identity/index.js';
import { saveReplicaInfo } from '../../src/roles/replica.js';

const AGENT_FIELDS = { enrolledAt: '2026-01-01T00:00:00.000Z', factsHeads: null };

function agent(hostname: string): AgentEntry {
  const key = generateNodeKey();
  const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  return {
    nodeId: key.nodeId,
    factsDocId: docIdFor(facts.publicKey),
    factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
    lastSeen: AGENT_FIELDS.enrolledAt,
    summary: { hostname, os: 'NixOS', nixosVersion: '25.05', kernel: '6.12', arch: 'x86_64' },
    ...AGENT_FIELDS,
  };
}

/**
 * Writes into `stateDir` an admin's replica as `admin agents` leaves it: the root document
 * (`agents` agents, two unless told: host-a, host-b, ... or host-0, host-1, ... from 26) as a
 * snapshot in the store, replica.json with its heads signed by the root write key (another key
 * with `wrongSigner`), and with `unsigned` one agent more added later as an incremental chunk no
 * signature covers.
 */
export async function writeReplica(
  stateDir: string,
  opts: { agents?: number; wrongSigner?: boolean; unsigned?: boolean } = {},
): Promise<string> {
  const coordinator = generateNodeKey();
  const rootKey = deriveKeyPair(coordinator.secret, 'flt/v1/doc/root');
  const rootDocId = docIdFor(rootKey.publicKey);
  let root = A.load<RootDoc>(baseDocument(rootDocId, rootBase(coordinator.nodeId)));
  const n = opts.agents ?? 2;
  const host = (i: number) => (n < 26 ? `host-${String.fromCharCode(97 + i)}` : `host-${i}`);
  const hosts = Array.from({ length: n }, (_, i) => host(i));
  root = A.change(root, (d) => {
    for (const host of hosts) {
      const entry = agent(host);
      d.agents[entry.nodeId] = encodeAgent(entry);
    }
  });
  const signer = opts.wrongSigner
    ? deriveKeyPair(generateNodeKey().secret, 'flt/v1/doc/root')
    : rootKey;
  const signed = signHeads(rootDocId, 1, A.getHeads(root), signer.secret, rootKey.publicKey);
  const store = await FsStore.open(join(stateDir, 'repo'));
  const hash = (doc: A.Doc<unknown>) =>
    createHash('sha256').update(A.getHeads(doc).join('')).digest('hex');
  await store.save([rootDocId, 'snapshot', hash(root)], A.save(root));
  if (opts.unsigned) {
    const entry = agent(host(n));
    const later = A.change(root, (d) => void (d.agents[entry.nodeId] = encodeAgent(entry)));
    const chunk = A.saveSince(later, A.getHeads(root));
    // An incremental chunk is named by the SHA-256 of its bytes (the store checks it).
    const name = createHash('sha256').update(chunk).digest('hex');
    await store.save([rootDocId, 'incremental', name], chunk);
  }
  await store.close();
  await saveReplicaInfo(stateDir, {
    coordinator: coordinator.nodeId,
    rootDocId,
    rootSigned: signed,
    asOf: new Date().toISOString(),
    presence: [],
  });
  return stateDir;
}
