// An in-process fleet for tests: a coordinator whose initial admin is a real Admin, with its
// agents enrolled the way a user enrolls them (one-time tokens from that admin). Real iroh
// endpoints on 127.0.0.1, real state dirs under `root`.

import { IrohTransport } from '../../sync/iroh-transport.js';
import type { Logger } from '../../sync/log.js';
import { ALL_ALPNS } from '../../sync/protocols.js';
import { resolveConfig, type Config } from '../../src/config/index.js';
import type { Facts } from '../../src/facts/index.js';
import { loadOrCreateNodeKey } from '../../src/identity/index.js';
import { Admin } from '../../src/roles/admin.js';
import { Agent } from '../../src/roles/agent.js';
import { Coordinator, type EvictionSettings } from '../../src/roles/coordinator.js';
import type { Versions } from '../../src/node.js';

/** A Config as `flt --state-dir DIR --relay disabled --discovery none --bind 127.0.0.1:0` has it. */
export async function localConfig(
  stateDir: string,
  flags: Record<string, string | string[]> = {},
): Promise<Config> {
  const { config } = await resolveConfig({
    flags: {
      'state-dir': stateDir,
      relay: 'disabled',
      discovery: 'none',
      bind: '127.0.0.1:0',
      ...flags,
    },
    env: {},
  });
  return config;
}

/** An endpoint of our own on 127.0.0.1 (no relay, no discovery), speaking every flt ALPN. */
export function bindLocal(secretKey: Uint8Array): Promise<IrohTransport> {
  return IrohTransport.bind({
    secretKey,
    alpns: ALL_ALPNS,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });
}

export interface TestFleet {
  readonly coordinator: Coordinator;
  readonly admin: Admin;
  /** Starts an agent in `root/name` that enrolls with a fresh token (more config in `flags`). */
  addAgent(
    name: string,
    facts: () => Promise<Facts>,
    flags?: Record<string, string | string[]>,
    versions?: Versions,
  ): Promise<Agent>;
  /** Closes agents, admin and coordinator (in that order). */
  close(): Promise<void>;
}

/** `eviction`: the coordinator's (sync/evict.ts), e.g. a short idle delay. */
export async function testFleet(
  root: string,
  log: Logger,
  eviction?: EvictionSettings,
  /** The coordinator's (a fleet of mixed versions). */
  versions?: Versions,
): Promise<TestFleet> {
  const adminDir = `${root}/admin`;
  const adminId = (await loadOrCreateNodeKey(adminDir)).key.nodeId;
  const config = await localConfig(`${root}/coordinator`, { admin: [adminId] });
  const coordinator = await (eviction || versions
    ? Coordinator.start(config, log, undefined, eviction, versions)
    : Coordinator.start(config, log));
  const join = { coordinator: coordinator.ticket };
  const admin = await Admin.open(await localConfig(adminDir, join), log, false);
  const agents: Agent[] = [];
  return {
    coordinator,
    admin,
    async addAgent(name, facts, flags = {}, versions = {}) {
      const { token } = await admin.enrollToken(60_000);
      const config = await localConfig(`${root}/${name}`, {
        ...join,
        'enroll-token': token,
        ...flags,
      });
      const agent = await Agent.start(config, log, facts, versions);
      agents.push(agent);
      return agent;
    },
    async close() {
      await Promise.allSettled([...agents.map((a) => a.close()), admin.close()]);
      await coordinator.close();
    },
  };
}
