// Nix stores for the artifact tests (design §9), built from test/fixtures/artifacts.nix with
// Debian's nix-bin, no daemon, no network (test/helpers/nix.ts's options):
// - store A `local?store=L&state=…` at a fresh logical dir L = <tmp>/flt-art-<rand>/nix/store builds
//   the closure lib1 <- lib2 <- app <- top (and the changed tops for change());
// - the admin's store B `local?store=L&real=<root>/admin/store&state=…` gets the closure through
//   `nix-store --export | --import` (no signature needed: admin side only): same logical dir (the
//   store dir is part of every path's hash), another physical place;
// - A's files are then removed, so L is free for the agent's store C `local?store=L&state=…`
//   (physical = logical, so an activation runs the agent's own copy). C starts empty.
// Measured (Nix 2.8.0): building into B itself (real != store) makes Nix build in a chroot, where
// /bin/sh is missing ("executing '/bin/sh': No such file or directory") unless
// `--option extra-sandbox-paths '/bin /lib /lib64 /usr'` is given, and that needs root (mount
// namespaces). So change() does not build: the changed tops are built in A at the start and kept
// as `nix-store --export` files; change() imports the next one into B.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fixtureFile, NIX_OPTIONS } from './nix.js';

export { NIX_OPTIONS };

const run = promisify(execFile);
const FIXTURE = fixtureFile('artifacts.nix');
const NAMES = ['lib1', 'lib2', 'app', 'top'] as const;
/** How many changed tops are built up front (change() can be called this many times). */
export const CHANGES = 3;

export type ArtifactName = (typeof NAMES)[number];

export interface ArtifactStores {
  /** The temp dir holding everything; remove with close(). */
  readonly root: string;
  /** Logical store dir L shared by B and C (`<root>/nix/store`). */
  readonly storeDir: string;
  /** The admin's store B (URI for `--store`): L logically, `<root>/admin/store` physically. */
  readonly admin: string;
  /** Where B's files really are. */
  readonly adminReal: string;
  /** The agent's store C (URI): L, physically L too; empty at the start. */
  readonly agent: string;
  /** The fixture's paths in B. */
  readonly paths: Readonly<Record<ArtifactName, string>>;
  /** `nix-store -qR top` in B, dependencies first. */
  readonly closure: readonly string[];
  /** Imports the next changed top into B (same app, lib2); its path. At most CHANGES calls. */
  change(): Promise<string>;
  /** Removes the temp dir (Nix makes store files read-only: made writable first). */
  close(): Promise<void>;
}

/** Runs nix-store with `args`; stdout. */
export async function nixStore(store: string, ...args: string[]): Promise<string> {
  return (await run('nix-store', ['--store', store, ...args], { maxBuffer: 64 << 20 })).stdout;
}

/** `nix-store --export PATHS` from one store piped into `nix-store --import` of another. */
export async function copyPaths(from: string, to: string, paths: readonly string[]): Promise<void> {
  const exp = spawn('nix-store', ['--store', from, '--export', ...paths], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const imp = spawn('nix-store', ['--store', to, '--import'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  exp.stdout.pipe(imp.stdin);
  const errs: string[] = [];
  exp.stderr.on('data', (d: Buffer) => errs.push(d.toString()));
  imp.stderr.on('data', (d: Buffer) => errs.push(d.toString()));
  const codes = await Promise.all(
    [exp, imp].map((p) => new Promise<number | null>((done) => p.on('close', done))),
  );
  if (codes.some((c) => c !== 0)) throw new Error(`nix-store export/import: ${errs.join('')}`);
}

async function checkNix(): Promise<void> {
  await run('nix-build', ['--version']).catch(() => {
    throw new Error('nix-build not found: install Debian nix-bin (apt-get install nix-bin)');
  });
}

/** Builds the fixture closure for `seed` into fresh stores A -> B, leaving L free for C. */
export async function artifactStores(opts: { seed?: string } = {}): Promise<ArtifactStores> {
  await checkNix();
  const seed = opts.seed ?? randomBytes(6).toString('hex');
  const root = await mkdtemp(join(tmpdir(), 'flt-art-'));
  const storeDir = join(root, 'nix/store');
  const storeA = `local?store=${storeDir}&state=${root}/a/var&log=${root}/a/log`;
  const adminReal = join(root, 'admin/store');
  const admin = `local?store=${storeDir}&real=${adminReal}&state=${root}/admin/var&log=${root}/admin/log`;
  const agent = `local?store=${storeDir}&state=${root}/agent/var&log=${root}/agent/log`;
  const close = async () => {
    await run('chmod', ['-R', 'u+w', root]).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  try {
    const build = async (changed: number, attrs: readonly string[]) => {
      const args = ['--store', storeA, ...NIX_OPTIONS, '--no-out-link', FIXTURE];
      args.push(...attrs.flatMap((a) => ['-A', a]), '--argstr', 'seed', seed);
      args.push('--argstr', 'changed', String(changed));
      const out = (await run('nix-build', args)).stdout.trim().split('\n');
      if (out.length !== attrs.length) throw new Error(`nix-build printed ${out.join(' ')}`);
      return out;
    };
    const built = await build(0, NAMES);
    const paths = Object.fromEntries(NAMES.map((n, i) => [n, built[i]!])) as Record<
      ArtifactName,
      string
    >;
    const closure = (await nixStore(storeA, '-qR', paths.top)).trim().split('\n');
    await copyPaths(storeA, admin, closure);
    // The changed tops, kept as export files (A's files go away below).
    const changes: string[] = [];
    for (let n = 1; n <= CHANGES; n++) {
      const [top] = await build(n, ['top']);
      const file = join(root, `top-${n}.export`);
      await run('sh', [
        '-c',
        `nix-store --store "$1" --export "$2" > "$3"`,
        'sh',
        storeA,
        top!,
        file,
      ]);
      changes.push(`${top}\n${file}`);
    }
    await run('chmod', ['-R', 'u+w', storeDir, join(root, 'a')]);
    await rm(storeDir, { recursive: true });
    await rm(join(root, 'a'), { recursive: true });
    let next = 0;
    const change = async () => {
      const entry = changes[next++];
      if (entry === undefined) throw new Error(`change() called more than ${CHANGES} times`);
      const [top, file] = entry.split('\n') as [string, string];
      const imp = spawn('nix-store', ['--store', admin, '--import'], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let err = '';
      imp.stderr.on('data', (d: Buffer) => (err += d.toString()));
      imp.stdin.end(await readFile(file));
      const code = await new Promise<number | null>((done) => imp.on('close', done));
      if (code !== 0) throw new Error(`nix-store --import: ${err}`);
      return top;
    };
    return { root, storeDir, admin, adminReal, agent, paths, closure, change, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A Nix signing key pair made by `nix-store --generate-binary-cache-key NAME` in `dir`. */
export async function nixKeys(
  name: string,
  dir: string,
): Promise<{ secretFile: string; publicFile: string; publicKey: string; secretKey: string }> {
  const secretFile = join(dir, `${name}.sk`);
  const publicFile = join(dir, `${name}.pk`);
  await run('nix-store', ['--generate-binary-cache-key', name, secretFile, publicFile]);
  await chmod(secretFile, 0o600);
  return {
    secretFile,
    publicFile,
    publicKey: (await readFile(publicFile, 'utf8')).trim(),
    secretKey: (await readFile(secretFile, 'utf8')).trim(),
  };
}
