// Response cache for the forwarder: keyed by (name lowercased, type, class, DO, CD), entries
// live for the response's cache TTL (see wire.cacheVerdict: minimum TTL over answer and
// authority, or the SOA minimum for negative answers), served with TTLs decremented by the
// time spent in the cache, evicted least-recently-used past `maxEntries`. The clock is
// injectable so TTL behaviour is tested without waiting.
import { cacheVerdict, normalizeName, rewriteTtls, withoutOpt, type DnsMessage } from './wire.js';

export interface DnsCacheOptions {
  /** Entries kept at most (LRU eviction past it); default 10,000. */
  maxEntries?: number;
  /** Longest time an answer is kept (and the largest TTL served); default 1 day. */
  maxTtl?: number;
  /** Longest time a negative answer is kept; default 1 hour (RFC 2308 suggests 1-3 h). */
  maxNegativeTtl?: number;
  /** Milliseconds clock; default performance.now (monotonic: a wall-clock step moves no expiry). */
  now?: () => number;
}

export interface CacheKeyParts {
  name: string;
  type: number;
  class: number;
  /** DNSSEC OK bit of the query. */
  do: boolean;
  /** Checking Disabled bit of the query. */
  cd?: boolean;
}

export function cacheKey(k: CacheKeyParts): string {
  return `${normalizeName(k.name)}|${k.type}|${k.class}|${k.do ? 1 : 0}${k.cd ? 1 : 0}`;
}

interface Entry {
  /** Response as stored (TTLs clamped, id 0). */
  response: Buffer;
  msg: DnsMessage;
  storedAt: number;
  expiresAt: number;
  negative: boolean;
  /** TTL cap applied when stored (msg's TTLs are the upstream's). */
  cap: number;
  /** The response as last served, for `servedElapsed` seconds in the cache: TTLs are
   *  rewritten once per second of age, not once per hit. */
  served: Buffer;
  servedElapsed: number;
  /** `served` without its OPT record (for clients without EDNS), made on first need. */
  servedNoOpt: Buffer | undefined;
}

export interface CacheHit {
  /**
   * Response with TTLs decremented by the whole seconds spent in the cache, id 0. `msg` is
   * the parse of the stored response: its offsets hold for `response` (only the TTL values
   * and the id differ). Shared by the hits of the same second: copy before changing it.
   */
  response: Buffer;
  /** The entry, for withoutOpt(). */
  readonly entry: unknown;
  msg: DnsMessage;
  /** Seconds this entry still lives. */
  remaining: number;
  negative: boolean;
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(o: DnsCacheOptions = {}) {
    this.maxEntries = Math.max(1, o.maxEntries ?? 10_000);
    this.maxTtl = o.maxTtl ?? 86_400;
    this.maxNegativeTtl = o.maxNegativeTtl ?? 3_600;
    this.now = o.now ?? (() => performance.now());
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry for `key`; `countMiss` false: a miss is not counted (the caller will ask again). */
  get(key: string, countMiss = true): CacheHit | undefined {
    const e = this.entries.get(key);
    if (!e) {
      if (countMiss) this.misses++;
      return undefined;
    }
    const now = this.now();
    if (now >= e.expiresAt) {
      this.entries.delete(key);
      if (countMiss) this.misses++;
      return undefined;
    }
    // Most recently used goes last.
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    const elapsed = Math.floor((now - e.storedAt) / 1000);
    if (elapsed !== e.servedElapsed) {
      e.served = rewriteTtls(e.response, e.msg, elapsed, e.cap);
      e.servedElapsed = elapsed;
      e.servedNoOpt = undefined;
    }
    return {
      response: e.served,
      entry: e,
      msg: e.msg,
      remaining: Math.ceil((e.expiresAt - now) / 1000),
      negative: e.negative,
    };
  }

  /** A hit's response without its OPT record (made once per second of age and shared: copy before changing it). */
  withoutOpt(hit: CacheHit): Buffer {
    const e = hit.entry as Entry;
    if (e.served !== hit.response) return withoutOpt(hit.response, e.msg);
    return (e.servedNoOpt ??= e.msg.edns ? withoutOpt(e.served, e.msg) : e.served);
  }

  /** Stores `response` if it is cacheable; returns whether it was. */
  set(key: string, response: Buffer, msg: DnsMessage): boolean {
    const verdict = cacheVerdict(response, msg);
    if (!verdict) return false;
    const cap = verdict.kind === 'negative' ? this.maxNegativeTtl : this.maxTtl;
    const ttl = Math.min(verdict.ttl, cap);
    if (ttl <= 0) return false;
    const stored = rewriteTtls(response, msg, 0, cap);
    stored.writeUInt16BE(0, 0);
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, {
      response: stored,
      msg,
      storedAt: now,
      expiresAt: now + ttl * 1000,
      negative: verdict.kind === 'negative',
      cap,
      served: stored,
      servedElapsed: 0,
      servedNoOpt: undefined,
    });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.evictions++;
    }
    return true;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
