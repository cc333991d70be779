// stores/journal.ts: a durable map of strings in one file. What a set() acknowledged survives a
// reopen and a SIGKILL at any moment; a torn last line or a malformed one is dropped and the file
// rewritten whole before anything goes after it; a burst of sets is one write; the log is
// compacted; bad keys and values are refused and change nothing; a failed write rejects, and
// the next write brings the file up to date. Real files in a temp dir, a real child process.

import { spawn } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Journal, readJournal } from '../stores/journal.js';
import { StoreError } from '../stores/errors.js';
import { tempDir } from './helpers/flt.js';

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/journal-child.js');

describe('Journal', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let n = 0;
  /** A fresh journal file's path (its directory does not exist yet). */
  const fresh = () => join(dir.path, `j${n++}`, 'journal');
  beforeAll(async () => void (dir = await tempDir()));
  afterAll(async () => dir?.remove());

  it('keeps what was set and deleted across a reopen; a new file exists before any set', async () => {
    const file = fresh();
    const journal = await Journal.open(file);
    expect(await readFile(file, 'utf8')).toBe('');
    await journal.set('a', '1');
    await journal.set('b', '2');
    await journal.set('a', '3');
    await journal.set('b', undefined);
    expect([journal.get('a'), journal.get('b')]).toEqual(['3', undefined]);
    await journal.close();
    const again = await Journal.open(file);
    expect([again.get('a'), again.get('b'), again.size]).toEqual(['3', undefined, 1]);
    await again.close();
  });

  it('drops a torn last line and rewrites the file before appending after it', async () => {
    const file = fresh();
    await (await Journal.open(file)).close();
    await writeFile(file, 'a\t1\nb\t2\nc\t3');
    const journal = await Journal.open(file);
    expect([journal.get('a'), journal.get('b'), journal.get('c')]).toEqual(['1', '2', undefined]);
    expect(await readFile(file, 'utf8')).toBe('a\t1\nb\t2\n');
    await journal.set('d', '4');
    await journal.close();
    expect((await readJournal(file))?.entries).toEqual(
      new Map([
        ['a', '1'],
        ['b', '2'],
        ['d', '4'],
      ]),
    );
  });

  it('drops malformed lines and values its reader does not accept, and removes leftover temps', async () => {
    const file = fresh();
    await (await Journal.open(file)).close();
    await writeFile(file, 'a\t1\n\tx\nb\t2\t3\nc\tbad\r\nd\tbad\ne\t5\n');
    const leftover = join(file, '..', '.journal.0123abcd.tmp');
    await writeFile(leftover, 'junk');
    const journal = await Journal.open(file, { accept: (_k, v) => v !== 'bad' });
    expect([...(await readdir(join(file, '..')))]).toEqual(['journal']);
    expect((await readJournal(file))?.entries).toEqual(
      new Map([
        ['a', '1'],
        ['e', '5'],
      ]),
    );
    expect((await readJournal(file))?.clean).toBe(true);
    await journal.close();
  });

  it('writes a burst of sets asked in one step with at most two appends', async () => {
    const journal = await Journal.open(fresh());
    const append = vi.spyOn(journal as unknown as { append: () => Promise<void> }, 'append');
    await Promise.all(Array.from({ length: 100 }, (_, i) => journal.set(`k${i}`, `v${i}`)));
    expect(append.mock.calls.length).toBeGreaterThan(0);
    expect(append.mock.calls.length).toBeLessThanOrEqual(2);
    await journal.close();
    expect((await readJournal(journal.file))?.entries.size).toBe(100);
  });

  it('compacts a log of overwrites: it holds a bounded number of lines', async () => {
    const journal = await Journal.open(fresh());
    for (let round = 0; round < 30; round++)
      await Promise.all(Array.from({ length: 100 }, (_, i) => journal.set('k', `${round}.${i}`)));
    await journal.close();
    const read = await readJournal(journal.file);
    expect(read?.entries.get('k')).toBe('29.99');
    expect(read?.lines).toBeLessThan(1_200);
  });

  it('refuses a key or value that would not read back, changing nothing', async () => {
    const journal = await Journal.open(fresh());
    await journal.set('a', '1');
    for (const [key, value] of [
      ['', '1'],
      ['a\tb', '1'],
      ['a\nb', '1'],
      ['a', 'x\ny'],
      ['a', 'x\ty'],
      ['a\r', undefined],
    ] as const)
      expect(() => journal.set(key, value)).toThrow(TypeError);
    expect(journal.get('a')).toBe('1');
    await journal.close();
    expect(await readFile(journal.file, 'utf8')).toBe('a\t1\n');
  });

  it('a failed write rejects; the next one rewrites the file with everything asked', async () => {
    const journal = await Journal.open(fresh());
    const append = vi
      .spyOn(journal as unknown as { append: () => Promise<void> }, 'append')
      .mockRejectedValueOnce(new Error('EIO'));
    await expect(journal.set('a', '1')).rejects.toMatchObject({ code: 'STORE_IO' });
    expect(journal.get('a')).toBe('1');
    await journal.set('b', '2');
    append.mockRestore();
    await journal.close();
    expect((await readJournal(journal.file))?.entries).toEqual(
      new Map([
        ['a', '1'],
        ['b', '2'],
      ]),
    );
  });

  it('close waits for writes asked before it, is idempotent, and refuses later sets', async () => {
    const journal = await Journal.open(fresh());
    const setting = journal.set('a', '1');
    await Promise.all([journal.close(), journal.close()]);
    await setting;
    expect((await readJournal(journal.file))?.entries.get('a')).toBe('1');
    await expect(journal.set('b', '2')).rejects.toBeInstanceOf(StoreError);
    await expect(journal.set('b', '2')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
  });

  it('keeps every acknowledged write of a writer SIGKILLed while writing', async () => {
    for (const acked of [1, 50, 400]) {
      const file = fresh();
      const child = spawn(process.execPath, [CHILD, file], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const done: number[] = [];
      const exited = new Promise((res) => child.once('exit', res));
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error('journal child: too slow')), 30_000);
        createInterface({ input: child.stdout }).on('line', (line) => {
          done.push(Number(line));
          if (done.length === acked) {
            clearTimeout(timer);
            child.kill('SIGKILL');
            res();
          }
        });
        child.once('exit', (code) => rej(new Error(`journal child exited (${code})`)));
      });
      await exited;
      const journal = await Journal.open(file);
      for (const i of done) expect(journal.get(`k${i}`)).toBe(i % 10 === 0 ? undefined : `v${i}`);
      await journal.close();
      expect((await readJournal(file))?.clean).toBe(true);
    }
  });
});
