// Every refusal of issue 11 item 3 through a whole fleet (in-process coordinator, admin and
// agents on real iroh endpoints; real Nix store paths; the `profile` activator): the part reaches
// the agent in its desired document, the agent refuses it with the code and activates nothing,
// and the admin reads that code from the agent's signed status document. The bad parts are put
// in place by the coordinator itself (`deployments.place`, which checks nothing), which is what
// a compromised coordinator could do; one is a deployment the coordinator signed with its own key.

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../sync/log.js';
import { OwnedDoc } from '../sync/owned-doc.js';
import type { NodeId } from '../sync/ids.js';
import { listGenerations } from '../src/deploy/nix.js';
import { ROOT_KEY } from '../src/docs/root.js';
import { collectFacts, type Facts } from '../src/facts/index.js';
import { deriveKeyPair, loadOrCreateNodeKey, type NodeKey } from '../src/identity/index.js';
import type { Agent } from '../src/roles/agent.js';
import { signDeployment, type SignedPart } from '../src/trust/deployment.js';
import { tempDir } from './helpers/flt.js';
import { testFleet, type TestFleet } from './helpers/fleet.js';
import { nixFixtures, type NixFixtures } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';

const log = createLogger('error', 'refusals');
const HOUR = 3_600_000;

let dir: Awaited<ReturnType<typeof tempDir>>;
let fleet: TestFleet;
let fx: NixFixtures;
let facts: Facts;
let adminKey: NodeKey;
let coordinatorKey: NodeKey;
let fleetId: string;

beforeAll(async () => {
  fx = await nixFixtures();
  dir = await tempDir();
  fleet = await testFleet(dir.path, log);
  facts = await collectFacts();
  adminKey = (await loadOrCreateNodeKey(`${dir.path}/admin`)).key;
  coordinatorKey = (await loadOrCreateNodeKey(`${dir.path}/coordinator`)).key;
  fleetId = new OwnedDoc(deriveKeyPair(coordinatorKey.secret, ROOT_KEY)).docId;
});
afterAll(async () => {
  await fleet.close();
  await dir.remove();
});

interface TestAgent {
  readonly agent: Agent;
  readonly id: NodeId;
  /** The profile its activator sets: no generation means nothing was activated. */
  readonly profile: string;
}

let agents = 0;
/** A new agent that deploys with the `profile` activator into a profile in its state dir. */
async function newAgent(flags: Record<string, string> = {}): Promise<TestAgent> {
  const name = `agent${agents++}`;
  const profile = join(dir.path, name, 'profiles', 'system');
  const a = await fleet.addAgent(name, () => Promise.resolve({ ...facts, hostname: name }), {
    'deploy-activator': 'profile',
    'deploy-profile': profile,
    'deploy-command': 'go() { "$1/bin/switch-to-configuration" "$2"; }; go',
    'nix-store': fx.store,
    'deploy-recheck': '1s',
    ...flags,
  });
  const id = a.node.key.nodeId;
  await waitFor('the agent enrolled with a desired document', () =>
    fleet.coordinator.fleet.agent(id)?.desiredDocId ? true : undefined,
  );
  return { agent: a, id, profile };
}

/** A part for `targets` (default: the agent), signed as `key` (default: the fleet's admin). */
function part(
  id: NodeId,
  o: { storePath?: string; seq?: number; key?: NodeKey; fleet?: string; targets?: NodeId[] } = {},
  now?: Date,
  expiresInMs = HOUR,
): SignedPart {
  const targets = new Map((o.targets ?? [id]).map((t) => [t, o.seq ?? Date.now()]));
  const spec = {
    targets,
    storePath: o.storePath ?? fx.paths.a,
    action: 'switch' as const,
    expiresInMs,
  };
  return signDeployment(spec, o.fleet ?? fleetId, o.key ?? adminKey, now)[0]!;
}

/** The admin's view of the agent's last deployment, once it is `state`. */
async function seenByAdmin(id: NodeId, state: string) {
  return waitFor(`the admin sees ${state}`, async () => {
    const { agents: rows } = await fleet.admin.status(id);
    const last = rows[0]?.last;
    return last?.state === state ? last : undefined;
  });
}

