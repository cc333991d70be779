// Turns the iroh binding's error text into words a person can act on. The binding throws plain
// Errors whose message is Rust's anyhow report: a head line, a "Caused by:" chain, each entry
// often suffixed with a Rust source path, then a stack backtrace. iroh-transport.ts wraps every
// binding error with the reason found here and keeps the original as `cause`.

import { messageOf } from './errors.js';

/** `(/root/.cargo/registry/src/…/socket.rs:946:24)`: where in Rust the error was made. */
const RUST_LOCATION = /\s*\([^()]*\.rs:\d+:\d+\)/g;
/** Enum paths such as `ConnectError::Connecting`, meaningful only to the binding's authors. */
const RUST_VARIANT = /^[A-Z]\w*(::\w+)+:?\s*/;

/** Root causes the operating system or QUIC reports, and what they mean for the user. */
const KNOWN: readonly (readonly [RegExp, string])[] = [
  [/address (already )?in use|os error 98\b/i, 'address already in use'],
  [/cannot assign requested address|os error 99\b/i, 'address not available on this machine'],
  [/address family not supported|os error 97\b/i, 'address family not supported here'],
  [/permission denied|operation not permitted|os error (1|13)\b/i, 'permission denied'],
  [/network is unreachable|os error 101\b/i, 'network unreachable'],
  [/no route to host|os error 113\b/i, 'no route to host'],
  [/connection refused|os error 111\b/i, 'connection refused'],
  [/connecting to ourself/i, "that is this node's own id"],
  [/no application protocol/i, 'the peer does not speak this protocol'],
  [/invalid socket address syntax/i, 'not an IP address and port'],
  [/timed out/i, 'timed out: no answer from the peer'],
];

/**
 * The messages of a binding error, head first, without Rust source locations, enum paths or the
 * backtrace. Non-binding errors give their message's first line.
 */
export function bindingErrorChain(err: unknown): string[] {
  const out: string[] = [];
  for (const raw of messageOf(err).split('\n')) {
    if (/^\s*Stack backtrace:/.test(raw)) break;
    const line = raw
      .replace(RUST_LOCATION, '')
      .replace(/^\s*\d+:\s+/, '') // anyhow numbers the causes when there are several
      .trim()
      .replace(RUST_VARIANT, '');
    if (line !== '' && line !== 'Caused by:') out.push(line);
  }
  return out;
}

/** What happened, in a few words: the root cause, named when it is a known one. */
export function bindingReason(err: unknown): string {
  const chain = bindingErrorChain(err);
  const root = chain[chain.length - 1] ?? '';
  for (const [re, reason] of KNOWN) if (re.test(root)) return reason;
  for (const [re, reason] of KNOWN) if (chain.some((l) => re.test(l))) return reason;
  return root || 'unknown error';
}
