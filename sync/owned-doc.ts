// The single-writer ("owned") document (ARCHITECTURE.md §5), in one place: every document flt
// writes alone (an agent's facts, the coordinator's root and audit trail, and those to come)
// goes write key -> document id -> deterministic base -> signed heads, and readers show it only
// as of heads they verified. Nothing here is about fleets; the roles say which key owns what.
//
// - Document id: a hash of the writer's public key (the iroh-docs "namespace" idea), so whoever
//   knows the key knows the document, and the same key always owns the same document. Encoded
//   in automerge-repo's DocumentId form (base58check of 16 bytes) here rather than through
//   automerge-repo's URL helpers: those load all of automerge-repo, and an offline read of the
//   replica (`flt admin agents --offline`) needs none of it.
// - Base: the first change, identical wherever it is made, so "create if missing" on two
//   machines yields one history, never two unrelated ones under one id.
// - Signed heads: the writer signs its heads with the write key; Automerge change hashes chain
//   the whole history, so one signature vouches for every change below. The signed message (all
//   integers big-endian):
//     "flt/v1/heads" 0x00 | u8 len | document id (UTF-8) | u64 seq | u32 n | n × 32-byte head
//   with the heads sorted, so that the same heads always give the same message.

import * as A from '@automerge/automerge';
import type {
  Chunk,
  DocHandle,
  DocumentId,
  Message,
  Repo,
  StorageAdapterInterface,
} from '@automerge/automerge-repo';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { changesIn, chunksOf } from './changes.js';
import { replaceWithSnapshot } from './compact.js';
import { sign, verify } from './ed25519.js';
import { FltError } from './errors.js';
import { shortId } from './ids.js';

const DOC_ID_DOMAIN = utf8ToBytes('flt/v1/doc-id');
const BASE_ACTOR_DOMAIN = utf8ToBytes('flt/v1/base-actor');
const HEADS_DOMAIN = utf8ToBytes('flt/v1/heads\0');
const HEAD_BYTES = 32;
/** More heads than this is not a single writer's document (it has one head, or a few). */
export const MAX_SIGNED_HEADS = 64;

/** An ed25519 write key: the 32-byte seed and its public key. */
export interface WriteKey {
  readonly secret: Uint8Array;
  readonly publicKey: Uint8Array;
}

// --- document id and base ---------------------------------------------------------------------

function hash(domain: Uint8Array, data: Uint8Array): Uint8Array {
  const input = new Uint8Array(domain.length + data.length);
  input.set(domain);
  input.set(data, domain.length);
  return sha256(input);
}

