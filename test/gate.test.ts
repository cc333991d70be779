// Refusal before work (ARCHITECTURE.md §6): a peer that is neither an admin nor an enrolled agent
// may open nothing but rpc, and there only enroll; tokens that are expired, reused, forged or of
// another fleet are refused with distinct codes; a revoked agent loses its connections and is
// refused from then on, and a removed admin's signed operation is refused.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from '../sync/errors.js';
import { createLogger } from '../sync/log.js';
import { ALPN } from '../sync/protocols.js';
import { RpcChannel } from '../sync/rpc-channel.js';
import type { Transport } from '../sync/transport.js';
import { docIdFor } from '../sync/owned-doc.js';
import { collectFacts } from '../src/facts/index.js';
import {
  deriveKeyPair,
  generateNodeKey,
  loadOrCreateNodeKey,
  nodeKeyFromSeed,
  type NodeKey,
} from '../src/identity/index.js';
import { Admin } from '../src/roles/admin.js';
import { agentEnroll, fleetInfo, nodeInfo } from '../src/rpc-methods.js';
import { signOp } from '../src/trust/admin-ops.js';
import { issueToken } from '../src/trust/tokens.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, localConfig, testFleet, type TestFleet } from './helpers/fleet.js';
import { waitFor } from './helpers/wait.js';

const lines: string[] = [];
const log = createLogger('warn', 'fleet', (l) => lines.push(l));

const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'answered',
    (err: unknown) => (err instanceof FltError ? err.code : String(err)),
  );

/** An outsider with its own endpoint, talking rpc to the coordinator. */
async function outsider(ticket: string, key: NodeKey = nodeKeyFromSeed(randomBytes(32))) {
  const transport = await bindLocal(key.secret);
  const addr = parsePeerAddress(ticket);
  const rpc = new RpcChannel(transport, addr, { timeoutMs: 10_000 });
  const facts = deriveKeyPair(key.secret, 'flt/v1/doc/facts');
  const enroll = (token?: string) =>
    rpc.call(agentEnroll, {
      factsDocId: docIdFor(facts.publicKey),
      factsWriteKey: Buffer.from(facts.publicKey).toString('hex'),
      ...(token === undefined ? {} : { token }),
    });
  return {
    key,
    transport: transport as Transport,
    rpc,
    addr,
    enroll,
    close: async () => {
      rpc.close();
      await transport.close();
    },
  };
}

/**
 * Whether the coordinator lets `alpn` through for us: it closes a refused connection at once with
 * UNAUTHORIZED_PEER. Every use below expects a refusal, so the deadline only matters on failure.
 */
async function opens(o: Awaited<ReturnType<typeof outsider>>, alpn: string): Promise<boolean> {
  const conn = await o.transport.connect(o.addr, alpn);
  try {
    const stream = await conn.openStream();
    await stream.write(new Uint8Array([0, 0, 0, 0]));
  } catch {
    // closed under us: the reason below says by whom
  }
  const info = await Promise.race([
    conn.closed,
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000).unref()),
  ]);
  conn.close(0, 'done');
  return info?.reason !== 'UNAUTHORIZED_PEER';
}

