// The restart group's fixture: a coordinator state dir whose store holds the root document with
// N enrolled agents and the N agents' facts documents, as a coordinator that has run for a while
// keeps them; the same chunks also go to a NodeFSStorageAdapter directory for the baseline.
// Building 5,000 fsynced documents takes a while, so it is cached in bench/results/fixtures-<N>/.

import { createHash, randomUUID } from 'node:crypto';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as A from '@automerge/automerge';
import type { Chunk, DocumentId } from '@automerge/automerge-repo';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { FsStore } from '../stores/fs-store.js';
import { mapBounded } from '../stores/semaphore.js';
import type { NodeId } from '../sync/ids.js';
import { baseDocument, docIdFor } from '../sync/owned-doc.js';
import { writeFactsPatch } from '../src/docs/facts-doc.js';
import {
  DOC_SCHEMA,
  encodeAgent,
  rootBase,
  summarize,
  type AgentEntry,
  type FactsDoc,
  type RootDoc,
} from '../src/docs/types.js';
import { diffFacts } from '../src/facts/index.js';
import { deriveKeyPair, loadOrCreateNodeKey, nodeKeyFromSeed } from '../src/identity/index.js';
import { saveReplicaInfo, type ReplicaInfo } from '../src/roles/replica.js';
import { signHeads } from '../sync/owned-doc.js';
import { sampleFacts } from './facts-sample.js';

/** Bump when the fixture's content or layout changes: cached fixtures of another version are rebuilt. */
const FIXTURE_VERSION = 3; // 2: sealed strings, agent records; 3: signed facts heads
/** Saves in flight while writing a fixture (FsStore bounds its own file operations at 32). */
const WRITE_CONCURRENCY = 64;

/** What restart.ts needs to know about a fixture; also its manifest.json. */
export interface FleetFixture {
  readonly version: number;
  readonly n: number;
  /** The coordinator's state dir: node.key and repo/ in FsStore's format. */
  readonly stateDir: string;
  /** The same chunks, written by NodeFSStorageAdapter (raw files, no header). */
  readonly nodefsDir: string;
  readonly rootDocId: DocumentId;
  readonly factsDocIds: readonly DocumentId[];
  /** Size of the root document's snapshot, and of all facts snapshots together. */
  readonly rootBytes: number;
  readonly factsBytes: number;
}

/** Where fixtures live: bench/results/ (git-ignored), next to latest.json. */
function fixtureDir(n: number): string {
  return fileURLToPath(new URL(`../../bench/results/fixtures-${n}/`, import.meta.url));
}

/** The fixture's manifest.json, which restart-baseline.ts reads in its own process. */
export function manifestPath(n: number): string {
  return join(fixtureDir(n), 'manifest.json');
}

/** The cached fixture for `n` agents, built first if missing, stale or half-written. */
export async function fleetFixture(
  n: number,
  progress: (line: string) => void,
): Promise<FleetFixture> {
  const dir = fixtureDir(n);
  const cached = await readManifest(manifestPath(n));
  if (cached?.version === FIXTURE_VERSION && cached.n === n) return cached;
  progress(`building fixture for N = ${n} in ${dir} (cached for later runs)`);
  const t0 = performance.now();
  const fixture = await build(dir, n, progress);
  progress(`fixture N = ${n} built in ${seconds(t0)} s`);
  return fixture;
}

const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(1);

async function readManifest(file: string): Promise<FleetFixture | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as FleetFixture;
  } catch {
    return undefined;
  }
}

/** automerge-repo's snapshot key: SHA-256 over the concatenated hex heads (storage/keyHash.js). */
function snapshotChunk(docId: DocumentId, doc: A.Doc<unknown>): Chunk {
  const heads = createHash('sha256').update(A.getHeads(doc).join('')).digest('hex');
  return { key: [docId, 'snapshot', heads], data: A.save(doc) };
}

/** The key of the fixture's agent `i` (deterministic). */
function agentKey(i: number) {
  const seed = createHash('sha256').update(`flt-bench/agent/${i}`).digest();
  return nodeKeyFromSeed(new Uint8Array(seed));
}

/** The node id of the fixture's agent `i`, as `flt admin facts` names it (scale.ts). */
export function fixtureAgentId(i: number): string {
  return agentKey(i).nodeId;
}

