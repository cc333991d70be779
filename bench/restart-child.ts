// The restart group's timed runs, each in a fresh process as a real restart is, so that a run
// past its deadline can be killed (restart.ts) and nothing it left loading skews the next one.
// Prints one JSON line per finished step on stdout; progress lines go to stderr.
//
//   node dist/bench/restart-child.js flt MANIFEST
//       Coordinator.start on the fixture's state dir, fleet.agents() (step `fleet`), then every
//       facts document as the coordinator opens one for a push: a plain document from its
//       FsStore (sync/plain-docs.ts; step `all`).
//   node dist/bench/restart-child.js baseline MANIFEST CONCURRENCY
//       A plain Repo on NodeFSStorageAdapter finds the root and every facts document (step
//       `all`); CONCURRENCY 0 starts every find() at once.

import { readFile } from 'node:fs/promises';
import { Repo, type DocHandle, type DocumentId } from '@automerge/automerge-repo';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { storedFacts, type FactsDoc } from '../src/docs/types.js';
import { favourMemory } from '../src/memory-mode.js';
import { Coordinator } from '../src/roles/coordinator.js';
import { mapBounded } from '../stores/semaphore.js';
import type { FleetFixture } from './fixtures.js';
import { benchConfig, benchLogger } from './fleet-config.js';

/** One line of the child's stdout. */
export type StepResult =
  | {
      readonly step: 'fleet';
      readonly ms: number;
      readonly agents: number;
      readonly lookupMs: number;
    }
  | { readonly step: 'all'; readonly ms: number; readonly docs: number };

/** A progress line to stderr every this many ready documents (restart.ts keeps the last one). */
const PROGRESS_EVERY = 250;
/** fleet.agent(id) calls timed; the median is reported. */
const LOOKUPS = 5;

const emit = (r: StepResult) => process.stdout.write(JSON.stringify(r) + '\n');

/** find() every id, at most `concurrency` at once (0: all at once), with progress on stderr. */
async function findAll(
  repo: Repo,
  ids: readonly DocumentId[],
  concurrency: number,
  t0: number,
): Promise<DocHandle<unknown>[]> {
  let ready = 0;
  const find = async (id: DocumentId) => {
    const handle = await repo.find(id);
    if (++ready % PROGRESS_EVERY === 0) {
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      process.stderr.write(`progress ${ready}/${ids.length} ready after ${s} s\n`);
    }
    return handle;
  };
  return concurrency > 0 ? mapBounded(ids, concurrency, find) : Promise.all(ids.map(find));
}

async function flt(fx: FleetFixture): Promise<void> {
  const config = await benchConfig(fx.stateDir);
  favourMemory(); // as `flt coordinator` runs (src/memory-mode.ts)
  const t0 = performance.now();
  const coordinator = await Coordinator.start(config, benchLogger('bench-coordinator'));
  try {
    const agents = coordinator.fleet.agents();
    const ms = performance.now() - t0;
    const complete = agents.filter((a) => a.summary?.hostname).length;
    if (agents.length !== fx.n || complete !== fx.n)
      throw new Error(
        `fleet has ${agents.length} agents, ${complete} with summaries; want ${fx.n}`,
      );
    const last = agents.at(-1)!.nodeId;
    const lookups = Array.from({ length: LOOKUPS }, () => {
      const l0 = performance.now();
      coordinator.fleet.agent(last);
      return performance.now() - l0;
    }).sort((a, b) => a - b);
    emit({ step: 'fleet', ms, agents: agents.length, lookupMs: lookups[LOOKUPS >> 1]! });
    // As the coordinator takes an agent's push or answers doc.fetch: a plain document each
    // (sync/plain-docs.ts), all at once.
    let ready = 0;
    const docs = await Promise.all(
      fx.factsDocIds.map(async (id) => {
        const held = await coordinator.plain.open(id);
        if (++ready % PROGRESS_EVERY === 0) {
          const s = ((performance.now() - t0) / 1000).toFixed(1);
          process.stderr.write(`progress ${ready}/${fx.factsDocIds.length} ready after ${s} s\n`);
        }
        return held;
      }),
    );
    const allMs = performance.now() - t0;
    // Checked after the clock stopped: reading builds each document's object.
    const loaded = fx.factsDocIds.filter(
      (id, i) => docs[i] && storedFacts(coordinator.plain.get<FactsDoc>(id)!)?.hostname,
    ).length;
    if (loaded !== fx.n) throw new Error(`${loaded} of ${fx.n} facts documents have facts`);
    emit({ step: 'all', ms: allMs, docs: loaded });
  } finally {
    await coordinator.close();
  }
}

async function baseline(fx: FleetFixture, concurrency: number): Promise<void> {
  const ids = [fx.rootDocId, ...fx.factsDocIds];
  const t0 = performance.now();
  const repo = new Repo({ storage: new NodeFSStorageAdapter(fx.nodefsDir), network: [] });
  const handles = await findAll(repo, ids, concurrency, t0);
  const ms = performance.now() - t0;
  if (!handles.every((h) => h.isReady())) throw new Error('a document did not load');
  emit({ step: 'all', ms, docs: handles.length });
  await repo.shutdown();
}

async function main(): Promise<void> {
  const [mode, manifest, concurrency = '0'] = process.argv.slice(2);
  if (manifest === undefined || (mode !== 'flt' && mode !== 'baseline'))
    throw new Error('usage: restart-child.js flt|baseline MANIFEST [CONCURRENCY]');
  const fx = JSON.parse(await readFile(manifest, 'utf8')) as FleetFixture;
  if (mode === 'flt') await flt(fx);
  else await baseline(fx, Number(concurrency));
}

await main();
