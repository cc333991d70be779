// Agents at rest do not ping a coordinator that lets them (`quiet` in its ping answer): the
// packets QUIC takes in on their connections (its keep-alives, every 5 s in the binding) keep them
// online at the coordinator (Presence.scan) and tell each agent its coordinator is there
// (src/roles/liveness.ts). Real iroh endpoints on 127.0.0.1, in process. The restart side, where
// packets stop: test/fleet-liveness.test.ts and test/fleet-restart.test.ts.

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { NodeId } from '../sync/ids.js';
import { createLogger } from '../sync/log.js';
import { collectFacts } from '../src/facts/index.js';
import { PING_INTERVAL_MS } from '../src/roles/liveness.js';
import { ONLINE_WINDOW_MS } from '../src/roles/presence.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

describe('quiet pings', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet | undefined;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => {
    await fleet?.close();
    await dir?.remove();
  });

  it('agents at rest stay online past the online window without pinging', async () => {
    fleet = await testFleet(dir.path, createLogger('warn', 'test'));
    const facts = await collectFacts();
    const ids: NodeId[] = [];
    for (const name of ['a', 'b']) {
      const agent = await fleet.addAgent(name, () => Promise.resolve(facts));
      await agent.enrolled;
      ids.push(agent.node.key.nodeId);
    }
    const { presence } = fleet.coordinator.fleet;
    await waitFor('both agents online', () => ids.every((id) => presence.isOnline(id)));
    const pinged = vi.spyOn(presence, 'pinged');
    // An observation window, not a wait for state: longer than the online window, so only
    // packets seen since can keep the agents online; pinging every PING_INTERVAL_MS, as before,
    // they would have pinged ~6 times each.
    const windowMs = ONLINE_WINDOW_MS + 2_000;
    const offline: string[] = [];
    for (let t = 0; t < windowMs; t += 1_000) {
      await sleep(1_000);
      for (const id of ids) if (!presence.isOnline(id)) offline.push(`${id.slice(0, 8)} at ${t}`);
    }
    expect(offline).toEqual([]);
    expect(pinged.mock.calls.length).toBeLessThan((windowMs / PING_INTERVAL_MS / 2) * ids.length);
    pinged.mockRestore();
  }, 60_000);
});
