// Sending and receiving one blob on a flt/blobs/0 stream: its header, its chunk-hash list, its
// chunks from a resume point, then `end`. The receiver checks the list against the root it
// expects and each chunk against its entry before handing it to `write`, so nothing unverified
// reaches a disk; a mismatch is HASH_MISMATCH and costs the peer its connection. What a blob is
// and where it is stored is the caller's (src/artifacts, stores/blob-store.ts).

import {
  chunkCount,
  chunkLength,
  equalBytes,
  HASH_BYTES,
  type BlobDigest,
  type BlobHasher,
} from './blob-hash.js';
import {
  decodeBlobFrame,
  decodeTransferMsg,
  encodeCtrl,
  encodeData,
  encodeHashes,
  MAX_HASHES_PER_FRAME,
  type BlobFrame,
  type CtrlMap,
} from './blob-wire.js';
import { codeOf, FltError, isErrorCode, messageOf } from './errors.js';
import type { FramedStream } from './framed-stream.js';
import { CloseCode, type Connection } from './transport.js';

/**
 * Bytes a sender lets queue on one stream before it waits for the transport: with the
 * receiver's one frame in hand and QUIC flow control, ~2 MiB per stream on each side.
 */
export const SEND_WINDOW = 1 << 20;

/** One chunk of a blob, as a sender's source yields them (in index order). */
export interface Chunk {
  readonly index: number;
  readonly bytes: Uint8Array;
}

export interface SendOptions {
  /** First chunk to send; chunks before it are the receiver's already. Default 0. */
  readonly from?: number;
  /** Whether to send the hash list before the data. Default true. */
  readonly hashes?: boolean;
  readonly signal?: AbortSignal;
}

export interface TransferStats {
  /** Data frames (chunks) sent or received. */
  readonly chunks: number;
  /** Chunk bytes sent or received (payload only, without frame headers). */
  readonly bytes: number;
}

/**
 * Answers a request for a blob: `{t:'blob', size, chunks, root}`, then as sendBody.
 * `chunks` yields the blob's chunks from `from` on (a BlobStore's verified read).
 */
export async function sendBlob(
  fs: FramedStream,
  digest: BlobDigest,
  chunks: AsyncIterable<Chunk>,
  options: SendOptions = {},
): Promise<TransferStats> {
  const n = chunkCount(digest.size);
  await fs.writeFrame(encodeCtrl({ t: 'blob', size: digest.size, chunks: n, root: digest.root }));
  return sendBody(fs, digest, chunks, options);
}

/**
 * Sends the hash list (unless `hashes: false`), chunks `from`..n-1 of `chunks`, then `{t:'end'}`
 * (the upload direction sends no `blob` header: the request named the blob). Waits for the
 * transport whenever more than SEND_WINDOW bytes are queued.
 * @throws the source's error as it is (the caller answers `err` with sendError), CLOSED or
 *   CONNECTION_LOST from the stream, ABORTED, BAD_ARGUMENT for a source that skips or repeats
 *   an index or yields a chunk of the wrong length.
 */
export async function sendBody(
  fs: FramedStream,
  digest: BlobDigest,
  chunks: AsyncIterable<Chunk>,
  options: SendOptions = {},
): Promise<TransferStats> {
  const n = chunkCount(digest.size);
  const from = options.from ?? 0;
  if (!Number.isInteger(from) || from < 0 || from > n)
    throw new FltError('BAD_ARGUMENT', `blobs: resume point ${from} of ${n} chunks`);
  let last: Promise<void> = Promise.resolve();
  const send = async (body: Uint8Array) => {
    last = fs.writeFrame(body);
    if (fs.queuedBytes > SEND_WINDOW) await last;
    else last.catch(() => undefined); // surfaced by a later write or the final await
  };
  if (options.hashes ?? true) {
    const step = MAX_HASHES_PER_FRAME * HASH_BYTES;
    for (let off = 0; off < digest.hashes.length; off += step)
      await send(encodeHashes(off / HASH_BYTES, digest.hashes.subarray(off, off + step)));
  }
  let next = from;
  let bytes = 0;
  if (next < n) {
    for await (const { index, bytes: chunk } of chunks) {
      options.signal?.throwIfAborted();
      if (index !== next || chunk.length !== chunkLength(digest.size, index))
        throw new FltError(
          'BAD_ARGUMENT',
          `blobs: source gave chunk ${index} (${chunk.length} bytes), expected ${next}`,
        );
      await send(encodeData(index, chunk));
      bytes += chunk.length;
      if (++next === n) break;
    }
    if (next < n)
      throw new FltError('BAD_ARGUMENT', `blobs: source ended at chunk ${next} of ${n}`);
  }
  await send(encodeCtrl({ t: 'end' }));
  await last;
  return { chunks: next - from, bytes };
}

