// Domain list files: one entry per line, the format of v2fly's domain-list-community
// without its regexp/include extensions. Parsing takes the text, so routing stays pure.
//
//   # comment                 (also after an entry)
//   example.com               suffix: example.com and every name below it
//   domain:example.com        the same
//   full:www.example.com      exactly this name
//   keyword:tracker           any name containing 'tracker'
//   ads.example @ads          trailing @attributes are ignored
//
// A list is compiled as it is parsed (packed name sets, a keyword automaton), once per
// file per generation: every compileRules call of that generation shares it.
import { UsageError } from '../errors.js';
import { KeywordSet, NameSet, NameSetBuilder } from './name-set.js';

/** How a DomainList crosses to the data plane (JSON IPC): see DomainList.toJSON. */
export interface PackedDomainList {
  source: string;
  full: string;
  suffix: string;
  keyword: string[];
}

export class DomainList {
  private keywordSet: KeywordSet | undefined;

  constructor(
    /** Where the entries came from (a file path), for messages. */
    readonly source: string,
    readonly full: NameSet,
    readonly suffix: NameSet,
    readonly keyword: readonly string[],
  ) {}

  get size(): number {
    return this.full.size + this.suffix.size + this.keyword.length;
  }

  /** Whether the list matches `name` (lower case, no trailing dot). */
  matches(name: string): boolean {
    if (this.full.has(name)) return true;
    if (this.suffix.size > 0) {
      for (let at = 0; at >= 0; at = name.indexOf('.', at) + 1 || -1) if (this.suffix.has(name, at)) return true;
    }
    if (this.keyword.length === 0) return false;
    this.keywordSet ??= new KeywordSet(this.keyword);
    return this.keywordSet.matches(name);
  }

  /** The entries as written lists (tests, messages). */
  entries(): { full: string[]; suffix: string[]; keyword: string[] } {
    return { full: this.full.names(), suffix: this.suffix.names(), keyword: [...this.keyword] };
  }

  toJSON(): PackedDomainList {
    return { source: this.source, full: this.full.pack(), suffix: this.suffix.pack(), keyword: [...this.keyword] };
  }

  static fromJSON(p: PackedDomainList): DomainList {
    return new DomainList(p.source, NameSet.unpack(p.full), NameSet.unpack(p.suffix), p.keyword);
  }
}

/** A DomainList, or its JSON form after crossing to the data plane. */
export function reviveDomainList(v: DomainList | PackedDomainList): DomainList {
  return v instanceof DomainList ? v : DomainList.fromJSON(v);
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
    if (v.length === 0 || /[\s/]/.test(v))
      return { error: `'${text}' is not a domain keyword: use a piece of a name, e.g. 'google'` };
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

/** Bytes of a name: a-z 0-9 _ - (and '.', checked apart). */
const NAME_BYTE = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789_-') NAME_BYTE[c.charCodeAt(0)] = 1;
const DOT = 46;
const PREFIXES = [
  ['full:', 'full'],
  ['domain:', 'suffix'],
  ['keyword:', 'keyword'],
].map(([p, kind]) => ({ bytes: Buffer.from(p!, 'latin1'), kind: kind as DomainEntryKind }));

/** The kind a line's prefix says (and where its value starts), or a bare name's. */
function prefixOf(b: Uint8Array, start: number, end: number): { kind: DomainEntryKind; at: number } {
  for (const p of PREFIXES) {
    const n = p.bytes.length;
    if (end - start <= n || b[start + n - 1] !== 58) continue;
    let i = 0;
    while (i < n && b[start + i] === p.bytes[i]) i++;
    if (i === n) return { kind: p.kind, at: start + n };
  }
  return { kind: 'suffix', at: start };
}

/** Whether b[start, end) is a normalised name: lower-case labels, no empty one, at most 253 bytes. */
function isPlainName(b: Uint8Array, start: number, end: number): boolean {
  if (end <= start || end - start > 253 || b[start] === DOT || b[end - 1] === DOT) return false;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c === DOT) {
      if (b[i + 1] === DOT) return false;
    } else if (c >= 128 || NAME_BYTE[c] === 0) return false;
  }
  return true;
}

export function parseDomainList(text: string, source = 'domain list'): DomainList {
  // Most lines of a big list are plain lower-case entries: checked and added from the bytes,
  // no string per line. Non-ASCII text keeps one char a byte only through the slow path.
  const ascii = Buffer.byteLength(text, 'utf8') === text.length;
  const b = ascii ? Buffer.from(text, 'latin1') : undefined;
  // Tables sized for the whole list up front (none grows and rehashes on the way); the name
  // bytes grow as needed (a copy of the list per set would be most of the peak memory).
  const expect = { entries: b ? lineCount(b) : 256, bytes: b ? b.length >> 2 : 1 << 12 };
  const full = new NameSetBuilder(expect);
  const suffix = new NameSetBuilder(expect);
  const keyword = new Set<string>();
  const add = (kind: DomainEntryKind, v: string) =>
    kind === 'full' ? full.add(v) : kind === 'suffix' ? suffix.add(v) : keyword.add(v);
  let n = 0;
  for (let start = 0; start < text.length; n++) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const lineEnd = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    const lineStart = start;
    start = end + 1;
    if (b) {
      const p = prefixOf(b, lineStart, lineEnd);
      if (p.kind !== 'keyword' && isPlainName(b, p.at, lineEnd)) {
        (p.kind === 'full' ? full : suffix).addBytes(b, p.at, lineEnd);
        continue;
      }
    }
    const entry = parseLine(text.slice(lineStart, lineEnd), source, n + 1);
    if (entry) add(entry.kind, entry.value);
  }
  return new DomainList(source, full.build(), suffix.build(), [...keyword]);
}

function lineCount(b: Uint8Array): number {
  let n = 1;
  for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
  return n;
}

/** Any other line: comments, attributes, upper case, spaces; undefined for a blank one. */
function parseLine(raw: string, source: string, lineNo: number): { kind: DomainEntryKind; value: string } | undefined {
  let line = raw;
  const hash = line.indexOf('#');
  if (hash >= 0) line = line.slice(0, hash);
  line = line.trim();
  if (!line) return undefined;
  // Attributes (`@cn`, `@ads`) qualify an entry in v2fly lists; routing ignores them.
  line = line
    .split(/\s+/)
    .filter((w) => !w.startsWith('@'))
    .join(' ');
  if (!line) return undefined;
  const colon = line.indexOf(':');
  const prefix = colon < 0 ? '' : line.slice(0, colon).toLowerCase();
  const value = colon < 0 ? line : line.slice(colon + 1);
  let kind: DomainEntryKind;
  if (prefix === '' || prefix === 'domain') kind = 'suffix';
  else if (prefix === 'full') kind = 'full';
  else if (prefix === 'keyword') kind = 'keyword';
  else {
    // Never quote the line: a list path pointed at a secret file must not echo it.
    throw new UsageError(
      `${source}:${lineNo}: not a domain list entry: use full:NAME, domain:NAME, keyword:WORD or a bare name`,
    );
  }
  const r = normalizeDomainEntry(kind, value);
  if ('error' in r)
    throw new UsageError(
      `${source}:${lineNo}: not a ${kind === 'keyword' ? 'domain keyword' : 'domain name'}${value.includes('*') ? ' (no wildcards: a suffix already matches every name below it)' : ''}`,
    );
  return { kind, value: r.value };
}
