// Sets of domain names and of keywords without an object per entry, for domain lists of a
// million names: the names are packed into one byte buffer, found through an open-addressing
// hash table of Int32s (≈ 30 bytes a name), and the whole set crosses to the data plane
// as one string (the names, a line each) instead of a million JSON strings.

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
    return this.size === 0 ? [] : this.pack().slice(0, -1).split('\n');
  }

  /** The names, a line each (what crosses to the data plane: ASCII, so JSON copies it as is). */
  pack(): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length).toString('latin1');
  }

  /** The set `pack` made (the table is rebuilt: a pass over the bytes, no string per name). */
  static unpack(text: string): NameSet {
    if (text.length === 0) return NameSet.EMPTY;
    if (text.charCodeAt(text.length - 1) !== 10) throw new TypeError('packed name set: not newline-terminated');
    const bytes = new Uint8Array(Buffer.from(text, 'latin1'));
    let size = 0;
    for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) size++;
    const ends = new Uint32Array(size);
    const hashes = new Uint32Array(size);
    let start = 0;
    for (let e = 0; e < size; e++) {
      let h = FNV_OFFSET;
      let i = start;
      for (; bytes[i] !== 10; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
      if (i === start) throw new TypeError('packed name set: an empty name');
      hashes[e] = h >>> 0;
      ends[e] = i;
      start = i + 1;
    }
    return new NameSet(bytes, ends, tableOf(hashes, size, slotsFor(size)), size);
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
    for (; this.slots[at] !== 0; at = (at + 1) & mask)
      if (this.equalsBytes(this.slots[at]! - 1, bytes, from, to)) return false;
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
    for (; this.slots[at] !== 0; at = (at + 1) & mask) if (this.equals(this.slots[at]! - 1, name)) return false;
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
    return new NameSet(this.bytes.slice(0, this.used), this.ends.slice(0, this.count), slots, this.count);
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
 * (Aho-Corasick: a trie of the keywords with failure links).
 */
export class KeywordSet {
  /** Trie edges: state * 65536 + char code → next state. */
  private readonly next = new Map<number, number>();
  private readonly fail: Int32Array;
  /** 1 where a keyword ends at this state or at one of its failure-link suffixes. */
  private readonly accept: Uint8Array;

  constructor(readonly keywords: readonly string[]) {
    const acceptAt: number[] = [0];
    let states = 1;
    for (const kw of keywords) {
      let s = 0;
      for (let i = 0; i < kw.length; i++) {
        const key = s * 65536 + kw.charCodeAt(i);
        let t = this.next.get(key);
        if (t === undefined) {
          t = states++;
          this.next.set(key, t);
          acceptAt.push(0);
        }
        s = t;
      }
      acceptAt[s] = 1;
    }
    this.accept = Uint8Array.from(acceptAt);
    this.fail = this.failureLinks(states);
  }

  /** Failure links by breadth-first order over the trie (a parent's link is known first). */
  private failureLinks(states: number): Int32Array {
    const fail = new Int32Array(states);
    const children: number[][] = Array.from({ length: states }, () => []);
    for (const [key, t] of this.next) children[Math.floor(key / 65536)]!.push(key % 65536, t);
    const queue: number[] = [];
    for (let i = 0; i < children[0]!.length; i += 2) queue.push(children[0]![i + 1]!);
    for (let q = 0; q < queue.length; q++) {
      const s = queue[q]!;
      const kids = children[s]!;
      for (let i = 0; i < kids.length; i += 2) {
        const c = kids[i]!;
        const t = kids[i + 1]!;
        let f = fail[s]!;
        let to = this.next.get(f * 65536 + c);
        while (to === undefined && f !== 0) {
          f = fail[f]!;
          to = this.next.get(f * 65536 + c);
        }
        fail[t] = to !== undefined && to !== t ? to : 0;
        if (this.accept[fail[t]!]) this.accept[t] = 1;
        queue.push(t);
      }
    }
    return fail;
  }

  get size(): number {
    return this.keywords.length;
  }

  /** Whether `name` contains any of the keywords. */
  matches(name: string): boolean {
    if (this.keywords.length === 0) return false;
    let s = 0;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      let to = this.next.get(s * 65536 + c);
      while (to === undefined && s !== 0) {
        s = this.fail[s]!;
        to = this.next.get(s * 65536 + c);
      }
      s = to ?? 0;
      if (this.accept[s]) return true;
    }
    return false;
  }
}
