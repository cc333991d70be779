// A coordinator in a child process, so that a test can SIGKILL it and start it again on the same
// state dir and address (in one process the binding keeps a closed endpoint's port bound), and
// ask it what it holds of an agent's documents (test/marks-restart.test.ts).
//
//   node dist/test/helpers/coordinator-child.js STATE_DIR HOST:PORT ADMIN_ID
// Prints `{"ticket": string}` once started. Each stdin line, an agent's node id, is answered with
// that agent's facts, status and desired documents (`docs`), whether each is loaded, the heads
// of each loaded one and the mark of each in its marks file (sorted, comma-joined; null: none), and
// how many messages were answered from marks so far. Nothing is evicted (idle delay: 1 h).

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as A from '@automerge/automerge';
import { createLogger } from '../../sync/log.js';
import type { NodeId } from '../../sync/ids.js';
import { readJournal } from '../../stores/journal.js';
import { Coordinator, MARKS_FILE } from '../../src/roles/coordinator.js';
import { localConfig } from './fleet.js';

const [stateDir = '', bind = '', adminId = ''] = process.argv.slice(2);
const coordinator = await Coordinator.start(
  await localConfig(stateDir, { bind, admin: [adminId] }),
  createLogger('warn', 'coordinator-child'),
  undefined,
  { idleMs: 3_600_000 },
);
const repo = coordinator.node.repo!;
const print = (value: unknown) => process.stdout.write(JSON.stringify(value) + '\n');

async function about(agent: NodeId) {
  const entry = coordinator.fleet.agent(agent);
  const docs = entry ? [entry.factsDocId, entry.statusDocId, entry.desiredDocId] : [];
  // The marks on disk, not in memory: what a restart will find.
  const marks = (await readJournal(join(stateDir, MARKS_FILE)))?.entries;
  const each = docs.map((doc) => {
    // Pushed documents are held as plain documents (sync/plain-docs.ts), others in the Repo.
    const value = doc && (coordinator.plain.get(doc) ?? repo.handles[doc]?.doc());
    return {
      doc: doc ?? null,
      heads: value ? [...A.getHeads(value)].sort().join(',') : null,
      mark: (doc && marks?.get(doc)) ?? null,
    };
  });
  return { answered: coordinator.fleet.answered, docs: each };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  about(line.trim() as NodeId).then(print, (err: unknown) => print({ error: String(err) }));
});
print({ ticket: coordinator.ticket });
