// `flt admin enroll-token|approve|revoke|reset|admins|audit`: the admin operations of ARCHITECTURE.md
// §6. Each is signed here with this admin's node key and applied by the coordinator, which
// records it in the audit trail; a refusal exits non-zero with one line naming its code.

import { FltError } from '../../../sync/errors.js';
import { isNodeId, shortId, type NodeId } from '../../../sync/ids.js';
import type { Logger } from '../../../sync/log.js';
import { parseDuration, type Config } from '../../config/index.js';
import { Admin } from '../../roles/admin.js';
import type { OpBody } from '../../trust/admin-ops.js';
import type { AuditEntry } from '../../trust/authority.js';
import type { ParsedArgs } from '../args.js';
import type { Output } from '../output.js';
import { formatTable } from '../table.js';

/** Enrollment tokens last this long unless --expires says otherwise. */
const DEFAULT_TOKEN_LIFETIME = '1h';

async function withOnlineAdmin<T>(config: Config, log: Logger, fn: (a: Admin) => Promise<T>) {
  const admin = await Admin.open(config, log, false);
  try {
    return await fn(admin);
  } finally {
    await admin.close();
  }
}

function nodeArg(args: ParsedArgs, at: number, usage: string): NodeId {
  const v = args.words[at];
  if (v === undefined) throw new FltError('BAD_ARGUMENT', `usage: ${usage}`);
  if (!isNodeId(v)) throw new FltError('BAD_NODE_ID', `${JSON.stringify(v)} is not a node id`);
  return v;
}

export async function runEnrollToken(args: ParsedArgs, config: Config, log: Logger, out: Output) {
  const lifetime = parseDuration(args.options.expires ?? DEFAULT_TOKEN_LIFETIME);
  if (lifetime === undefined || lifetime < 1000 || lifetime > 30 * 24 * 3600_000)
    throw new FltError('BAD_ARGUMENT', '--expires: a duration from 1s to 30d, e.g. 1h');
  const t = await withOnlineAdmin(config, log, (a) => a.enrollToken(lifetime));
  if (config.json) return out.json(t);
  log.info(`one-time token, valid until ${t.expires}; run the agent with --enroll-token TOKEN`);
  out.line(t.token);
}

export async function runApproveRevoke(
  args: ParsedArgs,
  config: Config,
  log: Logger,
  out: Output,
  op: 'agent.approve' | 'agent.revoke',
) {
  const verb = op === 'agent.approve' ? 'approve' : 'revoke';
  const node = nodeArg(args, 1, `flt admin ${verb} NODE_ID`);
  const index = await withOnlineAdmin(config, log, (a) => a.submit({ op, node }));
  out.line(`${verb}d ${node} (audit entry ${index})`);
}

/**
 * `flt admin reset NODE_ID`: the decision on a forked agent (README, "Forks"). Signed and
 * recorded like every admin operation; the coordinator refuses it (BAD_ARGUMENT) unless the
 * agent is forked.
 */
export async function runReset(args: ParsedArgs, config: Config, log: Logger, out: Output) {
  const node = nodeArg(args, 1, 'flt admin reset NODE_ID');
  const index = await withOnlineAdmin(config, log, (a) => a.submit({ op: 'agent.reset', node }));
  out.line(
    `reset ${node} (audit entry ${index}): its facts are taken from the next instance that syncs`,
  );
}

export async function runAdmins(args: ParsedArgs, config: Config, log: Logger, out: Output) {
  const usage = 'flt admin admins add|remove NODE_ID | flt admin admins list';
  const sub = args.words[1];
  if (sub === 'list') {
    const { authority } = await withOnlineAdmin(config, log, (a) => a.audit());
    if (config.json) return out.json(authority.admins());
    for (const id of authority.admins()) out.line(id);
    return;
  }
  if (sub !== 'add' && sub !== 'remove') throw new FltError('BAD_ARGUMENT', `usage: ${usage}`);
  const node = nodeArg(args, 2, usage);
  const body: OpBody = sub === 'add' ? { op: 'admin.add', node } : { op: 'admin.remove', node };
  const index = await withOnlineAdmin(config, log, (a) => a.submit(body));
  out.line(`${sub === 'add' ? 'added' : 'removed'} admin ${node} (audit entry ${index})`);
}

export async function runAudit(config: Config, log: Logger, out: Output) {
  const { entries } = await withOnlineAdmin(config, log, (a) => a.audit());
  if (config.json) return out.json(entries);
  const rows = entries.map((e, i) => [String(i), ...describe(e)]);
  out.line(`${entries.length} entries, every signature verified here`);
  out.line(formatTable([['#', 'AT', 'BY', 'OPERATION', 'SUBJECT'], ...rows]));
}

function describe(e: AuditEntry): [string, string, string, string] {
  if (e.kind === 'enroll') return [e.at, shortId(e.issuer), 'enroll (token)', shortId(e.agent)];
  const { body, at, signer } = e.op;
  const subject = 'node' in body ? shortId(body.node) : `token until ${body.expires}`;
  return [at, shortId(signer), body.op, subject];
}
