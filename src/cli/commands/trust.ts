// `flt admin enroll-token|approve|revoke|admins|audit`: the admin operations of ARCHITECTURE.md
// §6. Each is signed here with this admin's node key and applied by the coordinator, which
// records it in the audit trail; a refusal exits non-zero with one line naming its code.

import { FltError } from '../../../sync/errors.js';
import { isNodeId, shortId, type NodeId } from '../../../sync/ids.js';
import { parseDuration } from '../../config/index.js';
import type { AuditEntry } from '../../trust/authority.js';
import { textOption } from '../args.js';
import type { Invocation } from '../invocation.js';
import { withAdmin } from './with-admin.js';
import { formatTable } from '../table.js';

/** Enrollment tokens last this long unless --expires says otherwise. */
const DEFAULT_TOKEN_LIFETIME = '1h';

function nodeArg({ args }: Invocation): NodeId {
  const v = args[0] ?? '';
  if (!isNodeId(v)) throw new FltError('BAD_NODE_ID', `${JSON.stringify(v)} is not a node id`);
  return v;
}

export async function runEnrollToken(inv: Invocation) {
  const { opts, config, log, out } = inv;
  const lifetime = parseDuration(textOption(opts, 'expires') ?? DEFAULT_TOKEN_LIFETIME);
  if (lifetime === undefined || lifetime < 1000 || lifetime > 30 * 24 * 3600_000)
    throw new FltError('BAD_ARGUMENT', '--expires: a duration from 1s to 30d, e.g. 1h');
  const t = await withAdmin(inv, (a) => a.enrollToken(lifetime));
  if (config.json) return out.json(t);
  log.info(`one-time token, valid until ${t.expires}; run the agent with --enroll-token TOKEN`);
  out.line(t.token);
}

export async function runApproveRevoke(inv: Invocation, op: 'agent.approve' | 'agent.revoke') {
  const verb = op === 'agent.approve' ? 'approve' : 'revoke';
  const node = nodeArg(inv);
  const index = await withAdmin(inv, (a) => a.submit({ op, node }));
  inv.out.line(`${verb}d ${node} (audit entry ${index})`);
}

export async function runAdminsList(inv: Invocation) {
  const { config, out } = inv;
  const { authority } = await withAdmin(inv, (a) => a.audit());
  if (config.json) return out.json(authority.admins());
  for (const id of authority.admins()) out.line(id);
}

export async function runAdminsChange(inv: Invocation, op: 'admin.add' | 'admin.remove') {
  const node = nodeArg(inv);
  const index = await withAdmin(inv, (a) => a.submit({ op, node }));
  inv.out.line(`${op === 'admin.add' ? 'added' : 'removed'} admin ${node} (audit entry ${index})`);
}

export async function runAudit(inv: Invocation) {
  const { config, out } = inv;
  const { entries } = await withAdmin(inv, (a) => a.audit());
  if (config.json) return out.json(entries);
  const rows = entries.map((e, i) => [String(i), ...describe(e)]);
  out.line(`${entries.length} entries, every signature verified here`);
  out.line(formatTable([['#', 'AT', 'BY', 'OPERATION', 'SUBJECT'], ...rows]));
}

function describe(e: AuditEntry): [string, string, string, string] {
  if (e.kind === 'enroll') return [e.at, shortId(e.issuer), 'enroll (token)', shortId(e.agent)];
  if (e.kind === 'deploy') {
    const { id, part, parts, targets, storePath, at, signer } = e.part;
    const what = `deploy ${id.slice(0, 8)} part ${part + 1}/${parts}`;
    return [at, shortId(signer), what, `${Object.keys(targets).length} targets  ${storePath}`];
  }
  const { body, at, signer } = e.op;
  let subject = 'node' in body ? shortId(body.node) : `token until ${body.expires}`;
  if (body.op === 'agent.label')
    subject += ` ${Object.entries(body.labels)
      .map(([k, v]) => `${k}=${v ?? ''}`)
      .join(' ')}`;
  return [at, shortId(signer), body.op, subject];
}
