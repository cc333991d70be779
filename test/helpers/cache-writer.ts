// A child process for the crash test of src/artifacts/cache.ts: writes the NAR in file NAR
// into the cache at DIR with NixCache.putNar, but its source gives only the first half of the
// bytes, prints `half` once those are written, and then never ends (the test SIGKILLs it).
// Usage: node cache-writer.js DIR STORE_DIR META_JSON_FILE NAR_FILE

import { readFile } from 'node:fs/promises';
import { NixCache } from '../../src/artifacts/cache.js';
import { decodeNarMeta } from '../../src/artifacts/meta.js';

const [dir, storeDir, metaFile, narFile] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
];
const meta = decodeNarMeta(JSON.parse(await readFile(metaFile, 'utf8')));
const nar = await readFile(narFile);
const cache = await NixCache.open(dir, storeDir);

async function* halfThenStall(): AsyncGenerator<Uint8Array> {
  const half = Math.floor(nar.length / 2);
  for (let at = 0; at < half; at += 64 * 1024)
    yield nar.subarray(at, Math.min(half, at + 64 * 1024));
  process.stdout.write('half\n');
  // Bounded: the test kills us long before this.
  await new Promise((resolve) => setTimeout(resolve, 120_000));
  process.exit(3);
}

await cache.putNar(meta, halfThenStall());
