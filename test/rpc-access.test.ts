// Authorization per rpc method (issue 10, item 2): every method the coordinator registers, called
// by every role (unknown peer, enrolled agent, admin, revoked), is refused with its code before
// its body is read or its handler runs where the role is not allowed, and reaches the handler
// where it is. The expected table is written out here, not derived from the methods' `allow`,
// and a method registered without a row in it fails the test.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePeerAddress } from '../sync/address.js';
import { FltError } from '../sync/errors.js';
import { createLogger } from '../sync/log.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { Router } from '../sync/router.js';
import { RpcClient, type RpcMethod } from '../sync/rpc.js';
import type { Transport } from '../sync/transport.js';
import { collectVolatile } from '../src/facts/index.js';
import { nodeKeyFromSeed, type NodeKey } from '../src/identity/index.js';
import { tempDir } from './helpers/flt.js';
import { bindLocal, testFleet, type TestFleet } from './helpers/fleet.js';

const log = createLogger('error', 'fleet', () => undefined);

type Role = 'unknown' | 'agent' | 'admin' | 'revoked';
const ROLES: readonly Role[] = ['unknown', 'agent', 'admin', 'revoked'];
const REACH = 'reaches the handler';

const member = { unknown: 'UNAUTHORIZED_PEER', agent: REACH, admin: REACH, revoked: 'REVOKED' };
const adminOnly = { unknown: 'NOT_ADMIN', agent: 'NOT_ADMIN', admin: REACH, revoked: 'REVOKED' };
const anyone = { unknown: REACH, agent: REACH, admin: REACH, revoked: REACH };

/** What each role gets from each method, and a request that passes the method's validator. */
const EXPECTED: Record<string, { req: () => Promise<unknown>; by: Record<Role, string> }> = {
  'node.info': { req: () => Promise.resolve({}), by: member },
  'agent.enroll': {
    req: () => Promise.resolve({ factsDocId: 'x', factsWriteKey: '0'.repeat(64) }),
    by: anyone,
  },
  'agent.heartbeat': {
    req: async () => ({ volatile: await collectVolatile() }),
    by: member,
  },
  'agent.ping': { req: () => Promise.resolve({}), by: member },
  'fleet.info': { req: () => Promise.resolve({}), by: adminOnly },
  'fleet.presence': { req: () => Promise.resolve({}), by: adminOnly },
  'fleet.presenceOf': {
    req: () => Promise.resolve({ nodeIds: ['0'.repeat(64)] }),
    by: adminOnly,
  },
  'fleet.online': { req: () => Promise.resolve({}), by: adminOnly },
  'fleet.agent': { req: () => Promise.resolve({ query: 'x' }), by: adminOnly },
  'doc.heads': { req: () => Promise.resolve({ docId: 'x' }), by: adminOnly },
  'doc.fetch': { req: () => Promise.resolve({ docId: 'x', have: [] }), by: adminOnly },
  'docs.heads': { req: () => Promise.resolve({ docIds: ['x'] }), by: adminOnly },
  'deploy.submit': { req: () => Promise.resolve({ parts: [0] }), by: adminOnly },
  'admin.op': { req: () => Promise.resolve({ op: 0 }), by: adminOnly },
  'fleet.audit': { req: () => Promise.resolve({}), by: adminOnly },
  'artifacts.stats': { req: () => Promise.resolve({}), by: adminOnly },
  'artifacts.gc': { req: () => Promise.resolve({ dryRun: true }), by: adminOnly },
};

/** The code a call failed with, or REACH when the spy handler answered it. */
async function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => REACH,
    (err: unknown) => (err instanceof FltError ? err.code : `not an FltError: ${String(err)}`),
  );
}

