// The rpc envelope codec: every frame on flt/rpc/0 is one of three CBOR maps, validated
// field by field here before anything else looks at it.

import { checkVersion, isRecord } from './codec.js';
import { FltError } from './errors.js';

export const RPC_VERSION = 0;

export type Envelope =
  | {
      readonly t: 'req';
      readonly id: number;
      readonly m: string;
      readonly ms: number;
      readonly b: unknown;
    }
  | { readonly t: 'res'; readonly id: number; readonly b: unknown }
  | { readonly t: 'err'; readonly id: number; readonly code: string; readonly msg: string };

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;
const isShortString = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `rpc: ${what}`);
}

export function decodeEnvelope(value: unknown): Envelope {
  if (!isRecord(value)) bad('envelope is not a map');
  checkVersion(value, RPC_VERSION, 'rpc');
  const { t, id } = value;
  if (!isU32(id)) bad('bad id');
  switch (t) {
    case 'req':
      if (!isShortString(value.m, 100)) bad('bad method name');
      if (!isU32(value.ms) || value.ms === 0) bad('bad deadline');
      return { t, id, m: value.m, ms: value.ms, b: value.b };
    case 'res':
      return { t, id, b: value.b };
    case 'err':
      if (!isShortString(value.code, 64) || typeof value.msg !== 'string') bad('bad error');
      return { t, id, code: value.code, msg: value.msg };
    default:
      return bad(`unknown envelope type ${String(t)}`);
  }
}
