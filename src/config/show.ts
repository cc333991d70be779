// Prints a resolved configuration for `flt config show`: every key in table order, its value
// in the form a config file would take, and the source it came from (see resolve.ts).
// JSON output uses the file keys, so its values can be pasted back into a JSON config file.

import { formatSource, type ResolvedConfig } from './resolve.js';
import { KEY_SPECS, toFileValue, type FileValue } from './schema.js';

interface Row {
  readonly key: string;
  readonly value: FileValue;
  readonly source: string;
}

function rows(resolved: ResolvedConfig): Row[] {
  return KEY_SPECS.map((spec) => ({
    key: spec.key,
    value: toFileValue(spec, resolved.config[spec.field]),
    source: formatSource(resolved.sources[spec.key]),
  }));
}

function humanValue(value: FileValue): string {
  if (value === null) return '(unset)';
  if (typeof value === 'object') return `[${value.join(', ')}]`;
  return String(value);
}

function human(table: readonly Row[]): string {
  const cells = table.map((row) => ({ ...row, text: humanValue(row.value) }));
  const keyWidth = Math.max(...cells.map((c) => c.key.length));
  const valueWidth = Math.max(...cells.map((c) => c.text.length));
  return cells
    .map((c) => `${c.key.padEnd(keyWidth)} = ${c.text.padEnd(valueWidth)}   (${c.source})`)
    .join('\n');
}

function json(table: readonly Row[]): string {
  const entries = table.map((row) => [row.key, { value: row.value, source: row.source }]);
  return JSON.stringify(Object.fromEntries(entries), null, 2);
}

/**
 * The configuration as text: for people, one aligned `key = value   (source)` line per key,
 * with `(unset)` for unset keys and durations like `1m30s`; for scripts (`json: true`), an
 * object `{ "<key>": { "value": ..., "source": "flag --bind" } }` with `null` for unset.
 * No trailing newline.
 */
export function formatConfig(resolved: ResolvedConfig, options: { json: boolean }): string {
  const table = rows(resolved);
  return options.json ? json(table) : human(table);
}
