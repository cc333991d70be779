// Document ids derived from write keys (the iroh-docs "namespace" idea): the id of a
// single-writer document is a hash of its writer's public key, so whoever knows the key knows
// the document, and the same node key always owns the same documents.

import * as A from '@automerge/automerge';
import {
  parseAutomergeUrl,
  stringifyAutomergeUrl,
  type DocumentId,
} from '@automerge/automerge-repo';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';

const DOC_ID_DOMAIN = utf8ToBytes('flt/v1/doc-id');
const BASE_ACTOR_DOMAIN = utf8ToBytes('flt/v1/base-actor');

function hash(domain: Uint8Array, data: Uint8Array): Uint8Array {
  const input = new Uint8Array(domain.length + data.length);
  input.set(domain);
  input.set(data, domain.length);
  return sha256(input);
}

/** The automerge-repo DocumentId of the document written with `writePublicKey`. */
export function docIdFor(writePublicKey: Uint8Array): DocumentId {
  const binary = hash(DOC_ID_DOMAIN, writePublicKey).subarray(0, 16);
  return parseAutomergeUrl(
    stringifyAutomergeUrl(binary as Parameters<typeof stringifyAutomergeUrl>[0]),
  ).documentId;
}

/**
 * The first change of a derived document, identical wherever it is made (fixed actor, time 0,
 * fixed content). So "create if missing" on two machines yields one history, never two
 * unrelated ones that automerge-repo would have to merge under one id.
 */
export function baseDocument<T extends object>(docId: DocumentId, initial: T): Uint8Array {
  const actor = Buffer.from(hash(BASE_ACTOR_DOMAIN, utf8ToBytes(docId)).subarray(0, 16)).toString(
    'hex',
  );
  const doc = A.change(A.init<T>({ actor }), { time: 0, message: 'flt: base' }, (d) => {
    Object.assign(d, initial);
  });
  return A.save(doc);
}
