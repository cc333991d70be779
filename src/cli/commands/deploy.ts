// `flt admin deploy|deployments|status|label` (issue 11, README "Deployments"). Input is checked
// before anything opens: a bad word is one BAD_ARGUMENT line and nothing is signed or kept.

import { posix } from 'node:path';
import { FltError, isErrorCode } from '../../../sync/errors.js';
import { shortId } from '../../../sync/ids.js';
import { parseDuration } from '../../config/index.js';
import type { AgentStatus, DeploymentView, TargetProgress } from '../../roles/rollout.js';
import type { SentDeployment } from '../../docs/outbox.js';
import { isLabelKey, isLabelValue } from '../../trust/admin-ops.js';
import {
  DEPLOY_ACTIONS,
  MAX_DEPLOY_VALIDITY_MS,
  type DeployAction,
} from '../../trust/deployment.js';
import { textOption } from '../args.js';
import type { Invocation } from '../invocation.js';
import { withAdmin } from './with-admin.js';
import { formatTable } from '../table.js';
import { artifactsLine } from './artifact-store.js';
import { fetchFigures, LiveLines } from '../progress.js';

const DAY = 86_400_000;
const DEFAULT_EXPIRES = 7 * DAY;
const DEFAULT_TIMEOUT = 15 * 60_000;

function duration(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
) {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms < min || ms > max)
    throw new FltError(
      'BAD_ARGUMENT',
      `--${name}: a duration from ${fmt(min)} to ${fmt(max)}, e.g. 7d`,
    );
  return ms;
}

const fmt = (ms: number) =>
  ms >= DAY ? `${ms / DAY}d` : ms >= 60_000 ? `${ms / 60_000}m` : `${ms / 1000}s`;

/** KEY=VALUE words; `allowEmpty`: KEY= (removal) is accepted as null. */
export function parseLabels(
  words: readonly string[],
  allowEmpty: boolean,
): [string, string | null][] {
  return words.map((w) => {
    const eq = w.indexOf('=');
    const k = eq < 0 ? w : w.slice(0, eq);
    const v = eq < 0 ? undefined : w.slice(eq + 1);
    if (v === undefined || !isLabelKey(k))
      throw new FltError(
        'BAD_ARGUMENT',
        `${JSON.stringify(w)}: labels are KEY=VALUE, KEY lowercase letters, digits and . _ / - (up to 63)`,
      );
    if (v === '') {
      if (!allowEmpty) throw new FltError('BAD_ARGUMENT', `${JSON.stringify(w)}: no value`);
      return [k, null];
    }
    if (!isLabelValue(v))
      throw new FltError(
        'BAD_ARGUMENT',
        `${JSON.stringify(w)}: a value is up to 128 printable characters`,
      );
    return [k, v];
  });
}

export { storePathArg } from '../store-path-arg.js';
import { storePathArg } from '../store-path-arg.js';

