// src/artifacts/nix-query.ts and cache.ts against real Nix (Debian nix-bin) and the stores of
// test/helpers/artifacts.ts: the closure and metadata equal what Nix itself says; a file://
// cache written from the admin's store B and signed with K substitutes into a separate store
// with require-sigs (verify-path passes, narHashes equal); an untrusted signer, a flipped NAR
// byte and a writer killed mid-NAR are refused or leave nothing visible.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheUrl, NixCache, substitute, substituteError } from '../src/artifacts/cache.js';
import { narHashName, type NarMeta } from '../src/artifacts/meta.js';
import { parseSigningKey, verifySig, parsePublicKey } from '../src/artifacts/nix-key.js';
import {
  closureMetas,
  closureOf,
  dumpDb,
  dumpNar,
  invalidPaths,
  signMeta,
} from '../src/artifacts/nix-query.js';
import { nix32 } from '../src/artifacts/nix32.js';
import { codeOf } from '../src/errors.js';
import { artifactStores, nixKeys, nixStore, type ArtifactStores } from './helpers/artifacts.js';

type Keys = Awaited<ReturnType<typeof nixKeys>>;
let s: ArtifactStores;
let k: Keys;
let e: Keys;
let metas: NarMeta[];

beforeAll(async () => {
  s = await artifactStores();
  k = await nixKeys('flt-test-k', s.root);
  e = await nixKeys('flt-test-e', s.root);
  metas = await closureMetas([s.paths.top], s.admin);
}, 120_000);
afterAll(async () => s?.close());

/** Another store at the same logical dir with its own physical place and db; empty. */
function freshStore(name: string): string {
  const r = join(s.root, name);
  return `local?store=${s.storeDir}&real=${r}/store&state=${r}/var&log=${r}/log`;
}

/** Writes a cache at `s.root/<name>` with every path of the closure, signed with `key`. */
async function writeCache(name: string, key: Keys): Promise<NixCache> {
  const cache = await NixCache.open(join(s.root, name), s.storeDir);
  const sk = parseSigningKey(key.secretKey);
  for (const m of metas) await cache.putNar(signMeta(m, sk), dumpNar(m, s.admin));
  return cache;
}

async function sha256Nix32(stream: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c);
  return `sha256:${nix32(h.digest())}`;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('nix-query', () => {
  it('gives the closure and the metadata Nix itself reports, and the NAR Nix hashes', async () => {
    const { paths } = s;
    expect(await closureOf([paths.top], s.admin)).toEqual(s.closure);
    expect(await closureOf([paths.app], s.admin)).toEqual([paths.lib1, paths.lib2, paths.app]);
    expect(metas.map((m) => m.path)).toEqual(s.closure);
    const q = async (flag: string, p: string) => (await nixStore(s.admin, '-q', flag, p)).trim();
    for (const m of metas) {
      expect(m.narHash).toBe(await q('--hash', m.path));
      expect(String(m.narSize)).toBe(await q('--size', m.path));
      const refs = (await q('--references', m.path)).split('\n').filter((l) => l !== '');
      expect(m.references).toEqual(refs.sort());
      expect(m.deriver ?? 'unknown-deriver').toBe(await q('--deriver', m.path));
      expect(m.sigs).toEqual([]);
      expect(await sha256Nix32(dumpNar(m, s.admin))).toBe(m.narHash);
    }
    const byPath = new Map<string, NarMeta>(metas.map((m) => [m.path, m]));
    expect(byPath.get(paths.top)!.references).toEqual([paths.app, paths.lib2].sort());
    expect(byPath.get(paths.lib1)!.narSize).toBeGreaterThan(3 << 20);
    expect(await invalidPaths(s.closure, s.admin)).toEqual([]);
    expect(await invalidPaths(s.closure, s.agent)).toEqual(s.closure);
  });

  it('refuses a path the store lacks, or outside its directory, with a code', async () => {
    const missing = `${s.storeDir}/00000000000000000000000000000000-missing`;
    for (const p of [
      () => closureOf([missing], s.admin),
      () => dumpDb([s.paths.lib1, missing], s.admin),
    ]) {
      const err = await rejection(p());
      expect(codeOf(err)).toBe('NOT_IN_STORE');
      expect(String(err)).toContain(missing);
    }
    // The agent's store is empty: top is not in it.
    expect(codeOf(await rejection(closureOf([s.paths.top], s.agent)))).toBe('NOT_IN_STORE');
    expect(
      codeOf(await rejection(sha256Nix32(dumpNar({ path: missing, narSize: 1 }, s.admin)))),
    ).toBe('NOT_IN_STORE');
    const other = '/nix/store/00000000000000000000000000000000-elsewhere';
    expect(codeOf(await rejection(closureOf([other], s.admin)))).toBe('BAD_STORE_PATH');
    expect(codeOf(await rejection(closureOf(['not-a-path'], s.admin)))).toBe('BAD_STORE_PATH');
  });

  it('says nix-store is missing when it is not on PATH', async () => {
    const saved = process.env.PATH;
    process.env.PATH = join(s.root, 'no-such-bin');
    try {
      const err = await rejection(closureOf([s.paths.top], s.admin));
      expect(codeOf(err)).toBe('IO');
      expect(String(err)).toMatch(/nix-store: not installed/);
      const err2 = await rejection(sha256Nix32(dumpNar(metas.at(-1)!, s.admin)));
      expect(String(err2)).toMatch(/nix-store: not installed/);
    } finally {
      process.env.PATH = saved;
    }
  });

  it('signs a meta so that Nix keys verify it, adding to existing sigs once', () => {
    const sk = parseSigningKey(k.secretKey);
    const signed = signMeta(metas[0]!, sk);
    expect(signed.sigs).toHaveLength(1);
    expect(verifySig(signed, signed.sigs[0]!, [parsePublicKey(k.publicKey)])).toBe('ok');
    expect(signMeta(signed, sk)).toBe(signed);
    const both = signMeta(signed, parseSigningKey(e.secretKey));
    expect(both.sigs).toEqual([signed.sigs[0], expect.stringMatching(/^flt-test-e:/)]);
  });
});

