// The closure the `artifacts` group moves: 16 store paths of random bytes, 1 KiB to 64 MiB,
// about 256 MiB in all (16 MiB with --quick), each referencing the one before it, so the last
// one's closure is all of them; a second last one (`changed`) makes the one-path change. Built with Debian's nix-bin into a fresh store whose logical
// store dir is shared by every receiving store of the run (the store dir is part of each path's
// hash), with test/helpers/nix.ts's options: no substituters, no sandbox, no build users.

import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NIX_OPTIONS } from '../test/helpers/nix.js';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

/** Path sizes of the full closure: 255.9 MiB, a few big paths and many small ones. */
const SIZES = [
  64 * MiB,
  64 * MiB,
  52 * MiB,
  32 * MiB,
  16 * MiB,
  12 * MiB,
  8 * MiB,
  4 * MiB,
  2 * MiB,
  512 * KiB,
  256 * KiB,
  64 * KiB,
  16 * KiB,
  4 * KiB,
  KiB,
  MiB, // the top: what `changed` changes
];

export interface BenchClosure {
  readonly root: string;
  /** The logical store dir every store of the run shares. */
  readonly storeDir: string;
  /** The store URI holding the closure (the admin's store). */
  readonly store: string;
  /** The last path; its closure is all 16. */
  readonly top: string;
  /** The same closure with only the top changed (built too, in the same store). */
  readonly changedTop: string;
  /** Sum of the files' sizes (NARs are a little larger). */
  readonly bytes: number;
  /** A new empty store at the same logical dir, physically elsewhere (a receiver). */
  emptyStore(name: string): string;
  close(): Promise<void>;
}

function expression(sizes: readonly number[]): string {
  const paths = sizes.map((size, i) => {
    const prev = i === 0 ? '' : `p${i - 1}`;
    const changed = i === sizes.length - 1 ? ' changed' : '';
    return `  p${i} = derivation {
    name = "bench-art-${i}"; inherit system seed${changed}; builder = "/bin/sh";
    deps = [ ${prev} ];
    args = [ "-c" "/bin/mkdir -p $out && /bin/head -c ${size} /dev/urandom > $out/blob && echo \\"$deps\\" > $out/deps" ];
  };`;
  });
  return `{ seed, changed ? "0", system ? builtins.currentSystem }:\nrec {\n${paths.join('\n')}\n}\n`;
}

/** Builds the closure (full or quick sizes) into a fresh store under the temp dir. */
export async function benchClosure(quick: boolean): Promise<BenchClosure> {
  const sizes = quick ? SIZES.map((s) => Math.max(KiB, s / 16)) : SIZES;
  const root = await mkdtemp(join(tmpdir(), 'flt-bench-art-'));
  const storeDir = join(root, 'nix/store');
  const store = `local?store=${storeDir}&state=${root}/admin/var&log=${root}/admin/log`;
  const close = async () => {
    await run('chmod', ['-R', 'u+w', root]).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  try {
    const file = join(root, 'closure.nix');
    await writeFile(file, expression(sizes));
    const last = `p${sizes.length - 1}`;
    const seed = String(Date.now());
    const args = ['--store', store, ...NIX_OPTIONS, '--no-out-link', file, '-A', last];
    const build = async (changed: string) =>
      (
        await run('nix-build', [...args, '--argstr', 'seed', seed, '--argstr', 'changed', changed])
      ).stdout.trim();
    const top = await build('0');
    const changedTop = await build('1');
    return {
      root,
      storeDir,
      store,
      top,
      changedTop,
      bytes: sizes.reduce((a, b) => a + b, 0),
      emptyStore: (name) =>
        `local?store=${storeDir}&real=${root}/${name}/store&state=${root}/${name}/var&log=${root}/${name}/log`,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
