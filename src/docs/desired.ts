// The desired document (issue 11; key `flt/v1/doc/desired` derived per agent with
// deriveKeyPairFor), one per agent, written only by the coordinator (roles/deployments.ts): the
// deployment part that agent should run, with the highest seq placed for it. Only that agent and
// the admins receive it; what it holds is trusted for delivery only: the agent verifies the part.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';
import type { NodeId } from '../../sync/ids.js';
import { baseSnapshot } from '../../sync/owned-doc.js';
import type { DerivePurpose } from '../identity/derive.js';
import { exactRecord } from '../trust/canonical.js';
import { type SignedPart, verifyPart } from '../trust/deployment.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

export const DESIRED_KIND = 'flt/desired';
/** The purpose its write key is derived for, per agent (identity/derive.ts, deriveKeyPairFor). */
export const DESIRED_KEY = 'flt/v1/doc/desired' satisfies DerivePurpose;
/** Longest `current` record read: a part of 64 targets is ~6 KB. */
export const MAX_DESIRED_RECORD = 16 * 1024;

export interface DesiredDoc {
  kind: typeof DESIRED_KIND;
  schema: number;
  /** The agent it is for. */
  agent: NodeId;
  /** JSON of DesiredCurrent; absent until the first deployment for the agent. */
  current?: A.ImmutableString;
}

/** What the coordinator placed for the agent. */
export interface DesiredCurrent {
  readonly part: SignedPart;
  /** How many ops the admins document held when placed: the agent waits until it has them. */
  readonly adminOps: number;
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function desiredBase(agent: NodeId): DesiredDoc {
  return { kind: DESIRED_KIND, schema: DOC_SCHEMA, agent };
}

/**
 * The base of `agent`'s desired document `doc` as bytes, and its heads: what the coordinator
 * stores at enrollment and the agent starts its copy from when the coordinator's base has the
 * same head (the enroll answer's `desiredBase`).
 */
export function desiredSnapshot(agent: NodeId, doc: DocumentId) {
  return baseSnapshot(doc, desiredBase(agent));
}

/** The record for `current` (assign it to `d.current` inside a change). */
export function encodeDesired(current: DesiredCurrent): A.ImmutableString {
  return new A.ImmutableString(JSON.stringify({ part: current.part, adminOps: current.adminOps }));
}

/**
 * What a desired document (or its plain copy) asks for: null when nothing yet; the part
 * verified with verifyPart (its codes: BAD_DEPLOYMENT, BAD_SIGNATURE, WRONG_FLEET when
 * `fleetId` is given).
 * @throws FltError BAD_DEPLOYMENT when the record around the part is malformed.
 */
export function readDesired(doc: unknown, fleetId?: string): DesiredCurrent | null {
  if (typeof doc !== 'object' || doc === null) throw bad('not a map');
  const raw = (doc as { current?: unknown }).current;
  if (raw === undefined || raw === null) return null;
  const text = scalarString(raw);
  if (text === undefined || text.length > MAX_DESIRED_RECORD)
    throw bad(`not a string of at most ${MAX_DESIRED_RECORD}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const r = exactRecord(parsed, ['part', 'adminOps']);
  if (r === undefined) throw bad('not a record with exactly part, adminOps');
  const { adminOps } = r;
  if (!Number.isSafeInteger(adminOps) || (adminOps as number) < 0) throw bad('bad adminOps');
  return Object.freeze({ part: verifyPart(r.part, fleetId), adminOps: adminOps as number });
}

function bad(what: string): FltError {
  return new FltError('BAD_DEPLOYMENT', `desired document: ${what}`);
}
