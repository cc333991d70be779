// Runs the Transport conformance suite against both implementations, plus what only iroh has:
// tickets, and node ids that are hex but not keys.

import { randomBytes } from 'node:crypto';
import { getPublicKeyAsync } from '@noble/ed25519';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeIdFromBytes, type NodeId } from '../sync/ids.js';
import { closeInfoOf, IrohTransport, parseTicket } from '../sync/iroh-transport.js';
import { MemoryNetwork } from '../sync/memory-transport.js';
import { ALL_ALPNS, ALPN } from '../sync/protocols.js';
import { freeUdpPort } from './helpers/peer-process.js';
import { expectCode, transportConformance } from './transport-conformance.js';

const bindIroh = (alpns: readonly string[]) =>
  IrohTransport.bind({
    secretKey: randomBytes(32),
    alpns,
    bind: '127.0.0.1:0',
    relay: 'disabled',
    discovery: 'none',
  });

/** The node id of a fresh key pair that no endpoint uses. */
async function unusedNodeId(): Promise<NodeId> {
  return nodeIdFromBytes(await getPublicKeyAsync(randomBytes(32)));
}

describe('MemoryTransport', () => {
  transportConformance(() => {
    const net = new MemoryNetwork();
    return {
      bind: (alpns) => Promise.resolve(net.bind(alpns)),
      unknownPeer: async () => ({ nodeId: await unusedNodeId(), direct: [] }),
    };
  });
});

describe('IrohTransport', () => {
  transportConformance(() => ({
    bind: bindIroh,
    unknownPeer: async () => ({ nodeId: await unusedNodeId(), direct: [] }),
  }));

  const open: IrohTransport[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close()));
  });
  const bind = async () => {
    const t = await bindIroh(ALL_ALPNS);
    open.push(t);
    return t;
  };

  it("reads the binding's close texts: the peer's application close, its QUIC-level close, ours", () => {
    expect(closeInfoOf('closed by peer: bye (code 42)', undefined)).toEqual({
      code: 42,
      reason: 'bye',
      byPeer: true,
    });
    expect(closeInfoOf('closed by peer: 7', undefined)).toEqual({
      code: 7,
      reason: '',
      byPeer: true,
    });
    // What a client sees when the server endpoint closes before accepting its connection.
    const handshake =
      'aborted by peer: the application or application protocol caused the connection to be closed during the handshake';
    expect(closeInfoOf(handshake, undefined)).toMatchObject({ code: undefined, byPeer: true });
    expect(closeInfoOf('reset by peer', undefined).byPeer).toBe(true);
    expect(closeInfoOf('timed out', undefined)).toEqual({
      code: undefined,
      reason: 'timed out',
      byPeer: false,
    });
    expect(closeInfoOf('closed by peer: 1', { code: 3, reason: 'mine' })).toEqual({
      code: 3,
      reason: 'mine',
      byPeer: false,
    });
  });

  it('parseTicket(ticket()) gives back the node id and direct addresses', async () => {
    const t = await bind();
    const addr = parseTicket(t.ticket());
    expect(addr.nodeId).toBe(t.nodeId);
    expect([...addr.direct].sort()).toEqual([...t.addr().direct].sort());
    expect(addr.direct.length).toBeGreaterThan(0);
  });

  it('parseTicket of garbage or a truncated ticket throws BAD_ADDRESS', async () => {
    const ticket = (await bind()).ticket();
    const bad = ['', 'garbage', 'endpoint', 'endpoint!!!!', ticket.slice(0, ticket.length >> 1)];
    for (const text of bad) {
      await expectCode(
        Promise.resolve().then(() => parseTicket(text)),
        ['BAD_ADDRESS'],
      );
    }
  });

  it('fails fast for an unknown node id at a live address', async () => {
    const srv = await bind();
    srv.listen(() => undefined);
    const client = await bind();
    const addr = { nodeId: await unusedNodeId(), direct: srv.addr().direct };
    await expectCode(client.connect(addr, ALPN.echo, { timeoutMs: 3000 }), [
      'CONNECT_FAILED',
      'TIMEOUT',
    ]);
  });

  it('refuses 64 hex characters that are not an ed25519 key with BAD_NODE_ID', async () => {
    const client = await bind();
    // About half of all 32-byte strings are not on the curve; find one (bounded search).
    let bad: NodeId | undefined;
    for (let i = 0; i < 200 && !bad; i++) {
      const id = nodeIdFromBytes(randomBytes(32));
      try {
        await client.connect({ nodeId: id, direct: [] }, ALPN.echo, { timeoutMs: 1000 });
      } catch (err) {
        if ((err as { code?: string }).code === 'BAD_NODE_ID') bad = id;
        else if (!(err instanceof Error && 'code' in err)) throw err; // a raw binding error
      }
    }
    expect(bad).toBeDefined();
  });
});

describe('IrohTransport addresses across a restart', () => {
  it('binding 127.0.0.1:PORT advertises [::1] on the same PORT, so a ticket survives a restart', async () => {
    // The binding always opens a socket of the other address family too (here [::1]). On a
    // random port, a restarted coordinator's old ticket named a dead address, and agents took
    // up to 35 s to reach it again (bench `recover`).
    const port = await freeUdpPort();
    const t = await IrohTransport.bind({
      secretKey: randomBytes(32),
      alpns: ALL_ALPNS,
      bind: `127.0.0.1:${port}`,
      relay: 'disabled',
      discovery: 'none',
    });
    try {
      const direct = t.addr().direct;
      expect(direct).toContain(`127.0.0.1:${port}`);
      for (const a of direct.filter((d) => d.startsWith('['))) expect(a).toBe(`[::1]:${port}`);
    } finally {
      await t.close();
    }
  });
});
