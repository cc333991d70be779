import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
const dir = process.argv[2]; const warmN = Number(process.argv[3]);
function walk(d, out=[]) { for (const e of readdirSync(d)) { const p = join(d,e); if (statSync(p).isDirectory()) walk(p,out); else out.push(p);} return out; }
const all = new Uint8Array(Buffer.concat(walk(dir).map(f => readFileSync(f))));
let t = performance.now();
if (warmN > 0) {
  let d = A.init();
  for (let i = 0; i < warmN; i++) d = A.change(d, (x) => { x['k' + i] = 'v'.repeat(200) + i; });
  const s = A.save(d);
  const t1 = performance.now();
  A.load(s);
  console.log('warm make', (t1 - t).toFixed(0), 'warm load', (performance.now() - t1).toFixed(0));
}
t = performance.now();
A.load(all);
const t2 = performance.now();
A.load(all);
console.log('root load ms', (t2-t).toFixed(0), 'again', (performance.now()-t2).toFixed(0));
