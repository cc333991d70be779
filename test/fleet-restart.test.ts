// Issue 13's behaviour at a fleet's scale: 50 agents enroll, the coordinator (a real `flt
// coordinator` process) is SIGKILLed and restarted on the same state dir and address, and all 50
// come back online. The agents are real Agent roles with their own endpoints, hosted 50 to one
// child process (test/helpers/agents-child.ts): 50 node processes would not fit a 2-core CI
// machine. A restart makes every agent notice at once (its pings) and redial its sync session
// together: the reconnect burst liveness must not turn into a storm (src/roles/liveness.ts).
//
// The deadlines are state deadlines, generous for a loaded machine; the times are printed, not
// asserted (the scale bench measures them).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentsProcess } from './helpers/agents-process.js';
import { allOnline, CliFleet, type AgentJson } from './helpers/fleet-cli.js';
import { tempDir } from './helpers/flt.js';
import { freeUdpPort } from './helpers/peer-process.js';

const N = 50;
/** For all N to enroll, or to come back after the restart (the 10 s target, times 12). */
const FLEET_DEADLINE_MS = 120_000;

const online = (ids: readonly string[], table: AgentJson[]) =>
  ids.filter((id) => table.some((a) => a.nodeId === id && a.online === true)).length;

describe(`a coordinator restart with ${N} agents`, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: CliFleet;
  let agents: AgentsProcess | undefined;

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await CliFleet.create(dir.path, await freeUdpPort());
    await fleet.startCoordinator();
  }, 60_000);

  afterAll(async () => {
    await agents?.stop(5_000); // then SIGKILLed: the fleet is removed anyway
    await fleet?.stopAll();
    await dir?.remove();
  }, 60_000);

  it(`all ${N} enroll, and after a SIGKILL and restart all ${N} are online again`, async () => {
    const t0 = performance.now();
    agents = await AgentsProcess.start(`${dir.path}/agents`, `${dir.path}/ad`, fleet.addr, N);
    const ids = agents.ids;
    expect(new Set(ids).size).toBe(N);
    const enrolled = await fleet
      .until(`${N} agents online`, allOnline(ids), {
        attempts: 1_000,
        timeoutMs: FLEET_DEADLINE_MS,
      })
      .catch((err: Error) => {
        throw new Error(`${err.message}\n--- agents' stderr\n${agents!.stderr}`);
      });
    expect(online(ids, enrolled.agents)).toBe(N);
    console.info(`${N} agents started -> all online: ${((enrolled.at - t0) / 1000).toFixed(1)} s`);

    const old = fleet.coordinator!;
    old.kill('SIGKILL');
    await old.exited;
    const restart = performance.now();
    await fleet.startCoordinator(); // same state dir, same address
    const ready = performance.now();
    const back = await fleet
      .until(`${N} agents online after the restart`, allOnline(ids), {
        attempts: 1_000,
        timeoutMs: FLEET_DEADLINE_MS,
      })
      .catch((err: Error) => {
        throw new Error(
          `${err.message}\n--- coordinator's stderr\n${fleet.coordinator!.stderr}\n` +
            `--- agents' stderr\n${agents!.stderr}`,
        );
      });
    expect(online(ids, back.agents)).toBe(N);
    // The agents process is the one that started: no agent died and got replaced along the way.
    expect(agents.stderr).not.toMatch(/agents-child:/);
    const count = (re: RegExp) => agents!.stderr.split('\n').filter((l) => re.test(l)).length;
    console.info(
      `agents' lines: ${count(/did not answer a ping/)} 'did not answer a ping', ` +
        `${count(/the coordinator restarted;/)} 'restarted', ` +
        `${count(/dropping sync session/)} sync sessions dropped ` +
        `(${count(/no ping answered for/)} for silence)`,
    );
    console.info(
      `coordinator start ${((ready - restart) / 1000).toFixed(1)} s; ready -> all ${N} online ` +
        `again: ${((back.at - ready) / 1000).toFixed(1)} s`,
    );
  }, 300_000);
});
