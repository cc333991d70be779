// The facts document, version 1: what an agent publishes about its machine, and the validator
// every reader runs on a document that came from another peer. Collectors live next door
// (collect.ts); diff.ts turns two Facts into the writes an agent makes.

import { z } from 'zod';
import { FltError } from '../../sync/errors.js';
import { boundedCopy, MAX_STRING } from './bounded.js';

/** Version of {@link Facts}; bumped on any change a version-1 reader would misread. */
export const FACTS_SCHEMA_VERSION = 1;

/** From os-release(5); absent keys take the defaults that page gives (ID=linux, NAME=Linux). */
export type OsInfo = {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly versionId: string;
  readonly prettyName: string;
  readonly buildId?: string;
};

/** uname -s, -r, -v. `release` is exactly `uname -r`. */
export type KernelInfo = {
  readonly name: string;
  readonly release: string;
  readonly version: string;
};
export type CpuInfo = { readonly model: string; readonly count: number };
export type MemoryInfo = { readonly totalBytes: number };
/** One real (block-device, pool or network) filesystem. */
export type DiskInfo = { readonly mount: string; readonly fs: string; readonly totalBytes: number };
/** A non-loopback interface; `addresses` are CIDR strings such as `192.0.2.2/24`. */
export type NetworkInfo = {
  readonly name: string;
  readonly mac?: string;
  readonly addresses: readonly string[];
};
export type NixInfo = { readonly version: string };
/** NixOS generation state; `rebootRequired` when the booted kernel/initrd/modules differ. */
export type NixosInfo = {
  readonly version: string;
  readonly currentSystem?: string;
  readonly bootedSystem?: string;
  readonly rebootRequired?: boolean;
};

/**
 * The stable facts of one machine. Declared as type aliases (not interfaces) so a Facts value
 * is assignable to `Record<string, unknown>`, which diff.ts walks generically.
 */
export type Facts = {
  readonly schema: typeof FACTS_SCHEMA_VERSION;
  /** ISO 8601 time of collection. Never part of a diff. */
  readonly collectedAt: string;
  readonly hostname: string;
  readonly os: OsInfo;
  readonly kernel: KernelInfo;
  /** `uname -m` style: x86_64, aarch64. */
  readonly arch: string;
  readonly cpus: CpuInfo;
  readonly memory: MemoryInfo;
  readonly disks: readonly DiskInfo[];
  readonly network: readonly NetworkInfo[];
  /** sha256 hex of `flt/v1/machine-id:` + /etc/machine-id; the raw id never leaves the host. */
  readonly machineIdHash?: string;
  readonly nix?: NixInfo;
  readonly nixos?: NixosInfo;
  /** JSON from `nixos-facter` or `facter --json`, at most 1 MiB. */
  readonly facter?: unknown;
  /** One line per fact that could not be collected, e.g. `nix: not installed`. */
  readonly notes: readonly string[];
};

/** Values that change on every sample; kept out of the facts history. */
export type VolatileFacts = {
  readonly uptimeSeconds: number;
  readonly load: readonly [number, number, number];
  readonly memoryAvailableBytes: number;
  readonly sampledAt: string;
};

const text = z.string().max(MAX_STRING);
const count = z.number().int().nonnegative();

const factsSchema: z.ZodType<Facts> = z.object({
  schema: z.literal(FACTS_SCHEMA_VERSION),
  collectedAt: z.iso.datetime(),
  hostname: text,
  os: z.object({
    id: text,
    name: text,
    version: text,
    versionId: text,
    prettyName: text,
    buildId: text.optional(),
  }),
  kernel: z.object({ name: text, release: text, version: text }),
  arch: text,
  cpus: z.object({ model: text, count }),
  memory: z.object({ totalBytes: count }),
  disks: z.array(z.object({ mount: text, fs: text, totalBytes: count })),
  network: z.array(z.object({ name: text, mac: text.optional(), addresses: z.array(text) })),
  machineIdHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  nix: z.object({ version: text }).optional(),
  nixos: z
    .object({
      version: text,
      currentSystem: text.optional(),
      bootedSystem: text.optional(),
      rebootRequired: z.boolean().optional(),
    })
    .optional(),
  facter: z.unknown().optional(),
  notes: z.array(text),
});

/** The facts the fleet table's summary is made of (docs/root.ts summarize), by the same rules. */
export type SummaryFacts = Pick<Facts, 'schema' | 'hostname' | 'arch'> & {
  readonly os: Pick<OsInfo, 'name' | 'prettyName'>;
  readonly kernel: Pick<KernelInfo, 'release'>;
  readonly nixos?: Pick<NixosInfo, 'version'>;
};

const summarySchema: z.ZodType<SummaryFacts> = z.object({
  schema: z.literal(FACTS_SCHEMA_VERSION),
  hostname: text,
  os: z.object({ name: text, prettyName: text }),
  kernel: z.object({ release: text }),
  arch: text,
  nixos: z.object({ version: text }).optional(),
});

const load = z.number().nonnegative();
const volatileSchema: z.ZodType<VolatileFacts> = z.object({
  uptimeSeconds: z.number().nonnegative(),
  load: z.tuple([load, load, load]),
  memoryAvailableBytes: count,
  sampledAt: z.iso.datetime(),
});

/**
 * Validates facts read from another peer's document and returns a plain, bounded copy (unknown
 * keys dropped). Throws FltError `BAD_MESSAGE` naming the first bad field, or
 * `UNSUPPORTED_VERSION` when `schema` is a version this reader does not know.
 */
export function validateFacts(value: unknown): Facts {
  const copy = boundedCopy(value, 'facts');
  checkVersion(copy);
  return parse(factsSchema, copy, 'facts');
}

/**
 * Validates the summary's fields of facts read from another peer's document (docs/facts.ts
 * summaryFields reads only those) as validateFacts validates them, with its codes; the other
 * fields are not looked at.
 */
export function validateSummaryFacts(value: unknown): SummaryFacts {
  const copy = boundedCopy(value, 'facts');
  checkVersion(copy);
  return parse(summarySchema, copy, 'facts');
}

/** UNSUPPORTED_VERSION when facts say they are of a schema newer than this reader's. */
function checkVersion(copy: unknown): void {
  if (typeof copy !== 'object' || copy === null || !('schema' in copy)) return;
  const version = copy.schema;
  if (typeof version === 'number' && Number.isInteger(version) && version > FACTS_SCHEMA_VERSION)
    throw new FltError('UNSUPPORTED_VERSION', `facts schema ${version} is newer than this flt`);
}

/** Validates volatile facts from another peer, like {@link validateFacts}. */
export function validateVolatileFacts(value: unknown): VolatileFacts {
  return parse(volatileSchema, boundedCopy(value, 'volatile'), 'volatile');
}

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [where, ...(issue?.path ?? []).map(String)].join('.');
  throw new FltError('BAD_MESSAGE', `facts field ${field}: ${issue?.message ?? 'invalid'}`, {
    cause: result.error,
  });
}