export async function runDeploy(inv: Invocation): Promise<void> {
  const { args, opts, config, out } = inv;
  const flake = textOption(opts, 'flake');
  const flakeRef =
    flake === undefined
      ? undefined
      : (await import('../../artifacts/flake.js')).parseFlakeRef(flake);
  if (args.length === 0 && !flakeRef)
    throw new FltError('BAD_ARGUMENT', 'give the store path to deploy (last)');
  // With --flake every word is a target, and with none the flake's HOST is the target.
  const words = flakeRef ? (args.length > 0 ? [...args] : [flakeRef.host]) : args.slice(0, -1);
  const labelWords = Array.isArray(opts.label) ? (opts.label as string[]) : [];
  const labels = parseLabels(labelWords, false) as [string, string][];
  const all = opts.all === true;
  if (words.length === 0 && !all && labels.length === 0)
    throw new FltError(
      'BAD_ARGUMENT',
      'no target: name agents (node id, prefix, hostname), --all or --label KEY=VALUE',
    );
  const action = (textOption(opts, 'action') ?? 'switch') as DeployAction;
  if (!DEPLOY_ACTIONS.includes(action))
    throw new FltError('BAD_ARGUMENT', `--action: one of ${DEPLOY_ACTIONS.join(', ')}`);
  const expiresInMs = duration(
    'expires',
    textOption(opts, 'expires'),
    DEFAULT_EXPIRES,
    60_000,
    MAX_DEPLOY_VALIDITY_MS,
  );
  const timeoutMs = duration(
    'timeout',
    textOption(opts, 'timeout'),
    DEFAULT_TIMEOUT,
    1000,
    7 * DAY,
  );
  const { checkPush, flakeArg, pushDisplay, summaryJson, summaryLine } = await import('./push.js');
  const storePath = flakeRef ? (await flakeArg(inv))!.path : await storePathArg(args.at(-1)!);
  const progress = (line: string) =>
    config.json ? process.stderr.write(line + '\n') : out.line(line);
  // `--no-push`: commander's negatable flag makes opts.push false.
  const display = opts.push === false ? undefined : pushDisplay(inv);
  const key = display ? await checkPush(inv, [storePath]) : undefined;

  await withAdmin(inv, async (admin) => {
    const r = await admin
      .deploy(
        {
          words,
          all,
          labels,
          storePath,
          action,
          expiresInMs,
          ...(display ? { push: { onProgress: display.onProgress, key } } : {}),
        },
        (targets) => {
          const list = targets.map((t) => `${shortId(t.nodeId)} (${t.summary?.hostname ?? '?'})`);
          process.stderr.write(
            `deploying ${storePath} (${action}) to ${targets.length}: ${list.join(', ')}\n`,
          );
        },
      )
      .finally(() => display?.finish());
    if (r.pushed && !config.json) process.stderr.write(`${summaryLine(r.pushed)}\n`);
    const id8 = r.id.slice(0, 8);
    // --json: the push's summary (as `flt admin push --json` prints it) beside the deployment's.
    const pushed = r.pushed ? { pushed: summaryJson(r.pushed) } : {};
    if (r.sent?.error) throw refused(id8, r.sent.error);
    if (r.queued) {
      const text =
        `queued: deployment ${id8} (${r.targets.length} targets) is kept in ${config.stateDir}; ` +
        'it is sent the next time any online flt admin command runs';
      if (!opts.wait)
        return config.json ? out.json({ id: r.id, queued: true, ...pushed }) : out.line(text);
      progress(text);
    } else if (!opts.wait) {
      const a = r.sent!.answer!;
      if (config.json) return out.json({ id: r.id, queued: false, ...a, ...pushed });
      return out.line(answerLine(id8, a));
    }
    // --wait: delivered first (inside the same timeout), then every target terminal.
    const signal = AbortSignal.timeout(timeoutMs);
    let sent = r.sent;
    for (let i = 0; !sent && !signal.aborted; i++) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * (i + 1), 5000)));
      sent = await admin.deliverOne(r.id);
    }
    if (!sent)
      throw new FltError(
        'TIMEOUT',
        `deployment ${id8} is still queued: the coordinator did not answer in time`,
      );
    if (sent.error) throw refused(id8, sent.error);
    if (r.queued) progress(answerLine(id8, sent.answer!));
    else if (!config.json) out.line(answerLine(id8, sent.answer!));
    // A fetching target's figures: redrawn in place on a terminal, a plain line each change else.
    const live = new LiveLines({
      tty: !config.json && process.stderr.isTTY === true,
      plain: progress,
    });
    const final = await admin
      .wait(r.id, r.targets, {
        signal,
        ...(sent.answer ? { answer: sent.answer } : {}),
        onChange: (p) => {
          if (p.state === 'fetching' && p.fetch) return live.set(p.nodeId, progressLine(p));
          live.delete(p.nodeId);
          live.above(progressLine(p));
        },
      })
      .finally(() => live.finish());
    const bad = final.filter((p) => p.state !== 'succeeded');
    if (config.json) out.json({ id: r.id, targets: final, ...pushed });
    if (bad.length > 0)
      throw new FltError('DEPLOY_FAILED', `deployment ${id8}: ${bad.map(describeBad).join(', ')}`);
    if (!config.json) out.line(`deployment ${id8}: all ${final.length} succeeded`);
  });
}

/** The coordinator's refusal as an error: its code when this flt knows it, INTERNAL otherwise. */
function refused(id8: string, error: { code: string; message: string }): FltError {
  const code = isErrorCode(error.code) ? error.code : 'INTERNAL';
  return new FltError(code, `the coordinator refused deployment ${id8}: ${error.message}`);
}

function answerLine(id8: string, a: NonNullable<SentDeployment['answer']>) {
  // A record read back from the outbox keeps at most MAX_SENT_IDS ids per list, and the counts.
  const n = a.counts ?? {
    placed: a.placed.length,
    stale: a.stale.length,
    unknown: a.unknown.length,
  };
  let line = `deployment ${id8}: recorded, ${n.placed} placed`;
  if (n.stale > 0) line += `, ${n.stale} stale: ${a.stale.map(shortId).join(' ')}`;
  if (n.unknown > 0) line += `, ${n.unknown} unknown: ${a.unknown.map(shortId).join(' ')}`;
  return line;
}

/** `3f2a91c0 (web1): fetching 3.9/6.4 MB, 5.1 MB/s, ETA 0:01 (2/3 paths)`, or the state. */
export function progressLine(p: TargetProgress): string {
  const code = p.code ? ` ${p.code}` : '';
  const reason = p.reason ? `: ${p.reason}` : '';
  const fetch = p.state === 'fetching' && p.fetch ? ` ${fetchFigures(p.fetch)}` : '';
  return `${shortId(p.nodeId)} (${p.hostname ?? '?'}): ${p.state}${fetch}${code}${reason}`;
}

