// Parses what a person types to name a peer: an iroh ticket (`endpoint…`), `NODE_ID@HOST:PORT`,
// or a bare NODE_ID (reachable only through discovery or an existing path).

import { FltError } from './errors.js';
import { parseNodeId } from './ids.js';
import { parseTicket } from './iroh-transport.js';
import type { PeerAddr } from './transport.js';

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Checks `HOST:PORT` (IPv4, [IPv6] or host name; port 0-65535) and returns it unchanged. */
export function parseHostPort(text: string, allowPortZero = false): string {
  const m = HOST_PORT.exec(text.trim());
  const port = Number(m?.[2]);
  if (!m || port > 65535 || (!allowPortZero && port === 0)) {
    throw new FltError('BAD_ADDRESS', `not HOST:PORT: ${JSON.stringify(text)}`);
  }
  return text.trim();
}

export function parsePeerAddress(text: string): PeerAddr {
  const t = text.trim();
  if (t.startsWith('endpoint')) return parseTicket(t);
  const at = t.indexOf('@');
  try {
    if (at < 0) return { nodeId: parseNodeId(t), direct: [] };
    return { nodeId: parseNodeId(t.slice(0, at)), direct: [parseHostPort(t.slice(at + 1))] };
  } catch (err) {
    throw new FltError(
      'BAD_ADDRESS',
      `not a peer address: ${JSON.stringify(text)} (expected a ticket, NODE_ID@HOST:PORT or NODE_ID)`,
      { cause: err },
    );
  }
}

/** The `NODE_ID@HOST:PORT` form of an address, using its first direct address. */
export function formatPeerAddress(addr: PeerAddr): string {
  const first = addr.direct[0];
  return first ? `${addr.nodeId}@${first}` : addr.nodeId;
}
