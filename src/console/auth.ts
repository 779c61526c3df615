// Console authentication: scrypt password hashes, in-memory sessions with CSRF tokens, and
// a per-address login rate limit. Pure (no HTTP), so it is unit-tested without a server.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { UsageError } from '../errors.js';

const scrypt = (password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (e, key) => (e ? reject(e) : resolve(key))));

/** N=2^15, r=8, p=1: ~32 MiB and ~100 ms per check; maxmem must allow 128·N·r bytes. */
export const SCRYPT_DEFAULTS = { N: 1 << 15, r: 8, p: 1, keylen: 32 } as const;
const b64 = (b: Buffer) => b.toString('base64url');

/** `scrypt$N$r$p$salt$hash` (salt and hash base64url): the parameters travel with the hash. */
export async function hashPassword(password: string, params: { N: number; r: number; p: number } = SCRYPT_DEFAULTS): Promise<string> {
  if (password.length === 0) throw new UsageError('the password is empty');
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT_DEFAULTS.keylen, { ...params, maxmem: 256 * params.N * params.r });
  return `scrypt$${params.N}$${params.r}$${params.p}$${b64(salt)}$${b64(key)}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

export function parsePasswordHash(text: string): ParsedHash | undefined {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/.exec(text.trim());
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // Bounds keep a hostile or mistyped file from making every login eat gigabytes.
  if (N < 2 || N > 1 << 20 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(m[4]!, 'base64url');
  const key = Buffer.from(m[5]!, 'base64url');
  if (salt.length < 8 || key.length < 16) return undefined;
  return { N, r, p, salt, key };
}

/** Constant-time check of `password` against a `scrypt$…` hash; false for a malformed hash. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const h = parsePasswordHash(hash);
  if (!h) return false;
  const key = await scrypt(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r });
  return timingSafeEqual(key, h.key);
}

/** Constant-time string equality (lengths may leak, contents do not). */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface Session {
  id: string;
  csrf: string;
  lastSeen: number;
}

export const SESSION_IDLE_MS = 12 * 3600_000;

/** Sessions by id; each carries its CSRF token. Ids are 32 random bytes (base64url). */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly idleMs = SESSION_IDLE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  create(): Session {
    this.sweep();
    const s: Session = { id: b64(randomBytes(32)), csrf: b64(randomBytes(32)), lastSeen: this.now() };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session with this id (its idle clock restarted), or undefined. */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (this.now() - s.lastSeen > this.idleMs) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastSeen = this.now();
    return s;
  }

  /** Whether `token` is this session's CSRF token (constant time). */
  checkCsrf(s: Session, token: string | undefined): boolean {
    return token !== undefined && safeEqual(s.csrf, token);
  }

  destroy(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (now - s.lastSeen > this.idleMs) this.sessions.delete(id);
  }
}

/** At most `max` failed logins per address in a sliding window. */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly max = 5,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `addr` may try again; 0 when it may try now. */
  retryAfter(addr: string): number {
    const recent = this.recent(addr);
    if (recent.length < this.max) return 0;
    return Math.max(1, Math.ceil((recent[0]! + this.windowMs - this.now()) / 1000));
  }

  fail(addr: string): void {
    const recent = this.recent(addr);
    recent.push(this.now());
    this.failures.set(addr, recent);
    if (this.failures.size > 10_000) this.prune(); // bounded under a spray of addresses
  }

  succeed(addr: string): void {
    this.failures.delete(addr);
  }

  private recent(addr: string): number[] {
    const t = this.now() - this.windowMs;
    return (this.failures.get(addr) ?? []).filter((x) => x > t);
  }

  private prune(): void {
    for (const addr of [...this.failures.keys()]) {
      const r = this.recent(addr);
      if (r.length) this.failures.set(addr, r);
      else this.failures.delete(addr);
    }
  }
}
