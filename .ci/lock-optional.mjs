// Keeps package-lock.json installable with `npm ci` when the registry lacks some platform
// addons (here: @number0/iroh linux-arm64 and others, @cbor-extract 2.2.3). `npm install`
// drops an optional dependency whose manifest 404s, and `npm ci` then refuses the lockfile as
// "missing" it. This adds each missing optional package back with the os/cpu/libc its name
// implies, so npm skips it on other platforms and tries (and tolerates failing) on its own.
// Run after every `npm install`: node .ci/lock-optional.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const packages = lock.packages;

function platform(name) {
  const n = name.split('/').pop();
  const os = ['linux', 'darwin', 'win32', 'android', 'freebsd'].find((o) => n.includes(o));
  const cpu = /arm64|aarch64/.test(n)
    ? 'arm64'
    : n.includes('x64')
      ? 'x64'
      : n.includes('arm')
        ? 'arm'
        : undefined;
  const libc = os === 'linux' ? (n.includes('musl') ? 'musl' : 'glibc') : undefined;
  return { os, cpu, libc };
}

const added = [];
for (const meta of Object.values(packages)) {
  for (const [dep, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const key = `node_modules/${dep}`;
    if (packages[key]) continue;
    const { os, cpu, libc } = platform(dep);
    packages[key] = {
      version,
      optional: true,
      ...(os && { os: [os] }),
      ...(cpu && { cpu: [cpu] }),
      ...(libc && { libc: [libc] }),
    };
    added.push(`${dep}@${version}`);
  }
}
const sorted = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) =>
    a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0,
  ),
);
lock.packages = sorted;
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(
  added.length
    ? `added to package-lock.json:\n  ${added.join('\n  ')}`
    : 'package-lock.json already complete',
);
