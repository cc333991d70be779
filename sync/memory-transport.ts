// An in-process Transport for fast, deterministic tests of everything above the wire.
// It keeps the contract of IrohTransport (ordered streams, ALPN checks, close codes) and
// passes the same conformance suite; only the bytes never leave the process.

import { randomBytes } from 'node:crypto';
import { FltError } from './errors.js';
import { withDeadline } from './deadline.js';
import { nodeIdFromBytes, type NodeId, shortId } from './ids.js';
import type {
  ByteStream,
  CloseInfo,
  ConnectOptions,
  Connection,
  PeerAddr,
  Transport,
} from './transport.js';

/** A one-way byte queue. */
class Pipe {
  private chunks: Uint8Array[] = [];
  private ended = false;
  private failure: FltError | undefined;
  private wake: (() => void) | undefined;

  push(bytes: Uint8Array): void {
    if (this.failure) throw this.failure;
    if (this.ended) throw new FltError('CLOSED', 'write after finish');
    if (bytes.length > 0) this.chunks.push(Uint8Array.from(bytes));
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(err: FltError): void {
    this.failure ??= err;
    this.notify();
  }

  async read(max: number): Promise<Uint8Array | null> {
    while (this.chunks.length === 0 && !this.ended && !this.failure) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    const head = this.chunks[0];
    if (head) {
      if (head.length <= max) this.chunks.shift();
      else this.chunks[0] = head.subarray(max);
      return head.subarray(0, max);
    }
    if (this.failure) throw this.failure;
    return null;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

class MemoryStream implements ByteStream {
  constructor(
    private readonly inbound: Pipe,
    private readonly outbound: Pipe,
  ) {}
  read(max: number) {
    return this.inbound.read(max);
  }
  write(bytes: Uint8Array) {
    // A write on a closed pipe must reject (as iroh's does), never throw synchronously.
    return new Promise<void>((resolve) => {
      this.outbound.push(bytes);
      resolve();
    });
  }
  finish() {
    this.outbound.end();
    return Promise.resolve();
  }
}

class MemoryConnection implements Connection {
  peer!: MemoryConnection;
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  private isClosed = false;
  private readonly pipes = new Set<Pipe>();
  private readonly incoming: MemoryStream[] = [];
  private wake: (() => void) | undefined;

  constructor(
    readonly remoteId: NodeId,
    readonly alpn: string,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  openStream(): Promise<ByteStream> {
    if (this.isClosed) return Promise.reject(new FltError('CONNECTION_LOST', 'connection closed'));
    const up = new Pipe();
    const down = new Pipe();
    this.pipes.add(up).add(down);
    this.peer.pipes.add(up).add(down);
    this.peer.incoming.push(new MemoryStream(up, down));
    this.peer.notify();
    return Promise.resolve(new MemoryStream(down, up));
  }

  async acceptStream(): Promise<ByteStream | null> {
    while (this.incoming.length === 0 && !this.isClosed) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return this.incoming.shift() ?? null;
  }

  close(code: number, reason: string): void {
    if (this.isClosed) return;
    this.shutdown({ code, reason, byPeer: false });
    this.peer.shutdown({ code, reason, byPeer: true });
  }

  private shutdown(info: CloseInfo): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const p of this.pipes)
      p.fail(new FltError('CONNECTION_LOST', `connection closed: ${info.reason}`));
    this.notify();
    this.resolveClosed(info);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** The "network" that MemoryTransports dial each other on. */
export class MemoryNetwork {
  readonly nodes = new Map<NodeId, MemoryTransport>();

  /** A transport with a random node id (or the one given), accepting `alpns`. */
  bind(alpns: readonly string[], nodeId?: NodeId): MemoryTransport {
    const t = new MemoryTransport(this, nodeId ?? nodeIdFromBytes(randomBytes(32)), alpns);
    this.nodes.set(t.nodeId, t);
    return t;
  }
}

export class MemoryTransport implements Transport {
  private handler: ((conn: Connection) => void) | undefined;
  private readonly conns = new Set<MemoryConnection>();
  private isClosed = false;

  constructor(
    private readonly net: MemoryNetwork,
    readonly nodeId: NodeId,
    private readonly alpns: readonly string[],
  ) {}

  addr(): PeerAddr {
    return { nodeId: this.nodeId, direct: [] };
  }

  ticket(): string {
    return this.nodeId;
  }

  connect(addr: PeerAddr, alpn: string, options: ConnectOptions = {}): Promise<Connection> {
    return withDeadline(this.dial(addr, alpn), options, `connect to ${shortId(addr.nodeId)}`);
  }

  private dial(addr: PeerAddr, alpn: string): Promise<Connection> {
    const remote = this.net.nodes.get(addr.nodeId);
    if (this.isClosed) return Promise.reject(new FltError('CLOSED', 'transport closed'));
    if (!remote || remote.isClosed || !remote.handler || !remote.alpns.includes(alpn)) {
      return Promise.reject(
        new FltError('CONNECT_FAILED', `no peer ${shortId(addr.nodeId)} for ${alpn}`),
      );
    }
    const mine = new MemoryConnection(remote.nodeId, alpn);
    const theirs = new MemoryConnection(this.nodeId, alpn);
    mine.peer = theirs;
    theirs.peer = mine;
    this.track(mine);
    remote.track(theirs);
    queueMicrotask(() => remote.handler?.(theirs));
    return Promise.resolve(mine);
  }

  listen(handler: (conn: Connection) => void): void {
    if (this.handler) throw new FltError('INTERNAL', 'transport already has a listener');
    this.handler = handler;
  }

  close(): Promise<void> {
    if (!this.isClosed) {
      this.isClosed = true;
      for (const c of this.conns) c.close(0, 'shutdown');
      this.net.nodes.delete(this.nodeId);
    }
    return Promise.resolve();
  }

  private track(conn: MemoryConnection): void {
    this.conns.add(conn);
    void conn.closed.then(() => this.conns.delete(conn));
  }
}
