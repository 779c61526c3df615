// Console authentication: scrypt password hashes, in-memory sessions with CSRF tokens, and
// a per-address login rate limit. Pure (no HTTP), so it is unit-tested without a server.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';

const scrypt = (password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (e, key) => (e ? reject(e) : resolve(key))));

/** N=2^15, r=8, p=1: ~32 MiB and ~100 ms per check; maxmem must allow 128·N·r bytes. */
export const SCRYPT_DEFAULTS = { N: 1 << 15, r: 8, p: 1, keylen: 32 } as const;
const b64 = (b: Buffer) => b.toString('base64url');

/** `scrypt$N$r$p$salt$hash` (salt and hash base64url): the parameters travel with the hash. */
export async function hashPassword(
  password: string,
  params: { N: number; r: number; p: number } = SCRYPT_DEFAULTS,
): Promise<string> {
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

export interface LoginLimits {
  /** Failures a minute from one address before it must wait. */
  perAddress: number;
  /** … from one IPv4 /24 or IPv6 /64 (one host usually holds a whole /64). */
  perPrefix: number;
  /** … from all non-loopback clients together. */
  global: number;
  windowMs: number;
  /** Loopback is never refused: past `perAddress` failures its attempts wait, doubling from this… */
  loopbackDelayMs: number;
  /** …up to this. */
  loopbackMaxDelayMs: number;
}

export const LOGIN_LIMITS: LoginLimits = {
  perAddress: 5,
  perPrefix: 20,
  global: 100,
  windowMs: 60_000,
  loopbackDelayMs: 1000,
  loopbackMaxDelayMs: 30_000,
};

/** What a login attempt from an address must do: wait `retryAfter` s (refused), or be checked after `delayMs`. */
export interface LoginGate {
  retryAfter: number;
  delayMs: number;
}

const v4 = (a: string) => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);

/** All of 127/8 and ::1 are one client: any local user can pick any of them. */
export function isLoopback(addr: string): boolean {
  const a = v4(addr);
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/** The /24 (IPv4) or /64 (IPv6) an address is in, as a key. */
export function prefixOf(addr: string): string {
  const a = v4(addr);
  if (isIP(a) === 4) return `${a.split('.').slice(0, 3).join('.')}.0/24`;
  if (isIP(a) !== 6) return a;
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Failed console logins in a sliding window, counted per address, per /24 or /64, and over all
 * remote clients; past a limit a client is refused (429). Loopback is one client that is never
 * refused, only slowed: a local user cannot lock the admin out, and guesses slowly.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limits: LoginLimits = LOGIN_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  private keys(addr: string): [string, number][] {
    const a = v4(addr);
    if (isLoopback(a)) return [['loopback', this.limits.perAddress]];
    return [
      [`addr ${a}`, this.limits.perAddress],
      [`net ${prefixOf(a)}`, this.limits.perPrefix],
      ['global', this.limits.global],
    ];
  }

  check(addr: string): LoginGate {
    if (isLoopback(addr)) {
      const over = this.recent('loopback').length - this.limits.perAddress;
      const delayMs =
        over < 0 ? 0 : Math.min(this.limits.loopbackMaxDelayMs, this.limits.loopbackDelayMs * 2 ** Math.min(over, 20));
      return { retryAfter: 0, delayMs };
    }
    let wait = 0;
    for (const [key, max] of this.keys(addr)) {
      const recent = this.recent(key);
      if (recent.length >= max)
        wait = Math.max(wait, Math.ceil((recent[recent.length - max]! + this.limits.windowMs - this.now()) / 1000));
    }
    return { retryAfter: wait > 0 ? Math.max(1, wait) : 0, delayMs: 0 };
  }

  /** Seconds until `addr` may try again; 0 when it may try now. */
  retryAfter(addr: string): number {
    return this.check(addr).retryAfter;
  }

  fail(addr: string): void {
    for (const [key] of this.keys(addr)) {
      const recent = this.recent(key);
      recent.push(this.now());
      this.failures.set(key, recent);
    }
    if (this.failures.size > 10_000) this.prune(); // bounded under a spray of addresses
  }

  /** The address's own count is forgiven; its network's, the global and loopback's stay (an attacker shares them). */
  succeed(addr: string): void {
    if (!isLoopback(addr)) this.failures.delete(`addr ${v4(addr)}`);
  }

  private recent(key: string): number[] {
    const t = this.now() - this.limits.windowMs;
    return (this.failures.get(key) ?? []).filter((x) => x > t);
  }

  private prune(): void {
    for (const key of [...this.failures.keys()]) {
      const r = this.recent(key);
      if (r.length) this.failures.set(key, r);
      else this.failures.delete(key);
    }
  }
}
