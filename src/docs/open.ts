// Opening the documents a node owns. A document found in local storage is loaded from there;
// otherwise it starts from its deterministic base (doc-id.ts), so two creations never fork.

import type { DocHandle, DocumentId, Repo } from '@automerge/automerge-repo';
import type { Store } from '../../stores/store.js';
import { baseDocument } from './doc-id.js';

/** True when `store` holds any chunk of the document. */
export async function isStored(store: Store, docId: DocumentId): Promise<boolean> {
  return (await store.loadRange([docId])).length > 0;
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
