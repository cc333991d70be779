// The audit document: the coordinator's trail (key `flt/v1/doc/audit`), written only by the
// coordinator's gate (roles/gate.ts): the initial admins, then every admin-signed operation and
// every token enrollment, in the order applied.

import type * as A from '@automerge/automerge';
import type { NodeId } from '../../sync/ids.js';
import type { DerivePurpose } from '../identity/derive.js';
import { DOC_SCHEMA } from './schema.js';

export const AUDIT_KIND = 'flt/audit';
/** The purpose its write key is derived for (identity/derive.ts). */
export const AUDIT_KEY = 'flt/v1/doc/audit' satisfies DerivePurpose;

export interface AuditDoc {
  kind: typeof AUDIT_KIND;
  schema: number;
  coordinator: NodeId;
  /** JSON array of node ids: the admins named in the configuration when the trail began. */
  initialAdmins?: A.ImmutableString;
  /** One JSON AuditEntry each, oldest first; never edited or removed. */
  entries: A.ImmutableString[];
}

/** The document before its first change: what every copy starts from (doc-id.ts). */
export function auditBase(coordinator: NodeId): AuditDoc {
  return { kind: AUDIT_KIND, schema: DOC_SCHEMA, coordinator, entries: [] };
}
