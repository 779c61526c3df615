// What the admin and console listeners share against hostile clients: a connection cap and
// deadlines (so a flood cannot take the supervisor's descriptors or memory), and refusal of
// requests whose Host or Origin is not the listener's own (DNS rebinding, cross-site pages).
import http from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from './log.js';

export interface ListenerLimits {
  /** Connections beyond this are closed as they are accepted. */
  maxConnections: number;
  /** Whole request head within this. */
  headersTimeoutMs: number;
  /** Head and body within this. */
  requestTimeoutMs: number;
  /** A socket with no traffic for this long is closed (SSE streams turn it off). */
  idleTimeoutMs: number;
}

export const LISTENER_LIMITS: ListenerLimits = {
  maxConnections: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
};

/** An http.Server with `limits` in force. */
export function guardedServer(handler: http.RequestListener, limits: ListenerLimits = LISTENER_LIMITS): http.Server {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // How often the two deadlines above are checked (Node's default is 30 s).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      keepAliveTimeout: 5000,
      maxHeaderSize: 16 << 10,
      requireHostHeader: true,
    },
    handler,
  );
  server.maxConnections = limits.maxConnections;
  server.maxHeadersCount = 64;
  server.setTimeout(limits.idleTimeoutMs); // no 'timeout' listener: idle sockets are destroyed
  return server;
}

/** The host part of a Host header (no port, no brackets, lower case, no trailing dot). */
export function hostnameOf(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']') >>> 0) : h.replace(/:\d*$/, '');
  return name.replace(/\.$/, '');
}

const unmapped = (ip: string) => (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip);

/**
 * Whether a Host header names this listener: `localhost`, the address the connection arrived
 * on, the address it is bound to, or one of `names`. A page from another site that made its
 * name resolve to 127.0.0.1 (DNS rebinding) still sends its own name, and is refused.
 */
export function hostAllowed(
  host: string | undefined,
  local: readonly (string | undefined)[],
  names: readonly string[] = [],
): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: no browser sends that
  const name = hostnameOf(host);
  if (!name) return false;
  if (name === 'localhost' || names.some((n) => n.toLowerCase() === name)) return true;
  return isIP(name) !== 0 && local.some((a) => a !== undefined && unmapped(a) === unmapped(name));
}

/** Origin, when present, must name the host the request was sent to (a cross-site form or fetch does not). */
export function originMatches(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  if (!host) return false;
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === host.toLowerCase();
  } catch {
    return false;
  }
}

/** Logs refused requests, at most `perMinute` lines a minute (a flood must not flood the log). */
export class RefusalLog {
  private windowStart = 0;
  private count = 0;
  private dropped = 0;

  constructor(
    private readonly log: Logger | undefined,
    private readonly listener: string,
    private readonly perMinute = 30,
    private readonly now: () => number = Date.now,
  ) {}

  note(req: http.IncomingMessage, status: number, reason: string): void {
    const t = this.now();
    if (t - this.windowStart >= 60_000) {
      if (this.dropped) this.log?.warn(`${this.listener}: ${this.dropped} more refused requests not logged`);
      this.windowStart = t;
      this.count = 0;
      this.dropped = 0;
    }
    if (++this.count > this.perMinute) return void this.dropped++;
    this.log?.warn(`${this.listener}: refused request`, {
      status,
      reason,
      method: req.method,
      path: (req.url ?? '').split('?')[0]!.slice(0, 100),
      from: req.socket.remoteAddress,
      host: req.headers.host?.slice(0, 100),
      origin: req.headers.origin?.slice(0, 100),
    });
  }
}
