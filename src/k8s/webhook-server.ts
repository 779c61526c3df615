// The admission webhook's HTTPS server: POST /mutate (AdmissionReview), GET /healthz.
// The certificate and key are re-read when their files change (cert-manager and kubelet
// secret volumes replace them in place), without dropping the listener.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { TranproxyError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { review } from './admission.js';
import type { InjectDefaults } from './config.js';

export interface WebhookOptions {
  certFile: string;
  keyFile: string;
  host: string;
  port: number;
  defaults: InjectDefaults;
  log: Logger;
  /** How often to look for a renewed certificate (ms); 0: never. */
  reloadIntervalMs?: number;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
}

export interface WebhookServer {
  /** The bound address (the real port when 0 was asked for). */
  address: AddressInfo;
  close(): Promise<void>;
}

/** The API server sends objects up to ~3 MiB; an AdmissionReview may carry two of them. */
const DEFAULT_MAX_BODY = 8 * 1024 * 1024;

function readPair(certFile: string, keyFile: string): { cert: string; key: string } {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certFile, 'utf8');
    key = readFileSync(keyFile, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TranproxyError(
      `cannot read the TLS certificate or key (${err.path ?? ''}): ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`,
    );
  }
  try {
    tls.createSecureContext({ cert, key }); // a mismatched or broken pair fails here, not per connection
  } catch (e) {
    throw new TranproxyError(`TLS certificate/key unusable (${certFile}, ${keyFile}): ${(e as Error).message}`);
  }
  return { cert, key };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startWebhookServer(opts: WebhookOptions): Promise<WebhookServer> {
  const { log } = opts;
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const pair = readPair(opts.certFile, opts.keyFile);
  const server = https.createServer({ ...pair, minVersion: 'TLSv1.2' }, (req, res) =>
    handleRequest(opts, maxBody, req, res),
  );
  // The API server keeps idle connections up to 90 s; closing ours first would race its
  // next POST (which it does not retry). Let it close them.
  server.keepAliveTimeout = 95_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.on('tlsClientError', (e) => log.warn('admission: TLS handshake failed', { error: e.message }));
  server.on('clientError', (_e, socket) => socket.destroy());
  await listen(server, opts);
  const timer = watchCertificate(server, opts, pair);
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        if (timer) clearInterval(timer);
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

function handleRequest(opts: WebhookOptions, maxBody: number, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz' || path === '/readyz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    return send(res, 200, 'ok\n');
  }
  if (path !== '/mutate') return send(res, 404, 'not found\n');
  if (req.method !== 'POST') return send(res, 405, 'method not allowed\n');
  const started = process.hrtime.bigint();
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c: Buffer) => {
    if (tooBig) return;
    size += c.length;
    if (size > maxBody) {
      tooBig = true;
      chunks.length = 0;
      send(res, 413, { error: `request body larger than ${maxBody} bytes` });
      req.resume();
      return;
    }
    chunks.push(c);
  });
  req.on('error', () => res.destroy());
  req.on('end', () => {
    if (!tooBig) answerReview(opts, Buffer.concat(chunks), started, res);
  });
}

/** Reviews one AdmissionReview body and logs the outcome with its latency. */
function answerReview(opts: WebhookOptions, raw: Buffer, started: bigint, res: ServerResponse): void {
  const { log } = opts;
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    log.warn('admission: bad JSON', { error: (e as Error).message });
    return send(res, 400, { error: `request body is not JSON: ${(e as Error).message}` });
  }
  const out = review(body, opts.defaults);
  const s = out.summary;
  const fields = {
    uid: s.uid,
    namespace: s.namespace,
    pod: s.name,
    result: s.result,
    reason: s.reason || undefined,
    warnings: s.warnings?.length ? s.warnings.join('; ') : undefined,
    ms: Number(process.hrtime.bigint() - started) / 1e6,
  };
  if (s.result === 'error') log.error('admission', fields);
  else if (s.result === 'bad-request' || s.result === 'denied') log.warn('admission', fields);
  else log.info('admission', fields);
  send(res, out.status, out.body);
}

function listen(server: https.Server, opts: WebhookOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'EADDRINUSE'
          ? new TranproxyError(`--listen ${opts.host || '*'}:${opts.port}: address already in use`)
          : e.code === 'EACCES'
            ? new TranproxyError(
                `--listen ${opts.host || '*'}:${opts.port}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`,
              )
            : e,
      );
    });
    server.listen({ host: opts.host || undefined, port: opts.port }, () => resolve());
  });
}

/** Re-reads the certificate and key every reloadIntervalMs and swaps them in when they changed. */
function watchCertificate(
  server: https.Server,
  opts: WebhookOptions,
  first: { cert: string; key: string },
): NodeJS.Timeout | undefined {
  const { log } = opts;
  let pair = first;
  const interval = opts.reloadIntervalMs ?? 30_000;
  if (!(interval > 0)) return undefined;
  const timer = setInterval(() => {
    try {
      const next = readPair(opts.certFile, opts.keyFile);
      if (next.cert !== pair.cert || next.key !== pair.key) {
        server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
        pair = next;
        log.info('webhook: TLS certificate reloaded', { cert: opts.certFile });
      }
    } catch (e) {
      // Mid-rotation (new cert, old key) or a missing file: keep serving the old pair.
      log.warn('webhook: certificate reload skipped', { error: (e as Error).message });
    }
  }, interval);
  timer.unref();
  return timer;
}
