// The ALPNs flt speaks, each with its version in the name, and the frame cap of each.
// A new incompatible wire version gets a new ALPN (flt/rpc/1), so old and new nodes can
// both be served by one endpoint during an upgrade.

export const ALPN = {
  echo: 'flt/echo/0',
  rpc: 'flt/rpc/0',
  sync: 'flt/sync/0',
} as const;

export type Alpn = (typeof ALPN)[keyof typeof ALPN];

export const ALL_ALPNS: readonly Alpn[] = Object.values(ALPN);

/**
 * Frame caps. Echo and RPC carry small control messages and diagnostics payloads (16 MiB is
 * far above any we send). Sync carries Automerge sync messages, which on a first sync hold a
 * document's whole history; 64 MiB matches the largest documents we expect (ARCHITECTURE.md
 * keeps them bounded) while keeping a hostile peer's cost per frame bounded.
 */
export const MAX_FRAME = {
  [ALPN.echo]: 16 * 1024 * 1024,
  [ALPN.rpc]: 16 * 1024 * 1024,
  [ALPN.sync]: 64 * 1024 * 1024,
} as const satisfies Record<Alpn, number>;
