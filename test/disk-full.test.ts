// ENOSPC while writing a NAR is DISK_FULL wherever it happens (design §4, §6: the coordinator's
// blob store, the agent's partials and cache; src/artifacts/disk.ts): the write failure is
// injected (an error with code ENOSPC, as fs gives it, wrapped as the stores wrap it), not made
// by filling a disk. Any other error goes on as it is.

import { describe, expect, it } from 'vitest';
import { diskFullOr, throwDiskFull } from '../src/artifacts/disk.js';
import { codeOf, FltError, messageOf } from '../src/errors.js';

const enospc = () =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

describe('ENOSPC -> DISK_FULL', () => {
  it('a write failing with ENOSPC, bare or wrapped, is DISK_FULL naming where', () => {
    for (const err of [
      enospc(),
      new FltError('IO', 'write partial: failed', { cause: enospc() }),
      new Error('outer', { cause: new Error('middle', { cause: enospc() }) }),
    ]) {
      const got = diskFullOr(err, "the agent's disk");
      expect(codeOf(got)).toBe('DISK_FULL');
      expect(messageOf(got)).toMatch(/^the agent's disk is full: /);
    }
  });

  it('any other error is passed on unchanged, also by the .catch() form', () => {
    const other = new FltError('IO', 'EIO');
    expect(diskFullOr(other, "the coordinator's disk")).toBe(other);
    expect(() => throwDiskFull("the coordinator's disk")(other)).toThrow(other);
    expect(() => throwDiskFull("the coordinator's disk")(enospc())).toThrow(
      /the coordinator's disk is full/,
    );
  });
});
