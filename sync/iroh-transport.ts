// The only module that touches @number0/iroh. The bindings pass bytes as Array<number>, throw
// plain Errors with multi-line Rust backtraces, and use bigint close codes; all of that is
// converted here, once, into the Transport interface and FltError codes.

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import * as iroh from '@number0/iroh/index.js';
import { FltError, messageOf } from './errors.js';
import { authenticatedNodeId, parseNodeId, type NodeId, shortId } from './ids.js';
import { withDeadline } from './deadline.js';
import { bindingReason } from './iroh-errors.js';
import { silentLogger, type Logger } from './log.js';
import type {
  ByteStream,
  CloseInfo,
  ConnectOptions,
  Connection,
  PacketCounts,
  PeerAddr,
  Transport,
} from './transport.js';

/** How the endpoint finds relays: none, n0's public relays, or one self-hosted relay URL. */
export type RelaySetting = 'disabled' | 'default' | { readonly url: string };
export type DiscoverySetting = 'none' | 'n0';

export interface IrohTransportOptions {
  readonly secretKey: Uint8Array;
  readonly alpns: readonly string[];
  /** `HOST:PORT` for the IPv4 socket; port 0 picks a free one. */
  readonly bind: string;
  readonly relay: RelaySetting;
  readonly discovery: DiscoverySetting;
  readonly logger?: Logger;
}

/**
 * Accept loops run at once. A QUIC handshake begins only once JavaScript has taken its incoming
 * connection (acceptNext, then accept: a round trip through the event loop each), and one loop
 * takes one per round trip; a coordinator busy with a fan-in of 1,000 agents was letting their
 * dials wait past their deadlines (issue 13; not measured apart from the agents' longer dial
 * deadline, which was the larger part). The binding's accept serves concurrent callers.
 */
const ACCEPT_LOOPS = 4;

/** Largest single writeAll through the binding. */
const WRITE_SLICE = 1 << 20;

/** Buffer -> Array<number> with a plain loop: about 7x faster than Array.from here. */
function toArray(bytes: Uint8Array): number[] {
  const out = new Array<number>(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]!;
  return out;
}

const utf8 = (s: string): number[] => toArray(Buffer.from(s, 'utf8'));
/**
 * Array<number> -> Uint8Array with a plain loop. The binding's arrays are generic (holey)
 * V8 arrays, on which Uint8Array.from costs ~35 ms/MiB and this loop ~3 ms/MiB (bench/README.md).
 */
function fromArray(arr: number[]): Uint8Array {
  const out = new Uint8Array(arr.length);
  for (let i = 0; i < arr.length; i++) out[i] = arr[i]!;
  return out;
}

/** The first line of a binding error, without the Rust backtrace. */
function firstLine(err: unknown): string {
  return (messageOf(err).split('\n')[0] ?? '').trim();
}

function wrap(
  code: 'TRANSPORT' | 'CONNECTION_LOST' | 'CONNECT_FAILED',
  what: string,
  err: unknown,
) {
  return err instanceof FltError
    ? err
    : new FltError(code, `${what}: ${bindingReason(err)}`, { cause: err });
}

class IrohStream implements ByteStream {
  constructor(private readonly bi: iroh.BiStream) {}

  async read(max: number): Promise<Uint8Array | null> {
    let chunk: number[];
    try {
      chunk = await this.bi.recv.read(max);
    } catch (err) {
      throw wrap('CONNECTION_LOST', 'stream read failed', err);
    }
    // The binding reports end-of-stream as an empty array.
    return chunk.length === 0 ? null : fromArray(chunk);
  }

  async write(bytes: Uint8Array): Promise<void> {
    try {
      // Slices keep each temporary Array<number> (8 bytes per byte) small.
      for (let off = 0; off < bytes.length; off += WRITE_SLICE) {
        await this.bi.send.writeAll(toArray(bytes.subarray(off, off + WRITE_SLICE)));
      }
    } catch (err) {
      throw wrap('CONNECTION_LOST', 'stream write failed', err);
    }
  }

  async finish(): Promise<void> {
    try {
      await this.bi.send.finish();
    } catch (err) {
      throw wrap('CONNECTION_LOST', 'stream finish failed', err);
    }
  }
}

/** Parses the binding's close description, e.g. "closed by peer: bye (code 42)". */
export function closeInfoOf(
  text: string,
  local: { code: number; reason: string } | undefined,
): CloseInfo {
  if (local) return { code: local.code, reason: local.reason, byPeer: false };
  const m = /^closed by peer: (.*) \(code (\d+)\)$/s.exec(text);
  if (m) return { code: Number(m[2]), reason: m[1] ?? '', byPeer: true };
  // With an empty reason the binding prints only the code: "closed by peer: 42".
  const bare = /^closed by peer: (\d+)$/.exec(text);
  if (bare) return { code: Number(bare[1]), reason: '', byPeer: true };
  // A QUIC-level close from the peer has no application code. One case: an endpoint that closes
  // while a connection is still in its accept queue closes it "during the handshake".
  const aborted = /^aborted by peer: (.*)$/s.exec(text);
  if (aborted) return { code: undefined, reason: aborted[1] ?? '', byPeer: true };
  if (text === 'reset by peer') return { code: undefined, reason: text, byPeer: true };
  return { code: undefined, reason: text, byPeer: false };
}

