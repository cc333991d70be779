// Many agents in one process, for fleet tests that need more agents than a 2-core machine can
// run as `flt agent` processes (test/helpers/agents-process.ts drives it). The agents are the
// real Agent role, each with its own state dir and iroh endpoint on 127.0.0.1; only their facts
// are canned (bench/facts-sample.ts), so that no host's facts are collected N times.
//
//   node dist/test/helpers/agents-child.js ROOT ADMIN_DIR COORDINATOR N
//
// The admin whose state dir is ADMIN_DIR issues N enrollment tokens (then closes, so that the
// test's `flt admin` runs find the dir free), and N agents start at once, in ROOT/agent-I.
// stdout: one JSON line, `{"step":"started","ids":[...]}` once every agent has started (not
// necessarily enrolled: the test watches the admin's table for that). stderr: the agents' warnings
// and errors, and their liveness lines (LIVENESS_LINES). Closing stdin (or the parent's exit) closes the agents and ends the process.

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { sampleFacts } from '../../bench/facts-sample.js';
import { loadOrCreateNodeKey } from '../../src/identity/index.js';
import { Admin } from '../../src/roles/admin.js';
import { Agent } from '../../src/roles/agent.js';
import { createLogger } from '../../sync/log.js';
import { localConfig } from './fleet.js';

/** Bounds the graceful close before the process exits anyway. */
const CLOSE_GRACE_MS = 20_000;

/** The info lines of src/roles/liveness.ts and the sync adapter's drops that go to stderr. */
export const LIVENESS_LINES =
  /did not answer a ping|the coordinator restarted|the coordinator answers again|dropping sync session/;

export interface AgentsStarted {
  readonly step: 'started';
  readonly ids: readonly string[];
}

async function main(argv: string[]): Promise<void> {
  const [root, adminDir, coordinator, nText] = argv;
  const n = Number(nText);
  if (!root || !adminDir || !coordinator || !Number.isInteger(n) || n < 1)
    throw new Error('usage: agents-child.js ROOT ADMIN_DIR COORDINATOR N');
  const warn = (who: string) => createLogger('warn', who);
  // Warnings, errors, and the liveness lines the test counts (see LIVENESS_LINES).
  const agentLog = (who: string) =>
    createLogger('info', who, (line) => {
      if (!line.startsWith('INFO') || LIVENESS_LINES.test(line)) process.stderr.write(line + '\n');
    });
  const admin = await Admin.open(
    await localConfig(adminDir, { coordinator }),
    warn('admin'),
    false,
  );
  const tokens: string[] = [];
  try {
    for (let i = 0; i < n; i++) tokens.push((await admin.enrollToken(600_000)).token);
  } finally {
    await admin.close();
  }
  const dirs = tokens.map((_, i) => join(root, `agent-${i}`));
  const ids = await Promise.all(dirs.map(async (d) => (await loadOrCreateNodeKey(d)).key.nodeId));
  const agents = await Promise.all(
    tokens.map(async (token, i) =>
      Agent.start(
        await localConfig(dirs[i]!, { coordinator, 'enroll-token': token }),
        agentLog(`agent-${i}`),
        () => Promise.resolve(sampleFacts(i)),
      ),
    ),
  );
  const started: AgentsStarted = { step: 'started', ids };
  process.stdout.write(JSON.stringify(started) + '\n');
  await new Promise<void>((resolve) =>
    createInterface({ input: process.stdin }).on('close', resolve),
  );
  setTimeout(() => process.exit(0), CLOSE_GRACE_MS).unref();
  await Promise.allSettled(agents.map((a) => a.close()));
  // automerge-repo's leftover 60 s timers would keep the process up that long for nothing.
  process.exit(0);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`agents-child: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
