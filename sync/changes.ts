// How many Automerge changes an automerge-repo message carries: the test every "who may write
// this document" rule needs (ARCHITECTURE.md §5.1). Requests, acknowledgements and heads carry none.
//
// A sync message carries chunks, not changes: a change chunk holds one change, but a peer that
// asks for a document it does not hold answers with a whole-document chunk, and for an empty
// document that chunk (14 bytes) holds no change at all. Counting chunks took an admin's
// harmless "I have nothing" for a write and dropped its connection (issue 9.3).

import * as A from '@automerge/automerge';
import type { Message } from '@automerge/automerge-repo';
import { FltError } from './errors.js';

/** Automerge's chunk header: 4 magic bytes, a 4-byte checksum, then the chunk type. */
const CHUNK_TYPE_AT = 8;
const DOCUMENT_CHUNK = 0;

export function changesIn(message: Message): number {
  let count = 0;
  for (const chunk of chunksOf(message)) count += changesInChunk(chunk, message);
  return count;
}

/** The chunks (changes or whole documents) an automerge-repo message carries, in order sent. */
export function chunksOf(message: Message): Uint8Array[] {
  if ((message.type !== 'sync' && message.type !== 'request') || !message.data) return [];
  try {
    return A.decodeSyncMessage(message.data).changes;
  } catch (err) {
    throw undecodable(message, err);
  }
}

const undecodable = (message: Message, err: unknown) =>
  new FltError('BAD_MESSAGE', `undecodable sync message for ${message.documentId}`, {
    cause: err,
  });

/** A change chunk (plain or compressed) is one change; a document chunk holds any number. */
function changesInChunk(chunk: Uint8Array, message: Message): number {
  if (chunk[CHUNK_TYPE_AT] !== DOCUMENT_CHUNK) return 1;
  try {
    const doc = A.load(chunk);
    return A.getHeads(doc).length === 0 ? 0 : A.getAllChanges(doc).length;
  } catch (err) {
    throw undecodable(message, err);
  }
}
