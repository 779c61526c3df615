// The admin HTTP listener (loopback by default): health, readiness, metrics, active
// connections, and a graceful exit for Job pods. It only reads state through the hooks it
// is given, so it knows nothing of the supervisor's internals.
//
// With a token (--admin-token-file), the endpoints that reveal flows or change state
// (/connections, POST /quitquitquit) need `Authorization: Bearer TOKEN`; the probes
// (/healthz, /readyz) and /metrics stay open so kubelet and Prometheus need no secret.
// Every request must name the listener in Host (no DNS rebinding), a present Origin must
// match it, and POST /quitquitquit needs `X-Tranproxy: 1` or the token: a header a web page
// cannot send without a CORS preflight, which this listener never grants.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { UsageError } from '../errors.js';
import { guardedServer, hostAllowed, originMatches, RefusalLog } from './http-guard.js';
import type { Logger } from './log.js';

/** The header a state-changing admin request must carry when no token is configured. */
export const ADMIN_INTENT_HEADER = 'X-Tranproxy';

export interface AdminHooks {
  /** Rules applied and listeners up. */
  ready(): boolean;
  metrics(): Promise<{ contentType: string; body: string }>;
  connections(): Promise<unknown[]>;
  /** Node groups: type, chosen member, members' health. */
  groups?(): Promise<unknown[]>;
  /** Ends one live flow (the `worker` and `id` of /connections); false when it is gone. */
  closeConnection?(worker: number, id: number): Promise<boolean>;
  /** Begin a graceful exit (status 0). */
  quit(): void;
}

export interface AdminServer {
  readonly address: string;
  close(): Promise<void>;
}

export function parseAdminAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/**
 * The bearer token in `file` (surrounding whitespace removed). Refuses a file other users
 * could read or change: whoever holds the token can list flows and stop the proxy.
 */
export function readAdminToken(file: string): string {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(
      `--admin-token-file ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (mode & 0o026) {
    throw new UsageError(
      `--admin-token-file ${file}: mode 0${mode.toString(8)} lets other users read or change the token: run 'chmod 600 ${file}'`,
    );
  }
  const token = text.trim();
  if (!token || /\s/.test(token))
    throw new UsageError(
      `--admin-token-file ${file}: expected one token (no spaces), e.g. from 'openssl rand -hex 32'`,
    );
  return token;
}

/** Constant-time comparison of `Authorization: Bearer …` with the token. */
function authorized(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const digest = (t: string) => createHash('sha256').update(t).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

export interface AdminListen {
  host: string;
  port: number;
  /** Bearer token file for /connections and POST /quitquitquit; undefined: no auth. */
  tokenFile?: string;
}

/** Why a request is refused before it reaches an endpoint (Host, Origin, intent), or undefined. */
function refusal(
  req: http.IncomingMessage,
  path: string,
  bound: string,
  token: string | undefined,
): [number, string] | undefined {
  if (!hostAllowed(req.headers.host, [req.socket.localAddress, bound]))
    return [421, 'Host is not this listener (DNS rebinding?)'];
  if (!originMatches(req.headers.origin, req.headers.host))
    return [403, 'Origin does not match Host (a cross-site request)'];
  const changesState =
    (path === '/quitquitquit' && req.method === 'POST') ||
    (path.startsWith('/connections/') && req.method === 'DELETE');
  if (changesState && !token && !req.headers[ADMIN_INTENT_HEADER.toLowerCase()])
    return [403, `missing ${ADMIN_INTENT_HEADER} header`];
  return undefined;
}

/** Throws UsageError synchronously when the token file is unusable. */
export function startAdminServer(listen: AdminListen, hooks: AdminHooks, log?: Logger): Promise<AdminServer> {
  const token = listen.tokenFile ? readAdminToken(listen.tokenFile) : undefined;
  const refused = new RefusalLog(log, 'admin');
  const server = guardedServer((req, res) => {
    const send = (
      status: number,
      body: string,
      type = 'text/plain; charset=utf-8',
      extra: Record<string, string> = {},
    ): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...extra });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    const fail = (e: unknown) => send(500, `${(e as Error).message}\n`);
    const no = refusal(req, path ?? '/', listen.host, token);
    if (no) {
      refused.note(req, no[0], no[1]);
      return send(no[0], `refused: ${no[1]}\n`);
    }
    if (path === '/healthz') return send(200, 'ok\n');
    if (path === '/readyz') return hooks.ready() ? send(200, 'ready\n') : send(503, 'not ready\n');
    if (path === '/metrics') return void hooks.metrics().then((m) => send(200, m.body, m.contentType), fail);
    if (
      token &&
      (path === '/connections' || path.startsWith('/connections/') || path === '/groups' || path === '/quitquitquit') &&
      !authorized(req.headers.authorization, token)
    ) {
      refused.note(req, 401, 'no valid bearer token');
      return send(401, 'unauthorized: send Authorization: Bearer <token from --admin-token-file>\n', undefined, {
        'www-authenticate': 'Bearer realm="tranproxy"',
      });
    }
    if (path === '/connections') {
      return void hooks
        .connections()
        .then((c) => send(200, `${JSON.stringify(c, null, 1)}\n`, 'application/json'), fail);
    }
    if (path.startsWith('/connections/') && hooks.closeConnection) {
      if (req.method !== 'DELETE') return send(405, 'use DELETE /connections/WORKER-ID to close a connection\n');
      const m = /^\/connections\/(\d+)-(\d+)$/.exec(path);
      if (!m) return send(404, 'expected /connections/WORKER-ID (the worker and id fields of /connections)\n');
      return void hooks.closeConnection(Number(m[1]), Number(m[2])).then((closed) => {
        if (closed) log?.info('admin: connection closed', { worker: Number(m[1]), id: Number(m[2]) });
        send(closed ? 200 : 404, closed ? 'closed\n' : 'no such connection (it may have ended already)\n');
      }, fail);
    }
    if (path === '/groups' && hooks.groups) {
      return void hooks.groups().then((g) => send(200, `${JSON.stringify(g, null, 1)}\n`, 'application/json'), fail);
    }
    if (path === '/quitquitquit') {
      // POST only: a stray GET (a browser, a crawler) must not stop the proxy.
      if (req.method !== 'POST') return send(405, 'use POST\n');
      log?.info('admin: POST /quitquitquit: shutting down', { from: req.socket.remoteAddress });
      send(200, 'bye\n');
      return hooks.quit();
    }
    send(
      404,
      'not found: try /healthz /readyz /metrics /connections /groups /quitquitquit, DELETE /connections/WORKER-ID\n',
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      const a = server.address() as AddressInfo;
      resolve({
        address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}
