// The one rule for the HOST of a `HOST:PORT` that a person types (--bind, --coordinator, echo's
// NODE): an IPv4 dotted quad, a bracketed IPv6 address or a DNS host name. Used by sync/address.ts
// and src/config; checked before any network use, so a typo never becomes a DNS query.

import { isIPv4, isIPv6 } from 'node:net';

const HOSTNAME_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
/** A label the resolver (inet_aton) would read as a number: decimal, octal `0…` or hex `0x…`. */
const NUMERIC_LABEL = /^(0x[0-9a-f]*|\d+)$/i;

/**
 * Why `host` (IPv6 without its brackets) is not a valid host, or `undefined` when it is.
 *
 * A host whose last label is numeric is taken as an IPv4 address (as the WHATWG URL standard
 * does) and must be a canonical dotted quad: four decimal parts 0-255 without leading zeros.
 * So `999.1.1.1`, `1.2.3`, `127.1`, `010.0.0.1` and `0x7f.0.0.1` are refused, rather than sent
 * to DNS (`999.1.1.1`) or read by the C resolver's legacy rules as another address (`127.1`
 * is 127.0.0.1, `010.0.0.1` is 8.0.0.1).
 */
export function hostProblem(host: string): string | undefined {
  if (host === '') return 'missing host before ":PORT"';
  if (host.includes(':'))
    return isIPv6(host) ? undefined : `${JSON.stringify(host)} is not an IPv6 address`;
  const labels = host.replace(/\.$/, '').split('.');
  if (NUMERIC_LABEL.test(labels[labels.length - 1] ?? '')) {
    return isIPv4(host)
      ? undefined
      : `${JSON.stringify(host)} is not an IPv4 address (four numbers 0-255 without leading zeros, e.g. 192.0.2.10)`;
  }
  const ok = host.length <= 253 && labels.every((label) => HOSTNAME_LABEL.test(label));
  return ok ? undefined : `${JSON.stringify(host)} is not a valid host name`;
}
