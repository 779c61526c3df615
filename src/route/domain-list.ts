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
// file per generation: every compileRules call of that generation shares it, and the data
// plane receives its typed arrays as bytes (packRuleLists) and uses them as they are.
import { UsageError } from '../errors.js';
import { KeywordSet, KeywordSetBuilder, NameSet, NameSetBuilder } from './name-set.js';
import type { PackedArray } from './packed.js';

/** Where a rule's list lies in the bytes its generation's lists were packed into (packRuleLists). */
export interface DomainListRef {
  source: string;
  offset: number;
  length: number;
}

export class DomainList {
  constructor(
    /** Where the entries came from (a file path), for messages. */
    readonly source: string,
    readonly full: NameSet,
    readonly suffix: NameSet,
    readonly keywords: KeywordSet,
  ) {}

  get size(): number {
    return this.full.size + this.suffix.size + this.keywords.size;
  }

  /** Whether the list matches `name` (lower case, no trailing dot). */
  matches(name: string): boolean {
    if (this.full.has(name)) return true;
    if (this.suffix.size > 0) {
      for (let at = 0; at >= 0; at = name.indexOf('.', at) + 1 || -1) if (this.suffix.has(name, at)) return true;
    }
    return this.keywords.matches(name);
  }

  /** The entries as written lists (tests, messages). */
  entries(): { full: string[]; suffix: string[]; keyword: string[] } {
    return { full: this.full.names(), suffix: this.suffix.names(), keyword: this.keywords.keywords };
  }

  /** The compiled list's typed arrays (views): see fromArrays. */
  arrays(): PackedArray[] {
    return [...this.full.arrays(), ...this.suffix.arrays(), ...this.keywords.arrays()];
  }

  /** The list `arrays` gave, used as it is; throws TypeError when they do not fit. */
  static fromArrays(source: string, a: readonly PackedArray[]): DomainList {
    const is = <T>(K: new (n: number) => T, v: unknown): T => {
      if (!(v instanceof K)) throw new TypeError('packed domain list: an array of the wrong type');
      return v;
    };
    if (a.length !== 12) throw new TypeError('packed domain list: wrong number of arrays');
    const names = (i: number) =>
      NameSet.fromArrays(is(Uint8Array, a[i]), is(Uint32Array, a[i + 1]), is(Int32Array, a[i + 2]));
    const keywords = KeywordSet.fromArrays(
      is(Uint8Array, a[6]),
      is(Int32Array, a[7]),
      is(Uint16Array, a[8]),
      is(Int32Array, a[9]),
      is(Int32Array, a[10]),
      is(Uint8Array, a[11]),
    );
    return new DomainList(source, names(0), names(3), keywords);
  }

  /** A summary: a list crosses to the data plane as bytes (packRuleLists), never as JSON. */
  toJSON(): { source: string; entries: number } {
    return { source: this.source, entries: this.size };
  }
}

/** A rule's domain list as a DomainList (a reference must go through reviveRuleLists first). */
export function reviveDomainList(v: DomainList | DomainListRef): DomainList {
  if (v instanceof DomainList) return v;
  throw new TypeError(`domain list ${v.source}: not unpacked (reviveRuleLists)`);
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

/** Whether b[start, end) is a keyword as normalised: name bytes and dots only. */
function isPlainKeyword(b: Uint8Array, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c !== DOT && (c >= 128 || NAME_BYTE[c] === 0)) return false;
  }
  return true;
}

interface Builders {
  full: NameSetBuilder;
  suffix: NameSetBuilder;
  keyword: KeywordSetBuilder;
}

/**
 * Parse a domain list file's bytes (UTF-8) or text. Plain lines (bare, domain:, full:,
 * keyword: in lower case) are checked and added straight from the bytes, no string per line;
 * comments, attributes, upper case and CRLF take the line parser.
 */
export function parseDomainList(input: string | Uint8Array, source = 'domain list'): DomainList {
  const b = typeof input === 'string' ? asciiBytes(input) : isAscii(input) ? input : undefined;
  const text = b ? undefined : typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  // Each set sized up front from a count of its lines (no table grows, rehashes or is copied
  // on the way when the lines are plain and distinct).
  const n = b ? countKinds(b) : { full: { entries: 256, bytes: 1 << 12 }, suffix: { entries: 256, bytes: 1 << 12 } };
  const sets: Builders = {
    full: new NameSetBuilder(n.full),
    suffix: new NameSetBuilder(n.suffix),
    keyword: new KeywordSetBuilder(),
  };
  if (b) addLines(b, sets, source);
  else addTextLines(text!, sets, source);
  return new DomainList(source, sets.full.build(), sets.suffix.build(), sets.keyword.build());
}

function addLines(b: Uint8Array, sets: Builders, source: string): void {
  const len = b.length;
  let n = 0;
  for (let start = 0; start < len; n++) {
    let end = start;
    while (end < len && b[end] !== 10) end++;
    const lineEnd = end > start && b[end - 1] === 13 ? end - 1 : end;
    const lineStart = start;
    start = end + 1;
    const p = prefixOf(b, lineStart, lineEnd);
    if (p.kind === 'keyword') {
      if (isPlainKeyword(b, p.at, lineEnd)) {
        sets.keyword.addBytes(b, p.at, lineEnd);
        continue;
      }
    } else if (isPlainName(b, p.at, lineEnd)) {
      sets[p.kind].addBytes(b, p.at, lineEnd);
      continue;
    }
    const line = Buffer.from(b.buffer, b.byteOffset + lineStart, lineEnd - lineStart).toString('latin1');
    addEntry(sets, parseLine(line, source, n + 1));
  }
}

function addTextLines(text: string, sets: Builders, source: string): void {
  let n = 0;
  for (let start = 0; start < text.length; n++) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    addEntry(sets, parseLine(text.slice(start, end), source, n + 1));
    start = end + 1;
  }
}

function addEntry(sets: Builders, entry: { kind: DomainEntryKind; value: string } | undefined): void {
  if (entry) sets[entry.kind].add(entry.value);
}

/** The text's bytes when it is ASCII (one byte a char), else undefined. */
function asciiBytes(text: string): Uint8Array | undefined {
  return Buffer.byteLength(text, 'utf8') === text.length ? Buffer.from(text, 'latin1') : undefined;
}

function isAscii(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 128) return false;
  return true;
}

/** Lines and their bytes (each with its '\n') per set, as the plain lines' prefixes say. */
function countKinds(b: Uint8Array): Record<'full' | 'suffix', { entries: number; bytes: number }> {
  const n = { full: { entries: 0, bytes: 0 }, suffix: { entries: 0, bytes: 0 } };
  for (let start = 0; start < b.length; ) {
    let end = start;
    while (end < b.length && b[end] !== 10) end++;
    const p = prefixOf(b, start, end);
    if (p.kind !== 'keyword' && end > p.at) {
      n[p.kind].entries++;
      n[p.kind].bytes += end - p.at + 1;
    }
    start = end + 1;
  }
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
