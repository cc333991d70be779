// `flt doctor`: checks the state dir's document store and, when there is one, its artifact store
// (blobs against their chunk lists and SHA-256, the path index, index entries whose blob is
// missing) without changing anything, and reports every problem with its code, one line each.
// Exits 1 when it finds any.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { blobHasher } from '../../../sync/blob-hash.js';
import { FltError } from '../../../sync/errors.js';
import { BlobStore } from '../../../stores/blob-store.js';
import { FsStore } from '../../../stores/fs-store.js';
import type { StoreProblem } from '../../../stores/store.js';
import { ArtifactIndex } from '../../artifacts/index.js';
import { ARTIFACTS_DIR, blake3Hashing, decodeStoredEntry, narKey } from '../../artifacts/store.js';
import type { Invocation } from '../invocation.js';

export async function runDoctor({ config, out }: Invocation): Promise<void> {
  const dir = join(config.stateDir, 'repo');
  const artDir = join(config.stateDir, ARTIFACTS_DIR);
  const hasRepo = existsSync(dir);
  const hasArtifacts = existsSync(artDir);
  if (!hasRepo && !hasArtifacts) {
    out.line(`no document store in ${config.stateDir}: nothing to check`);
    return;
  }
  const problems = hasRepo ? await FsStore.check(dir) : [];
  let artifacts: { dir: string; problems: StoreProblem[] } | undefined;
  if (hasArtifacts) {
    const index = await ArtifactIndex.check(artDir, { decode: decodeStoredEntry });
    const blobs = await BlobStore.check(artDir, {
      hashing: blake3Hashing(await blobHasher()),
      keyOf: narKey,
      expect: index.blobKeys,
    });
    artifacts = { dir: artDir, problems: [...index.problems, ...blobs] };
  }
  const all = [...problems, ...(artifacts?.problems ?? [])];
  if (config.json)
    out.json({ store: hasRepo ? dir : null, problems, ...(artifacts ? { artifacts } : {}) });
  else {
    const said = (n: number) => (n === 0 ? 'no problems' : `${n} problem(s)`);
    if (hasRepo) out.line(`checked ${dir}: ${said(problems.length)}`);
    if (artifacts) out.line(`checked ${artDir}: ${said(artifacts.problems.length)}`);
    for (const p of all) out.line(`${p.code} ${p.file}: ${p.detail}`);
  }
  if (all.length > 0) {
    const where = [hasRepo ? dir : undefined, artifacts ? artDir : undefined].filter(Boolean);
    throw new FltError(
      'STORE_CORRUPT',
      `${all.length} problem(s) in ${where.join(' and ')}; corrupt chunks and blobs are moved to .quarantine/ when the node next reads them`,
    );
  }
}
