// The Transport interface: what flt needs from a peer-to-peer network, and nothing of how
// iroh's bindings spell it. IrohTransport (real QUIC) and MemoryTransport (fast tests) implement it;
// test/transport-conformance.ts runs the same suite against both.

import type { NodeId } from './ids.js';

/** Where a peer can be reached: its id plus any direct socket addresses and relay. */
export interface PeerAddr {
  readonly nodeId: NodeId;
  readonly direct: readonly string[];
  readonly relayUrl?: string | undefined;
}

/** One bidirectional, ordered byte stream inside a connection. */
export interface ByteStream {
  /** Up to `max` bytes; `null` once the peer finished its side. Rejects with CONNECTION_LOST. */
  read(max: number): Promise<Uint8Array | null>;
  /** Resolves when the bytes are handed to the transport (flow control applies). */
  write(bytes: Uint8Array): Promise<void>;
  /** Finish our sending side (the peer's read returns null after the data). */
  finish(): Promise<void>;
}

export interface CloseInfo {
  /** Application close code (ours or the peer's), or undefined for a transport-level loss. */
  readonly code: number | undefined;
  readonly reason: string;
  readonly byPeer: boolean;
}

/** An authenticated connection: `remoteId` is proven by the transport's handshake. */
export interface Connection {
  readonly remoteId: NodeId;
  readonly alpn: string;
  openStream(): Promise<ByteStream>;
  /** The next stream the peer opened, or null once the connection is closed. */
  acceptStream(): Promise<ByteStream | null>;
  /** Idempotent. The peer sees `code` and `reason`. */
  close(code: number, reason: string): void;
  /** Resolves (never rejects) when the connection is gone, for whatever reason. */
  readonly closed: Promise<CloseInfo>;
  /**
   * Packets received and sent on this connection so far (QUIC's keep-alives, acknowledgements and
   * resends included), or undefined where the transport cannot tell. `received` grows while the
   * peer's QUIC stack acknowledges what we send, even when the peer's program is too busy to
   * answer, and stops when the peer is gone (killed: a process restarted on the same address
   * sends nothing on its predecessor's connections): RpcChannel tells a busy peer from a lost one
   * by it. Sent packets that `received` does not follow were not acknowledged (liveness).
   */
  packets?(): PacketCounts | undefined;
}

export interface PacketCounts {
  readonly received: number;
  readonly sent: number;
}

export interface ConnectOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface Transport {
  readonly nodeId: NodeId;
  /** Our own address, to print or to put in a ticket. */
  addr(): PeerAddr;
  /** A string another node can dial: an iroh ticket, or `NODE_ID@HOST:PORT` for memory. */
  ticket(): string;
  connect(addr: PeerAddr, alpn: string, options?: ConnectOptions): Promise<Connection>;
  /** Every authenticated incoming connection is handed to `handler` (one handler only). */
  listen(handler: (conn: Connection) => void): void;
  /** Idempotent; closes every connection. */
  close(): Promise<void>;
}

/** Close codes flt puts on connections (QUIC application codes, numbers chosen by us). */
export const CloseCode = {
  NORMAL: 0,
  PROTOCOL_ERROR: 1,
  UNAUTHORIZED: 2,
  SENDER_MISMATCH: 3,
  REPLACED: 4,
  SHUTDOWN: 5,
  LIMIT: 6,
} as const;