/** The automerge-repo DocumentId of the document written with `writePublicKey`. */
export function docIdFor(writePublicKey: Uint8Array): DocumentId {
  return base58check(hash(DOC_ID_DOMAIN, writePublicKey).subarray(0, 16)) as DocumentId;
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** Base58 (Bitcoin alphabet) of `payload` followed by the first 4 bytes of its double SHA-256. */
function base58check(payload: Uint8Array): string {
  const bytes = new Uint8Array(payload.length + 4);
  bytes.set(payload);
  bytes.set(sha256(sha256(payload)).subarray(0, 4), payload.length);
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  for (; n > 0n; n /= 58n) out = BASE58[Number(n % 58n)]! + out;
  // Each leading zero byte is one leading '1'.
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out = '1' + out;
  return out;
}

/**
 * The first change of an owned document, identical wherever it is made (fixed actor, time 0,
 * fixed content).
 */
export function baseDocument<T extends object>(docId: DocumentId, initial: T): Uint8Array {
  return baseSnapshot(docId, initial).bytes;
}

/** baseDocument's bytes and their heads (its one change). */
export function baseSnapshot<T extends object>(
  docId: DocumentId,
  initial: T,
): { bytes: Uint8Array; heads: string[] } {
  const actor = Buffer.from(hash(BASE_ACTOR_DOMAIN, utf8ToBytes(docId)).subarray(0, 16)).toString(
    'hex',
  );
  const doc = A.change(A.init<T>({ actor }), { time: 0, message: 'flt: base' }, (d) => {
    Object.assign(d, initial);
  });
  const snapshot = { bytes: A.save(doc), heads: A.getHeads(doc) };
  A.free(doc);
  return snapshot;
}

/** What isStored needs of a store (automerge-repo's storage interface, any implementation). */
export type StoredChunks = Pick<StorageAdapterInterface, 'loadRange'>;

/**
 * True when `store` holds some of the document's content (a snapshot or incremental chunk).
 * automerge-repo also stores a sync state per peer under the document's id, even for a document
 * it only asked for and never got; that alone does not count.
 */
export async function isStored(store: StoredChunks, docId: DocumentId): Promise<boolean> {
  for (const kind of ['snapshot', 'incremental']) {
    if ((await store.loadRange([docId, kind])).length > 0) return true;
  }
  return false;
}

/**
 * The document's content chunks in `store`: its snapshots, largest first, then its incremental
 * chunks. Largest first because Automerge loads the first document chunk whole and applies the
 * others change by change: a root document of 1,000 agents found as two snapshots (one of
 * sync/compact.ts's beside one automerge-repo wrote, or a compaction cut short by a crash) took
 * 1.43 s and 865 MiB of wasm memory loaded smaller first, 0.42 s and 83 MiB larger first.
 */
export async function contentChunks(
  store: StoredChunks,
  docId: string,
): Promise<{ snapshots: Chunk[]; incrementals: Chunk[] }> {
  const snapshots = (await store.loadRange([docId, 'snapshot'])).sort(
    (a, b) => (b.data?.length ?? 0) - (a.data?.length ?? 0),
  );
  const incrementals = await store.loadRange([docId, 'incremental']);
  return { snapshots, incrementals };
}

/** What consolidate needs of a store. */
export type ConsolidatedChunks = Pick<StorageAdapterInterface, 'loadRange' | 'save' | 'remove'>;

/**
 * Rewrites a document that `store` holds as several snapshots as one snapshot (of everything it
 * holds, incremental chunks too), before a Repo loads it: automerge-repo loads the chunks in the
 * store's order, and two snapshots of a large document loaded smaller first cost it seconds and
 * hundreds of MiB of wasm memory that never return (see contentChunks). Crash-safe as compact()
 * (the snapshot is durable before any chunk goes). Resolves whether it rewrote; a document that
 * Automerge refuses to load is left as it is (the Repo's load reports it). Bytes it cannot read
 * add nothing to any load (Automerge skips them; FsStore quarantines a damaged file first).
 */
export async function consolidate(
  store: ConsolidatedChunks,
  docId: string,
  /** The document's chunks, if the caller read them already (contentChunks). */
  held?: { snapshots: Chunk[]; incrementals: Chunk[] },
): Promise<boolean> {
  const { snapshots, incrementals } = held ?? (await contentChunks(store, docId));
  if (snapshots.length < 2) return false;
  const chunks = [...snapshots, ...incrementals].filter((c) => c.data !== undefined);
  const doc = A.init<unknown>();
  let snapshot;
  try {
    const backend = A.getBackend(doc);
    backend.loadIncremental(concatBytes(...chunks.map((c) => c.data!)));
    snapshot = { bytes: backend.save(), heads: backend.getHeads() };
  } catch {
    return false;
  } finally {
    A.free(doc);
  }
  await replaceWithSnapshot(
    store,
    docId,
    snapshot,
    chunks.map((c) => c.key),
  );
  return true;
}

// --- heads --------------------------------------------------------------------------------------

/** Whether two sets of heads are the same, in whatever order. */
export function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const x = [...a].sort();
  const y = [...b].sort();
  return x.every((h, i) => h === y[i]);
}

/**
 * The heads `doc` would have after taking `chunks` (changes or document chunks, as a sync
 * message carries them), without changing it; undefined when they do not load.
 */
export function headsAfter(doc: A.Doc<unknown>, chunks: readonly Uint8Array[]) {
  try {
    let next = A.clone(doc);
    for (const chunk of chunks) next = A.loadIncremental(next, chunk);
    return A.getHeads(next);
  } catch {
    return undefined;
  }
}

// --- signed heads -------------------------------------------------------------------------------

/** What a writer publishes next to its document; JSON-safe (hex strings). */
export interface SignedHeads {
  readonly docId: DocumentId;
  /** Strictly increasing per writer; the newest verified one wins. */
  readonly seq: number;
  /** Hex change hashes, sorted. */
  readonly heads: readonly string[];
  /** Hex ed25519 public key that signed; docIdFor(key) must be docId. */
  readonly writeKey: string;
  /** Hex ed25519 signature over the message above. */
  readonly sig: string;
}

const HEX = /^[0-9a-f]*$/;
const isHex = (v: unknown, bytes: number): v is string =>
  typeof v === 'string' && v.length === bytes * 2 && HEX.test(v);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function message(docId: string, seq: number, heads: readonly string[]): Uint8Array {
  const id = new TextEncoder().encode(docId);
  const out = new Uint8Array(
    HEADS_DOMAIN.length + 1 + id.length + 8 + 4 + heads.length * HEAD_BYTES,
  );
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(HEADS_DOMAIN, at);
  at += HEADS_DOMAIN.length;
  out[at++] = id.length;
  out.set(id, at);
  at += id.length;
  view.setBigUint64(at, BigInt(seq));
  at += 8;
  view.setUint32(at, heads.length);
  at += 4;
  for (const h of heads) {
    out.set(Buffer.from(h, 'hex'), at);
    at += HEAD_BYTES;
  }
  return out;
}

