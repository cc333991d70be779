// Length-prefixed frames: u32 big-endian body length, then the body. The length is checked
// against a per-protocol cap as soon as its 4 bytes arrive, before any body is buffered, so a
// peer announcing 4 GiB costs us nothing. Wire grammar: sync/PROTOCOL.md.

import { FltError } from './errors.js';

export const LENGTH_BYTES = 4;

/** Prefixes `body` with its length; refuses bodies over `maxFrame`. */
export function encodeFrame(body: Uint8Array, maxFrame: number): Uint8Array {
  if (body.length > maxFrame) {
    throw new FltError(
      'FRAME_TOO_LARGE',
      `frame of ${body.length} bytes exceeds the cap of ${maxFrame}`,
    );
  }
  const out = new Uint8Array(LENGTH_BYTES + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, LENGTH_BYTES);
  return out;
}

/**
 * Incremental decoder: feed it chunks as they arrive, in any split; it returns whole frames.
 * After it throws (FRAME_TOO_LARGE) the stream is unusable and the connection must close.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private need: number | undefined; // body length of the frame in progress, once known

  constructor(readonly maxFrame: number) {}

  /** Bytes still to come for the frame in progress (0 while its length is unknown). */
  get missing(): number {
    return this.need === undefined ? 0 : Math.max(0, this.need - this.buffered);
  }

  /** Bytes held for a frame not yet complete. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Uint8Array[] = [];
    for (;;) {
      if (this.need === undefined) {
        if (this.buffered < LENGTH_BYTES) return frames;
        const header = this.take(LENGTH_BYTES);
        const len = new DataView(header.buffer, header.byteOffset, LENGTH_BYTES).getUint32(
          0,
          false,
        );
        if (len > this.maxFrame) {
          throw new FltError(
            'FRAME_TOO_LARGE',
            `peer announced a ${len}-byte frame; the cap is ${this.maxFrame}`,
          );
        }
        this.need = len;
      }
      if (this.buffered < this.need) return frames;
      frames.push(this.take(this.need));
      this.need = undefined;
    }
  }

  /** Call at end of stream: a partial frame left over is a protocol error. */
  end(): void {
    if (this.buffered > 0 || this.need !== undefined) {
      throw new FltError(
        'BAD_MESSAGE',
        `stream ended inside a frame (${this.buffered} bytes pending)`,
      );
    }
  }

  /** Removes exactly `n` buffered bytes from the front (n <= buffered). */
  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0); // an empty frame may end the buffered bytes exactly
    const first = this.chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let off = 0;
    let used = 0; // whole chunks consumed
    while (off < n) {
      const c = this.chunks[used]!;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) used++;
      else this.chunks[used] = c.subarray(k);
    }
    // One splice, not a shift per chunk: a frame that arrived in many tiny chunks (a peer
    // writing byte by byte) would otherwise cost time quadratic in its length.
    this.chunks.splice(0, used);
    this.buffered -= n;
    return out;
  }
}