class IrohConnection implements Connection {
  readonly remoteId: NodeId;
  readonly alpn: string;
  readonly closed: Promise<CloseInfo>;
  private local: { code: number; reason: string } | undefined;

  constructor(private readonly conn: iroh.Connection) {
    this.remoteId = authenticatedNodeId(conn.remoteId().toString());
    this.alpn = Buffer.from(conn.alpn()).toString('utf8');
    this.closed = conn.closed().then(
      (text) => closeInfoOf(text, this.local),
      (err: unknown) => closeInfoOf(firstLine(err), this.local),
    );
  }

  async openStream(): Promise<ByteStream> {
    try {
      return new IrohStream(await this.conn.openBi());
    } catch (err) {
      throw wrap('CONNECTION_LOST', 'open stream failed', err);
    }
  }

  async acceptStream(): Promise<ByteStream | null> {
    try {
      return new IrohStream(await this.conn.acceptBi());
    } catch {
      return null; // the binding rejects pending accepts once the connection closes
    }
  }

  /** UDP datagrams the connection took in and sent (see Connection): one `stats()`, 1.1 µs. */
  packets(): PacketCounts | undefined {
    try {
      const { udpRxDatagrams: received, udpTxDatagrams: sent } = this.conn.stats();
      return { received, sent };
    } catch {
      return undefined; // a binding without stats, or a connection already released
    }
  }

  close(code: number, reason: string): void {
    if (this.local) return;
    this.local = { code, reason };
    try {
      this.conn.close(BigInt(code), utf8(reason.slice(0, 200)));
    } catch {
      // already closed by the peer or the endpoint: nothing left to do
    }
  }
}

function endpointId(id: NodeId): iroh.EndpointId {
  try {
    return iroh.EndpointId.fromString(id);
  } catch (err) {
    throw new FltError(
      'BAD_NODE_ID',
      `${shortId(id)}… is not an ed25519 public key: ${bindingReason(err)}`,
      { cause: err },
    );
  }
}

function relayMode(relay: RelaySetting): iroh.RelayMode {
  if (relay === 'disabled') return iroh.RelayMode.disabled();
  if (relay === 'default') return iroh.RelayMode.defaultMode();
  return iroh.RelayMode.customFromUrls([relay.url]);
}

