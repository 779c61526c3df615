// Domain list files: one entry per line, the format of v2fly's domain-list-community
// without its regexp/include extensions. Parsing takes the text, so routing stays pure.
//
//   # comment                 (also after an entry)
//   example.com               suffix: example.com and every name below it
//   domain:example.com        the same
//   full:www.example.com      exactly this name
//   keyword:tracker           any name containing 'tracker'
//   ads.example @ads          trailing @attributes are ignored
import { UsageError } from '../errors.js';

export interface DomainList {
  /** Where the entries came from (a file path), for messages. */
  source: string;
  full: string[];
  suffix: string[];
  keyword: string[];
}

const NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;

export type DomainEntryKind = 'full' | 'suffix' | 'keyword';

/**
 * Normalise one rule entry (lower case; no trailing dot; a suffix may start with '.'),
 * or return why it is not one.
 */
export function normalizeDomainEntry(kind: DomainEntryKind, text: string): { value: string } | { error: string } {
  let v = text.trim().toLowerCase();
  if (kind === 'keyword') {
    if (v.length === 0 || /[\s/]/.test(v)) return { error: `'${text}' is not a domain keyword: use a piece of a name, e.g. 'google'` };
    return { value: v };
  }
  if (kind === 'suffix' && v.startsWith('.')) v = v.slice(1);
  if (v.endsWith('.')) v = v.slice(0, -1);
  if (v.length === 0 || v.length > 253 || !NAME.test(v)) {
    const hint = v.includes('*') ? ' (no wildcards: a suffix already matches every name below it)' : '';
    return { error: `'${text}' is not a domain name${hint}` };
  }
  return { value: v };
}

export function parseDomainList(text: string, source = 'domain list'): DomainList {
  const list: DomainList = { source, full: [], suffix: [], keyword: [] };
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    let line = lines[n]!;
    const hash = line.indexOf('#');
    if (hash >= 0) line = line.slice(0, hash);
    line = line.trim();
    if (!line) continue;
    // Attributes (`@cn`, `@ads`) qualify an entry in v2fly lists; routing ignores them.
    line = line.split(/\s+/).filter((w) => !w.startsWith('@')).join(' ');
    if (!line) continue;
    const colon = line.indexOf(':');
    const prefix = colon < 0 ? '' : line.slice(0, colon).toLowerCase();
    const value = colon < 0 ? line : line.slice(colon + 1);
    let kind: DomainEntryKind;
    if (prefix === '' || prefix === 'domain') kind = 'suffix';
    else if (prefix === 'full') kind = 'full';
    else if (prefix === 'keyword') kind = 'keyword';
    else {
      throw new UsageError(`${source}:${n + 1}: '${line}': unsupported entry type '${prefix}:' (use full:, domain:, keyword: or a bare name)`);
    }
    const r = normalizeDomainEntry(kind, value);
    if ('error' in r) throw new UsageError(`${source}:${n + 1}: ${r.error}`);
    list[kind].push(r.value);
  }
  return list;
}
