// Measurement tooling (issue 13, fan-in): summarizes a V8 .cpuprofile, as written by
// `node --cpu-prof` (see BENCH_COORD_CPU_PROF in processes.ts), into tables of
//  - self time by function and by file (package or project file),
//  - total (inclusive) time by function, each function counted once per sample (recursion),
//  - time by the innermost project frame (dist/src/...) on the stack: which flt function the
//    library and wasm time was spent for,
//  - total time of the frames whose name or file matches --focus PATTERN, split by their callers.
//
//   node dist/bench/cpuprofile-summary.js FILE.cpuprofile [--top 25] [--focus REGEX]
//                                         [--per N] [--from S] [--to S]
//
// --per N adds a column of milliseconds per agent (N agents). --from/--to keep only the samples
// in that span of seconds since the profile began.

import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A short file name: the package for node_modules, the path below dist/ for the project. */
function fileOf(url: string): string {
  if (url === '') return '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    const file = rest.slice(rest[0]!.startsWith('@') ? 2 : 1).join('/');
    return `${pkg}:${file.replace(/^(dist|lib)\//, '')}`;
  }
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + '/dist/'.length);
  return url.replace(/^file:\/\//, '').replace(/^node:/, 'node:');
}

function frameName(f: CallFrame): string {
  const fn = f.functionName || '(anonymous)';
  return f.url ? `${fn} ${fileOf(f.url)}:${f.lineNumber + 1}` : fn;
}

/**
 * Cost categories: a sample goes to the first category in this list that matches any frame on
 * its stack (so "automerge receiveSyncMessage" includes what runs synchronously under it, but
 * not the ed25519 or disk work, which come earlier in the list).
 */
