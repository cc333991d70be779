// The admins document (issue 11; key `flt/v1/doc/admins`), one per fleet, written only by the
// coordinator's gate in the same step as the audit trail: the initial admins and every admin.add /
// admin.remove op, each admin-signed, in trail order. Every agent receives it (the audit doc is
// too big to send to all) and verifies it itself (trust/admin-set.ts).

import * as A from '@automerge/automerge';
import { FltError } from '../../sync/errors.js';
import { isNodeId, type NodeId } from '../../sync/ids.js';
import type { DerivePurpose } from '../identity/derive.js';
import { isFleetId } from '../trust/canonical.js';
import { scalarString } from './scalars.js';
import { DOC_SCHEMA } from './schema.js';

export const ADMINS_KIND = 'flt/admins';
/** The purpose its write key is derived for (identity/derive.ts). */
export const ADMINS_KEY = 'flt/v1/doc/admins' satisfies DerivePurpose;
/** Bounds on what a reader takes from an admins document (a fleet has a handful of admins). */
export const MAX_ADMIN_OPS = 10_000;
const MAX_OP_TEXT = 2048;
const MAX_INITIAL_TEXT = 10_000 * 70;

export interface AdminsDoc {
  kind: typeof ADMINS_KIND;
  schema: number;
  coordinator: NodeId;
  /** The fleet (root document id); set with initialAdmins when the trail begins. */
  fleet?: A.ImmutableString;
  /** JSON array of node ids: the admins the trail began with. */
  initialAdmins?: A.ImmutableString;
  /** One JSON SignedOp each (admin.add / admin.remove only), oldest first; append only. */
  ops: A.ImmutableString[];
}

/** An admins document as read: not yet verified (AdminSet.fromDoc does that). */
export interface AdminsContent {
  fleet: string;
  initialAdmins: NodeId[];
  /** The ops, parsed from JSON only. */
  ops: unknown[];
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function adminsBase(coordinator: NodeId): AdminsDoc {
  return { kind: ADMINS_KIND, schema: DOC_SCHEMA, coordinator, ops: [] };
}

/** Begins the trail (inside a change): the fleet and its initial admins. */
export function writeAdminsStart(d: AdminsDoc, fleet: string, initialAdmins: readonly NodeId[]) {
  d.fleet = new A.ImmutableString(fleet);
  d.initialAdmins = new A.ImmutableString(JSON.stringify(initialAdmins));
}

/** Appends one admin.add / admin.remove op (inside a change). */
export function appendAdminOp(d: AdminsDoc, op: unknown): void {
  d.ops.push(new A.ImmutableString(JSON.stringify(op)));
}

/**
 * The content of an admins document (a document or its plain copy), bounded and parsed; the ops
 * are not verified here.
 * @throws FltError BAD_MESSAGE when malformed or not begun.
 */
export function decodeAdmins(value: unknown): AdminsContent {
  if (typeof value !== 'object' || value === null) bad('not a map');
  const d = value as Record<string, unknown>;
  if (d.kind !== ADMINS_KIND && scalarString(d.kind) !== ADMINS_KIND) bad('not an admins document');
  const fleet = scalarString(d.fleet);
  if (!isFleetId(fleet)) bad('no fleet (not begun)');
  const initialText = scalarString(d.initialAdmins);
  if (initialText === undefined || initialText.length > MAX_INITIAL_TEXT) bad('no initial admins');
  const initialAdmins = parse(initialText, 'initial admins');
  if (!Array.isArray(initialAdmins) || initialAdmins.length === 0 || !initialAdmins.every(isNodeId))
    bad('initial admins: not a list of node ids');
  const ops = d.ops;
  if (!Array.isArray(ops) || ops.length > MAX_ADMIN_OPS)
    bad(`ops: not a list of <= ${MAX_ADMIN_OPS}`);
  const parsed = ops.map((op: unknown, i) => {
    const text = scalarString(op);
    if (text === undefined || text.length > MAX_OP_TEXT)
      bad(`op ${i}: not a string <= ${MAX_OP_TEXT}`);
    return parse(text, `op ${i}`);
  });
  return { fleet, initialAdmins: initialAdmins, ops: parsed };
}

function parse(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return bad(`${what}: not JSON`);
  }
}

function bad(what: string): never {
  throw new FltError('BAD_MESSAGE', `admins document: ${what}`);
}