describe('file:// cache and substitute', () => {
  it('substitutes a closure signed with a trusted key into a separate store, verified', async () => {
    const cache = await writeCache('cache-k', k);
    expect(cache.url).toBe(cacheUrl(cache.dir, s.storeDir));
    expect(cache.url).toContain('?store=');
    expect(await readFile(join(cache.dir, 'nix-cache-info'), 'utf8')).toContain(
      `StoreDir: ${s.storeDir}\n`,
    );
    const top = metas.at(-1)!;
    expect(await readFile(cache.narinfoFile(top.path), 'utf8')).toContain('Compression: none');
    expect((await stat(cache.narFile(top))).size).toBe(top.narSize);

    await substitute([s.paths.top], {
      store: s.agent,
      cacheDir: cache.dir,
      storeDir: s.storeDir,
      trustedKeys: [k.publicKey],
      gcRoot: join(s.root, 'roots', 'current'),
    });
    for (const m of metas) {
      await nixStore(s.agent, '--verify-path', m.path); // rejects on a non-zero exit
      expect((await nixStore(s.agent, '-q', '--hash', m.path)).trim()).toBe(m.narHash);
      expect((await nixStore(s.agent, '-q', '--hash', m.path)).trim()).toBe(
        (await nixStore(s.admin, '-q', '--hash', m.path)).trim(),
      );
    }
    expect(await invalidPaths(s.closure, s.agent)).toEqual([]);
  });

  it('refuses a cache signed by an untrusted key: UNTRUSTED_SIGNATURE, nothing valid', async () => {
    const cache = await writeCache('cache-e', e);
    const store = freshStore('d-untrusted');
    const err = await rejection(
      substitute([s.paths.top], {
        store,
        cacheDir: cache.dir,
        storeDir: s.storeDir,
        trustedKeys: [k.publicKey],
      }),
    );
    expect(codeOf(err)).toBe('UNTRUSTED_SIGNATURE');
    expect(String(err)).toMatch(/is not signed by any of the keys/);
    expect(await invalidPaths(s.closure, store)).toEqual(s.closure);
  });

  it('refuses a NAR with a flipped byte: NAR_HASH_MISMATCH, path invalid, NAR dropped', async () => {
    const cache = await writeCache('cache-flip', k);
    const lib1 = metas.find((m) => m.path === s.paths.lib1)!;
    const file = cache.narFile(lib1);
    const bytes = await readFile(file);
    const at = bytes.length >> 1; // inside the 3 MiB random blob
    bytes[at] = bytes[at]! ^ 0xff;
    await writeFile(file, bytes);
    const store = freshStore('d-flip');
    const err = await rejection(
      substitute([s.paths.lib1], {
        store,
        cacheDir: cache.dir,
        storeDir: s.storeDir,
        trustedKeys: [k.publicKey],
      }),
    );
    expect(codeOf(err)).toBe('NAR_HASH_MISMATCH');
    expect(String(err)).toContain(s.paths.lib1);
    expect(await invalidPaths([s.paths.lib1], store)).toEqual([s.paths.lib1]);
    expect(await cache.has(lib1)).toBe(false);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('writes no NAR whose bytes do not match its meta', async () => {
    const cache = await NixCache.open(join(s.root, 'cache-bad'), s.storeDir);
    const [lib1, lib2] = [metas[0]!, metas[1]!];
    // lib2's bytes under lib1's meta.
    const err = await rejection(cache.putNar(lib1, dumpNar(lib2, s.admin)));
    expect(codeOf(err)).toBe('NAR_HASH_MISMATCH');
    expect(await cache.has(lib1)).toBe(false);
    expect(await readdir(join(cache.dir, 'nar'))).toEqual([]);
  });

  it('leaves no visible half NAR when the writer is killed mid-NAR', async () => {
    const dir = join(s.root, 'cache-crash');
    const lib1 = signMeta(metas[0]!, parseSigningKey(k.secretKey));
    const metaFile = join(s.root, 'lib1.meta.json');
    const narFile = join(s.root, 'lib1.nar');
    await writeFile(metaFile, JSON.stringify(lib1));
    const chunks: Buffer[] = [];
    for await (const c of dumpNar(lib1, s.admin)) chunks.push(c as Buffer);
    await writeFile(narFile, Buffer.concat(chunks));

    const bin = resolve(import.meta.dirname, '../dist/test/helpers/cache-writer.js');
    const child = spawn(process.execPath, [bin, dir, s.storeDir, metaFile, narFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((done) => child.on('exit', done));
    const lines = createInterface({ input: child.stdout });
    const first = await new Promise<string>((done) => lines.once('line', done));
    expect(first).toBe('half');
    // Mid-NAR: a temp with half the bytes exists; nothing under the NAR's name, no narinfo.
    const temps = (await readdir(join(dir, 'nar'))).filter((n) => n.endsWith('.tmp'));
    expect(temps).toHaveLength(1);
    expect((await stat(join(dir, 'nar', temps[0]!))).size).toBe(Math.floor(lib1.narSize / 2));
    child.kill('SIGKILL');
    await exited;

    const names = await readdir(join(dir, 'nar'));
    expect(names).not.toContain(`${narHashName(lib1.narHash)}.nar`);
    expect((await readdir(dir)).filter((n) => n.endsWith('.narinfo'))).toEqual([]);
    const cache = await NixCache.open(dir, s.storeDir); // removes the leftover temp
    expect(await readdir(join(dir, 'nar'))).toEqual([]);
    expect(await cache.has(lib1)).toBe(false);
    const store = freshStore('d-crash');
    const err = await rejection(
      substitute([lib1.path], {
        store,
        cacheDir: dir,
        storeDir: s.storeDir,
        trustedKeys: [k.publicKey],
      }),
    );
    expect(codeOf(err)).toBe('SUBSTITUTE_FAILED');
    expect(String(err)).toContain(`the binary cache has no path ${lib1.path}`);
    expect(await invalidPaths([lib1.path], store)).toEqual([lib1.path]);
  });

  it("maps Nix's refusals to codes", () => {
    const r = (stderr: string) => codeOf(substituteError({ code: 1, stdout: '', stderr }));
    expect(
      r(
        "warning: the substitute for '/x/nix/store/a-b' from 'file:///c' is not signed by any of the keys in 'trusted-public-keys'\nerror: build of '/x' failed\n",
      ),
    ).toBe('UNTRUSTED_SIGNATURE');
    expect(r("error: hash mismatch importing path '/x/nix/store/a-b';\n")).toBe(
      'NAR_HASH_MISMATCH',
    );
    expect(r("error: NAR for '/x/nix/store/a-b' fetched from 'file:///c' is incomplete\n")).toBe(
      'NAR_HASH_MISMATCH',
    );
    expect(r('error: something else\n')).toBe('SUBSTITUTE_FAILED');
    const lacking = substituteError({
      code: 1,
      stdout: '',
      stderr:
        "don't know how to build these paths:\n  /x/nix/store/a-b\nerror: build of '/x/nix/store/a-b' failed\n",
    });
    expect(lacking.message).toBe(
      'the binary cache has no path /x/nix/store/a-b (Nix will not build it here)',
    );
  });
});