const CATEGORIES: readonly (readonly [string, RegExp])[] = [
  ['idle', /^\(idle\)/],
  ['gc', /^\(garbage collector\)/],
  ['(program)', /^\(program\)/],
  [
    'repo share policy per peer/doc (addPeer, removePeer, shouldShare, generous peers, endSync)',
    /^(addPeer|removePeer|#shouldShare|#documentGenerousPeers|reevaluateDocumentShare|endSync|beginSync) /,
  ],
  ['ed25519 (noble, pure JS)', /@noble\/ed25519|sync\/ed25519/],
  [
    'disk (atomic writes, fsync, readdir, fs-store)',
    // Node's fs natives are frames without a file; a named frame with a file is only disk in
    // node:internal/fs (an `open` elsewhere, e.g. OwnedDoc.open, is not).
    /atomic-write|fs-store|fs-io|chunk-log|^(fsync|fdatasync|readdir|openFileHandle|close|mkdir|lstat|rename|unlink|open|writeFile|readFile|read|writeBuffer)$|node:internal\/fs/,
  ],
  ['automerge save', /^(save|saveIncremental|saveSince) @automerge\/automerge:/],
  ['automerge receiveSyncMessage', /^receiveSyncMessage @automerge\/automerge:/],
  ['automerge generateSyncMessage', /^generateSyncMessage @automerge\/automerge:/],
  ['automerge change/load/other wasm', /automerge_wasm|@automerge\/automerge:/],
  ['automerge-repo handles + xstate', /xstate|@automerge\/automerge-repo|eventemitter3|debug:/],
  ['iroh transport (binding calls, Array<number> copies)', /iroh-transport|@number0|framed-stream/],
  ['rpc, cbor, zod', /sync\/rpc\.js|codec\.js|cbor-x|zod/],
  ['flt roles (fleet, gate, presence, coordinator)', /src\/roles|src\/trust|src\/node\.js/],
];

const isProject = (f: CallFrame) => /\/dist\//.test(f.url) && !f.url.includes('node_modules');

function main(): void {
  const file = process.argv[2];
  if (!file) throw new Error('usage: cpuprofile-summary FILE.cpuprofile [--top N] [--focus RE]');
  const top = Number(arg('--top') ?? 25);
  const per = arg('--per') ? Number(arg('--per')) : undefined;
  const focus = arg('--focus') ? new RegExp(arg('--focus')!) : undefined;
  const from = Number(arg('--from') ?? 0) * 1e6;
  const to = arg('--to') ? Number(arg('--to')) * 1e6 : Infinity;
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<string, number>();
  const selfFile = new Map<string, number>();
  const total = new Map<string, number>();
  const nearest = new Map<string, number>();
  const outermost = new Map<string, number>();
  const focusCallers = new Map<string, number>();
  const categories = new Map<string, number>();
  /** Stretches without an idle sample: the event loop did not wait for I/O (pings wait). */
  const stretches: { start: number; ms: number; cats: Map<string, number> }[] = [];
  let stretch: (typeof stretches)[number] | undefined;
  let all = 0;
  let busy = 0;
  let t = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < from || t > to) continue;
    // A sample's time is the delta to the next sample (the last one gets none).
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // ms
    const leaf = byId.get(p.samples[i]!)!;
    all += dt;
    const leafName = frameName(leaf.callFrame);
    add(self, leafName, dt);
    add(selfFile, leaf.callFrame.url ? fileOf(leaf.callFrame.url) : leafName, dt);
    if (leaf.callFrame.functionName !== '(idle)') busy += dt;
    const seen = new Set<string>();
    let near: string | undefined;
    let outer: string | undefined;
    let focusCaller: string | undefined;
    let inFocus = false;
    const stack: string[] = [];
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      const name = frameName(f);
      stack.push(name);
      if (!seen.has(name)) {
        seen.add(name);
        add(total, name, dt);
      }
      if (isProject(f)) {
        near ??= name;
        outer = name;
      }
      if (focus && focus.test(name)) inFocus = true;
      else if (inFocus && focusCaller === undefined && isProject(f)) focusCaller = name;
    }
    const category = CATEGORIES.find(([, re]) => stack.some((f) => re.test(f)))?.[0];
    add(categories, category ?? 'other', dt);
    if (leaf.callFrame.functionName === '(idle)') {
      if (stretch) stretches.push(stretch);
      stretch = undefined;
      continue;
    }
    stretch ??= { start: t / 1e6, ms: 0, cats: new Map() };
    stretch.ms += dt;
    add(stretch.cats, category ?? 'other', dt);
    add(nearest, near ?? `(no project frame) ${leafName}`, dt);
    add(outermost, outer ?? '(no project frame)', dt);
    if (inFocus) add(focusCallers, focusCaller ?? '(no project caller)', dt);
  }

  const secs = (Math.min(to, p.endTime - p.startTime) - from) / 1e6;
  console.log(
    `${file}\nspan ${secs.toFixed(1)} s, sampled ${(all / 1000).toFixed(1)} s, busy (not idle) ${(busy / 1000).toFixed(1)} s`,
  );
  const table = (title: string, m: Map<string, number>, n = top) => {
    console.log(`\n## ${title}`);
    console.log(
      `${'ms'.padStart(9)} ${'%busy'.padStart(6)}${per ? ' ms/agent'.padStart(9) : ''}  frame`,
    );
    const rows = [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
    for (const [k, v] of rows) {
      const pa = per ? (v / per).toFixed(1).padStart(9) : '';
      console.log(
        `${v.toFixed(0).padStart(9)} ${((100 * v) / busy).toFixed(1).padStart(6)}${pa}  ${k}`,
      );
    }
  };
  table('time by category (first in CATEGORIES matching a frame of the stack)', categories);
  table('self time by file', selfFile);
  table('self time by function', self);
  table('total time by function', total, top * 2);
  table('busy time by innermost project (dist/src) frame', nearest);
  table('busy time by outermost project frame', outermost);
  if (stretch) stretches.push(stretch);
  console.log('\n## longest stretches without an idle sample (event loop blocked or saturated)');
  for (const st of [...stretches].sort((a, b) => b.ms - a.ms).slice(0, 8)) {
    const cats = [...st.cats].sort((a, b) => b[1] - a[1]).slice(0, 3);
    const what = cats.map(([k, v]) => `${k.split(' (')[0]} ${((100 * v) / st.ms).toFixed(0)}%`);
    console.log(`  at ${st.start.toFixed(1)} s: ${st.ms.toFixed(0)} ms  ${what.join(', ')}`);
  }
  const over = (ms: number) => stretches.filter((st) => st.ms >= ms).length;
  console.log(`  stretches >= 500 ms: ${over(500)}, >= 1500 ms (a ping's deadline): ${over(1500)}`);
  if (focus) table(`time under /${focus.source}/ by nearest project caller`, focusCallers);
}

main();