describe('the gate', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
  });

  afterAll(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    await fleet?.close();
    await dir.remove();
  });

  it('refuses an unknown peer everything but enrollment, and says so with its node id', async () => {
    const o = await outsider(fleet.coordinator.ticket);
    closers.push(o.close);
    expect(await opens(o, ALPN.sync)).toBe(false);
    expect(await opens(o, ALPN.echo)).toBe(false);
    expect(lines.some((l) => l.includes('unauthorized peer') && l.includes(o.key.nodeId))).toBe(
      true,
    );
    expect(await codeOf(o.rpc.call(nodeInfo, {}))).toBe('UNAUTHORIZED_PEER');
    expect(await codeOf(o.rpc.call(fleetInfo, {}))).toBe('NOT_ADMIN');
    expect(await codeOf(o.enroll())).toBe('UNAUTHORIZED_PEER');
  });

  it('refuses expired, forged and other-fleet tokens with distinct codes, then takes a good one once', async () => {
    const o = await outsider(fleet.coordinator.ticket);
    closers.push(o.close);
    const info = await fleet.admin.enrollToken(60_000); // recorded, valid
    const { key } = await loadOrCreateNodeKey(`${dir.path}/admin`);
    const fleetId = fleet.coordinator.fleet.root.documentId;
    const coordinatorId = fleet.coordinator.node.key.nodeId;
    // Expired: issued (and recorded) in the past with a lifetime long gone.
    const old = issueToken(
      {
        fleetId,
        coordinator: coordinatorId,
        expiresInMs: 1000,
        now: new Date(Date.now() - 3600_000),
      },
      key,
    );
    await fleet.admin.submitSigned(old.op);
    expect(await codeOf(o.enroll(old.token))).toBe('TOKEN_EXPIRED');
    // Forged: signed by a key that is no admin.
    const stranger = generateNodeKey();
    const forged = issueToken(
      { fleetId, coordinator: coordinatorId, expiresInMs: 60_000 },
      stranger,
    );
    expect(await codeOf(o.enroll(forged.token))).toBe('TOKEN_FORGED');
    // Another fleet's token, by one of this fleet's admins even.
    const other = issueToken(
      { fleetId: 'another-fleet', coordinator: coordinatorId, expiresInMs: 60_000 },
      key,
    );
    expect(await codeOf(o.enroll(other.token))).toBe('TOKEN_OTHER_FLEET');
    // The good one enrolls; used again (by someone else) it is refused.
    expect(await codeOf(o.enroll(info.token))).toBe('answered');
    const p = await outsider(fleet.coordinator.ticket);
    closers.push(p.close);
    expect(await codeOf(p.enroll(info.token))).toBe('TOKEN_REUSED');
    // Now a member: rpc beyond enrollment opens.
    expect(await codeOf(o.rpc.call(nodeInfo, {}))).toBe('answered');
  });

  it('a revoked agent loses its connection and is refused from then on', async () => {
    const facts = await collectFacts();
    const agent = await fleet.addAgent('r', () =>
      Promise.resolve({ ...facts, hostname: 'host-r' }),
    );
    const id = agent.node.key.nodeId;
    await waitFor('the agent connected', () =>
      fleet.coordinator.node.sync.connectedPeers().includes(id),
    );
    await fleet.admin.submit({ op: 'agent.revoke', node: id });
    await waitFor(
      'its sync session gone',
      () => !fleet.coordinator.node.sync.connectedPeers().includes(id),
    );
    const o = await outsider(fleet.coordinator.ticket, agent.node.key);
    closers.push(o.close);
    expect(await opens(o, ALPN.sync)).toBe(false);
    expect(await opens(o, ALPN.rpc)).toBe(false);
    await agent.close();
  });

  it("a removed admin's signed operation is refused", async () => {
    const second = await Admin.open(
      await localConfig(`${dir.path}/admin2`, { coordinator: fleet.coordinator.ticket }),
      log,
      false,
    );
    closers.push(() => second.close());
    const secondKey = (await loadOrCreateNodeKey(`${dir.path}/admin2`)).key;
    const secondId = secondKey.nodeId;
    await fleet.admin.submit({ op: 'admin.add', node: secondId });
    expect(
      await second.submit({ op: 'agent.approve', node: generateNodeKey().nodeId }),
    ).toBeGreaterThan(0);
    await fleet.admin.submit({ op: 'admin.remove', node: secondId });
    const target = generateNodeKey().nodeId;
    const fleetId = fleet.coordinator.fleet.root.documentId;
    const op = signOp({ op: 'agent.approve', node: target }, fleetId, secondKey);
    expect(await codeOf(fleet.admin.submitSigned(op))).toBe('NOT_ADMIN');
    const { authority } = await fleet.admin.audit();
    expect(authority.role(target)).toBe('unknown');
    expect(authority.role(secondId)).toBe('revoked');
  });
});
