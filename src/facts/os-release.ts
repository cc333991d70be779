// Reads os-release(5): /etc/os-release, else /usr/lib/os-release. The format is a restricted
// shell assignment list (KEY=value, quotes, backslash escapes, # comments); parsing it never runs
// a shell. collect.ts calls readOsRelease; nixos.ts uses the result to recognise NixOS.

import { MAX_STRING } from './bounded.js';
import { readTextIn } from './files.js';
import type { OsInfo } from './schema.js';

/** What os-release(5) says to assume when the file or a key is missing. */
export const DEFAULT_OS: OsInfo = {
  id: 'linux',
  name: 'Linux',
  version: '',
  versionId: '',
  prettyName: 'Linux',
};

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses os-release text into a Map (not an object, so a `__proto__=` line stays a plain key).
 * Lines that are blank, comments or not `KEY=value` are skipped; later keys win.
 */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    if (!KEY.test(key)) continue;
    out.set(key, unquote(line.slice(eq + 1)).slice(0, MAX_STRING));
  }
  return out;
}

/**
 * One shell word: `"..."` (where `\` escapes only `" \ $ \``), `'...'` (literal), and bare text
 * (where `\` escapes any character) may be concatenated; an unquoted blank ends the value.
 */
function unquote(value: string): string {
  let out = '';
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] ?? '';
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else out += c;
    } else if (c === '\\' && i + 1 < value.length && escapes(quote, value[i + 1] ?? '')) {
      out += value[++i] ?? '';
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else out += c;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === ' ' || c === '\t') {
      break;
    } else {
      out += c;
    }
  }
  return out;
}

function escapes(quote: '"' | undefined, next: string): boolean {
  return quote === undefined || '"\\$`'.includes(next);
}

/** The fields of {@link OsInfo} from parsed os-release keys, with the os-release(5) defaults. */
export function osInfoFrom(keys: ReadonlyMap<string, string>): OsInfo {
  const buildId = keys.get('BUILD_ID');
  return {
    id: keys.get('ID') || DEFAULT_OS.id,
    name: keys.get('NAME') || DEFAULT_OS.name,
    version: keys.get('VERSION') ?? '',
    versionId: keys.get('VERSION_ID') ?? '',
    prettyName: keys.get('PRETTY_NAME') || DEFAULT_OS.prettyName,
    ...(buildId ? { buildId } : {}),
  };
}

/** Reads os-release under `root`; a missing file gives {@link DEFAULT_OS} and a note. */
export async function readOsRelease(root: string, note: (text: string) => void): Promise<OsInfo> {
  const text =
    (await readTextIn(root, '/etc/os-release')) ?? (await readTextIn(root, '/usr/lib/os-release'));
  if (text === undefined) {
    note('os-release: not found');
    return DEFAULT_OS;
  }
  return osInfoFrom(parseOsRelease(text));
}
