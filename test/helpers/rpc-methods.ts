// Rpc methods of the transport-level tests (no fleet): `{ n }` in, `{ n }` out.

import { FltError } from '../../sync/errors.js';
import { ANYONE, type RpcMethod } from '../../sync/rpc.js';

export interface N {
  n: number;
}

export const isN = (v: unknown): N => {
  const n = (v as Partial<N> | null)?.n;
  if (typeof n !== 'number' || !Number.isInteger(n))
    throw new FltError('BAD_MESSAGE', 'n must be an integer');
  return { n };
};

export const method = (name: string, allow: readonly string[] = [ANYONE]): RpcMethod<N, N> => ({
  name,
  allow,
  request: isN,
  response: isN,
});

/** Answers n + 1 at once. */
export const inc = method('test.inc');
/** Never answers. */
export const hang = method('test.hang');
