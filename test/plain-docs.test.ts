// The table of plain Automerge documents (sync/plain-docs.ts, issue 13), on a real FsStore: what
// it saves loads in a Repo as if the Repo had saved it, and what a Repo saved opens here; changes
// are saved incrementally and compacted into one snapshot without losing any; bad changes change
// nothing; a find of a held document hands everything it held to the Repo; an idle document
// leaves the table saved. Waits are on state with deadlines.

import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { Repo, type DocumentId } from '@automerge/automerge-repo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { MemoryStore } from '../stores/memory-store.js';
import type { NodeId } from '../sync/ids.js';
import { PlainDocs } from '../sync/plain-docs.js';
import { PushReceiver } from '../sync/push.js';
import type { HaveMessage } from '../sync/push-wire.js';
import { tempDir } from './helpers/flt.js';
import { waitFor } from './helpers/wait.js';

type Counter = { n: number; notes: string[] };

/** A writer's document and the changes of each step, as a push carries them. */
function writer() {
  let doc = A.from<Counter>({ n: 0, notes: [] });
  const first = A.getAllChanges(doc);
  return {
    first,
    next(note: string): Uint8Array[] {
      const before = A.getHeads(doc);
      doc = A.change(doc, (d) => {
        d.n += 1;
        d.notes.push(note);
      });
      return A.getChanges(A.view(doc, before), doc);
    },
    get heads() {
      return A.getHeads(doc);
    },
  };
}

