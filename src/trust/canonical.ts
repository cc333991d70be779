// Canonical JSON: the one byte form of the signed JSON records of src/trust (admin operations in
// authority.ts, enrollment tokens in tokens.ts), so that a signer and a verifier who built or
// parsed a record independently sign and check the same bytes. Also the field checks those
// records share, each bounded before any regular expression or allocation runs.

/**
 * The JSON text of `value` with object keys sorted (by UTF-16 code units, as `Array#sort` does)
 * at every depth and no whitespace. Only what JSON represents exactly is allowed: plain objects,
 * arrays, strings, finite numbers, booleans and null. Anything else (undefined, functions,
 * symbols, bigints, NaN and the infinities, Dates and other class instances, sparse arrays,
 * symbol keys, cycles) is a TypeError: a programming error, since signed records are built here.
 */
export function canonicalJson(value: unknown): string {
  return write(value, new Set());
}

function write(value: unknown, open: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} is not JSON`);
      return JSON.stringify(value);
    case 'object':
      return writeObject(value, open);
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} is not JSON`);
  }
}

function writeObject(value: object, open: Set<object>): string {
  if (open.has(value)) throw new TypeError('canonicalJson: a cycle is not JSON');
  open.add(value);
  let text: string;
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (let i = 0; i < value.length; i++) {
      if (!Object.hasOwn(value, i)) throw new TypeError('canonicalJson: a sparse array');
      items.push(write(value[i], open));
    }
    text = `[${items.join(',')}]`;
  } else {
    const record = plainRecord(value);
    if (record === undefined || Object.getOwnPropertySymbols(value).length > 0)
      throw new TypeError(`canonicalJson: a ${value.constructor?.name ?? 'object'} is not JSON`);
    const fields = Object.keys(record)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${write(record[k], open)}`);
    text = `{${fields.join(',')}}`;
  }
  open.delete(value);
  return text;
}

/** UTF-8 of `domain` followed by the canonical JSON of `record`: the bytes a signature covers. */
export function signedMessage(domain: string, record: unknown): Uint8Array {
  return new TextEncoder().encode(domain + canonicalJson(record));
}

/** `value` as a record when it is a plain object (what JSON.parse makes), else undefined. */
export function plainRecord(value: unknown): Readonly<Record<string, unknown>> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return undefined;
  return value as Record<string, unknown>;
}

/** `value` as a record when it is a plain object with exactly the own keys `keys`. */
export function exactRecord(
  value: unknown,
  keys: readonly string[],
): Readonly<Record<string, unknown>> | undefined {
  const record = plainRecord(value);
  if (record === undefined) return undefined;
  const own = Object.keys(record);
  if (own.length !== keys.length || !own.every((k) => keys.includes(k))) return undefined;
  return record;
}

const HEX = /^[0-9a-f]+$/;

/** Whether `value` is exactly `bytes` bytes written as lowercase hex. */
export function isHexBytes(value: unknown, bytes: number): value is string {
  return typeof value === 'string' && value.length === bytes * 2 && HEX.test(value);
}

/** `Date#toISOString` always writes 24 characters for years 0000 to 9999. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Whether `value` is a UTC time spelled exactly as `Date#toISOString` spells it. One spelling per
 * instant, so a signed time cannot be rewritten into another string that means the same; the
 * round trip also refuses impossible dates such as February 30.
 */
export function isIsoTime(value: unknown): value is string {
  if (typeof value !== 'string' || value.length !== 24 || !ISO_TIME.test(value)) return false;
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
}

/**
 * A fleet is named by its coordinator's root document id: an automerge-repo id is ~28 base58
 * characters and its URL ~38, so 128 leaves room for other spellings and bounds every record.
 */
export const MAX_FLEET_LENGTH = 128;
const FLEET = /^[\x21-\x7e]+$/;

/** Whether `value` can name a fleet: 1 to MAX_FLEET_LENGTH printable ASCII characters. */
export function isFleetId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= MAX_FLEET_LENGTH &&
    FLEET.test(value)
  );
}
