// The documents' stored forms (src/docs): agent records in the root document and sealed strings
// in facts documents. Readers take what peers wrote, so malformed records must be skipped, and a
// record written must read back as the entry it came from.

import * as A from '@automerge/automerge';
import type { DocumentId } from '@automerge/automerge-repo';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { docIdFor } from '../sync/owned-doc.js';
import { sealStrings, plain } from '../src/docs/scalars.js';
import {
  MAX_RECORD,
  agentsOf,
  decodeAgent,
  encodeAgent,
  storedFacts,
  type AgentEntry,
  type FactsDoc,
  type RootDoc,
} from '../src/docs/types.js';
import { generateNodeKey } from '../src/identity/index.js';

const entry = (hostname: string): AgentEntry => ({
  nodeId: generateNodeKey().nodeId,
  factsDocId: '47FLLd7MwhUDiAJZqFEymnnWN3Xj' as DocumentId,
  factsWriteKey: 'ab'.repeat(32),
  enrolledAt: '2026-11-26T09:00:00.000Z',
  lastSeen: '2026-11-26T09:10:00.000Z',
  summary: { hostname, os: 'NixOS 25.05', nixosVersion: '25.05', kernel: '6.12.7', arch: 'x86_64' },
  factsHeads: null,
});

describe('agent records in the root document', () => {
  it('round-trip through a saved and loaded document, in fleet table order', () => {
    const [b, a] = [entry('web-b'), entry('web-a')];
    const doc = A.change(A.init<RootDoc>(), (d) => {
      d.agents = {};
      d.agents[b.nodeId] = encodeAgent(b);
      d.agents[a.nodeId] = encodeAgent(a);
    });
    const loaded = A.load<RootDoc>(A.save(doc));
    expect(agentsOf(loaded)).toEqual([a, b]);
    expect(decodeAgent(a.nodeId, loaded.agents[a.nodeId])).toEqual(a);
  });

  it('skips malformed records instead of trusting them', () => {
    const good = entry('ok');
    const record = (over: Record<string, unknown>) =>
      new A.ImmutableString(JSON.stringify({ ...JSON.parse(encodeAgent(good).val), ...over }));
    const bad: [string, unknown][] = [
      ['not-a-node-id', encodeAgent(good)],
      [good.nodeId, 'plain text, not JSON'],
      [good.nodeId, new A.ImmutableString('{"unterminated"')],
      [good.nodeId, new A.ImmutableString('42')],
      [good.nodeId, { factsDocId: 'x' }], // a map, not a record
      [good.nodeId, record({ factsDocId: 7 })],
      [good.nodeId, record({ factsWriteKey: 'f'.repeat(65) })],
      [good.nodeId, record({ lastSeen: undefined })],
      [good.nodeId, record({ pad: 'x'.repeat(MAX_RECORD) })], // over the record size cap
    ];
    for (const [key, value] of bad) expect(decodeAgent(key, value), String(value)).toBeUndefined();
    // A summary that does not validate leaves the entry, without a summary.
    expect(decodeAgent(good.nodeId, record({ summary: { hostname: 5 } }))?.summary).toBeNull();
  });
});

describe('sealed strings', () => {
  it('store every string as one scalar and read back the same plain value', () => {
    const value = { a: 'text', n: 1, list: ['x', { deep: 'y' }], none: null, yes: true };
    const doc = A.from({ v: sealStrings(value) as object });
    const loaded = A.load<{ v: unknown }>(A.save(doc));
    const v = loaded.v as { a: unknown; list: unknown[] };
    expect(A.isImmutableString(v.a)).toBe(true);
    expect(plain(loaded.v)).toEqual(value);
  });

  it('plain() keeps a "__proto__" key as data, never as a prototype', () => {
    const out = plain(JSON.parse('{"__proto__": {"polluted": true}}')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('storedFacts is null before the first write and stamps collectedAt with changedAt', () => {
    const base = { kind: 'flt/facts', schema: 1, owner: 'x' } as unknown as FactsDoc;
    expect(storedFacts(base)).toBeNull();
    const written = {
      ...base,
      facts: sealStrings({ hostname: 'h' }),
      changedAt: new A.ImmutableString('2026-11-26T00:00:00.000Z'),
    } as FactsDoc;
    expect(storedFacts(written)).toEqual({
      hostname: 'h',
      collectedAt: '2026-11-26T00:00:00.000Z',
    });
  });
});

describe('document ids', () => {
  it('are the DocumentId automerge-repo derives from the same 16 bytes (checksum, canonical form)', async () => {
    const { parseAutomergeUrl, stringifyAutomergeUrl } = await import('@automerge/automerge-repo');
    type Url = Parameters<typeof parseAutomergeUrl>[0];
    // A fixed key and the id automerge-repo's own URL helpers gave for it.
    expect(docIdFor(new Uint8Array(32).fill(7))).toBe(FIXED_DOC_ID);
    for (let i = 0; i < 200; i++) {
      const id = docIdFor(randomBytes(32));
      const { binaryDocumentId } = parseAutomergeUrl(`automerge:${id}` as Url);
      expect(binaryDocumentId.length).toBe(16);
      expect(parseAutomergeUrl(stringifyAutomergeUrl(binaryDocumentId)).documentId).toBe(id);
    }
  });
});

/** docIdFor(32 bytes of 7), as automerge-repo's stringifyAutomergeUrl encoded it before. */
const FIXED_DOC_ID = 'azFifDYeM36A74CqXSwE7swKYsP';