describe('PlainDocs', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let count = 0;
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());

  /** `doc` as `p` opens it: loaded if need be, then read. */
  const read = async (p: PlainDocs, doc: DocumentId) =>
    (await p.open(doc)) ? p.get<Counter>(doc) : undefined;
  const fresh = () => FsStore.open(join(dir.path, `store-${++count}`));
  const docId = () => new Repo({ network: [] }).create().documentId;

  async function repoRead(store: FsStore, doc: DocumentId) {
    const repo = new Repo({ storage: store, network: [] });
    const handle = await repo.find<Counter>(doc, { allowableStates: ['ready', 'unavailable'] });
    return handle.isReady() ? handle.doc() : undefined;
  }

  /** A table on a fresh store holding one document, made and then changed once (note 'a'). */
  async function oneChanged() {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const plain = new PlainDocs({ store });
    plain.create(doc, w.first);
    plain.apply(doc, w.next('a'));
    return { store, w, doc, plain };
  }

  it('saves what it takes where a Repo finds it, and opens what a Repo saved', async () => {
    const { store, w, doc, plain } = await oneChanged();
    await plain.saved(doc);
    const inRepo = await repoRead(store, doc);
    expect(inRepo?.n).toBe(1);
    expect(A.getHeads(inRepo!)).toEqual(w.heads);

    const repo = new Repo({ storage: store, network: [] });
    const handle = await repo.find<Counter>(doc);
    handle.change((d) => void (d.n = 10));
    await repo.flush([doc]);
    let work = 0;
    const again = new PlainDocs({ store, onWork: () => void work++ });
    const opened = await read(again, doc);
    expect(opened?.n).toBe(10);
    expect(await again.open(docId())).toBe(false);
    expect(await again.open(doc)).toBe(true); // held: not loaded again
    expect(work).toBe(1); // told of each load from the store (memory-mode.ts counts them)
    await Promise.all([plain.close(), again.close()]);
    await store.close();
  });

  it('saves every change and compacts into one snapshot, losing none', async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const saved: string[][] = [];
    const plain = new PlainDocs({ store, onSaved: (_d, heads) => saved.push([...heads]) });
    plain.create(doc, w.first);
    for (let i = 0; i < 60; i++) {
      plain.apply(doc, w.next(`note ${i}`));
      if (i % 7 === 0) await plain.saved(doc);
    }
    await plain.saved(doc);
    expect(saved.at(-1)).toEqual(w.heads);
    const snapshots = await store.loadRange([doc, 'snapshot']);
    const incrementals = await store.loadRange([doc, 'incremental']);
    // Compacted along the way (60 changes, far more bytes than the snapshot's): a few chunks.
    expect(snapshots).toHaveLength(1);
    expect(incrementals.length).toBeLessThan(20);
    const reopened = await read(new PlainDocs({ store }), doc);
    expect(reopened?.n).toBe(60);
    expect(reopened?.notes).toHaveLength(60);
    expect(A.getHeads(reopened!)).toEqual(w.heads);
    await plain.close();
    await store.close();
  });

  it("builds a document's object once for the readers of one turn, and lets it go after", async () => {
    const { store, doc, plain } = await oneChanged();
    const first = plain.get<Counter>(doc);
    expect(plain.get<Counter>(doc)).toBe(first); // the same turn: built once
    await new Promise((resolve) => setImmediate(resolve));
    const later = plain.get<Counter>(doc);
    expect(later).not.toBe(first); // not held between turns
    expect(later).toEqual(first);
    expect(later?.notes).toEqual(['a']);
    await plain.close();
    await store.close();
  });

  it('tells of its work: a document made or changed, not changes it held or refused', async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    let work = 0;
    const plain = new PlainDocs({ store, onWork: () => void work++ });
    plain.create(doc, w.first);
    expect(work).toBe(1);
    const next = w.next('b');
    plain.apply(doc, next);
    expect(work).toBe(2);
    plain.apply(doc, next); // held already: the heads did not move
    expect(() => plain.apply(doc, [new Uint8Array([1, 2, 3])])).toThrow(/do not decode/);
    expect(plain.create(doc, w.first)).toBe(false);
    expect(work).toBe(2);
    await plain.close();
    await store.close();
  });

  it('refuses changes that do not decode and changes nothing', async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const plain = new PlainDocs({ store });
    expect(() => plain.create(doc, [new Uint8Array([1, 2, 3])])).toThrow(/do not decode/);
    expect(plain.has(doc)).toBe(false);
    plain.create(doc, w.first);
    const heads = A.getHeads(plain.get(doc)!);
    const good = w.next('x');
    const bad = new Uint8Array(good[0]!);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    expect(() => plain.apply(doc, [...good, bad])).toThrow(/do not decode/);
    expect(A.getHeads(plain.get(doc)!)).toEqual(heads);
    await plain.close();
    await store.close();
  });

  it('keeps changes that wait for their dependencies across its saves', async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const plain = new PlainDocs({ store });
    const second = w.next('b');
    const third = w.next('c');
    // The third change arrives before the second (a push that raced a loss): kept aside while
    // the first is saved, and applied once the second comes.
    plain.create(doc, [...w.first, ...third]);
    await plain.saved(doc);
    plain.apply(doc, second);
    await plain.saved(doc);
    expect(plain.get<Counter>(doc)?.notes).toEqual(['b', 'c']);
    expect(plain.heads(doc)).toEqual(w.heads);
    expect((await read(new PlainDocs({ store }), doc))?.n).toBe(2);
    await plain.close();
    await store.close();
  });

  it("hands a held document over to a Repo's find with everything it held", async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const plain = new PlainDocs({ store });
    const repo = new Repo({ storage: store, network: [] });
    plain.handOver(repo);
    plain.create(doc, w.first);
    for (let i = 0; i < 5; i++) plain.apply(doc, w.next(`n${i}`)); // not awaited: in flight
    const handle = await repo.find<Counter>(doc);
    expect(handle.doc().n).toBe(5);
    expect(A.getHeads(handle.doc())).toEqual(w.heads);
    expect(plain.has(doc)).toBe(false);
    // Once the Repo holds it, the table does not open it again behind its back.
    expect(plain.get(doc)).toBeUndefined();
    await plain.close();
    await store.close();
  });

  it('lets an idle document go once saved, and loads it again when used', async () => {
    const store = await fresh();
    const w = writer();
    const doc = docId();
    const evicted: string[][] = [];
    const plain = new PlainDocs({
      store,
      idleMs: 50,
      onEvict: (_d, heads) => evicted.push([...heads]),
    });
    plain.create(doc, w.first);
    plain.apply(doc, w.next('a'));
    await waitFor('the idle document to leave', () => evicted.length > 0);
    expect(evicted[0]).toEqual(w.heads);
    expect(plain.has(doc)).toBe(false);
    const again = await read(plain, doc);
    expect(again?.n).toBe(1);
    await plain.close();
    await store.close();
  });

  /**
   * A holder as a coordinator sets one up (a Repo, a table handed over to it, pushes taken into
   * the table) on a store whose next `loadRange` waits until `release()`: a find can start while
   * a push is loading the document.
   */
  function holderWithGate(store: MemoryStore) {
    let gate: { hit: () => void; open: Promise<void> } | undefined;
    const gated = Object.assign(Object.create(store) as MemoryStore, {
      loadRange: async (prefix: Parameters<MemoryStore['loadRange']>[0]) => {
        const g = gate;
        gate = undefined;
        if (g) {
          g.hit();
          await g.open;
        }
        return store.loadRange(prefix);
      },
    });
    const repo = new Repo({ storage: gated, network: [] });
    const plain = new PlainDocs({ store: gated });
    plain.handOver(repo);
    const answers: HaveMessage[] = [];
    const receiver = new PushReceiver({
      repo,
      plain,
      link: {
        nodeId: 'holder' as NodeId,
        sendPush: (m) => void (m.type === 'flt-have' && answers.push(m)),
        speaksPush: () => true,
      },
      authorize: () => 'accept',
      stored: async (doc) => (await store.loadRange([doc])).length > 0,
    });
    /** Holds the next loadRange; resolves once one is waiting, with the function that lets it go. */
    const hold = () =>
      new Promise<() => void>((hit) => {
        let open!: () => void;
        const opened = new Promise<void>((r) => (open = r));
        gate = { hit: () => hit(open), open: opened };
      });
    const push = (doc: DocumentId, heads: string[], changes: Uint8Array[]) =>
      receiver.receive('writer' as NodeId, {
        type: 'flt-push',
        senderId: 'writer',
        targetId: 'holder',
        documentId: doc,
        heads,
        changes,
      });
    /** The document wherever it is held, and where (never both). */
    const where = (doc: DocumentId) => {
      const handle = repo.handles[doc];
      expect(plain.has(doc) && handle !== undefined).toBe(false);
      return plain.has(doc) ? 'plain' : handle !== undefined ? 'repo' : 'nowhere';
    };
    return { repo, plain, answers, hold, push, where };
  }

  it('never holds a document the Repo finds while a push creates it', async () => {
    const store = new MemoryStore();
    const h = holderWithGate(store);
    const w = writer();
    const doc = docId();
    const held = h.hold();
    const pushed = h.push(doc, w.heads, w.first);
    const letGo = await held;
    const found = h.repo.find<Counter>(doc, { allowableStates: ['ready', 'unavailable'] });
    letGo();
    await Promise.all([pushed, found]);
    expect(h.where(doc)).toBe('repo');
    const next = w.next('a');
    await h.push(doc, w.heads, next);
    expect(h.where(doc)).toBe('repo');
    const handle = await h.repo.find<Counter>(doc);
    expect(handle.doc().n).toBe(1);
    expect(A.getHeads(handle.doc())).toEqual(w.heads);
    expect(h.answers.at(-1)?.covers).toBe(true);
    await h.plain.close();
  });

  /** A memory store whose saves wait until `letSave()`. */
  function savesHeld() {
    const store = new MemoryStore();
    let letSave!: () => void;
    const saving = new Promise<void>((r) => (letSave = r));
    const gated = Object.assign(Object.create(store) as MemoryStore, {
      save: async (...args: Parameters<MemoryStore['save']>) => {
        await saving;
        return store.save(...args);
      },
    });
    return { gated, letSave };
  }

  it('a hand-over: readers may still peek while it saves, and are told the handle that took it', async () => {
    const { gated, letSave } = savesHeld();
    const repo = new Repo({ storage: gated, network: [] });
    const told: { doc: DocumentId; heads: string[] }[] = [];
    const plain = new PlainDocs({
      store: gated,
      onHandedOver: (doc, handle) => told.push({ doc, heads: A.getHeads(handle.doc()) }),
    });
    plain.handOver(repo);
    const w = writer();
    const doc = docId();
    expect(plain.create(doc, w.first)).toBe(true);
    const found = repo.find<Counter>(doc);
    // Leaving: not held for changes, but still readable until the Repo has it.
    expect(plain.get(doc)).toBeUndefined();
    expect(plain.peek<Counter>(doc)?.n).toBe(0);
    expect(told).toEqual([]);
    letSave();
    const handle = await found;
    await waitFor('told', () => told.length > 0);
    expect(told).toEqual([{ doc, heads: A.getHeads(handle.doc()) }]);
    expect(plain.peek(doc)).toBeUndefined();
    await plain.close();
  });

  it("a hand-over that begins between a push's open() and apply(), the document unsaved: the Repo gets all of it", async () => {
    // The push finds the document held, then the hand-over begins (an admin's find), so the push
    // goes to the Repo's path while the table still holds the document and its first save is
    // under way (held by the store until `letSave`).
    const { gated, letSave } = savesHeld();
    const { repo, plain, answers, push } = holderWithGate(gated);
    const w = writer();
    const doc = docId();
    expect(plain.create(doc, w.first)).toBe(true);
    const apply = plain.apply.bind(plain);
    let handOver: Promise<unknown> | undefined;
    plain.apply = (d, changes) => {
      handOver ??= repo.find(d);
      return apply(d, changes);
    };
    // Finds after the hand-over's own: the push's way into the Repo.
    const find = repo.find.bind(repo);
    let finds = 0;
    repo.find = (...args: Parameters<Repo['find']>) => {
      finds++;
      return find(...args);
    };
    const pushed = push(doc, w.heads, w.next('a'));
    let settled = false;
    void pushed.finally(() => (settled = true));
    // The save stays held until the push decided: imported (settled) or gone to the Repo's find.
    await waitFor('the push decided', () => settled || finds >= 2);
    letSave();
    await pushed;
    expect(handOver).toBeDefined();
    await handOver;
    expect(plain.has(doc)).toBe(false);
    const handle = await repo.find<Counter>(doc);
    expect(A.getHeads(handle.doc())).toEqual(w.heads);
    expect(handle.doc().n).toBe(1);
    expect(answers.at(-1)?.covers).toBe(true);
    await plain.close();
  });

  it('never holds a document the Repo finds while a push loads it', async () => {
    const store = new MemoryStore();
    const w = writer();
    const doc = docId();
    const first = new PlainDocs({ store });
    first.create(doc, w.first);
    await first.saved(doc);
    await first.close();
    const h = holderWithGate(store);
    const held = h.hold();
    const next = w.next('a');
    const pushed = h.push(doc, w.heads, next);
    const letGo = await held;
    const found = h.repo.find<Counter>(doc);
    letGo();
    await Promise.all([pushed, found]);
    expect(h.where(doc)).toBe('repo');
    const handle = await found;
    await waitFor('the pushed change in the handle', () => handle.doc().n === 1);
    expect(A.getHeads(handle.doc())).toEqual(w.heads);
    await h.plain.close();
  });
});
