// The admin HTTP listener (loopback by default): health, readiness, metrics, active
// connections, and a graceful exit for Job pods. It only reads state through the hooks it
// is given, so it knows nothing of the supervisor's internals.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AdminHooks {
  /** Rules applied and listeners up. */
  ready(): boolean;
  metrics(): Promise<{ contentType: string; body: string }>;
  connections(): Promise<unknown[]>;
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

export function startAdminServer(listen: { host: string; port: number }, hooks: AdminHooks): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    const fail = (e: unknown) => send(500, `${(e as Error).message}\n`);
    if (path === '/healthz') return send(200, 'ok\n');
    if (path === '/readyz') return hooks.ready() ? send(200, 'ready\n') : send(503, 'not ready\n');
    if (path === '/metrics') return void hooks.metrics().then((m) => send(200, m.body, m.contentType), fail);
    if (path === '/connections') {
      return void hooks.connections().then((c) => send(200, JSON.stringify(c, null, 1) + '\n', 'application/json'), fail);
    }
    if (path === '/quitquitquit') {
      // POST only: a stray GET (a browser, a crawler) must not stop the proxy.
      if (req.method !== 'POST') return send(405, 'use POST\n');
      send(200, 'bye\n');
      return hooks.quit();
    }
    send(404, 'not found: try /healthz /readyz /metrics /connections /quitquitquit\n');
  });
  server.keepAliveTimeout = 5000;
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
