// How many Automerge changes an automerge-repo message carries: the test every "who may write
// this document" rule needs (ARCHITECTURE.md §5.1). Requests, acknowledgements and heads carry none.

import * as A from '@automerge/automerge';
import type { Message } from '@automerge/automerge-repo';
import { FltError } from '../../sync/errors.js';

export function changesIn(message: Message): number {
  return changesOf(message).length;
}

/** The Automerge changes an automerge-repo message carries (encoded), in the order sent. */
export function changesOf(message: Message): Uint8Array[] {
  if ((message.type !== 'sync' && message.type !== 'request') || !message.data) return [];
  try {
    return A.decodeSyncMessage(message.data).changes;
  } catch (err) {
    throw new FltError('BAD_MESSAGE', `undecodable sync message for ${message.documentId}`, {
      cause: err,
    });
  }
}
