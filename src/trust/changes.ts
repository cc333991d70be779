// How many Automerge changes an automerge-repo message carries: the test every "who may write
// this document" rule needs (ARCHITECTURE.md §5.1). Requests, acknowledgements and heads carry none.
//
// A sync message carries chunks, not changes: a change chunk holds one change, but a peer that
// asks for a document it does not hold answers with a whole-document chunk, and for an empty
// document that chunk (14 bytes) holds no change at all. Counting chunks took an admin's
// harmless "I have nothing" for a write and dropped its connection (issue 9.3).

import * as A from '@automerge/automerge';
import type { Message } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';

/** Automerge's chunk header: 4 magic bytes, a 4-byte checksum, then the chunk type. */
const CHUNK_TYPE_AT = 8;
const DOCUMENT_CHUNK = 0;

export function changesIn(message: Message): number {
  if ((message.type !== 'sync' && message.type !== 'request') || !message.data) return 0;
  try {
    let count = 0;
    for (const chunk of A.decodeSyncMessage(message.data).changes) count += changesInChunk(chunk);
    return count;
  } catch (err) {
    throw new FltError('BAD_MESSAGE', `undecodable sync message for ${message.documentId}`, {
      cause: err,
    });
  }
}

/** A change chunk (plain or compressed) is one change; a document chunk holds any number. */
function changesInChunk(chunk: Uint8Array): number {
  if (chunk[CHUNK_TYPE_AT] !== DOCUMENT_CHUNK) return 1;
  const doc = A.load(chunk);
  return A.getHeads(doc).length === 0 ? 0 : A.getAllChanges(doc).length;
}
