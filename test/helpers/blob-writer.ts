// The writer process of test/blob-store.test.ts: writes a deterministic blob into a BlobStore
// chunk by chunk (PartialBlob.write) and prints each chunk index once its write resolved, so the
// test can SIGKILL it halfway and check that a reopened write resumes at the verified length.
//   argv: DIR SEED SIZE       stdout: one line per written chunk: the count written so far
//   stdin: one line per chunk after the first: the go-ahead for the next one (so the test decides
//   where "halfway" is, and its kill lands while the next write runs)
// It never commits; it stops by itself after the last chunk (if nobody killed it).

import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { BlobStore, chunkListOf } from '../../stores/blob-store.js';

/** `size` deterministic bytes for `seed` (SHA-256 in counter mode). */
export function blobBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, n = 0; at < size; at += 32, n++)
    createHash('sha256').update(`${seed}:${n}`).digest().copy(out, at);
  return out;
}

async function main(dir: string, seed: string, size: number): Promise<void> {
  const bytes = blobBytes(seed, size);
  const list = chunkListOf(bytes);
  const key = Buffer.from(list.sha256).toString('hex');
  const store = await BlobStore.open(dir, { syncEvery: 1 });
  const blob = await store.beginPut(key, list);
  const chunk = store.hashing.chunkSize;
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  for (let i = blob.next; i < blob.chunks; i++) {
    if (i > blob.next && (await lines.next()).done) break;
    if (!(await blob.write(i, bytes.subarray(i * chunk, (i + 1) * chunk))))
      throw new Error(`chunk ${i} refused`);
    process.stdout.write(`${i + 1}\n`);
  }
  await blob.close();
  process.exit(0);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dir, seed, size] = process.argv.slice(2);
  main(dir!, seed!, Number(size)).catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
}
