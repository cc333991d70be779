import { it } from 'vitest';
import { FrameDecoder, encodeFrame } from '../sync/framing.js';
import { decodeCbor } from '../sync/codec.js';
import { randomBytes } from 'node:crypto';
it('x', () => {
for (const size of [70_000, 1_000_000]) {
const buf = encodeFrame(new Uint8Array(size), 1 << 26);
const d = new FrameDecoder(1 << 26);
const t = performance.now();
let n = 0;
for (let i = 0; i < buf.length; i++) n += d.push(buf.subarray(i, i + 1)).length;
console.log(size, n, performance.now() - t, 'ms');
}
let ok = 0, bad = 0, other = 0;
for (let i = 0; i < 2000; i++) { const b = randomBytes(64); b[0] = 0xff; try { decodeCbor(b); ok++; } catch (e: any) { if (e.code === 'BAD_MESSAGE') bad++; else other++; } }
let ok2 = 0;
for (let i = 0; i < 2000; i++) { const b = randomBytes(64); try { decodeCbor(b); ok2++; } catch (e: any) { } }
console.log({ ok, bad, other, ok2 });
});
