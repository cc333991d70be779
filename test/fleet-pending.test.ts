// Reads while the coordinator is behind its agent: the agent signed heads (sent by heartbeat)
// whose changes have not reached the coordinator, as after a coordinator crash while the dead
// sync session is being replaced. A read shows the newest verified state the coordinator holds
// and says newer changes are pending; before, the admin waited for heads that could not arrive
// and failed with TIMEOUT. Real coordinator, agent and admin in this process on 127.0.0.1, and
// the real `flt admin` CLI for the output.

import * as A from '@automerge/automerge';
import { Repo } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from '../sync/errors.js';
import { createLogger } from '../sync/log.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import { FsStore } from '../stores/fs-store.js';
import { factsPatch, writeFactsPatch } from '../src/docs/facts-doc.js';
import type { FactsDoc } from '../src/docs/types.js';
import { collectFacts, collectVolatile, type Facts } from '../src/facts/index.js';
import { deriveKeyPair } from '../src/identity/index.js';
import { Agent } from '../src/roles/agent.js';
import { agentHeartbeat } from '../src/rpc-methods.js';
import { signHeads } from '../sync/owned-doc.js';
import { bindLocal, localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { LOCAL, runFlt, tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('warn', 'test');

interface FactsJson {
  facts: { hostname: string } | null;
  pending: boolean;
}

describe('reads while the coordinator is behind', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let facts: Facts;
  let restarted: Agent | undefined;
  const as = (hostname: string) => () => Promise.resolve({ ...facts, hostname });

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    facts = await collectFacts();
  });

  afterAll(async () => {
    await restarted?.close();
    await fleet?.close();
    await dir?.remove();
  });

  /** `flt admin facts AGENT` with the fleet's admin state dir (the in-process admin is closed). */
  const cli = (id: string, ...more: string[]) =>
    runFlt([
      '--state-dir',
      `${dir.path}/admin`,
      ...LOCAL,
      'admin',
      '--coordinator',
      fleet.coordinator.ticket,
      'facts',
      id,
      ...more,
    ]);

  it('shows the newest verified facts and says newer ones are pending', async () => {
    const agent = await fleet.addAgent('ag', as('before'));
    const id = agent.node.key.nodeId;
    await waitFor('the first facts at the coordinator', async () => {
      const r = await fleet.admin.facts(id).catch((err: unknown) => {
        if (err instanceof FltError && err.code === 'NOT_FOUND') return undefined;
        throw err;
      });
      return r?.facts?.hostname === 'before' && r;
    });
    await agent.close();

    // The agent's next state, written and signed where the coordinator cannot see it...
    const factsKey = deriveKeyPair(agent.node.key.secret, 'flt/v1/doc/facts');
    const store = await FsStore.open(`${dir.path}/ag/repo`);
    const repo = new Repo({ storage: store, network: [] });
    const handle = await repo.find<FactsDoc>(agent.factsDocId);
    const patch = factsPatch(handle.doc(), { ...facts, hostname: 'after' });
    handle.change((d) => writeFactsPatch(d, patch, new Date().toISOString()));
    await repo.flush();
    const heads = A.getHeads(handle.doc());
    await repo.shutdown();
    const signed = signHeads(
      agent.factsDocId,
      Date.now(),
      heads,
      factsKey.secret,
      factsKey.publicKey,
    );
    // ...reaches it by heartbeat, from the agent's key, with no sync session to bring the changes.
    const transport = await bindLocal(agent.node.key.secret);
    const rpc = new RpcChannel(transport, parsePeerAddress(fleet.coordinator.ticket), {
      timeoutMs: 10_000,
    });
    try {
      await rpc.call(agentHeartbeat, { volatile: await collectVolatile(), factsHeads: signed });
    } finally {
      rpc.close();
      await transport.close();
    }

    const r = await fleet.admin.facts(id);
    expect(r.facts?.hostname).toBe('before');
    expect(r.pending).toBe(true);

    await fleet.admin.close(); // one process per admin key: the CLI takes over
    const json = await cli(id, '--json');
    expect(json.code, json.stderr).toBe(0);
    const body = JSON.parse(json.stdout) as FactsJson;
    expect(body.facts?.hostname).toBe('before');
    expect(body.pending).toBe(true);
    const human = await cli(id);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/not reached the coordinator yet.*\(pending\)/);

    // The agent returns and syncs: the signed state arrives and is no longer pending.
    restarted = await Agent.start(
      await localConfig(`${dir.path}/ag`, { coordinator: fleet.coordinator.ticket }),
      log,
      as('after'),
    );
    const done = await waitFor(
      'the newer facts at the coordinator',
      async () => {
        const run = await cli(id, '--json');
        if (run.code !== 0) throw new Error(run.stderr);
        const b = JSON.parse(run.stdout) as FactsJson;
        return b.facts?.hostname === 'after' && b;
      },
      30_000,
    );
    expect(done.pending).toBe(false);
  }, 90_000);
});
