// Fake-IP pool: the forwarder answers A (and AAAA, with a v6 range) queries with addresses
// from a reserved range and remembers domain ↔ address, so the data plane can map a
// connection's destination back to the domain the client asked for (domain rules without
// sniffing).
//
// Allocation is deterministic: a domain's address is hash(domain) within the range, probing
// forward past taken addresses. The same domain so gets the same address across restarts
// (with high probability, and always when the map is persisted), which keeps connections a
// client opened before a restart mappable. When the pool is full, the least recently used
// domain (asked for, or looked up by the data plane) gives its address up.
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { bigIntToIpv6, ipRdata, ipv6ToBigInt, normalizeName } from './wire.js';

export interface FakeIpPoolOptions {
  /** IPv4 CIDR, e.g. 198.18.0.0/15. */
  range: string;
  /** Optional IPv6 CIDR, e.g. fc00::/18: AAAA queries get fake answers only with it. */
  range6?: string;
  /** Domains kept per family at most (default: the range's size, capped at 65,536 for IPv6 / huge IPv4 ranges). */
  maxEntries?: number;
}

export class FakeIpRangeError extends Error {
  constructor(range: string, reason: string) {
    super(`fake-ip range '${range}': ${reason}`);
    this.name = 'FakeIpRangeError';
  }
}

interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

function ipToBigInt(ip: string): { family: 4 | 6; value: bigint } | undefined {
  const mapped = V4_MAPPED.exec(ip);
  const text = mapped ? mapped[1]! : ip;
  if (isIPv4(text)) return { family: 4, value: text.split('.').reduce((v, o) => (v << 8n) | BigInt(Number(o)), 0n) };
  if (isIPv6(text)) return { family: 6, value: ipv6ToBigInt(text.replace(/%.*$/, '')) };
  return undefined;
}

function bigIntToIp(family: 4 | 6, v: bigint): string {
  if (family === 6) return bigIntToIpv6(v);
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
}

export function parseFakeIpCidr(text: string, family: 4 | 6): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  const ip = m && ipToBigInt(m[1]!);
  if (!m || !ip) throw new FakeIpRangeError(text, 'expected ADDRESS/PREFIX');
  if (ip.family !== family) throw new FakeIpRangeError(text, `expected an IPv${family} range`);
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(m[2]);
  if (prefix > bits) throw new FakeIpRangeError(text, `prefix longer than ${bits}`);
  const hostBits = BigInt(bits - prefix);
  const network = (ip.value >> hostBits) << hostBits;
  return { family, network, prefix };
}

interface Entry {
  domain: string;
  offset: bigint;
  /** The address in wire form (A/AAAA rdata), made on first answer. */
  rdata?: Buffer;
}

/** One family's address space and its two maps. */
class Space {
  /** First usable address and how many there are. */
  private readonly first: bigint;
  private readonly usable: bigint;
  readonly capacity: number;
  /** domain → entry, least recently used first. */
  private readonly byDomain = new Map<string, Entry>();
  private readonly byOffset = new Map<bigint, Entry>();
  evictions = 0;

  constructor(
    readonly cidr: Cidr,
    readonly text: string,
    maxEntries: number | undefined,
  ) {
    const bits = cidr.family === 4 ? 32 : 128;
    const total = 1n << BigInt(bits - cidr.prefix);
    // Leave out the network address (and IPv4's broadcast address) when the range has room.
    const skipFirst = total > 2n ? 1n : 0n;
    const skipLast = cidr.family === 4 && total > 2n ? 1n : 0n;
    this.first = cidr.network + skipFirst;
    this.usable = total - skipFirst - skipLast;
    const cap = BigInt(maxEntries ?? (cidr.family === 4 && this.usable <= 1n << 20n ? Number(this.usable) : 65_536));
    this.capacity = Number(cap < this.usable ? cap : this.usable);
    if (this.capacity < 1) throw new FakeIpRangeError(text, 'no usable address');
  }

  get size(): number {
    return this.byDomain.size;
  }

  contains(v: bigint): boolean {
    return v >= this.first && v < this.first + this.usable;
  }

  private touch(e: Entry): void {
    this.byDomain.delete(e.domain);
    this.byDomain.set(e.domain, e);
  }

  private ip(e: Entry): string {
    return bigIntToIp(this.cidr.family, this.first + e.offset);
  }

  allocate(domain: string): string {
    return this.ip(this.allocateEntry(domain));
  }

  /** allocate(), as the record data of an answer (kept with the entry: no formatting per query). */
  allocateRdata(domain: string): Buffer {
    const e = this.allocateEntry(domain);
    return (e.rdata ??= ipRdata(this.ip(e)));
  }

