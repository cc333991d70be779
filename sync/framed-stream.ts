// Frames over one ByteStream. Reads are bounded (IDLE_READ between frames, up to READ_CHUNK while
// a large frame arrives; frames capped by the decoder); writes issued in the same tick are
// coalesced into one transport write, because every write through the iroh bindings has a fixed
// cost (Array<number> conversion, FFI).

import { FltError } from './errors.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import type { ByteStream } from './transport.js';

/** Largest single read from the transport, while a large frame is arriving. */
export const READ_CHUNK = 1 << 20;
/**
 * A read with no frame in progress (the usual state: waiting for the next small message). The
 * iroh binding allocates (and zeroes) the whole `max` for every pending read, so a connection that
 * idles in a 1 MiB read holds 1 MiB of native memory: measured at the coordinator, that was
 * ~2 MiB per agent (two streams each). 64 KiB still held ~120 KiB per agent; 4 KiB (issue 13:
 * 100 agents, glibc's in-use bytes 660 -> 539 KiB per agent) costs a frame larger than that one
 * more read: the first read gives its header, the next asks for what is missing.
 */
export const IDLE_READ = 1 << 12;
/** Coalesced writes are cut at this size so that one write never holds a huge array. */
export const WRITE_BATCH = 1 << 20;

interface Pending {
  readonly bytes: Uint8Array;
  readonly done: () => void;
  readonly fail: (err: unknown) => void;
}

export class FramedStream {
  private readonly decoder: FrameDecoder;
  private ready: Uint8Array[] = [];
  private queue: Pending[] = [];
  private queued = 0;
  private pumping = false;
  private writeError: FltError | undefined;

  constructor(
    readonly stream: ByteStream,
    readonly maxFrame: number,
  ) {
    this.decoder = new FrameDecoder(maxFrame);
  }

  /** The next frame body, or null at a clean end of stream. */
  async readFrame(): Promise<Uint8Array | null> {
    while (this.ready.length === 0) {
      const size = Math.min(READ_CHUNK, Math.max(IDLE_READ, this.decoder.missing));
      const chunk = await this.stream.read(size);
      if (chunk === null) {
        this.decoder.end();
        return null;
      }
      this.ready = this.decoder.push(chunk);
    }
    return this.ready.shift()!;
  }

  /** Bytes accepted by writeFrame and not yet handed to the transport. */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Queues one frame; resolves once it was handed to the transport. */
  writeFrame(body: Uint8Array): Promise<void> {
    if (this.writeError) return Promise.reject(this.writeError);
    const bytes = encodeFrame(body, this.maxFrame);
    return new Promise((done, fail) => {
      this.queue.push({ bytes, done, fail });
      this.queued += bytes.length;
      if (!this.pumping) void this.pump();
    });
  }

  /** Finishes our side after every frame queued so far was handed to the transport. */
  async finish(): Promise<void> {
    if (this.pumping) {
      // An empty entry behind the queued frames: finishing before them would cut them off.
      await new Promise<void>((done, fail) =>
        this.queue.push({ bytes: new Uint8Array(0), done, fail }),
      );
    }
    await this.stream.finish();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    await Promise.resolve(); // let the current tick queue more frames
    while (this.queue.length > 0) {
      const batch = takeBatch(this.queue);
      for (const p of batch) this.queued -= p.bytes.length;
      try {
        await this.stream.write(concat(batch.map((p) => p.bytes)));
        for (const p of batch) p.done();
      } catch (err) {
        this.writeError =
          err instanceof FltError
            ? err
            : new FltError('CONNECTION_LOST', 'write failed', { cause: err });
        for (const p of [...batch, ...this.queue]) p.fail(this.writeError);
        this.queue = [];
        this.queued = 0;
      }
    }
    this.pumping = false;
  }
}

function takeBatch(queue: Pending[]): Pending[] {
  let size = 0;
  let n = 0;
  while (n < queue.length && (n === 0 || size + queue[n]!.bytes.length <= WRITE_BATCH)) {
    size += queue[n]!.bytes.length;
    n++;
  }
  return queue.splice(0, n);
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