/**
 * One agent as the coordinator holds it: its entry in the root document (as Fleet.enroll and
 * Fleet.updateSummary write it) and its facts document (as Agent.create and Agent.publish write
 * it: the deterministic base, then one change with the facts), compacted into one snapshot as
 * automerge-repo stores a small document.
 */
function agentOf(i: number, collectedAt: string) {
  const key = agentKey(i);
  const factsKey = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  const factsDocId = docIdFor(factsKey.publicKey);
  const facts = sampleFacts(i, collectedAt);
  const base: FactsDoc = { kind: 'flt/facts', schema: DOC_SCHEMA, owner: key.nodeId };
  const doc = A.change(A.load<FactsDoc>(baseDocument(factsDocId, base)), (d) =>
    writeFactsPatch(d, diffFacts(undefined, facts), facts.collectedAt),
  );
  const entry: AgentEntry = {
    nodeId: key.nodeId,
    factsDocId,
    factsWriteKey: Buffer.from(factsKey.publicKey).toString('hex'),
    enrolledAt: collectedAt,
    lastSeen: collectedAt,
    summary: null,
    factsHeads: signHeads(factsDocId, 1, A.getHeads(doc), factsKey.secret, factsKey.publicKey),
  };
  return { entry, summary: summarize(facts), chunk: snapshotChunk(factsDocId, doc) };
}

async function build(
  dir: string,
  n: number,
  progress: (line: string) => void,
): Promise<FleetFixture> {
  const t0 = performance.now();
  await rm(dir, { recursive: true, force: true });
  const stateDir = join(dir, 'flt');
  const nodefsDir = join(dir, 'nodefs');
  const { key } = await loadOrCreateNodeKey(stateDir);
  const rootDocId = docIdFor(deriveKeyPair(key.secret, 'flt/v1/doc/root').publicKey);
  let root = A.load<RootDoc>(baseDocument(rootDocId, rootBase(key.nodeId)));
  const collectedAt = new Date().toISOString();
  const facts: Chunk[] = [];
  for (let i = 0; i < n; i++) {
    const agent = agentOf(i, collectedAt);
    // Two changes per agent, as a live coordinator makes them: the enrollment, then the summary
    // once the facts document has arrived.
    const { entry, summary } = agent;
    root = A.change(root, (d) => void (d.agents[entry.nodeId] = encodeAgent(entry)));
    root = A.change(
      root,
      (d) => void (d.agents[entry.nodeId] = encodeAgent({ ...entry, summary })),
    );
    facts.push(agent.chunk);
  }
  const rootChunk = snapshotChunk(rootDocId, root);
  const chunks = [rootChunk, ...facts];
  progress(`  ${n + 1} documents made in ${seconds(t0)} s`);
  const t1 = performance.now();
  await writeFsStore(join(stateDir, 'repo'), chunks);
  progress(`  written with FsStore in ${seconds(t1)} s`);
  const t2 = performance.now();
  await writeNodefs(nodefsDir, chunks);
  progress(`  written with NodeFSStorageAdapter in ${seconds(t2)} s`);
  const fixture: FleetFixture = {
    version: FIXTURE_VERSION,
    n,
    stateDir,
    nodefsDir,
    rootDocId,
    factsDocIds: facts.map((c) => c.key[0] as DocumentId),
    rootBytes: rootChunk.data!.length,
    factsBytes: facts.reduce((sum, c) => sum + c.data!.length, 0),
  };
  // Written last: a fixture without its manifest is rebuilt.
  await mkdir(dir, { recursive: true });
  await writeFile(manifestPath(n), JSON.stringify(fixture) + '\n');
  return fixture;
}

/** Each store gets its own storage id, as a repo writes it on first start (untimed here). */
const storageId = (): Chunk => ({
  key: ['storage-adapter-id'],
  data: new TextEncoder().encode(randomUUID()),
});

async function writeFsStore(dir: string, chunks: readonly Chunk[]): Promise<void> {
  const store = await FsStore.open(dir);
  try {
    await mapBounded([storageId(), ...chunks], WRITE_CONCURRENCY, (c) =>
      store.save(c.key, c.data!),
    );
  } finally {
    await store.close();
  }
}

