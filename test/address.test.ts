// What a person may type as HOST:PORT and as a peer address: the forms that are accepted, and the
// ones refused before any network use (see cli-bad-input.test.ts for the same through the CLI).

import { describe, expect, it } from 'vitest';
import { parseHostPort, parsePeerAddress } from '../sync/address.js';
import { codeOf } from '../sync/errors.js';
import { parseNodeId } from '../sync/ids.js';
import { generateNodeKey } from '../src/identity/index.js';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return codeOf(err);
  }
};

describe('parseHostPort', () => {
  it.each([
    '192.0.2.10:7447',
    '0.0.0.0:1',
    '255.255.255.255:65535',
    '[::1]:7447',
    '[2001:db8::1]:1',
    'localhost:1',
    'coordinator.example.org:7447',
    'host-1.lan:2',
    'a1.b2:3',
  ])('accepts %s', (text) => expect(code(() => parseHostPort(text))).toBe('ok'));

  it.each([
    '999.1.1.1:1',
    '256.0.0.1:1',
    '1.2.3:1',
    '127.1:1',
    '010.0.0.1:1',
    '0x7f.0.0.1:1',
    '1.2.3.4.5:1',
    'host.123:1',
    '[::zz]:1',
    '::1:1',
    'bad_host:1',
    '-x.example:1',
    'host:0',
    'host:65536',
    'host',
    ':7447',
  ])('refuses %s with BAD_ADDRESS', (text) =>
    expect(code(() => parseHostPort(text))).toBe('BAD_ADDRESS'),
  );
});

describe('node ids', () => {
  const id = generateNodeKey().nodeId;

  it('accepts a real key, in any case', () => {
    expect(parseNodeId(id.toUpperCase())).toBe(id);
    expect(parsePeerAddress(`${id}@192.0.2.10:7447`)).toEqual({
      nodeId: id,
      direct: ['192.0.2.10:7447'],
    });
  });

  it.each([
    ['all f (not a canonical field element)', 'f'.repeat(64)],
    ['all 9 (no curve point)', '9'.repeat(64)],
    ['all 0 (a small-order point)', '0'.repeat(64)],
  ])('refuses %s with BAD_NODE_ID, alone and in an address', (_, bad) => {
    expect(code(() => parseNodeId(bad))).toBe('BAD_NODE_ID');
    expect(code(() => parsePeerAddress(`${bad}@127.0.0.1:7447`))).toBe('BAD_NODE_ID');
    expect(code(() => parsePeerAddress(bad))).toBe('BAD_NODE_ID');
  });

  it('something that is no node id at all is BAD_ADDRESS', () => {
    expect(code(() => parsePeerAddress('nope'))).toBe('BAD_ADDRESS');
    expect(code(() => parsePeerAddress('xyz@127.0.0.1:1'))).toBe('BAD_ADDRESS');
  });
});
