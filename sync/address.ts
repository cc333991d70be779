// Parses what a person types to name a peer: an iroh ticket (`endpoint…`), `NODE_ID@HOST:PORT`,
// or a bare NODE_ID (reachable only through discovery or an existing path).

import { isIPv6 } from 'node:net';
import { FltError } from './errors.js';
import { hostProblem } from './host.js';
import { isNodeId, parseNodeId } from './ids.js';
import { parseTicket } from './iroh-transport.js';
import type { PeerAddr } from './transport.js';

const FORMS = 'a ticket, NODE_ID@HOST:PORT or NODE_ID';

/** Why `text` is not `HOST:PORT` (see hostProblem; port 0-65535), or `undefined` when it is. */
function hostPortProblem(text: string, allowPortZero: boolean): string | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (!m) return 'expected HOST:PORT';
  const port = Number(m[3]);
  if (port > 65535 || (!allowPortZero && port === 0)) return `port ${port} is out of range`;
  if (m[1] !== undefined && !isIPv6(m[1])) return `"[${m[1]}]" is not an IPv6 address`;
  return hostProblem(m[1] ?? m[2] ?? '');
}

/**
 * Checks `HOST:PORT` (a canonical IPv4 address, `[IPv6]` or a host name; port 0-65535) and
 * returns it trimmed. Nothing here touches the network: a malformed address is refused before
 * any DNS lookup.
 */
export function parseHostPort(text: string, allowPortZero = false): string {
  const problem = hostPortProblem(text.trim(), allowPortZero);
  if (problem !== undefined)
    throw new FltError('BAD_ADDRESS', `not HOST:PORT: ${JSON.stringify(text)}: ${problem}`);
  return text.trim();
}

/**
 * Parses a ticket, `NODE_ID@HOST:PORT` or a bare `NODE_ID`. BAD_NODE_ID when the node id has
 * the right form (64 hex characters) but is no ed25519 key; BAD_ADDRESS for anything else.
 */
export function parsePeerAddress(text: string): PeerAddr {
  const t = text.trim();
  if (t.startsWith('endpoint')) return parseTicket(t);
  const at = t.indexOf('@');
  const id = at < 0 ? t : t.slice(0, at);
  const bad = (why: string) =>
    new FltError('BAD_ADDRESS', `not a peer address: ${JSON.stringify(text)}: ${why}`);
  if (!isNodeId(id.toLowerCase())) {
    throw bad(at < 0 ? `expected ${FORMS}` : `${JSON.stringify(id)} is not a node id (64 hex)`);
  }
  const nodeId = parseNodeId(id); // BAD_NODE_ID: not an ed25519 public key
  if (at < 0) return { nodeId, direct: [] };
  const hostPort = t.slice(at + 1);
  const problem = hostPortProblem(hostPort, false);
  if (problem !== undefined) throw bad(problem);
  return { nodeId, direct: [hostPort] };
}