function describeBad(p: TargetProgress): string {
  return `${shortId(p.nodeId)} (${p.hostname ?? '?'}) ${p.state}${p.code ? ` ${p.code}` : ''}`;
}

/** A store path as the tables show it: its hash's first 8 characters and its name. */
function short(path: string | null | undefined): string {
  if (!path) return '-';
  const base = posix.basename(path);
  return base.length > 33 ? `${base.slice(0, 8)}..${base.slice(32)}` : base;
}

export async function runStatus(inv: Invocation): Promise<void> {
  const { args, config, out } = inv;
  const query = args[0];
  const r = await withAdmin(inv, (a) => a.status(query));
  if (config.json) return out.json(r.agents);
  if (r.offline) out.line(`# offline: from the local replica as of ${r.asOf}`);
  if (query === undefined) {
    const rows = r.agents.map((s) => statusRow(s));
    out.line(
      formatTable([
        ['NODE', 'HOSTNAME', 'DESIRED', 'CURRENT', 'BOOTED', 'ON DESIRED', 'REBOOT', 'LAST'],
        ...rows,
      ]),
    );
    if (r.artifacts) out.line(artifactsLine(r.artifacts));
    return;
  }
  const s = r.agents[0]!;
  out.line(`${s.nodeId} (${s.hostname ?? '?'})`);
  out.line(
    `desired:  ${s.desired ? `${s.desired.storePath} (${s.desired.action}, ${s.desired.id.slice(0, 8)})` : '-'}`,
  );
  out.line(`current:  ${s.current ?? '-'}`);
  out.line(`booted:   ${s.booted ?? '-'}`);
  out.line(`reboot needed: ${s.rebootNeeded === null ? '?' : s.rebootNeeded ? 'yes' : 'no'}`);
  out.line(`on desired: ${s.onDesired === null ? '-' : s.onDesired ? 'yes' : 'no'}`);
  for (const d of s.deployments ?? []) {
    const code = d.code ? ` ${d.code}` : '';
    const rollback = d.rollback ? ` (rollback: ${d.rollback})` : '';
    const fetch = d.state === 'fetching' && d.fetch ? ` ${fetchFigures(d.fetch)}` : '';
    out.line(
      `\ndeployment ${d.id.slice(0, 8)}  ${d.state}${fetch}${code}${rollback}  ${d.action ?? '?'} ${d.storePath}`,
    );
    out.line(
      `  seq ${d.seq}, signed by ${d.signer ? shortId(d.signer) : '?'}; ${Object.entries(d.times)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    if (d.reason) out.line(`  reason: ${d.reason}`);
    if (d.log) out.line(d.log.replace(/^/gm, '  | '));
  }
}

function statusRow(s: AgentStatus): string[] {
  const f = s.last?.state === 'fetching' ? s.last.fetch : undefined;
  const pct =
    f && f.total > 0 ? ` ${Math.floor((100 * Math.min(f.bytes, f.total)) / f.total)}%` : '';
  const last = s.last
    ? `${s.last.id.slice(0, 8)} ${s.last.state}${pct}${s.last.code ? ` ${s.last.code}` : ''}`
    : '-';
  return [
    shortId(s.nodeId),
    s.hostname ?? '-',
    short(s.desired?.storePath),
    short(s.current),
    short(s.booted),
    s.onDesired === null ? '-' : s.onDesired ? 'yes' : 'no',
    s.rebootNeeded === null ? '?' : s.rebootNeeded ? 'yes' : 'no',
    last,
  ];
}

export async function runDeployments(inv: Invocation): Promise<void> {
  const { config, out } = inv;
  const r = await withAdmin(inv, (a) => a.deployments());
  if (config.json) return out.json(r.deployments);
  if (r.offline) out.line(`# offline: from the local replica as of ${r.asOf}`);
  const rows = r.deployments.map((d: DeploymentView) => [
    d.id.slice(0, 8),
    d.at,
    d.signer ? shortId(d.signer) : '-',
    d.action,
    String(d.targets.length),
    d.where === 'recorded'
      ? Object.entries(d.states)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ')
      : d.where === 'queued'
        ? 'queued (not yet sent)'
        : `refused ${d.error?.code ?? ''}`,
    short(d.storePath),
  ]);
  out.line(formatTable([['ID', 'AT', 'BY', 'ACTION', 'TARGETS', 'STATES', 'SYSTEM'], ...rows]));
}

export async function runLabel(inv: Invocation): Promise<void> {
  const [agent, ...words] = inv.args;
  if (words.length === 0)
    throw new FltError('BAD_ARGUMENT', 'give KEY=VALUE (or KEY= to remove) after the agent');
  const labels = Object.fromEntries(parseLabels(words, true));
  const index = await withAdmin(inv, (a) => a.label(agent ?? '', labels));
  inv.out.line(`labelled ${agent} (audit entry ${index})`);
}
