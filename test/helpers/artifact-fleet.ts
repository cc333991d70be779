// An in-process fleet for the agent-side artifact tests (issue 12): the fixture stores of
// helpers/artifacts.ts (admin store B, agent store C), a Nix signing key K, a coordinator with
// an extra admin node that pushes with helpers/artifact-push.ts, and agents that deploy with the
// `command` activator into C (activations logged to `<agent state>/activations.log`).

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parsePeerAddress } from '../../sync/address.js';
import { blobHasher, type BlobHasher } from '../../sync/blob-hash.js';
import type { Logger } from '../../sync/log.js';
import { ALPN } from '../../sync/protocols.js';
import type { Connection, Transport } from '../../sync/transport.js';
import { ArtifactFetcher } from '../../src/artifacts/fetcher.js';
import { parseSigningKey, type SigningKey } from '../../src/artifacts/nix-key.js';
import { readStatus, type DeploymentStatus } from '../../src/docs/status.js';
import { collectFacts } from '../../src/facts/index.js';
import { nodeKeyFromSeed, type NodeKey } from '../../src/identity/index.js';
import type { Agent } from '../../src/roles/agent.js';
import { artifactStores, nixKeys, nixStore, type ArtifactStores } from './artifacts.js';
import { pushClosure, type Nar } from './artifact-push.js';
import { bindLocal, testFleet, type TestFleet } from './fleet.js';
import { tempDir } from './flt.js';
import { waitFor, waitForChanges } from './wait.js';

export const DEPLOY_COMMAND = 'go() { "$1/bin/switch-to-configuration" "$2"; }; go';
const DAY = 86_400_000;

export interface ArtifactFleet {
  readonly dir: string;
  readonly fx: ArtifactStores;
  readonly fleet: TestFleet;
  readonly hasher: BlobHasher;
  /** The key the pushes sign with; `publicKey` is `name:base64`. */
  readonly key: SigningKey;
  readonly publicKey: string;
  readonly pusher: NodeKey;
  /** A blobs connection of the pushing admin. */
  connect(): Promise<Connection>;
  /** Pushes `paths` (NARs of B signed with K); their NARs. */
  push(paths: readonly string[]): Promise<Map<string, Nar>>;
  /** Starts an agent deploying into C with `flags` added; waits for its desired document. */
  agent(name: string, flags?: Record<string, string | string[]>): Promise<Agent>;
  /** Deploys `storePath` to `agent` (switch); the deployment id. */
  deploy(agent: Agent, storePath: string): Promise<string>;
  /** The agent's record of deployment `id`, once a change makes `ok` say so (deadline 120 s). */
  until(
    agent: Agent,
    id: string,
    ok: (r: DeploymentStatus) => boolean,
    what: string,
  ): Promise<DeploymentStatus>;
  /**
   * An ArtifactFetcher into the agent store C trusting K, as a new node (or `transport`), from
   * the fleet's coordinator (or `coordinator`, a ticket); `minFree` 0 unless given.
   */
  fetcher(opts: {
    stateDir: string;
    coordinator?: string;
    transport?: Transport;
    minFree?: number;
    parallel?: number;
  }): Promise<ArtifactFetcher>;
  /** Lines of the agent's activation log. */
  activations(name: string): Promise<string[]>;
  close(): Promise<void>;
}

export async function artifactFleet(log: Logger): Promise<ArtifactFleet> {
  const tmp = await tempDir();
  const dir = tmp.path;
  const transports: Transport[] = [];
  const fx = await artifactStores();
  const k = await nixKeys('flt-test-k', dir);
  const key = parseSigningKey(k.secretKey);
  const hasher = await blobHasher();
  const fleet = await testFleet(join(dir, 'fleet'), log);
  const pusher = nodeKeyFromSeed(randomBytes(32));
  await fleet.admin.submit({ op: 'admin.add', node: pusher.nodeId });
  const facts = await collectFacts();
  const connect = async () => {
    const t = await bindLocal(pusher.secret);
    transports.push(t);
    return t.connect(parsePeerAddress(fleet.coordinator.ticket), ALPN.blobs);
  };
  return {
    dir,
    fx,
    fleet,
    hasher,
    key,
    publicKey: k.publicKey,
    pusher,
    connect,
    async push(paths) {
      const conn = await connect();
      try {
        return await pushClosure(conn, fx, paths, hasher, key);
      } finally {
        conn.close(0, 'done');
      }
    },
    async agent(name, flags = {}) {
      const agent = await fleet.addAgent(
        name,
        () => Promise.resolve({ ...facts, hostname: name }),
        {
          'deploy-activator': 'command',
          'deploy-command': DEPLOY_COMMAND,
          'nix-store': fx.agent,
          'deploy-recheck': '1s',
          'artifact-min-free': '0',
          ...flags,
        },
      );
      await waitFor(
        `${name} enrolled with a desired document`,
        () => fleet.coordinator.fleet.agent(agent.node.key.nodeId)?.desiredDocId !== undefined,
        60_000,
      );
      await waitFor(`${name} deploys`, () => agent.deployments !== undefined, 60_000);
      return agent;
    },
    async deploy(agent, storePath) {
      const r = await fleet.admin.deploy({
        words: [agent.node.key.nodeId],
        all: false,
        labels: [],
        storePath,
        action: 'switch',
        expiresInMs: DAY,
      });
      return r.id;
    },
    async until(agent, id, ok, what) {
      let last: DeploymentStatus | undefined;
      const check = () => {
        last = readStatus(agent.status?.doc()).deployments.find((d) => d.id === id);
        return last !== undefined && ok(last) ? last : undefined;
      };
      return waitForChanges(what, agent.status, check, 120_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; the record: ${JSON.stringify(last)}`, {
          cause: err,
        });
      });
    },
    async fetcher(o) {
      let transport = o.transport;
      if (transport === undefined) {
        transport = await bindLocal(nodeKeyFromSeed(randomBytes(32)).secret);
        transports.push(transport);
      }
      return new ArtifactFetcher({
        transport,
        coordinator: parsePeerAddress(o.coordinator ?? fleet.coordinator.ticket),
        stateDir: o.stateDir,
        nixStore: fx.agent,
        trustedKeys: [k.publicKey],
        ...(o.parallel === undefined ? {} : { parallel: o.parallel }),
        minFree: o.minFree ?? 0,
        hasher,
        log,
      });
    },
    async activations(name) {
      const text = await readFile(join(dir, 'fleet', name, 'activations.log'), 'utf8').catch(
        () => '',
      );
      return text.split('\n').filter(Boolean);
    },
    async close() {
      await Promise.allSettled(transports.map((t) => t.close()));
      await fleet.close();
      await fx.close();
      await tmp.remove();
    },
  };
}

/** Checks every path of `paths` in the agent's store C: verify-path passes, narHash equals B's. */
export async function expectSameInStores(
  fx: ArtifactStores,
  paths: readonly string[],
): Promise<{ path: string; ok: boolean; agent: string; admin: string }[]> {
  const out = [];
  for (const p of paths) {
    const ok = await nixStore(fx.agent, '--verify-path', p).then(
      () => true,
      () => false,
    );
    const agent = (await nixStore(fx.agent, '-q', '--hash', p).catch(() => '')).trim();
    const admin = (await nixStore(fx.admin, '-q', '--hash', p)).trim();
    out.push({ path: p, ok, agent, admin });
  }
  return out;
}