/** Ends a stream's answer with `{t:'err', code, msg}` (the stream stays usable to read). */
export async function sendError(fs: FramedStream, err: unknown): Promise<void> {
  await fs.writeFrame(encodeCtrl({ t: 'err', code: codeOf(err), msg: messageOf(err) }));
}

export interface ReceiveOptions {
  /** The root the blob must have (from a source the receiver trusts for it). */
  readonly root: Uint8Array;
  /** First chunk expected (the receiver holds the ones before). Default 0. */
  readonly from?: number;
  /**
   * The hash list when the receiver has it already (resume with `hashes: false`): no hashes
   * frame may come then. Otherwise the list must come first and hash to `root`.
   */
  readonly hashes?: Uint8Array;
  /** The size, when the receiver announced it itself (upload: the `put` request). */
  readonly size?: number;
  readonly hasher: BlobHasher;
  /**
   * Called with each verified chunk, in order, awaited before the next frame is read. `bytes`
   * is a view of the frame: copy it to keep it past the call.
   */
  write(index: number, bytes: Uint8Array): Promise<void>;
  /** The hash list once verified, before any chunk (to persist it for a later resume). */
  onHashes?(hashes: Uint8Array): Promise<void>;
  /** Closed with code 1 and the error's code when the peer breaks the protocol. */
  readonly conn?: Connection;
  readonly signal?: AbortSignal;
}

export interface ReceiveResult extends TransferStats {
  readonly size: number;
  readonly hashes: Uint8Array;
}

/**
 * Receives the answer to a blob request: the `blob` header, then as receiveBody. An `err`
 * message from the peer is thrown as an FltError with its code (RPC_REMOTE when unknown).
 * @throws HASH_MISMATCH (header's root is not `root`, the list does not hash to it, a chunk
 *   does not match its entry or comes out of order or at the wrong length), BAD_MESSAGE
 *   (malformed frames, the stream ending early), and whatever `write` throws.
 */
export async function receiveBlob(
  fs: FramedStream,
  options: ReceiveOptions,
): Promise<ReceiveResult> {
  return guard(options, async () => {
    const head = decodeTransferMsg(await nextCtrl(fs));
    if (head.t !== 'blob') throw new FltError('BAD_MESSAGE', `blobs: expected blob, got ${head.t}`);
    if (!equalBytes(head.root, options.root))
      throw new FltError('HASH_MISMATCH', 'blobs: the peer announced another root');
    if (options.size !== undefined && head.size !== options.size)
      throw new FltError('HASH_MISMATCH', 'blobs: the peer announced another size');
    return body(fs, head.size, options);
  });
}

/** Receives hash list (unless given), chunks and `end` of a blob of `options.size` bytes. */
export async function receiveBody(
  fs: FramedStream,
  options: ReceiveOptions & { readonly size: number },
): Promise<ReceiveResult> {
  return guard(options, () => body(fs, options.size, options));
}

