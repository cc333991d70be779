// Document ids derived from write keys (the iroh-docs "namespace" idea): the id of a
// single-writer document is a hash of its writer's public key, so whoever knows the key knows
// the document, and the same node key always owns the same documents.

//
// The id is automerge-repo's DocumentId form (base58check of 16 bytes), encoded here rather
// than through automerge-repo's URL helpers: importing those loads all of automerge-repo, and
// reading the replica offline (`flt admin agents --offline`) needs none of it.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
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
