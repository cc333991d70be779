// An in-memory Store for tests and ephemeral nodes. It follows the same key and value rules as
// FsStore (stores/keys.ts) and passes the same conformance suite (test/store-conformance.ts); data is
// copied in and out, so callers can never alias stored bytes.

import type { Chunk, StorageKey } from '@automerge/automerge-repo';
import { StoreError } from './errors.js';
import { assertKey, assertPrefix, assertValue, hasPrefix } from './keys.js';
import type { Store } from './store.js';

/** A Store that keeps every chunk in a Map; nothing survives the process. */
export class MemoryStore implements Store {
  /** Keyed by the key joined with '/', which assertKey forbids inside an element. */
  private readonly chunks = new Map<string, { key: StorageKey; data: Uint8Array }>();
  private closed = false;

  load(key: StorageKey): Promise<Uint8Array | undefined> {
    return this.op(() => {
      assertKey(key);
      const found = this.chunks.get(key.join('/'));
      return found && found.data.slice();
    });
  }

  save(key: StorageKey, data: Uint8Array): Promise<void> {
    return this.op(() => {
      assertKey(key);
      assertValue(key, data);
      this.chunks.set(key.join('/'), { key: [...key], data: data.slice() });
    });
  }

  remove(key: StorageKey): Promise<void> {
    return this.op(() => {
      assertKey(key);
      this.chunks.delete(key.join('/'));
    });
  }

  loadRange(prefix: StorageKey): Promise<Chunk[]> {
    return this.op(() => {
      assertPrefix(prefix);
      return [...this.matching(prefix)].map(([, c]) => ({
        key: [...c.key],
        data: c.data.slice(),
      }));
    });
  }

  removeRange(prefix: StorageKey): Promise<void> {
    return this.op(() => {
      assertPrefix(prefix);
      for (const [name] of [...this.matching(prefix)]) this.chunks.delete(name);
    });
  }

  /** Frees the data and refuses further use; idempotent. */
  close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
    return Promise.resolve();
  }

  private *matching(prefix: StorageKey): Iterable<[string, { key: StorageKey; data: Uint8Array }]> {
    for (const entry of this.chunks) if (hasPrefix(entry[1].key, prefix)) yield entry;
  }

  /** Runs a synchronous body as an async operation: errors become rejections, like a real store. */
  private async op<T>(body: () => T): Promise<T> {
    await Promise.resolve();
    if (this.closed) throw new StoreError('STORE_CLOSED', 'store is closed');
    return body();
  }
}