describe('rpc access on the coordinator: every method x every role', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: TestFleet;
  let methods: RpcMethod<unknown, unknown>[];
  const keys = {} as Record<Role, NodeKey>;
  const transports: Transport[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    fleet = await testFleet(dir.path, log);
    methods = fleet.coordinator.rpc.methods();
    for (const role of ROLES) keys[role] = nodeKeyFromSeed(randomBytes(32));
    await fleet.admin.submit({ op: 'agent.approve', node: keys.agent.nodeId });
    await fleet.admin.submit({ op: 'admin.add', node: keys.admin.nodeId });
    await fleet.admin.submit({ op: 'agent.approve', node: keys.revoked.nodeId });
    await fleet.admin.submit({ op: 'agent.revoke', node: keys.revoked.nodeId });
  });

  afterAll(async () => {
    await Promise.allSettled(transports.map((t) => t.close()));
    await fleet?.close();
    await dir?.remove();
  });

  /** An rpc client over real iroh to the coordinator, as `role`. */
  async function irohClient(role: Role): Promise<RpcClient> {
    const transport = await bindLocal(keys[role].secret);
    transports.push(transport);
    const conn = await transport.connect(parsePeerAddress(fleet.coordinator.ticket), ALPN.rpc);
    return RpcClient.open(conn, 10_000);
  }

  it('the table names every registered method and only those', () => {
    expect(methods.map((m) => m.name).sort()).toEqual(Object.keys(EXPECTED).sort());
    // The roles the coordinator's gate gives our four keys are the ones the table is about.
    for (const role of ROLES)
      expect(fleet.coordinator.rpc.access.roleOf(keys[role].nodeId)).toBe(role);
  });

  it('with the real handlers, a refused role gets its code before its body is validated', async () => {
    // A body no method accepts: an allowed role gets BAD_MESSAGE (the validator ran), a refused
    // one its refusal (the validator never ran). The revoked peer is refused at the router.
    for (const role of ['unknown', 'agent', 'admin'] as const) {
      const client = await irohClient(role);
      for (const m of methods) {
        const want =
          EXPECTED[m.name]!.by[role] === REACH ? 'BAD_MESSAGE' : EXPECTED[m.name]!.by[role];
        expect([m.name, role, await outcome(client.call(m, { bogus: 1 }))]).toEqual([
          m.name,
          role,
          want,
        ]);
      }
    }
  });

  describe('with a spy in place of every handler', () => {
    const ran: string[] = [];

    beforeAll(() => {
      // Re-registering a method replaces its handler; the method (and its `allow`) is the one the
      // coordinator registered, served by the coordinator's own server and access.
      for (const m of methods)
        fleet.coordinator.rpc.register(m, (_req, ctx) => {
          ran.push(`${m.name} ${ctx.peer}`);
          return Promise.resolve(undefined);
        });
    });

    const check = async (role: Role, client: RpcClient) => {
      for (const m of methods) {
        const expected = EXPECTED[m.name]!;
        const before = ran.length;
        const got = await outcome(client.call(m, await expected.req()));
        // The spy answers undefined, which no response validator accepts: BAD_MESSAGE at the
        // client means the handler ran; the spy's record says by whom.
        const reached = ran.length > before;
        expect([m.name, role, reached ? REACH : got]).toEqual([m.name, role, expected.by[role]]);
        if (reached) {
          expect(got).toBe('BAD_MESSAGE');
          expect(ran.slice(before)).toEqual([`${m.name} ${keys[role].nodeId}`]);
        }
      }
    };

    it('over iroh through the router: refused before the handler, allowed calls reach it', async () => {
      for (const role of ['unknown', 'agent', 'admin'] as const)
        await check(role, await irohClient(role));
      // A revoked peer may not even open rpc: the router closes its connection, nothing runs.
      const before = ran.length;
      for (const m of methods) {
        const call = async () =>
          (await irohClient('revoked')).call(m, await EXPECTED[m.name]!.req());
        const got = await outcome(call());
        expect([m.name, got]).toEqual([
          m.name,
          expect.stringMatching(/^(CONNECTION_LOST|CONNECT_FAILED|TRANSPORT)$/),
        ]);
      }
      expect(ran.length).toBe(before);
    });

    it('at the rpc server itself (no router in front), for all four roles', async () => {
      const net = new MemoryNetwork();
      const srv = net.bind(ALL_ALPNS);
      transports.push(srv);
      new Router(srv).route(ALPN.rpc, (c) => fleet.coordinator.rpc.serve(c)).start();
      for (const role of ROLES) {
        const cli = net.bind(ALL_ALPNS, keys[role].nodeId);
        transports.push(cli);
        await check(role, await RpcClient.open(await cli.connect(srv.addr(), ALPN.rpc), 10_000));
      }
    });
  });
});
