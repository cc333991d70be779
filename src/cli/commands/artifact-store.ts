// `flt admin artifacts stats|gc` (issue 12, README "Artifacts > At the coordinator"): the
// coordinator's artifact store in figures, and its garbage collection run now. Also the one line
// `flt admin status` prints about it (artifactsLine).

import { FltError } from '../../../sync/errors.js';
import type { ArtifactsSummary } from '../../docs/root.js';
import type { Invocation } from '../invocation.js';
import { formatBinaryBytes } from '../progress.js';
import { withAdmin } from './with-admin.js';

/** How long ago `iso` was, coarsely: `40s`, `5m`, `2h`, `3d`. */
export function formatAgo(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/**
 * The status line: `artifacts at the coordinator: 412 paths, 3.1 GiB (+120 MiB partial), 0
 * quarantined, gc 2h ago`.
 */
export function artifactsLine(a: ArtifactsSummary, now = Date.now()): string {
  const partial = a.partialBytes > 0 ? ` (+${formatBinaryBytes(a.partialBytes)} partial)` : '';
  const gc = a.lastGc === null ? 'no gc yet' : `gc ${formatAgo(a.lastGc, now)} ago`;
  const paths = `${a.paths} path${a.paths === 1 ? '' : 's'}`;
  return `artifacts at the coordinator: ${paths}, ${formatBinaryBytes(a.bytes)}${partial}, ${a.quarantined} quarantined, ${gc}`;
}

export async function runArtifactStats(inv: Invocation): Promise<void> {
  const { config, out } = inv;
  const r = await withAdmin(inv, (a) => a.artifacts());
  if (config.json) return out.json(r.stats);
  if (r.offline) out.line(`# offline: from the local replica as of ${r.asOf}`);
  if (r.stats === null) {
    out.line('artifacts at the coordinator: no figures (the coordinator has written none yet)');
    return;
  }
  const s = r.stats;
  out.line(artifactsLine(s));
  out.line(
    `blobs: ${s.blobs} (${s.bytes} bytes), partial uploads: ${s.partialBytes} bytes, ` +
      `last gc: ${s.lastGc ?? 'not since the coordinator started'}`,
  );
}

export async function runArtifactGc(inv: Invocation): Promise<void> {
  const { opts, config, out, args } = inv;
  if (args.length > 0) throw new FltError('BAD_ARGUMENT', 'artifacts gc takes no arguments');
  const dryRun = opts.dryRun === true;
  const r = await withAdmin(inv, (a) => a.artifactsGc(dryRun));
  if (config.json) return out.json(r);
  const verb = r.dryRun ? 'would remove' : 'removed';
  const more = (n: number, shown: number) => (n > shown ? [`  ... and ${n - shown} more`] : []);
  for (const p of r.paths) out.line(`${verb} path ${p}`);
  for (const line of more(r.counts.paths, r.paths.length)) out.line(line);
  for (const b of r.blobs) out.line(`${verb} blob ${b}`);
  for (const line of more(r.counts.blobs, r.blobs.length)) out.line(line);
  for (const b of r.partials) out.line(`${verb} partial upload ${b}`);
  for (const line of more(r.counts.partials, r.partials.length)) out.line(line);
  const c = r.counts;
  out.line(
    `artifacts gc${r.dryRun ? ' (dry run)' : ''}: ${verb} ${c.paths} paths, ${c.blobs} blobs ` +
      `(${formatBinaryBytes(r.bytes)}), ${c.partials} partial uploads`,
  );
}
