// `flt admin push PATH... [--flake REF#nixosConfigurations.HOST]` (issue 12, README "Artifacts >
// Push"), and the push display `flt admin deploy` shares: the closure of each path goes to the
// coordinator, what it lacks only. Input is checked before anything opens (BAD_ARGUMENT).

import { posix } from 'node:path';
import { FltError } from '../../../sync/errors.js';
import type { PushProgress, PushSummary } from '../../artifacts/push.js';
import { formatBytes, formatRate, Progress } from '../progress.js';
import { textOption } from '../args.js';
import type { Invocation } from '../invocation.js';
import { storePathArg } from '../store-path-arg.js';
import { withAdmin } from './with-admin.js';

/** `--flake REF#nixosConfigurations.HOST`, built (its log on stderr): the path and the host. */
export async function flakeArg(
  inv: Invocation,
): Promise<{ path: string; host: string } | undefined> {
  const word = textOption(inv.opts, 'flake');
  if (word === undefined) return undefined;
  const { buildFlake, parseFlakeRef } = await import('../../artifacts/flake.js');
  const ref = parseFlakeRef(word);
  const path = await buildFlake(ref, { store: inv.config.nixStore });
  return { path, host: ref.host };
}

/** The store and the key checked before the admin opens (NOT_IN_STORE, NO/BAD_SIGNING_KEY). */
export async function checkPush(inv: Invocation, paths: readonly string[]) {
  const { preparePush } = await import('../../artifacts/push.js');
  return preparePush(paths, inv.config.nixSigningKey, inv.config.nixStore);
}

/** A display for one push: the callback to hand it, and the summary line at the end. */
export function pushDisplay(inv: Invocation): {
  onProgress: (p: PushProgress) => void;
  finish: () => void;
} {
  const progress = new Progress({ verb: 'push', silent: inv.config.json });
  return {
    onProgress: (p) => {
      progress.update({ bytes: p.bytes, total: p.total, items: p.paths, itemsDone: p.pathsDone });
      const f = p.finished;
      if (f?.error) progress.failure(`failed ${f.path}: ${f.error.code}: ${f.error.message}`);
      else if (f) progress.item(`pushed ${f.path} (${formatBytes(f.narSize)})`);
    },
    finish: () => progress.finish(),
  };
}

/** `pushed 3 of 57 paths (6.0 MB, 1.2 s, 5.0 MB/s); 54 already at the coordinator`. */
export function summaryLine(s: PushSummary): string {
  if (s.pushed.length === 0 && s.failed.length === 0)
    return `push: ${s.paths} paths, all at the coordinator`;
  const rate = s.seconds > 0 ? s.bytesSent / s.seconds : 0;
  return (
    `pushed ${s.pushed.length} of ${s.paths} paths (${formatBytes(s.bytesSent)}, ` +
    `${s.seconds.toFixed(1)} s, ${formatRate(rate)}); ${s.present.length} already at the coordinator`
  );
}

/** The JSON summary of `push --json`. */
export function summaryJson(s: PushSummary) {
  return {
    paths: s.paths,
    pushed: s.pushed,
    present: s.present,
    bytesSent: s.bytesSent,
    seconds: Math.round(s.seconds * 1000) / 1000,
  };
}

export async function runPush(inv: Invocation): Promise<void> {
  const { args, out, config } = inv;
  const paths: string[] = [];
  for (const word of args) paths.push(await storePathArg(word));
  if (paths.length === 0 && textOption(inv.opts, 'flake') === undefined)
    throw new FltError(
      'BAD_ARGUMENT',
      'give the store paths to push (or --flake REF#nixosConfigurations.HOST)',
    );
  if (textOption(inv.opts, 'flake') !== undefined) {
    const { parseFlakeRef } = await import('../../artifacts/flake.js');
    parseFlakeRef(textOption(inv.opts, 'flake')!); // a bad word fails before anything is built
  }
  const built = await flakeArg(inv);
  if (built) paths.push(built.path);
  const wanted = unique(paths);
  const key = await checkPush(inv, wanted); // before anything opens: bad input changes nothing
  const display = pushDisplay(inv);
  const summary = await withAdmin(inv, (admin) =>
    admin.push(wanted, display.onProgress, key),
  ).finally(display.finish);
  if (config.json) return out.json(summaryJson(summary));
  out.line(summaryLine(summary));
}

const unique = (paths: readonly string[]) => [...new Set(paths.map((p) => posix.normalize(p)))];