/** Signs `heads` of `docId` as its writer (`secret` is the document's write key). */
export function signHeads(
  docId: DocumentId,
  seq: number,
  heads: readonly string[],
  secret: Uint8Array,
  writeKey: Uint8Array,
): SignedHeads {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad seq ${seq}`);
  const sorted = [...heads].sort();
  return {
    docId,
    seq,
    heads: sorted,
    writeKey: hex(writeKey),
    sig: hex(sign(message(docId, seq, sorted), secret)),
  };
}

/**
 * Checks a signed-heads record taken from anywhere (a peer, a document, a file) and returns it
 * typed. Refuses (BAD_SIGNATURE) a record for another document, by another key than `writeKey`
 * when one is expected, with a key that does not own the document, or with a bad signature;
 * malformed records are BAD_MESSAGE.
 */
export function verifySignedHeads(
  value: unknown,
  expect: { readonly docId: DocumentId; readonly writeKey?: string },
): SignedHeads {
  const v = value as Partial<Record<keyof SignedHeads, unknown>> | null;
  if (typeof v !== 'object' || v === null) throw bad('not a record');
  const { docId, seq, heads, writeKey, sig } = v;
  if (typeof docId !== 'string' || docId.length > 64) throw bad('bad docId');
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw bad('bad seq');
  if (!Array.isArray(heads) || heads.length > MAX_SIGNED_HEADS) throw bad('bad heads');
  if (!heads.every((h) => isHex(h, HEAD_BYTES))) throw bad('bad head');
  if (!isHex(writeKey, 32) || !isHex(sig, 64)) throw bad('bad key or signature');
  const sorted = [...heads].sort();
  if (sorted.some((h, i) => h !== heads[i] || (i > 0 && h === sorted[i - 1])))
    throw bad('heads not sorted and unique');
  if (docId !== expect.docId)
    throw new FltError('BAD_SIGNATURE', `signed heads are for ${docId}, not ${expect.docId}`);
  if (expect.writeKey !== undefined && writeKey !== expect.writeKey)
    throw new FltError('BAD_SIGNATURE', `signed heads of ${docId} by another key than its writer`);
  const key = Buffer.from(writeKey, 'hex');
  if (docIdFor(key) !== docId)
    throw new FltError('BAD_SIGNATURE', `key ${shortId(writeKey)} does not own ${docId}`);
  if (!verify(Buffer.from(sig, 'hex'), message(docId, seq, sorted), key))
    throw new FltError('BAD_SIGNATURE', `signature over the heads of ${docId} does not verify`);
  return { docId: docId as DocumentId, seq, heads: sorted, writeKey, sig };
}

function bad(what: string): FltError {
  return new FltError('BAD_MESSAGE', `signed heads: ${what}`);
}

/** The newer of two verified records of one document (by seq); `a` when equal. */
export function newer(a: SignedHeads | undefined, b: SignedHeads | undefined) {
  if (!a) return b;
  if (!b) return a;
  return b.seq > a.seq ? b : a;
}

export interface TrustedView<T> {
  /** The document as of the verified heads; undefined when those changes are not here yet. */
  readonly doc: A.Doc<T> | undefined;
  /** Changes are present that no verified signature covers (not shown in `doc`). */
  readonly unverified: boolean;
}

/**
 * The trusted view of `doc`: the document at the verified heads, never past them. Without a
 * verified record nothing is trusted, and any content is unverified.
 */
export function trustedView<T>(doc: A.Doc<T>, signed: SignedHeads | undefined): TrustedView<T> {
  const current = A.getHeads(doc);
  if (!signed) return { doc: undefined, unverified: current.length > 0 };
  const heads = [...signed.heads];
  if (!A.hasHeads(doc, heads)) return { doc: undefined, unverified: current.length > 0 };
  const same = sameHeads(current, heads);
  return { doc: same ? doc : A.view(doc, heads), unverified: !same };
}

// --- the writer's side --------------------------------------------------------------------------

/**
 * A document this node writes alone. It exists from its write key on (id, signer, admit guard),
 * before any Repo does; `open`, `load` or `adopt` give it its handle. Its signed heads are signed
 * again only when the heads move; seq is a millisecond clock kept strictly increasing (above
 * every seq this writer signed before, see `verifyOwn`), so it keeps growing across restarts and
 * a lost state dir.
 */
export class OwnedDoc<T extends object> {
  readonly docId: DocumentId;
  /** The write key's public half, hex (as in SignedHeads.writeKey). */
  readonly writeKey: string;
  /**
   * Heads we signed (verified with our write key) that our own copy lacks: we were restored from
   * an older copy of our state. Until cleared, changes that lead exactly to them are admitted.
   */
  behind: SignedHeads | undefined;
  private current: DocHandle<T> | undefined;
  private last: SignedHeads | undefined;
  /** Our seqs stay above every seq we signed before, whatever the clock says. */
  private minSeq = 0;

  constructor(private readonly key: WriteKey) {
    this.docId = docIdFor(key.publicKey);
    this.writeKey = hex(key.publicKey);
  }

  /** The document, once open. */
  get handle(): DocHandle<T> | undefined {
    return this.current;
  }

  /** Opens the document: from `store` if there, else created from its base. */
  async open(repo: Repo, store: ConsolidatedChunks, initial: T): Promise<DocHandle<T>> {
    const stored = await this.load(repo, store);
    return stored ?? this.adopt(repo.import<T>(baseDocument(this.docId, initial), this.id()));
  }

  /**
   * Opens the document if `store` holds it; undefined otherwise (nothing created). Held as
   * several snapshots, it is made one first (consolidate).
   */
  async load(repo: Repo, store: ConsolidatedChunks): Promise<DocHandle<T> | undefined> {
    // Read once: whether it is stored (isStored's rule), and what consolidate needs.
    const held = await contentChunks(store, this.docId);
    if (held.snapshots.length + held.incrementals.length === 0) return undefined;
    await consolidate(store, this.docId, held);
    return this.adopt(await repo.find<T>(this.docId));
  }

  /** Takes `handle` (of this document, found elsewhere, e.g. fetched from a peer) as ours. */
  adopt(handle: DocHandle<T>): DocHandle<T> {
    if (handle.documentId !== this.docId)
      throw new FltError('INTERNAL', `${handle.documentId} is not ${this.docId}`);
    this.current = handle;
    return handle;
  }

  private id() {
    return { docId: this.docId };
  }

  /** Forgets the handle (its document left the Repo, saved): open or load it again to use it. */
  release(): void {
    this.current = undefined;
  }

  /** The handle of the open document; INTERNAL when it is not open (a bug of the caller). */
  opened(): DocHandle<T> {
    if (this.current) return this.current;
    throw new FltError('INTERNAL', `owned document ${this.docId} is not open`);
  }

  /** The document's current heads, signed with its write key; signed again only when they move. */
  signed(): SignedHeads {
    const heads = A.getHeads(this.opened().doc());
    const last = this.last;
    if (last && sameHeads(last.heads, heads)) return last;
    const seq = Math.max(Date.now(), Math.max(last?.seq ?? 0, this.minSeq) + 1);
    this.last = signHeads(this.docId, seq, heads, this.key.secret, this.key.publicKey);
    return this.last;
  }

  /**
   * Verifies signed heads of this document said to be ours (e.g. a peer's copy of what we signed
   * before a restore): they must carry our write key. Our next seq will be above theirs.
   */
  verifyOwn(value: unknown): SignedHeads {
    const signed = verifySignedHeads(value, { docId: this.docId, writeKey: this.writeKey });
    this.minSeq = Math.max(this.minSeq, signed.seq);
    return signed;
  }

  /**
   * Whether changes `message` brings to this document may be taken while it is open: ones we
   * hold already (a resend changes nothing), or, while `behind`, ones that bring it exactly to
   * heads we signed (our signature vouches for that history).
   */
  harmless(message: Message): boolean {
    const handle = this.current;
    if (!handle || message.documentId !== this.docId) return false;
    const doc = handle.doc();
    const next = headsAfter(doc, chunksOf(message));
    if (!next) return false;
    return (
      sameHeads(next, A.getHeads(doc)) || (!!this.behind && sameHeads(next, this.behind.heads))
    );
  }

  /**
   * The admit guard: refuses (UNAUTHORIZED_PEER) a sync message from `peer` that carries changes
   * to this document once it is open, unless harmless. Ours to write: changes from others
   * would be signed over by us. Before it is open (a lost state dir being restored from a peer's
   * copy) changes are taken. Messages about other documents are the caller's to judge.
   */
  admit(peer: string, message: Message): void {
    if (!this.current || message.documentId !== this.docId) return;
    if (changesIn(message) === 0 || this.harmless(message)) return;
    throw new FltError('UNAUTHORIZED_PEER', `${peer} sent changes to our own document`);
  }
}
