// A coordinator blob corrupted on disk (issue 12, design §3 "Coordinator-side corruption", §9):
// `flt doctor` (a child process) reports it; the agent's fetch of that path fails BLOB_CORRUPT
// (status `waiting`, `waitingFor: 'artifacts'`, the code), while the other paths still reach the
// agent's cache; after a re-push of that path the next retry completes and activates.

import { execFile } from 'node:child_process';
import { chmod, open } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK } from '../sync/blob-hash.js';
import { createLogger } from '../sync/log.js';
import { hashPart, narHashName, type StorePath } from '../src/artifacts/meta.js';
import { artifactFleet, expectSameInStores, type ArtifactFleet } from './helpers/artifact-fleet.js';
import { FLT_BIN, LOCAL } from './helpers/flt.js';

const run = promisify(execFile);
const log = createLogger('error', 'artifacts-corrupt', () => undefined);
let af: ArtifactFleet;

beforeAll(async () => {
  af = await artifactFleet(log);
}, 240_000);
afterAll(async () => af?.close());

describe('a corrupt blob at the coordinator', () => {
  it('doctor reports it, the agent waits with BLOB_CORRUPT, the rest transfers; a re-push completes', async () => {
    const { fx, fleet } = af;
    const nars = await af.push(fx.closure);
    const lib2 = nars.get(fx.paths.lib2)!;
    const file = fleet.coordinator.artifacts.blobs.dataPath(narHashName(lib2.meta.narHash));
    await chmod(file, 0o644);
    const fh = await open(file, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, CHUNK + 7);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, CHUNK + 7);
    await fh.close();
    const doctor = await run(
      process.execPath,
      [FLT_BIN, 'doctor', '--state-dir', join(af.dir, 'fleet', 'coordinator'), ...LOCAL],
      { encoding: 'utf8' },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toContain(`STORE_CORRUPT ${file}: chunk 1 does not match its hash`);

    const agent = await af.agent('agent1', { 'nix-trusted-keys': [af.publicKey] });
    const id = await af.deploy(agent, fx.paths.top);
    const waiting = await af.until(
      agent,
      id,
      (r) => r.state === 'waiting' && r.code !== undefined,
      'waiting with a code',
    );
    expect(waiting).toMatchObject({ waitingFor: 'artifacts', code: 'BLOB_CORRUPT' });
    expect(waiting.reason).toContain(fx.paths.lib2);
    // The other three paths are in the agent's cache, lib2 is not; nothing activated.
    const cache = join(af.dir, 'fleet', 'agent1', 'artifacts', 'cache');
    const inCache = (p: string) => existsSync(join(cache, `${hashPart(p as StorePath)}.narinfo`));
    expect([fx.paths.lib1, fx.paths.app, fx.paths.top].map(inCache)).toEqual([true, true, true]);
    expect(inCache(fx.paths.lib2)).toBe(false);
    expect(await af.activations('agent1')).toEqual([]);

    // The coordinator dropped lib2's index entry: a re-push sends it, the retry completes.
    await af.push([fx.paths.lib2]);
    const done = await af.until(agent, id, (r) => r.state === 'succeeded', 'succeeded');
    expect(done.code).toBeUndefined();
    expect(await af.activations('agent1')).toEqual(['top switch']);
    for (const r of await expectSameInStores(fx, fx.closure)) {
      expect(r.ok, `verify-path ${r.path}`).toBe(true);
      expect(r.agent).toBe(r.admin);
    }
  }, 240_000);
});
