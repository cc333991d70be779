// `flt doctor`: checks the state dir's document store without changing it, and reports every
// corrupt chunk or leftover temp file with its code. Exits 1 when it finds any.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FltError } from '../../../sync/errors.js';
import { FsStore } from '../../../stores/fs-store.js';
import type { Invocation } from '../invocation.js';

export async function runDoctor({ config, out }: Invocation): Promise<void> {
  const dir = join(config.stateDir, 'repo');
  if (!existsSync(dir)) {
    out.line(`no document store in ${config.stateDir}: nothing to check`);
    return;
  }
  const problems = await FsStore.check(dir);
  if (config.json) out.json({ store: dir, problems });
  else {
    out.line(
      `checked ${dir}: ${problems.length === 0 ? 'no problems' : `${problems.length} problem(s)`}`,
    );
    for (const p of problems) out.line(`${p.code} ${p.file}: ${p.detail}`);
  }
  if (problems.length > 0)
    throw new FltError(
      'STORE_CORRUPT',
      `${problems.length} problem(s) in ${dir}; corrupt chunks are moved to .quarantine/ when the node next reads them`,
    );
}
