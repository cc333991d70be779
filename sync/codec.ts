// CBOR bodies for the framed protocols (rpc, sync), in the encoding automerge-repo's own
// adapters use (cbor-x, plain maps, byte strings untagged). Decoding untrusted bytes never
// throws anything but BAD_MESSAGE; validation of the shape is each protocol's job.

import { Encoder } from 'cbor-x';
import { FltError } from './errors.js';

const cbor = new Encoder({ tagUint8Array: false, useRecords: false, mapsAsObjects: true });

export function encodeCbor(value: unknown): Uint8Array {
  return cbor.encode(value);
}

export function decodeCbor(bytes: Uint8Array): unknown {
  try {
    return cbor.decode(bytes) as unknown;
  } catch (err) {
    throw new FltError('BAD_MESSAGE', 'undecodable CBOR', { cause: err });
  }
}

/** A message codec: a version number and a validator that checks every field. */
export interface Codec<T> {
  encode(value: T): Uint8Array;
  /** Throws BAD_MESSAGE (or UNSUPPORTED_VERSION) for anything not exactly a valid T. */
  decode(bytes: Uint8Array): T;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Checks the version field `v` every message starts with. */
export function checkVersion(msg: Record<string, unknown>, supported: number, what: string): void {
  if (msg.v !== supported) {
    throw new FltError(
      'UNSUPPORTED_VERSION',
      `${what}: version ${String(msg.v)} (supported: ${supported})`,
    );
  }
}
