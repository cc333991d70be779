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
  summarize,
  summaryFields,
  type AgentEntry,
  type FactsDoc,
  type RootDoc,
} from '../src/docs/types.js';
import { generateNodeKey } from '../src/identity/index.js';
import { sampleFacts } from '../bench/facts-sample.js';
import { factsPatch, writeFactsPatch } from '../src/docs/facts-doc.js';
import { factsBase } from '../src/docs/facts.js';
import { validateFacts, validateSummaryFacts, type Facts } from '../src/facts/index.js';
import { FltError } from '../sync/errors.js';

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

describe("the fleet table's summary of a facts document", () => {
  const owner = generateNodeKey().nodeId;
  const facts = (hostname: string): Facts => ({
    ...sampleFacts(1, '2026-12-05T06:00:00.000Z'),
    hostname,
  });
  const begin = () => A.change(A.init<FactsDoc>(), (d) => void Object.assign(d, factsBase(owner)));
  const written = (hostname: string, base = begin()) =>
    A.change(base, (d) => {
      const f = facts(hostname);
      writeFactsPatch(d, factsPatch(d, f), f.collectedAt);
    });
  const summaryAt = (doc: A.Doc<FactsDoc>, heads = A.getHeads(doc)) => {
    const fields = summaryFields(A.getBackend(doc), heads);
    return fields && summarize(validateSummaryFacts(fields));
  };

  it('reads the fields the whole facts give, at the heads asked (older heads: older facts)', () => {
    const first = written('host-a');
    const second = written('host-b', A.clone(first));
    expect(summaryAt(second)).toEqual(summarize(validateFacts(storedFacts(second))));
    expect(summaryAt(second)?.hostname).toBe('host-b');
    expect(summaryAt(second, A.getHeads(first))?.hostname).toBe('host-a');
  });

  it('reads facts without the optional fields (not NixOS) as the whole facts give them', () => {
    const { nixos: _, ...plainLinux } = facts('host-debian');
    const doc = A.change(begin(), (d) => {
      writeFactsPatch(d, factsPatch(d, plainLinux), plainLinux.collectedAt);
    });
    expect(summaryAt(doc)).toEqual(summarize(validateFacts(storedFacts(doc))));
    expect(summaryAt(doc)?.nixosVersion).toBeNull();
  });

  it('is null before the first write', () => {
    const base = begin();
    expect(summaryFields(A.getBackend(base), A.getHeads(base))).toBeNull();
  });

  it('validates only its own fields, with the codes of validateFacts', () => {
    const doc = written('host-a');
    const fields = summaryFields(A.getBackend(doc), A.getHeads(doc))!;
    // Another field not valid (the whole facts refused) leaves the summary readable.
    const badDisks = A.change(A.clone(doc), (d) => void (d.facts!['disks'] = 7));
    expect(() => validateFacts(storedFacts(badDisks))).toThrow(FltError);
    expect(summaryAt(badDisks)?.hostname).toBe('host-a');
    const code = (value: unknown) => {
      try {
        validateSummaryFacts(value);
        return 'accepted';
      } catch (err) {
        return err instanceof FltError ? err.code : 'other';
      }
    };
    // Text (documents written before strings were sealed) reads as its string; an object where
    // a string belongs is refused.
    const asText = A.change(A.clone(doc), (d) => void (d.facts!['hostname'] = 'host-text'));
    expect(summaryAt(asText)?.hostname).toBe('host-text');
    const archMap = A.change(A.clone(doc), (d) => void (d.facts!['arch'] = { bits: 64 }));
    expect(() => summaryAt(archMap)).toThrow(FltError);
    expect(code({ ...fields, hostname: 42 })).toBe('BAD_MESSAGE');
    expect(code({ ...fields, os: undefined })).toBe('BAD_MESSAGE');
    expect(code({ ...fields, schema: 2 })).toBe('UNSUPPORTED_VERSION');
    expect(code(fields)).toBe('accepted');
  });
});
