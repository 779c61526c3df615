// The stream a V2Ray-family protocol (VMess, VLESS, Trojan) rides on: plain TCP, TLS, a
// WebSocket, or a WebSocket over TLS. openTransport gives a connected Duplex whatever the
// combination, so each protocol works over each transport. Certificates are verified unless
// the node's link says allowInsecure.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { UsageError } from '../errors.js';
import { connectNode, DEFAULT_HANDSHAKE_TIMEOUT_MS, Handshake, type NodeConnOptions } from './node-conn.js';
import { OutboundError } from './types.js';
import type { TransportSpec } from './uri-v2ray.js';
import { upgradeToWebSocket, WebSocketStream } from './websocket.js';

export type { TransportSpec };

export interface TransportTarget {
  outbound: string;
  host: string;
  port: number;
  /** The node as messages name it. */
  where: string;
}

/** Reads the CA file once, when the outbound is made, so a bad path fails at start. */
export function loadCa(t: TransportSpec, node: string): Buffer | undefined {
  if (!t.caFile) return undefined;
  try {
    return readFileSync(t.caFile);
  } catch (e) {
    throw new UsageError(
      `node '${node}': cannot read the CA file ${t.caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/** A connected stream to the node through `t`, or OutboundError (connect, TLS, WebSocket upgrade). */
export async function openTransport(
  t: TransportSpec,
  to: TransportTarget,
  ca: Buffer | undefined,
  opts: NodeConnOptions,
  signal: AbortSignal | undefined,
): Promise<Duplex> {
  const tcp = await connectNode(to.outbound, to.host, to.port, opts, signal);
  const deadline = Date.now() + (opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  let socket: net.Socket = tcp;
  if (t.security === 'tls') socket = await startTls(tcp, t, to, ca, deadline - Date.now(), signal);
  if (t.network === 'tcp') return socket;
  const hs = new Handshake(socket, to.outbound, to.where, Math.max(1, deadline - Date.now()), signal);
  const upgraded = await upgradeToWebSocket(hs, hostHeader(t, to), t.path || '/');
  return new WebSocketStream(upgraded, to.outbound, to.where);
}

function hostHeader(t: TransportSpec, to: TransportTarget): string {
  if (t.host) return t.host;
  const h = isIP(to.host) === 6 ? `[${to.host}]` : to.host;
  return to.port === (t.security === 'tls' ? 443 : 80) ? h : `${h}:${to.port}`;
}

/** The TLS server name: an explicit sni, else the WebSocket Host, else the node's host name (not an IP). */
export function serverName(t: TransportSpec, nodeHost: string): string | undefined {
  const name = t.sni || (t.network === 'ws' ? t.host?.replace(/:\d+$/, '') : undefined) || nodeHost;
  return isIP(name) === 0 ? name : undefined;
}

function startTls(
  tcp: net.Socket,
  t: TransportSpec,
  to: TransportTarget,
  ca: Buffer | undefined,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const servername = serverName(t, to.host);
    const alpn = t.alpn?.length ? t.alpn : t.network === 'ws' ? ['http/1.1'] : undefined;
    const sock = tls.connect({
      socket: tcp,
      ...(servername ? { servername } : {}),
      // Checked against the name (or the node's IP when there is no name).
      host: servername ?? to.host,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
      rejectUnauthorized: !t.allowInsecure,
      ...(ca ? { ca } : {}),
    });
    const finish = (err?: OutboundError): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      sock.removeListener('secureConnect', onSecure);
      sock.removeListener('error', onError);
      sock.removeListener('close', onClose);
      if (err) {
        sock.on('error', () => {});
        sock.destroy();
        tcp.destroy();
        reject(err);
      } else resolve(sock);
    };
    const onSecure = (): void => finish();
    const onError = (e: NodeJS.ErrnoException): void => {
      const cert =
        /CERT|SELF_SIGNED|HOSTNAME|ALTNAME|UNABLE_TO/i.test(e.code ?? '') || /certificate|altnames/i.test(e.message);
      finish(
        new OutboundError(
          to.outbound,
          cert ? 'ECERT' : 'ETLS',
          cert
            ? `TLS with node ${to.where}: certificate not trusted: ${e.message} (give the CA with ca=FILE, or allowInsecure=1 if you accept the risk)`
            : `TLS with node ${to.where} failed: ${e.message}`,
        ),
      );
    };
    const onClose = (): void =>
      finish(new OutboundError(to.outbound, 'ETLS', `node ${to.where} closed the connection during the TLS handshake`));
    const onAbort = (): void =>
      finish(new OutboundError(to.outbound, 'EABORTED', `TLS handshake with node ${to.where} aborted`));
    const timer = setTimeout(
      () => finish(new OutboundError(to.outbound, 'ETIMEDOUT', `TLS handshake with node ${to.where} timed out`)),
      Math.max(1, timeoutMs),
    );
    sock.once('secureConnect', onSecure);
    sock.on('error', onError);
    sock.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
  });
}
