// Parses what a person types to name a peer: an iroh ticket (`endpoint…`), `NODE_ID@HOST:PORT`,
// or a bare NODE_ID (reachable only through discovery or an existing path).

import { isIPv6 } from 'node:net';
import { codeOf, FltError, messageOf } from './errors.js';
import { hostProblem } from './host.js';
import { isNodeId, parseNodeId } from './ids.js';
import { parseTicket } from './iroh-transport.js';
import type { PeerAddr } from './transport.js';

/**
 * Checks `HOST:PORT` (a canonical IPv4 address, `[IPv6]` or a host name, see hostProblem; port
 * 0-65535) and returns it trimmed. Nothing here touches the network: a malformed address is
 * refused before any DNS lookup.
 */
export function parseHostPort(text: string, allowPortZero = false): string {
  const t = text.trim();
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(t);
  const port = Number(m?.[3]);
  const problem = !m
    ? 'expected HOST:PORT'
    : port > 65535 || (!allowPortZero && port === 0)
      ? `port ${port} is out of range`
      : m[1] !== undefined && !isIPv6(m[1])
        ? `"[${m[1]}]" is not an IPv6 address`
        : hostProblem(m[1] ?? m[2] ?? '');
  if (problem !== undefined)
    throw new FltError('BAD_ADDRESS', `not HOST:PORT: ${JSON.stringify(text)}: ${problem}`);
  return t;
}

export function parsePeerAddress(text: string): PeerAddr {
  const t = text.trim();
  if (t.startsWith('endpoint')) return parseTicket(t);
  const at = t.indexOf('@');
  try {
    if (at < 0) return { nodeId: parseNodeId(t), direct: [] };
    return { nodeId: parseNodeId(t.slice(0, at)), direct: [parseHostPort(t.slice(at + 1))] };
  } catch (err) {
    // 64 hex characters that are no ed25519 key: the id is wrong, not the address's form.
    const idShaped = isNodeId((at < 0 ? t : t.slice(0, at)).toLowerCase());
    throw new FltError(
      codeOf(err) === 'BAD_NODE_ID' && idShaped ? 'BAD_NODE_ID' : 'BAD_ADDRESS',
      `not a peer address: ${JSON.stringify(text)}: ${messageOf(err)} (expected a ticket, NODE_ID@HOST:PORT or NODE_ID)`,
      { cause: err },
    );
  }
}

/** The `NODE_ID@HOST:PORT` form of an address, using its first direct address. */
export function formatPeerAddress(addr: PeerAddr): string {
  const first = addr.direct[0];
  return first ? `${addr.nodeId}@${first}` : addr.nodeId;
}
