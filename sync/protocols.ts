// The ALPNs flt speaks, each with its version in the name, and the frame cap of each.
// A new incompatible wire version gets a new ALPN (flt/rpc/1), so old and new nodes can
// both be served by one endpoint during an upgrade.

export const ALPN = {
  echo: 'flt/echo/0',
  rpc: 'flt/rpc/0',
  sync: 'flt/sync/0',
  blobs: 'flt/blobs/0',
} as const;

export type Alpn = (typeof ALPN)[keyof typeof ALPN];

export const ALL_ALPNS: readonly Alpn[] = Object.values(ALPN);

/**
 * Frame caps. Echo and RPC carry small control messages and diagnostics payloads (16 MiB is
 * far above any we send). Sync carries Automerge sync messages, which on a first sync hold a
 * document's whole history; 64 MiB matches the largest documents we expect (ARCHITECTURE.md
 * keeps them bounded) while keeping a hostile peer's cost per frame bounded. Blobs carries at
 * most one 256 KiB chunk (or 8,192 hashes) plus a 6-byte header per frame, and control maps of at
 * most 2,000 metadata records; 1 MiB leaves room and bounds what a liar makes us buffer.
 */
export const MAX_FRAME = {
  [ALPN.echo]: 16 * 1024 * 1024,
  [ALPN.rpc]: 16 * 1024 * 1024,
  [ALPN.sync]: 64 * 1024 * 1024,
  [ALPN.blobs]: 1024 * 1024,
} as const satisfies Record<Alpn, number>;

/**
 * Blob streams served at once on one connection (the rest wait to be accepted). Each holds up to
 * ~2 MiB (a frame being read, a chunk being written, the sender's 1 MiB queue), so 16 bound a
 * peer to ~32 MiB; clients run 4 by default (artifact_parallel), at most 16.
 */
export const MAX_BLOB_STREAMS = 16;
