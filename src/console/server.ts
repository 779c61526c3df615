// The console's HTTP server, inside the supervisor process: login and sessions, CSRF and
// Origin checks, the JSON API (api.ts), Server-Sent Events, and the prebuilt UI (ui-dist/).
import { existsSync, readFileSync, statSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { guardedServer, hostAllowed, originMatches, RefusalLog } from '../observe/http-guard.js';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../observe/log.js';
import type { SupervisorControl } from '../proxy/supervisor.js';
import { ConsoleApi } from './api.js';
import { liveConnections, trafficBody } from './live-api.js';
import type { ConfigStore } from './apply.js';
import { LoginLimiter, SessionStore, verifyPassword, type Session } from './auth.js';

/** ui-dist/ at the package root (dist/console/server.js → ../../ui-dist). */
export const UI_DIR = fileURLToPath(new URL('../../ui-dist/', import.meta.url));

export const SESSION_COOKIE = 'tpx_session';
const MAX_BODY = 1 << 20;
/** A login body is `{"password": …}`: nothing legitimate comes near this. */
const MAX_LOGIN_BODY = 8 << 10;
const TICK_MS = 1000;
/** Bytes an event stream may have queued for a client that does not read. */
const MAX_STREAM_BACKLOG = 1 << 20;

export { originMatches };

export interface ConsoleServerOptions {
  listen: { host: string; port: number };
  store: ConfigStore;
  control: SupervisorControl;
  log: Logger;
  uiDir?: string;
  /** Injectable for tests. */
  sessions?: SessionStore;
  limiter?: LoginLimiter;
  fetchText?: (url: string) => Promise<string>;
  /** Names (besides localhost and the listener's address) a browser may use in Host. */
  hostNames?: readonly string[];
}

export interface ConsoleServer {
  readonly address: string;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

function cookieOf(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function readBody(req: http.IncomingMessage, max = MAX_BODY): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const tooLarge = () => Object.assign(new Error(`request body larger than ${max >> 10} KiB`), { status: 413 });
    if (declared > max) return reject(tooLarge()); // answered, then closed: the body is never read
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > max) {
        reject(tooLarge());
        req.destroy();
        return;
      }
      chunks.push(b);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text.trim()) return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(Object.assign(new Error('the body is not valid JSON'), { status: 400 }));
      }
    });
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sessionCookie(value: string, maxAge?: number): string {
  // No Secure flag: the console is plain http (loopback or a LAN address).
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/${maxAge !== undefined ? `; Max-Age=${maxAge}` : ''}`;
}

/** The prebuilt UI: index.html for every page path, hashed assets and a few root files as they are. */
function serveStatic(uiDir: string, req: http.IncomingMessage, res: http.ServerResponse, path: string): void {
  const headers = { ...SECURITY_HEADERS };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    return void res.end('use GET\n');
  }
  const index = join(uiDir, 'index.html');
  if (!existsSync(index)) {
    res.writeHead(503, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    return void res.end(
      `tranproxy console: the web UI is not built (${index} is missing).\nBuild it with 'npx vite build ui' or install a tranproxy package that includes ui-dist/. The API under /api works without it.\n`,
    );
  }
  let file = index;
  if (path.startsWith('/assets/') || /^\/[A-Za-z0-9_.-]+\.(ico|png|svg|webmanifest|txt)$/.test(path)) {
    const rel = normalize(decodeURIComponent(path)).replace(/^([/\\])+/, '');
    const full = join(uiDir, rel);
    if (!full.startsWith(uiDir.endsWith(sep) ? uiDir : uiDir + sep) || !existsSync(full) || !statSync(full).isFile()) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
      return void res.end('not found\n');
    }
    file = full;
  }
  const body = readFileSync(file);
  res.writeHead(200, {
    ...headers,
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    'content-length': body.length,
    // Vite's assets carry a content hash in their names; index.html must always be fresh.
    'cache-control': file === index ? 'no-cache' : 'public, max-age=31536000, immutable',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * The browsers' event streams (/api/events). Once a second, while someone watches: connections,
 * throughput and totals from the live counters (kernel-relayed flows included), and the closed
 * list when it changed.
 */
class EventStreams {
  private readonly streams = new Set<http.ServerResponse>();
  /** Count and newest id of the closed list last sent. */
  private lastClosed: string | undefined;
  private ticking = false;

  constructor(
    private readonly api: ConsoleApi,
    private readonly control: SupervisorControl,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.streams.size;
  }

  open(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    req.socket.setTimeout(0); // a stream is idle between events by design
    this.streams.add(res);
    this.lastClosed = undefined; // the newcomer gets the closed list at the next tick
    req.on('close', () => this.streams.delete(res));
  }

  broadcast(event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of this.streams) {
      // A client that does not read must not make us buffer for it: it reconnects (retry:).
      if (s.writableLength > MAX_STREAM_BACKLOG) {
        this.streams.delete(s);
        s.destroy();
      } else s.write(text);
    }
  }

  async tick(): Promise<void> {
    if (this.ticking || this.streams.size === 0) return;
    this.ticking = true;
    try {
      if (!this.control.live) return this.broadcast('connections', await this.api.connections());
      const view = await this.control.live();
      const body = trafficBody(view);
      this.broadcast('connections', liveConnections(view));
      this.broadcast('throughput', { t: view.t, ...body.rate });
      this.broadcast('traffic', { totals: body.totals, byNode: body.byNode });
      const closedKey = `${body.closed.length}:${body.closed[0]?.id ?? ''}`;
      if (closedKey !== this.lastClosed) {
        this.lastClosed = closedKey;
        this.broadcast('closed', body.closed);
      }
    } catch (e) {
      this.log.warn('console: live update failed', { error: (e as Error).message });
    } finally {
      this.ticking = false;
    }
  }

  endAll(): void {
    for (const s of this.streams) s.end();
  }
}

/** Answers one request: Host and Origin checks, static UI, login, session and CSRF checks, the API. */
class ConsoleRequests {
  readonly sessions: SessionStore;
  readonly limiter: LoginLimiter;
  readonly api: ConsoleApi;
  readonly streams: EventStreams;
  readonly refused: RefusalLog;
  readonly uiDir: string;
  /** The listener's address once bound (a Host of that address is this console). */
  boundHost: string;

  constructor(private readonly opts: ConsoleServerOptions) {
    const { store, control, log } = opts;
    this.sessions = opts.sessions ?? new SessionStore();
    this.limiter = opts.limiter ?? new LoginLimiter();
    this.api = new ConsoleApi({ store, control, log, ...(opts.fetchText ? { fetchText: opts.fetchText } : {}) });
    this.uiDir = opts.uiDir ?? UI_DIR;
    this.streams = new EventStreams(this.api, control, log);
    this.refused = new RefusalLog(log, 'console');
    this.boundHost = opts.listen.host;
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { sessions, refused } = this;
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const path = url.pathname;
    // Before anything else, static files included: a rebound name must not even read the UI.
    if (!hostAllowed(req.headers.host, [req.socket.localAddress, this.boundHost], this.opts.hostNames)) {
      refused.note(req, 421, 'Host is not this listener (DNS rebinding?)');
      return send(res, 421, { error: 'Host is not this console: open it by its address (or localhost)' });
    }
    const method = req.method ?? 'GET';
    const safe = method === 'GET' || method === 'HEAD';
    if (!originMatches(req.headers.origin, req.headers.host)) {
      refused.note(req, 403, 'Origin does not match Host (a cross-site request)');
      return send(res, 403, { error: 'cross-origin request refused (Origin does not match Host)' });
    }
    if (!path.startsWith('/api/') && path !== '/api') return serveStatic(this.uiDir, req, res, path);
    const sid = cookieOf(req, SESSION_COOKIE);
    if (path === '/api/login' && method === 'POST') return this.login(req, res);
    const session: Session | undefined = sessions.get(sid);
    if (path === '/api/session' && safe)
      return send(res, 200, session ? { authenticated: true, csrf: session.csrf } : { authenticated: false });
    if (!session) return send(res, 401, { error: 'not logged in' });
    if (!safe && !sessions.checkCsrf(session, req.headers['x-csrf-token'] as string | undefined)) {
      refused.note(req, 403, 'missing or wrong X-CSRF-Token');
      return send(res, 403, { error: 'missing or wrong X-CSRF-Token header: reload the page' });
    }
    if (path === '/api/logout' && method === 'POST') {
      sessions.destroy(session.id);
      return send(res, 200, {}, { 'set-cookie': sessionCookie('', 0) });
    }
    if (path === '/api/events' && method === 'GET') return this.streams.open(req, res);
    const body = safe ? undefined : await readBody(req);
    const r = await this.api.handle({ method, path: path.slice(4), query: url.searchParams, body });
    send(res, r.status, r.body);
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { limiter, sessions } = this;
    const { store, log } = this.opts;
    const addr = req.socket.remoteAddress ?? '?';
    const gate = limiter.check(addr);
    if (gate.retryAfter > 0) {
      this.refused.note(req, 429, 'too many failed logins');
      return send(
        res,
        429,
        { error: `too many failed logins: try again in ${gate.retryAfter} s` },
        { 'retry-after': gate.retryAfter },
      );
    }
    const body = await readBody(req, MAX_LOGIN_BODY);
    const password = (body as { password?: unknown } | undefined)?.password;
    const hash = (await store.read()).file.console?.passwordHash;
    if (!hash)
      return send(res, 401, { error: "no console password is set: run 'tranproxy console passwd --config FILE'" });
    // Counted as a failure before the (deliberately slow) check, so parallel guesses from one
    // address are limited too, not only sequential ones.
    limiter.fail(addr);
    if (gate.delayMs > 0) await new Promise((r) => setTimeout(r, gate.delayMs)); // loopback: slowed, never refused
    if (typeof password !== 'string' || !(await verifyPassword(password, hash))) {
      log.warn('console: failed login', { from: addr });
      return send(res, 401, { error: 'wrong password' });
    }
    limiter.succeed(addr);
    sessions.destroy(cookieOf(req, SESSION_COOKIE)); // a fresh id at every login (no fixation)
    const s = sessions.create();
    log.info('console: login', { from: addr });
    send(res, 200, { csrf: s.csrf }, { 'set-cookie': sessionCookie(s.id) });
  }
}

export function startConsoleServer(opts: ConsoleServerOptions): Promise<ConsoleServer> {
  const { store, log } = opts;
  const requests = new ConsoleRequests(opts);
  const { api, streams } = requests;
  const timer = setInterval(() => void streams.tick(), TICK_MS);
  timer.unref();
  const stopReloads = store.watchReloads();
  const stopWatching = store.onChange(() => {
    if (streams.size === 0) return;
    api.current().then(
      (state) => streams.broadcast('state', state),
      (e: Error) => log.warn('console: state update failed', { error: e.message }),
    );
  });

  const server = guardedServer((req, res) => {
    requests.handle(req, res).catch((e: Error & { status?: number }) => {
      if (res.headersSent) return void res.destroy();
      if (!e.status) log.error('console: request failed', { path: (req.url ?? '').split('?')[0], error: e.message });
      send(res, e.status ?? 500, { error: e.message });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject);
      const stopRefresh = api.subscriptions.startTimer();
      const a = server.address() as AddressInfo;
      requests.boundHost = a.address;
      resolve({
        address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
        close: () =>
          new Promise<void>((r) => {
            clearInterval(timer);
            stopRefresh();
            stopWatching();
            stopReloads();
            streams.endAll();
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}