async function body(fs: FramedStream, size: number, o: ReceiveOptions): Promise<ReceiveResult> {
  const n = chunkCount(size);
  const from = o.from ?? 0;
  if (!Number.isInteger(from) || from < 0 || from > n)
    throw new FltError('BAD_ARGUMENT', `blobs: resume point ${from} of ${n} chunks`);
  let frame = await next(fs);
  let hashes = o.hashes;
  if (hashes === undefined) {
    [hashes, frame] = await readHashes(fs, frame, size);
    if (!equalBytes(o.hasher.rootOf(size, hashes), o.root))
      throw new FltError('HASH_MISMATCH', 'blobs: the hash list does not match the root');
    await o.onHashes?.(hashes);
  } else if (hashes.length !== n * HASH_BYTES || !equalBytes(o.hasher.rootOf(size, hashes), o.root))
    throw new FltError('BAD_ARGUMENT', 'blobs: the known hash list does not match the root');
  let index = from;
  let bytes = 0;
  for (; frame.kind !== 'ctrl'; frame = await next(fs)) {
    o.signal?.throwIfAborted();
    if (frame.kind !== 'data') throw new FltError('BAD_MESSAGE', 'blobs: hashes after data');
    if (frame.index !== index || index >= n)
      throw new FltError('HASH_MISMATCH', `blobs: chunk ${frame.index} where ${index} was due`);
    if (!o.hasher.verifyChunk(hashes, index, size, frame.bytes))
      throw new FltError('HASH_MISMATCH', `blobs: chunk ${index} does not match its hash`);
    await o.write(index, frame.bytes);
    bytes += frame.bytes.length;
    index++;
  }
  const end = decodeTransferMsg(frame.msg);
  if (end.t === 'err') throw remoteError(end.code, end.msg);
  if (end.t !== 'end') throw new FltError('BAD_MESSAGE', `blobs: expected end, got ${end.t}`);
  if (index !== n) throw new FltError('BAD_MESSAGE', `blobs: end after chunk ${index} of ${n}`);
  return { size, hashes, chunks: index - from, bytes };
}

/** Reads the whole list from hashes frames, starting with `frame`; returns it and the next. */
async function readHashes(
  fs: FramedStream,
  frame: BlobFrame,
  size: number,
): Promise<[Uint8Array, BlobFrame]> {
  const n = chunkCount(size);
  const list = new Uint8Array(n * HASH_BYTES);
  let have = 0;
  while (have < n) {
    if (frame.kind === 'ctrl') {
      const msg = decodeTransferMsg(frame.msg);
      if (msg.t === 'err') throw remoteError(msg.code, msg.msg);
      throw new FltError('BAD_MESSAGE', `blobs: ${msg.t} before the hash list`);
    }
    if (frame.kind !== 'hashes') throw new FltError('BAD_MESSAGE', 'blobs: data before hashes');
    const k = frame.hashes.length / HASH_BYTES;
    if (frame.first !== have || have + k > n)
      throw new FltError('HASH_MISMATCH', `blobs: hashes ${frame.first}.. where ${have} was due`);
    list.set(frame.hashes, have * HASH_BYTES);
    have += k;
    frame = await next(fs);
  }
  return [list, frame];
}

/** The next control message (an `err` is thrown). */
async function nextCtrl(fs: FramedStream): Promise<CtrlMap> {
  const frame = await next(fs);
  if (frame.kind !== 'ctrl') throw new FltError('BAD_MESSAGE', `blobs: ${frame.kind} frame first`);
  if (frame.msg.t === 'err') {
    const err = decodeTransferMsg(frame.msg);
    if (err.t === 'err') throw remoteError(err.code, err.msg);
  }
  return frame.msg;
}

async function next(fs: FramedStream): Promise<BlobFrame> {
  const body = await fs.readFrame();
  if (body === null) throw new FltError('BAD_MESSAGE', 'blobs: the stream ended mid-transfer');
  return decodeBlobFrame(body);
}

/** The peer's `err` as ours: its code when we know it, else RPC_REMOTE (as rpc does). */
export function remoteError(code: string, msg: string): FltError {
  const err = isErrorCode(code)
    ? new FltError(code, `peer: ${msg}`)
    : new FltError('RPC_REMOTE', `peer: ${code}: ${msg}`);
  fromPeer.add(err);
  return err;
}

/** Errors the peer sent as an answer (`err`): not a violation of the protocol. */
const fromPeer = new WeakSet<Error>();

/** Codes that mean the peer broke the protocol (its connection is closed). */
const VIOLATIONS = new Set([
  'HASH_MISMATCH',
  'BAD_MESSAGE',
  'UNSUPPORTED_VERSION',
  'FRAME_TOO_LARGE',
]);

async function guard<T>(o: ReceiveOptions, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = codeOf(err);
    // An `err` the peer sent on purpose is an answer, not a violation: only our own findings.
    if (o.conn && VIOLATIONS.has(code) && !(err instanceof Error && fromPeer.has(err)))
      o.conn.close(CloseCode.PROTOCOL_ERROR, code);
    throw err;
  }
}
