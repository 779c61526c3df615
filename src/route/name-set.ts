// Sets of domain names and of keywords without an object per entry, for domain lists of a
// million names: the names are packed into one byte buffer, found through an open-addressing
// hash table of Int32s (≈ 30 bytes a name); keywords are a trie in typed arrays. Each set is
// a few typed arrays (arrays()/fromArrays()), so a compiled set crosses to the data plane as
// bytes and is used there as it is, without being built again.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a of the char codes s[from, to) (names are ASCII, so one byte a char). */
function hashChars(s: string, from: number, to: number): number {
  let h = FNV_OFFSET;
  for (let i = from; i < to; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** Table size for `n` entries: a power of two at most half full. */
function slotsFor(n: number): number {
  let size = 16;
  while (size < n * 2) size *= 2;
  return size;
}

/** An immutable set of ASCII names. Build one with NameSetBuilder. */
export class NameSet {
  constructor(
    /** The names, each followed by '\n'. */
    private readonly bytes: Uint8Array,
    /** ends[i]: where name i ends in `bytes` (at its '\n'; it starts after ends[i - 1], or at 0). */
    private readonly ends: Uint32Array,
    /** Hash table: entry index + 1, 0 for an empty slot. */
    private readonly slots: Int32Array,
    readonly size: number,
  ) {}

  static readonly EMPTY = new NameSet(new Uint8Array(0), new Uint32Array(0), new Int32Array(16), 0);

  /** Whether s[from..] is in the set (no substring is made: routing calls this per label). */
  has(s: string, from = 0): boolean {
    if (this.size === 0) return false;
    const len = s.length - from;
    const mask = this.slots.length - 1;
    for (let at = hashChars(s, from, s.length) & mask; ; at = (at + 1) & mask) {
      const e = this.slots[at]!;
      if (e === 0) return false;
      const start = e === 1 ? 0 : this.ends[e - 2]! + 1;
      const end = this.ends[e - 1]!;
      if (end - start !== len) continue;
      let i = 0;
      while (i < len && this.bytes[start + i] === s.charCodeAt(from + i)) i++;
      if (i === len) return true;
    }
  }

  /** Every name, in insertion order (tests, messages). */
  names(): string[] {
    if (this.size === 0) return [];
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length - 1)
      .toString('latin1')
      .split('\n');
  }

  /** What the set is made of (views, not copies): see fromArrays. */
  arrays(): [Uint8Array, Uint32Array, Int32Array] {
    return [this.bytes, this.ends, this.slots];
  }

  /** The set `arrays` gave, used as it is (no table is rebuilt); throws TypeError when they do not fit. */
  static fromArrays(bytes: Uint8Array, ends: Uint32Array, slots: Int32Array): NameSet {
    const size = ends.length;
    if (size === 0) return NameSet.EMPTY;
    const pow2 = slots.length >= 16 && (slots.length & (slots.length - 1)) === 0;
    if (!pow2 || slots.length < size * 2 || ends[size - 1]! >= bytes.length || bytes[bytes.length - 1] !== 10)
      throw new TypeError('packed name set: its parts do not fit together');
    return new NameSet(bytes, ends, slots, size);
  }
}

/** The hash table of entries 0..count-1 whose hashes are given. */
function tableOf(hashes: Uint32Array, count: number, size: number): Int32Array {
  const slots = new Int32Array(size);
  const mask = size - 1;
  for (let e = 0; e < count; e++) {
    let at = hashes[e]! & mask;
    while (slots[at] !== 0) at = (at + 1) & mask;
    slots[at] = e + 1;
  }
  return slots;
}

/** Collects ASCII names (duplicates ignored) into a NameSet. */
export class NameSetBuilder {
  private bytes: Uint8Array;
  private used = 0;
  private ends: Uint32Array;
  private slots: Int32Array;
  /** Each entry's hash, so growing the table never hashes a name again. */
  private hashes: Uint32Array;
  private count = 0;

  /** `entries` and `bytes`: what to expect (a hint: the builder grows past it). */
  constructor(expect: { entries: number; bytes: number } = { entries: 256, bytes: 1 << 12 }) {
    this.bytes = new Uint8Array(Math.max(16, expect.bytes));
    this.ends = new Uint32Array(Math.max(16, expect.entries));
    this.hashes = new Uint32Array(Math.max(16, expect.entries));
    this.slots = new Int32Array(slotsFor(expect.entries));
  }

  get size(): number {
    return this.count;
  }

  /** Adds the name in bytes[from, to) (ASCII, already normalised); false when it was there already. */
  addBytes(bytes: Uint8Array, from: number, to: number): boolean {
    if ((this.count + 1) * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    const mask = this.slots.length - 1;
    let hash = FNV_OFFSET;
    for (let i = from; i < to; i++) hash = Math.imul(hash ^ bytes[i]!, FNV_PRIME);
    hash >>>= 0;
    let at = hash & mask;
    // The stored hash first: most occupied slots hold another name, told apart without its bytes.
    for (; this.slots[at] !== 0; at = (at + 1) & mask) {
      const e = this.slots[at]! - 1;
      if (this.hashes[e] === hash && this.equalsBytes(e, bytes, from, to)) return false;
    }
    const len = to - from;
    while (this.used + len + 1 > this.bytes.length) this.bytes = grow(this.bytes, this.bytes.length * 2);
    const out = this.bytes;
    for (let i = from, o = this.used; i < to; i++, o++) out[o] = bytes[i]!;
    this.used += len;
    this.bytes[this.used++] = 10;
    this.record(hash, at);
    return true;
  }

  /** Adds `name` (ASCII, already normalised); false when it was there already. */
  add(name: string): boolean {
    if ((this.count + 1) * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    const mask = this.slots.length - 1;
    const hash = hashChars(name, 0, name.length);
    let at = hash & mask;
    for (; this.slots[at] !== 0; at = (at + 1) & mask) {
      const e = this.slots[at]! - 1;
      if (this.hashes[e] === hash && this.equals(e, name)) return false;
    }
    while (this.used + name.length + 1 > this.bytes.length) this.bytes = grow(this.bytes, this.bytes.length * 2);
    for (let i = 0; i < name.length; i++) this.bytes[this.used + i] = name.charCodeAt(i);
    this.used += name.length;
    this.bytes[this.used++] = 10;
    this.record(hash, at);
    return true;
  }

  /** The entry just written at the end of `bytes`: its end, its hash, its table slot. */
  private record(hash: number, at: number): void {
    if (this.count === this.ends.length) {
      this.ends = grow(this.ends, this.ends.length * 2);
      this.hashes = grow(this.hashes, this.hashes.length * 2);
    }
    this.hashes[this.count] = hash;
    this.ends[this.count++] = this.used - 1;
    this.slots[at] = this.count;
  }

  build(): NameSet {
    if (this.count === 0) return NameSet.EMPTY;
    const slots =
      this.slots.length === slotsFor(this.count) ? this.slots : tableOf(this.hashes, this.count, slotsFor(this.count));
    // Exactly as expected (a list counted up front): the arrays are kept, not copied.
    const bytes = this.used === this.bytes.length ? this.bytes : this.bytes.slice(0, this.used);
    const ends = this.count === this.ends.length ? this.ends : this.ends.slice(0, this.count);
    return new NameSet(bytes, ends, slots, this.count);
  }

  private equals(entry: number, name: string): boolean {
    const start = entry === 0 ? 0 : this.ends[entry - 1]! + 1;
    if (this.ends[entry]! - start !== name.length) return false;
    for (let i = 0; i < name.length; i++) if (this.bytes[start + i] !== name.charCodeAt(i)) return false;
    return true;
  }

  private equalsBytes(entry: number, bytes: Uint8Array, from: number, to: number): boolean {
    const start = entry === 0 ? 0 : this.ends[entry - 1]! + 1;
    if (this.ends[entry]! - start !== to - from) return false;
    for (let i = from; i < to; i++) if (this.bytes[start + i - from] !== bytes[i]) return false;
    return true;
  }

  private rehash(size: number): void {
    this.slots = tableOf(this.hashes, this.count, size);
  }
}

function grow<T extends Uint8Array | Uint32Array>(a: T, size: number): T {
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  return b;
}

/**
 * Keywords (substrings) matched in one pass over a name however many there are
 * (Aho-Corasick: a trie of the keywords with failure links), all in typed arrays.
 */
export class KeywordSet {
  private constructor(
    /** The keywords as UTF-8, each followed by '\n' (entries, messages). */
    private readonly text: Uint8Array,
    /** Trie edges in an open-addressing table: parent state + 1 (0: empty slot), char code, child state. */
    private readonly edgeFrom: Int32Array,
    private readonly edgeChar: Uint16Array,
    private readonly edgeTo: Int32Array,
    /** Per state: the state of its longest proper suffix in the trie. */
    private readonly fail: Int32Array,
    /** Per state: 1 where a keyword ends there or at one of its failure-link suffixes. */
    private readonly accept: Uint8Array,
    readonly size: number,
  ) {}

  private static empty: KeywordSet | undefined;

  static get EMPTY(): KeywordSet {
    KeywordSet.empty ??= KeywordSet.of([]);
    return KeywordSet.empty;
  }

  /** The set of `keywords` (duplicates kept once). */
  static of(keywords: Iterable<string>): KeywordSet {
    const b = new KeywordSetBuilder();
    for (const k of keywords) b.add(k);
    return b.build();
  }

  /** The keywords (tests, messages). */
  get keywords(): string[] {
    if (this.size === 0) return [];
    return Buffer.from(this.text.buffer, this.text.byteOffset, this.text.length - 1)
      .toString('utf8')
      .split('\n');
  }

  /** Whether `name` contains any of the keywords. */
  matches(name: string): boolean {
    if (this.size === 0) return false;
    let s = 0;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      let to = edge(this.edgeFrom, this.edgeChar, this.edgeTo, s, c);
      while (to < 0 && s !== 0) {
        s = this.fail[s]!;
        to = edge(this.edgeFrom, this.edgeChar, this.edgeTo, s, c);
      }
      s = to < 0 ? 0 : to;
      if (this.accept[s]) return true;
    }
    return false;
  }

  /** What the set is made of (views, not copies): see fromArrays. */
  arrays(): [Uint8Array, Int32Array, Uint16Array, Int32Array, Int32Array, Uint8Array] {
    return [this.text, this.edgeFrom, this.edgeChar, this.edgeTo, this.fail, this.accept];
  }

  /** The set `arrays` gave, used as it is; throws TypeError when they do not fit. */
  static fromArrays(
    text: Uint8Array,
    edgeFrom: Int32Array,
    edgeChar: Uint16Array,
    edgeTo: Int32Array,
    fail: Int32Array,
    accept: Uint8Array,
  ): KeywordSet {
    const slots = edgeFrom.length;
    if (
      (slots & (slots - 1)) !== 0 ||
      edgeChar.length !== slots ||
      edgeTo.length !== slots ||
      fail.length !== accept.length ||
      accept.length === 0 ||
      (text.length > 0 && text[text.length - 1] !== 10)
    )
      throw new TypeError('packed keyword set: its parts do not fit together');
    let size = 0;
    for (let i = text.indexOf(10); i >= 0; i = text.indexOf(10, i + 1)) size++;
    return new KeywordSet(text, edgeFrom, edgeChar, edgeTo, fail, accept, size);
  }

  /** Built by KeywordSetBuilder only. */
  static built(b: {
    text: Uint8Array;
    edgeFrom: Int32Array;
    edgeChar: Uint16Array;
    edgeTo: Int32Array;
    fail: Int32Array;
    accept: Uint8Array;
    size: number;
  }): KeywordSet {
    return new KeywordSet(b.text, b.edgeFrom, b.edgeChar, b.edgeTo, b.fail, b.accept, b.size);
  }
}

function edgeSlot(from: number, c: number, mask: number): number {
  const h = Math.imul(from, 0x9e3779b1) ^ Math.imul(c + 1, 0x85ebca6b);
  return (h ^ (h >>> 15)) & mask;
}

/** The child of state `from` on char `c`, or -1. */
function edge(edgeFrom: Int32Array, edgeChar: Uint16Array, edgeTo: Int32Array, from: number, c: number): number {
  const mask = edgeFrom.length - 1;
  for (let at = edgeSlot(from, c, mask); ; at = (at + 1) & mask) {
    const f = edgeFrom[at]!;
    if (f === 0) return -1;
    if (f === from + 1 && edgeChar[at] === c) return edgeTo[at]!;
  }
}

/** Collects keywords (duplicates ignored) into a KeywordSet. */
export class KeywordSetBuilder {
  private text = new Uint8Array(256);
  private used = 0;
  private edgeFrom = new Int32Array(64);
  private edgeChar = new Uint16Array(64);
  private edgeTo = new Int32Array(64);
  private edges = 0;
  private accept = new Uint8Array(64);
  private states = 1;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `keyword` (normalised already); false when it was there already. */
  add(keyword: string): boolean {
    let s = 0;
    for (let i = 0; i < keyword.length; i++) s = this.step(s, keyword.charCodeAt(i));
    if (keyword.length === 0 || this.accept[s]) return false;
    this.accept[s] = 1;
    this.keep(Buffer.from(keyword, 'utf8'), 0, Buffer.byteLength(keyword, 'utf8'));
    return true;
  }

  /** Adds the ASCII keyword in bytes[from, to); false when it was there already. */
  addBytes(bytes: Uint8Array, from: number, to: number): boolean {
    let s = 0;
    for (let i = from; i < to; i++) s = this.step(s, bytes[i]!);
    if (to <= from || this.accept[s]) return false;
    this.accept[s] = 1;
    this.keep(bytes, from, to);
    return true;
  }

  private keep(bytes: Uint8Array, from: number, to: number): void {
    while (this.used + to - from + 1 > this.text.length) this.text = grow(this.text, this.text.length * 2);
    this.text.set(bytes.subarray(from, to), this.used);
    this.used += to - from;
    this.text[this.used++] = 10;
    this.count++;
  }

  /** The child of `s` on `c`, made if missing. */
  private step(s: number, c: number): number {
    const to = edge(this.edgeFrom, this.edgeChar, this.edgeTo, s, c);
    if (to >= 0) return to;
    if ((this.edges + 1) * 2 > this.edgeFrom.length) this.rehash(this.edgeFrom.length * 2);
    const mask = this.edgeFrom.length - 1;
    let at = edgeSlot(s, c, mask);
    while (this.edgeFrom[at] !== 0) at = (at + 1) & mask;
    const t = this.states++;
    if (t === this.accept.length) this.accept = grow(this.accept, t * 2);
    this.edgeFrom[at] = s + 1;
    this.edgeChar[at] = c;
    this.edgeTo[at] = t;
    this.edges++;
    return t;
  }

  private rehash(size: number): void {
    const [from, chars, to] = [this.edgeFrom, this.edgeChar, this.edgeTo];
    this.edgeFrom = new Int32Array(size);
    this.edgeChar = new Uint16Array(size);
    this.edgeTo = new Int32Array(size);
    const mask = size - 1;
    for (let i = 0; i < from.length; i++) {
      if (from[i] === 0) continue;
      let at = edgeSlot(from[i]! - 1, chars[i]!, mask);
      while (this.edgeFrom[at] !== 0) at = (at + 1) & mask;
      this.edgeFrom[at] = from[i]!;
      this.edgeChar[at] = chars[i]!;
      this.edgeTo[at] = to[i]!;
    }
  }

  build(): KeywordSet {
    const accept = this.accept.slice(0, this.states);
    return KeywordSet.built({
      text: this.text.slice(0, this.used),
      edgeFrom: this.edgeFrom,
      edgeChar: this.edgeChar,
      edgeTo: this.edgeTo,
      fail: this.failureLinks(accept),
      accept,
      size: this.count,
    });
  }

  /** Failure links in breadth-first order (a parent's link is known before its children's). */
  private failureLinks(accept: Uint8Array): Int32Array {
    const n = this.states;
    // Each state's children as a range of one array (counting sort of the edges by parent).
    const first = new Int32Array(n + 1);
    for (let i = 0; i < this.edgeFrom.length; i++) if (this.edgeFrom[i] !== 0) first[this.edgeFrom[i]!]!++;
    for (let s = 0; s < n; s++) first[s + 1]! += first[s]!;
    const kids = new Int32Array(this.edges);
    const fill = first.slice(0, n);
    for (let i = 0; i < this.edgeFrom.length; i++) if (this.edgeFrom[i] !== 0) kids[fill[this.edgeFrom[i]! - 1]!++] = i;
    const fail = new Int32Array(n);
    const queue = new Int32Array(n);
    let tail = 0;
    queue[tail++] = 0;
    for (let head = 0; head < tail; head++) {
      const s = queue[head]!;
      for (let k = first[s]!; k < first[s + 1]!; k++) {
        const slot = kids[k]!;
        const t = this.edgeTo[slot]!;
        const c = this.edgeChar[slot]!;
        let f = fail[s]!;
        let to = s === 0 ? -1 : edge(this.edgeFrom, this.edgeChar, this.edgeTo, f, c);
        while (to < 0 && f !== 0) {
          f = fail[f]!;
          to = edge(this.edgeFrom, this.edgeChar, this.edgeTo, f, c);
        }
        fail[t] = to > 0 && to !== t ? to : 0;
        if (accept[fail[t]!]) accept[t] = 1;
        queue[tail++] = t;
      }
    }
    return fail;
  }
}