/** The agent refused `p` with `code`; the admin sees it; nothing was activated. */
async function refused(a: TestAgent, p: unknown, code: string): Promise<void> {
  await fleet.coordinator.deployments.place(a.id, p as SignedPart);
  const last = await seenByAdmin(a.id, 'refused');
  expect(last.code).toBe(code);
  expect(await listGenerations(a.profile)).toEqual([]);
}

describe('an agent refuses, activates nothing, and the admin sees the code', () => {
  it('BAD_SIGNATURE: a signature that does not match the part', async () => {
    const a = await newAgent();
    const p = part(a.id);
    const flipped = `${p.sig.slice(0, -2)}${p.sig.endsWith('00') ? '01' : '00'}`;
    await refused(a, { ...p, sig: flipped }, 'BAD_SIGNATURE');
  });

  it('BAD_SIGNATURE: no signature at all', async () => {
    const a = await newAgent();
    const { sig: _sig, ...unsigned } = part(a.id);
    await refused(a, unsigned, 'BAD_SIGNATURE');
  });

  it('BAD_DEPLOYMENT: a part that is not a deployment (an action agents do not know)', async () => {
    const a = await newAgent();
    await refused(a, { ...part(a.id), action: 'reboot' }, 'BAD_DEPLOYMENT');
  });

  it('SIGNER_NOT_ADMIN: a deployment the coordinator signed with its own key', async () => {
    const a = await newAgent();
    await refused(a, part(a.id, { key: coordinatorKey }), 'SIGNER_NOT_ADMIN');
  });

  it('SIGNER_NOT_ADMIN: signed by an admin who has been removed since', async () => {
    const a = await newAgent();
    const second = (await loadOrCreateNodeKey(`${dir.path}/second-admin`)).key;
    await fleet.admin.submit({ op: 'admin.add', node: second.nodeId });
    const p = part(a.id, { key: second });
    await fleet.admin.submit({ op: 'admin.remove', node: second.nodeId });
    await refused(a, p, 'SIGNER_NOT_ADMIN');
  });

  it('WRONG_FLEET: signed by this admin for another fleet', async () => {
    const a = await newAgent();
    const other = new OwnedDoc(deriveKeyPair(adminKey.secret, ROOT_KEY)).docId;
    await refused(a, part(a.id, { fleet: other }), 'WRONG_FLEET');
  });

  it("NOT_TARGETED: another agent's deployment put in this agent's document", async () => {
    const a = await newAgent();
    const b = await newAgent();
    await refused(a, part(a.id, { targets: [b.id] }), 'NOT_TARGETED');
  });

  it('SEQ_NOT_NEWER: a replay of an older sequence number after a newer one ran', async () => {
    const a = await newAgent();
    const seq = Date.now();
    await fleet.coordinator.deployments.place(a.id, part(a.id, { seq }));
    await seenByAdmin(a.id, 'succeeded');
    const generations = await listGenerations(a.profile);
    await fleet.coordinator.deployments.place(a.id, part(a.id, { seq, storePath: fx.paths.b }));
    const last = await seenByAdmin(a.id, 'refused');
    expect(last.code).toBe('SEQ_NOT_NEWER');
    expect(await listGenerations(a.profile)).toEqual(generations);
  });

  it('DEPLOYMENT_EXPIRED: a deployment past its expiry (freeze attack)', async () => {
    const a = await newAgent();
    const old = part(a.id, {}, new Date(Date.now() - 2 * HOUR), HOUR);
    await refused(a, old, 'DEPLOYMENT_EXPIRED');
  });

  it('NOT_A_SYSTEM: a store path without bin/switch-to-configuration', async () => {
    const a = await newAgent();
    await refused(a, part(a.id, { storePath: fx.paths.none }), 'NOT_A_SYSTEM');
  });

  it('BAD_STORE_PATH: a path that is not in the agent’s Nix store', async () => {
    const a = await newAgent();
    const elsewhere = `/nix/store/${fx.paths.a.split('/').at(-1)!}`;
    await refused(a, part(a.id, { storePath: elsewhere }), 'BAD_STORE_PATH');
  });

  it('UNTRUSTED_TRAIL: the fleet’s admins are not the ones the agent was configured with', async () => {
    const stranger = (await loadOrCreateNodeKey(`${dir.path}/stranger`)).key;
    const a = await newAgent({ admin: stranger.nodeId });
    await refused(a, part(a.id), 'UNTRUSTED_TRAIL');
  });
});
