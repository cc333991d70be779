// ENOSPC while writing a NAR is DISK_FULL at both ends of flt/blobs/0 (design §4, §6): the write
// failure is injected (an error with code ENOSPC, as fs gives it, wrapped as the stores wrap
// it), not made by filling a disk. Any other error goes on as it is.

import { describe, expect, it } from 'vitest';
import { diskFull as agentDiskFull } from '../src/artifacts/fetcher.js';
import { diskFull as coordDiskFull } from '../src/artifacts/server.js';
import { codeOf, FltError, messageOf } from '../src/errors.js';

const enospc = () =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
const caught = (fn: () => never): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
};

describe('ENOSPC -> DISK_FULL', () => {
  it.each([
    ['agent', agentDiskFull, /the agent's disk is full/],
    ['coordinator', coordDiskFull, /the coordinator's disk is full/],
  ] as const)('%s: a write failing with ENOSPC, bare or wrapped, is DISK_FULL', (_, map, text) => {
    for (const err of [
      enospc(),
      new FltError('IO', 'write partial: failed', { cause: enospc() }),
      new Error('outer', { cause: new Error('middle', { cause: enospc() }) }),
    ]) {
      const got = caught(() => map(err));
      expect(codeOf(got)).toBe('DISK_FULL');
      expect(messageOf(got)).toMatch(text);
    }
    const other = new FltError('IO', 'EIO');
    expect(caught(() => map(other))).toBe(other);
  });
});
