// Runs the Store conformance suite (test/store-conformance.ts) against MemoryStore, FsStore and,
// for comparison, automerge-repo's NodeFSStorageAdapter, whose known failures are listed below.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFSStorageAdapter } from '@automerge/automerge-repo-storage-nodefs';
import { describe } from 'vitest';
import { FsStore } from '../stores/fs-store.js';
import { MemoryStore } from '../stores/memory-store.js';
import { CASES, storeConformance } from './store-conformance.js';

const tempDir = () => mkdtemp(join(tmpdir(), 'flt-store-'));
const removeDir = (dir: string) => rm(dir, { recursive: true, force: true });

describe('MemoryStore', () => {
  storeConformance('memory', () => {
    const store = new MemoryStore();
    return Promise.resolve({ store, cleanup: () => store.close() });
  });
});

/** FsStore in a fresh directory; any problem it logs fails the test. */
const fsFixture = (maxConcurrency?: number, readWorker?: boolean, log?: boolean) => async () => {
  const dir = await tempDir();
  const lines: string[] = [];
  const store = await FsStore.open(dir, {
    logger: (l) => lines.push(l),
    maxConcurrency,
    readWorker,
    log,
  });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await removeDir(dir);
      if (lines.length > 0) throw new Error(`unexpected store problems: ${lines.join('\n')}`);
    },
  };
};

describe('FsStore', () => {
  storeConformance('fs', fsFixture());
});

// One permit at a time: any operation that waited for a permit while holding one would hang here.
describe('FsStore with maxConcurrency 1', () => {
  storeConformance('fs-serial', fsFixture(1));
});

// Whole documents read in the process's worker thread (a coordinator's store).
describe('FsStore with readWorker', () => {
  storeConformance('fs-worker', fsFixture(undefined, true));
});

// Saves and removals appended to the chunk log, whole documents read in the worker: the store a
// coordinator opens.
describe('FsStore with log and readWorker', () => {
  storeConformance('fs-log', fsFixture(undefined, true, true));
});

describe('NodeFSStorageAdapter (reference)', () => {
  storeConformance(
    'nodefs',
    async () => {
      const dir = await tempDir();
      return { store: new NodeFSStorageAdapter(dir), cleanup: () => removeDir(dir) };
    },
    {
      fails: [
        // Its cache keeps the caller's Uint8Array and hands the same object back from load().
        CASES.copies,
        // Cached keys are matched as joined strings ('docA' is a string prefix of 'docAB/...'), and
        // a short first element names the shared 2-character directory: ['do'] lists everything.
        CASES.rangeWhole,
        // A complete key is a file, and its walk calls readdir on it: ENOTDIR is thrown.
        CASES.rangeFullKey,
        // getFilePath reads the first key element unchecked: the empty prefix throws a TypeError.
        CASES.rangeEmpty,
        // No key validation: ['docA1', '..'] writes outside the document's directory.
        CASES.badKey,
        // It has no close().
        CASES.close,
        // It stores empty and all-zero values, which cannot be told from a crash's leftovers.
        CASES.badValue,
      ],
    },
  );
});