  private allocateEntry(domain: string): Entry {
    const known = this.byDomain.get(domain);
    if (known) {
      this.touch(known);
      return known;
    }
    if (this.byDomain.size >= this.capacity) {
      const oldest = this.byDomain.values().next().value as Entry;
      this.remove(oldest);
      this.evictions++;
    }
    const digest = createHash('sha256').update(domain).digest();
    let offset = digest.readBigUInt64BE(0) % this.usable;
    while (this.byOffset.has(offset)) offset = offset + 1n === this.usable ? 0n : offset + 1n;
    const e = { domain, offset };
    this.byDomain.set(domain, e);
    this.byOffset.set(offset, e);
    return e;
  }

  /** Puts a known pair back (restoring a saved map); false if it does not fit. */
  restore(domain: string, v: bigint): boolean {
    if (!this.contains(v) || this.byDomain.size >= this.capacity) return false;
    const offset = v - this.first;
    if (this.byOffset.has(offset) || this.byDomain.has(domain)) return false;
    const e = { domain, offset };
    this.byDomain.set(domain, e);
    this.byOffset.set(offset, e);
    return true;
  }

  lookup(v: bigint): string | undefined {
    if (!this.contains(v)) return undefined;
    const e = this.byOffset.get(v - this.first);
    if (!e) return undefined;
    this.touch(e);
    return e.domain;
  }

  peekDomain(domain: string): string | undefined {
    const e = this.byDomain.get(domain);
    return e && this.ip(e);
  }

  private remove(e: Entry): void {
    this.byDomain.delete(e.domain);
    this.byOffset.delete(e.offset);
  }

  entries(): [string, string][] {
    return [...this.byDomain.values()].map((e) => [e.domain, this.ip(e)]);
  }

  clear(): void {
    this.byDomain.clear();
    this.byOffset.clear();
  }
}

export class FakeIpPool {
  private readonly v4: Space;
  private readonly v6: Space | undefined;

  constructor(o: FakeIpPoolOptions) {
    this.v4 = new Space(parseFakeIpCidr(o.range, 4), o.range, o.maxEntries);
    this.v6 = o.range6 ? new Space(parseFakeIpCidr(o.range6, 6), o.range6, o.maxEntries) : undefined;
  }

  get hasV6(): boolean {
    return this.v6 !== undefined;
  }

  get size(): number {
    return this.v4.size + (this.v6?.size ?? 0);
  }

  get evictions(): number {
    return this.v4.evictions + (this.v6?.evictions ?? 0);
  }

  /** The fake address of `domain` (allocated on first use), or undefined for IPv6 without a v6 range. */
  allocate(domain: string, family: 4 | 6): string | undefined {
    const space = family === 4 ? this.v4 : this.v6;
    return space?.allocate(normalizeName(domain));
  }

  /** allocate(), as A/AAAA record data (shared: copy before changing it). */
  allocateRdata(domain: string, family: 4 | 6): Buffer | undefined {
    const space = family === 4 ? this.v4 : this.v6;
    return space?.allocateRdata(normalizeName(domain));
  }

  /** The domain a fake address stands for (marks it recently used); accepts ::ffff:a.b.c.d. */
  lookup(ip: string): string | undefined {
    const v = ipToBigInt(ip);
    if (!v) return undefined;
    return (v.family === 4 ? this.v4 : this.v6)?.lookup(v.value);
  }

  /** The address already given to `domain`, without allocating or touching. */
  addressOf(domain: string, family: 4 | 6): string | undefined {
    return (family === 4 ? this.v4 : this.v6)?.peekDomain(normalizeName(domain));
  }

  /** Whether `ip` lies in a fake range (mapped or not). */
  contains(ip: string): boolean {
    const v = ipToBigInt(ip);
    if (!v) return false;
    const space = v.family === 4 ? this.v4 : this.v6;
    return space?.contains(v.value) ?? false;
  }

  /** [domain, ip] pairs, least recently used first (the order `restore` wants). */
  entries(): [string, string][] {
    return [...this.v4.entries(), ...(this.v6?.entries() ?? [])];
  }

  /** Puts saved pairs back; pairs outside the current ranges are skipped. Returns how many were taken. */
  restore(pairs: readonly (readonly [string, string])[]): number {
    let n = 0;
    for (const [domain, ip] of pairs) {
      if (typeof domain !== 'string' || typeof ip !== 'string') continue;
      const v = ipToBigInt(ip);
      if (!v) continue;
      const space = v.family === 4 ? this.v4 : this.v6;
      if (space?.restore(normalizeName(domain), v.value)) n++;
    }
    return n;
  }

  clear(): void {
    this.v4.clear();
    this.v6?.clear();
  }
}
