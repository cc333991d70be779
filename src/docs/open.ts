// Opening the documents a node owns. A document found in local storage is loaded from there;
// otherwise it starts from its deterministic base (doc-id.ts), so two creations never fork.

import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import type { Store } from '../../stores/store.js';
import { baseDocument } from './doc-id.js';

/**
 * True when `store` holds some of the document's content (a snapshot or incremental chunk).
 * automerge-repo also stores a sync state per peer under the document's id, even for a document
 * it only asked for and never got; that alone does not count.
 */
export async function isStored(store: Store, docId: DocumentId): Promise<boolean> {
  for (const kind of ['snapshot', 'incremental']) {
    if ((await store.loadRange([docId, kind])).length > 0) return true;
  }
  return false;
}

/** The owned document `docId`: from storage if there, else created from its base. */
export async function openOwned<T extends object>(
  repo: Repo,
  store: Store,
  docId: DocumentId,
  initial: T,
): Promise<DocHandle<T>> {
  if (await isStored(store, docId)) return repo.find<T>(docId);
  return repo.import<T>(baseDocument(docId, initial), { docId });
}