/** Resolves host names in direct addresses; iroh only dials socket addresses. */
async function resolveDirect(direct: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const hostPort of direct) {
    const m = /^(.*):(\d+)$/.exec(hostPort);
    const host = (m?.[1] ?? '').replace(/^\[(.*)\]$/, '$1');
    if (!m || isIP(host) !== 0) {
      out.push(hostPort);
      continue;
    }
    try {
      for (const a of await lookup(host, { all: true })) {
        out.push(a.family === 6 ? `[${a.address}]:${m[2]}` : `${a.address}:${m[2]}`);
      }
    } catch (err) {
      throw new FltError('BAD_ADDRESS', `cannot resolve ${host}: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }
  return out;
}

/**
 * The socket addresses to bind for `HOST:PORT`. The binding (1.1.0) exposes only iroh's
 * `bind_addr`, which replaces iroh's default socket of that address family and keeps the other
 * family's default, a socket on all interfaces (`[::]:0` or `0.0.0.0:0`); iroh's
 * `clear_ip_transports` is not exposed. So a specific address gets the other family confined to
 * its loopback address (reachable from this machine only) instead; an unspecified host
 * (`0.0.0.0`, `[::]`) means every interface, and keeps the other family's default too.
 * A host name is resolved to its first address: the binding binds socket addresses only.
 */
async function bindPlan(bind: string): Promise<string[]> {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(bind);
  if (!m) throw new FltError('BAD_ADDRESS', `cannot bind ${bind}: expected HOST:PORT`);
  let host = m[1] ?? m[2] ?? '';
  if (isIP(host) === 0) {
    try {
      host = (await lookup(host)).address;
    } catch (err) {
      throw new FltError('BAD_ADDRESS', `cannot bind ${bind}: cannot resolve ${host}`, {
        cause: err,
      });
    }
  }
  const v6 = isIP(host) === 6;
  const addr = v6 ? `[${host}]:${m[3]}` : `${host}:${m[3]}`;
  if (host === '0.0.0.0' || (v6 && /^[0:]+$/.test(host))) return [addr];
  // The same port, so that a ticket naming both addresses stays right across a restart: with a
  // random one, agents dialing an old ticket tried the dead loopback address too, and a restarted
  // coordinator took them up to 35 s to reach (bench `recover`).
  return [addr, v6 ? `127.0.0.1:${m[3]}` : `[::1]:${m[3]}`];
}

export class IrohTransport implements Transport {
  readonly nodeId: NodeId;
  private handler: ((conn: Connection) => void) | undefined;
  private readonly conns = new Set<IrohConnection>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly ep: iroh.Endpoint,
    private readonly log: Logger,
  ) {
    this.nodeId = authenticatedNodeId(ep.id().toString());
  }

  /**
   * Binds one endpoint for the whole process, advertising `alpns`, on `options.bind` only (see
   * bindPlan for the one socket of the other address family that the binding always opens).
   */
  static async bind(options: IrohTransportOptions): Promise<IrohTransport> {
    const plan = await bindPlan(options.bind);
    const attempt = async (addrs: readonly string[]) => {
      const b = iroh.Endpoint.builder();
      if (options.discovery === 'n0') iroh.presetN0(b);
      else iroh.presetMinimal(b);
      b.relayMode(relayMode(options.relay));
      b.secretKey(toArray(options.secretKey));
      for (const a of addrs) b.bindAddr(a);
      b.alpns(options.alpns.map(utf8));
      return b.bind();
    };
    try {
      let ep: iroh.Endpoint;
      try {
        ep = await attempt(plan);
      } catch (err) {
        // No IPv6 (or IPv4) loopback on this host: bind what was asked for alone. The port
        // taken on the other family's loopback (by someone else): any port there.
        if (plan.length < 2) throw err;
        if (/os error (97|99)\b/.test(messageOf(err))) ep = await attempt(plan.slice(0, 1));
        else if (/os error 98\b/.test(messageOf(err)) && !plan[1]!.endsWith(':0'))
          ep = await attempt([plan[0]!, plan[1]!.replace(/:\d+$/, ':0')]);
        else throw err;
      }
      return new IrohTransport(ep, options.logger ?? silentLogger);
    } catch (err) {
      throw new FltError('TRANSPORT', `cannot bind ${options.bind}: ${bindingReason(err)}`, {
        cause: err,
      });
    }
  }

  addr(): PeerAddr {
    const a = this.ep.addr();
    return {
      nodeId: this.nodeId,
      direct: a.directAddresses(),
      relayUrl: a.relayUrl() ?? undefined,
    };
  }

  ticket(): string {
    return iroh.EndpointTicket.fromAddr(this.ep.addr()).toString();
  }

  /** The socket addresses the endpoint is bound to (IPv4 first). */
  boundSockets(): string[] {
    return this.ep.boundSockets();
  }

  async connect(addr: PeerAddr, alpn: string, options: ConnectOptions = {}): Promise<Connection> {
    const target = new iroh.EndpointAddr(
      endpointId(addr.nodeId),
      addr.relayUrl ?? null,
      await resolveDirect(addr.direct),
    );
    const attempt = this.ep.connect(target, utf8(alpn)).then(
      (c) => this.adopt(c),
      (err: unknown) => {
        throw wrap('CONNECT_FAILED', `connect to ${shortId(addr.nodeId)}`, err);
      },
    );
    try {
      return await withDeadline(attempt, options, `connect to ${shortId(addr.nodeId)} on ${alpn}`);
    } catch (err) {
      // The binding cannot cancel a dial: a success that arrives after we gave up is closed.
      attempt.then(
        (c) => c.close(0, 'gave up'),
        () => undefined,
      );
      throw err;
    }
  }

  listen(handler: (conn: Connection) => void): void {
    if (this.handler) throw new FltError('INTERNAL', 'transport already has a listener');
    this.handler = handler;
    for (let i = 0; i < ACCEPT_LOOPS; i++) void this.acceptLoop();
  }

  async close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    for (const c of this.conns) c.close(0, 'shutdown');
    try {
      await this.ep.close();
    } catch (err) {
      this.log.warn('endpoint close failed', { err: firstLine(err) });
    }
  }

  private adopt(raw: iroh.Connection): IrohConnection {
    const conn = new IrohConnection(raw);
    this.conns.add(conn);
    void conn.closed.then(() => this.conns.delete(conn));
    return conn;
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let incoming: iroh.Incoming | null;
      try {
        incoming = await this.ep.acceptNext();
      } catch (err) {
        if (!this.closing) this.log.warn('accept failed', { err: firstLine(err) });
        return;
      }
      if (!incoming || this.closing) return;
      void this.handshake(incoming);
    }
  }

  /** Runs one handshake without holding up the accept loop; bad handshakes are only logged. */
  private async handshake(incoming: iroh.Incoming): Promise<void> {
    try {
      const conn = this.adopt(await (await incoming.accept()).connect());
      if (this.closing) conn.close(0, 'shutdown');
      else this.handler?.(conn);
    } catch (err) {
      this.log.debug('incoming handshake failed', { err: firstLine(err) });
    }
  }
}

/** Decodes an iroh `endpoint…` ticket into a PeerAddr. */
export function parseTicket(ticket: string): PeerAddr {
  try {
    const a = iroh.EndpointTicket.fromString(ticket.trim()).endpointAddr();
    return {
      nodeId: parseNodeId(a.id().toString()),
      direct: a.directAddresses(),
      relayUrl: a.relayUrl() ?? undefined,
    };
  } catch (err) {
    throw new FltError('BAD_ADDRESS', `not a valid ticket: ${bindingReason(err)}`, { cause: err });
  }
}