async function writeNodefs(dir: string, chunks: readonly Chunk[]): Promise<void> {
  const adapter = new NodeFSStorageAdapter(dir);
  await mapBounded([storageId(), ...chunks], WRITE_CONCURRENCY, (c) =>
    adapter.save(c.key, c.data!),
  );
}

/**
 * The fleet fixture as this version's coordinator keeps it: a copy of its state dir with the root
 * and every facts document moved into the store's chunk log (COORDINATOR_STORE saves there; the
 * cached fixture's files are what a coordinator upgraded from before the log holds). Cached
 * beside it, as it is (each run changes both, as a restart does): made fresh before each run, the
 * disk was still writing the copy back while the restart read it (4.3 and 5.3 s in two runs).
 * Returns its manifest's path (the fixture's, with this state dir).
 */
export async function logFixture(n: number, progress: (line: string) => void): Promise<string> {
  const fleet = await fleetFixture(n, progress);
  const dir = join(fixtureDir(n), 'log');
  const manifest = join(dir, 'manifest.json');
  const cached = await readManifest(manifest);
  if (cached?.version === fleet.version && cached.rootDocId === fleet.rootDocId) return manifest;
  const t0 = performance.now();
  await rm(dir, { recursive: true, force: true });
  const stateDir = join(dir, 'flt');
  await cp(fleet.stateDir, stateDir, { recursive: true });
  const store = await FsStore.open(join(stateDir, 'repo'), { log: true });
  try {
    await mapBounded([fleet.rootDocId, ...fleet.factsDocIds], WRITE_CONCURRENCY, async (id) => {
      const chunks = await store.loadRange([id]);
      await store.removeRange([id]);
      for (const c of chunks) await store.save(c.key, c.data!);
    });
  } finally {
    await store.close();
  }
  // Written last: a copy without its manifest is made again.
  await writeFile(manifest, JSON.stringify({ ...fleet, stateDir }) + '\n');
  progress(`  fixture moved into the chunk log in ${seconds(t0)} s`);
  return manifest;
}

/** An admin's state dir holding a replica of a fleet, for `flt admin agents --offline`. */
export interface ReplicaFixture {
  /** The admin's state dir: replica.json and repo/ (the root document only). */
  readonly stateDir: string;
  readonly n: number;
  readonly rootDocId: DocumentId;
}

/**
 * The state dir an admin has after one online `flt admin agents` against the coordinator of
 * `fleetFixture(n)`: its FsStore holds the root document (the share policy gives an admin the
 * root, and facts documents only when asked for), and replica.json the coordinator, the root
 * id, the root's heads signed with the root write key (as `Fleet.signedRoot` signs them) and a
 * presence snapshot of every agent. Built from the cached fleet fixture in a second or two, and
 * rebuilt on every call: it is small, and never stale.
 */
export async function replicaFixture(
  n: number,
  progress: (line: string) => void,
): Promise<ReplicaFixture> {
  const fleet = await fleetFixture(n, progress);
  const stateDir = join(fixtureDir(n), 'replica');
  await rm(stateDir, { recursive: true, force: true });
  const source = await FsStore.open(join(fleet.stateDir, 'repo'));
  const chunks = await source.loadRange([fleet.rootDocId]).finally(() => source.close());
  let root = A.init<RootDoc>();
  for (const c of chunks) root = A.loadIncremental(root, c.data!);
  const { key } = await loadOrCreateNodeKey(fleet.stateDir);
  const rootKey = deriveKeyPair(key.secret, 'flt/v1/doc/root');
  const now = new Date().toISOString();
  const info: ReplicaInfo = {
    coordinator: key.nodeId,
    rootDocId: fleet.rootDocId,
    rootSigned: signHeads(
      fleet.rootDocId,
      Date.now(),
      A.getHeads(root),
      rootKey.secret,
      rootKey.publicKey,
    ),
    asOf: now,
    presence: Object.keys(root.agents).map((nodeId) => ({
      nodeId: nodeId as NodeId,
      online: true,
      lastSeen: now,
      volatile: null,
    })),
  };
  await writeFsStore(join(stateDir, 'repo'), chunks);
  await saveReplicaInfo(stateDir, info);
  return { stateDir, n, rootDocId: fleet.rootDocId };
}
