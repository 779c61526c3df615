// The mixed inbound of proxy mode: one port that speaks SOCKS5 (first byte 0x05) and HTTP
// proxy (anything else). Each connection gets one handshake deadline; garbage, a wrong
// password or a stalled client ends in a clean close (with a status where the protocol has
// one). Connected flows are relayed and logged like captured ones ('conn' lines, metrics,
// /connections), with `inbound=http|socks5`.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { formatEndpoint, unmapAddress, type Endpoint } from '../kernel/sockaddr.js';
import { errorCode, FLOW_CODES, FlowError } from '../errors.js';
import { Handshake } from '../outbound/node-conn.js';
import { METHOD_NONE_ACCEPTABLE, METHOD_USERPASS } from '../outbound/socks5.js';
import type { LogFields, Logger } from '../observe/log.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { FlowStats } from '../observe/flow-stats.js';
import { FlowReporter, type ConnectionInfo, type Flow } from '../flow/record.js';
import { relay, type RelayResult } from '../relay/relay.js';
import type { UdpOutbound } from '../udp/types.js';
import type { ProxyDialer, ProxyTarget } from './dial.js';
import { parseProxyHead, proxyResponse, type Credentials, type ProxyHeadResult } from './http-proxy.js';
import {
  chooseMethod,
  CMD_CONNECT,
  CMD_UDP_ASSOCIATE,
  credentialsMatch,
  encodeMethodChoice,
  encodeSocksReply,
  encodeUserPassStatus,
  parseGreeting,
  parseSocksRequest,
  parseUserPass,
  REP,
} from './socks5-server.js';
import { startUdpAssociation } from './socks5-udp.js';

export interface MixedInboundConfig {
  dial: ProxyDialer;
  /** UDP ASSOCIATE routes each destination through this (routed) outbound; absent: refused. */
  udp?: UdpOutbound;
  resolve(name: string): Promise<{ address: string; family: 4 | 6 }>;
  /** Required of every client when set (HTTP Basic, SOCKS5 RFC 1929). */
  auth?: Credentials;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  udpIdleTimeoutMs: number;
  maxConnections: number;
  metrics?: DataPlaneMetrics;
  /** Ended flows are counted here too (the data plane's, so the Live totals include proxy mode). */
  stats?: FlowStats;
}

export interface ProxyListener {
  fd: number;
  family: 4 | 6;
  label: string;
}

export interface MixedInbound {
  readonly active: number;
  /** Where the listeners are bound. */
  addresses(): { address: string; port: number }[];
  connections(): ConnectionInfo[];
  closeConnection(id: number): boolean;
  stopAccepting(): Promise<void>;
  drain(deadlineMs: number): Promise<void>;
  destroyAll(): void;
}

/** Ids of proxy-mode flows start here, so /connections never confuses them with captured ones. */
export const PROXY_FLOW_ID_BASE = 1_000_000_000;

/** A proxy-mode flow: the common record, with `dst` as the client asked (a name or an address). */
interface ProxyFlow extends Flow {
  inbound: 'http' | 'socks5';
  client: net.Socket;
  via?: string;
  domain?: string;
}

/** What a connect attempt failed with, as a reply the client understands. */
function failureStatus(e: unknown): { http: number; socks: number; code: string } {
  const code = errorCode(e);
  if (code === 'EREJECTED' || code === 'ELOOP') return { http: 403, socks: REP.notAllowed, code };
  if (code === 'ETIMEDOUT') return { http: 504, socks: REP.ttlExpired, code };
  if (code === 'ECONNREFUSED') return { http: 502, socks: REP.connectionRefused, code };
  if (code === 'ENETUNREACH') return { http: 502, socks: REP.networkUnreachable, code };
  if (code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'EAI_AGAIN')
    return { http: 502, socks: REP.hostUnreachable, code };
  return { http: 502, socks: REP.generalFailure, code };
}

const firstByte = (b: Buffer) => (b.length ? { ok: true as const, length: 0, byte: b[0]! } : ('need-more' as const));
const httpHead = (b: Buffer) => {
  const r: ProxyHeadResult = parseProxyHead(b);
  return r === 'need-more' ? r : { ok: true as const, length: r.ok ? r.length : 0, head: r };
};

export async function startMixedInbound(
  cfg: MixedInboundConfig,
  listeners: ProxyListener[],
  log: Logger,
): Promise<MixedInbound> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const live = new Map<number, ProxyFlow>();
  let nextId = PROXY_FLOW_ID_BASE;
  let drained: (() => void) | undefined;
  const metrics = cfg.metrics;
  const reporter = new FlowReporter(log, metrics, cfg.stats);

  const refused = (fields: LogFields & { reason: string }): void => {
    metrics?.refused.inc({ reason: fields.reason });
    log.warn('refused', { inbound: 'proxy', ...fields });
  };

  const onConnection = (client: net.Socket, family: 4 | 6, listener: string): void => {
    const src: Endpoint = { address: unmapAddress(client.remoteAddress ?? '?'), port: client.remotePort ?? 0, family };
    client.on('error', () => {}); // reported by the relay once attached; before that, just closed
    if (sockets.size >= cfg.maxConnections) {
      refused({ src: formatEndpoint(src), reason: 'max-connections', limit: cfg.maxConnections });
      client.destroy();
      return;
    }
    sockets.add(client);
    client.once('close', () => {
      sockets.delete(client);
      if (sockets.size === 0) drained?.();
    });
    void serve(client, src, listener).catch((e: Error) => {
      refused({
        src: formatEndpoint(src),
        reason: 'handshake-failed',
        error: (e as { code?: string }).code ?? e.message,
      });
      client.destroy();
    });
  };

  const serve = async (client: net.Socket, src: Endpoint, listener: string): Promise<void> => {
    // One deadline for the whole handshake (greeting, auth, request); the dial has its own.
    const hs = new Handshake(client, 'proxy-inbound', formatEndpoint(src), cfg.handshakeTimeoutMs, undefined);
    const first = await hs.read(firstByte, 'first byte');
    if (first.byte === 5) return serveSocks(hs, client, src, listener);
    return serveHttp(hs, client, src, listener);
  };

  const serveHttp = async (hs: Handshake, client: net.Socket, src: Endpoint, listener: string): Promise<void> => {
    const { head } = await hs.read(httpHead, 'request head');
    hs.done();
    if (!head.ok) {
      refused({ src: formatEndpoint(src), reason: 'bad-request', status: head.status, error: head.error });
      closeWith(client, proxyResponse(head.status, head.error));
      return;
    }
    const auth = head.auth;
    if (cfg.auth && (auth === undefined || auth === 'malformed' || !credentialsMatch(auth, cfg.auth))) {
      refused({
        src: formatEndpoint(src),
        reason: 'auth-failed',
        user: auth && auth !== 'malformed' ? auth.username : undefined,
      });
      closeWith(client, proxyResponse(407));
      return;
    }
    const flow = newFlow('http', client, src, listener, head);
    const up = await dialFor(flow, head, (e) =>
      closeWith(client, proxyResponse(failureStatus(e).http, (e as Error).message)),
    );
    if (!up) return;
    if (head.kind === 'connect') client.write(proxyResponse(200));
    await relayFlow(flow, up, head.upstreamHead);
  };

  const serveSocks = async (hs: Handshake, client: net.Socket, src: Endpoint, listener: string): Promise<void> => {
    const greeting = await hs.read(parseGreeting, 'greeting');
    const method = chooseMethod(greeting.methods, cfg.auth !== undefined);
    hs.write(encodeMethodChoice(method));
    if (method === METHOD_NONE_ACCEPTABLE) {
      hs.done();
      refused({ src: formatEndpoint(src), reason: 'auth-failed', error: 'no acceptable SOCKS5 method' });
      closeWith(client);
      return;
    }
    if (method === METHOD_USERPASS) {
      const creds = await hs.read(parseUserPass, 'username/password');
      const ok = credentialsMatch(creds, cfg.auth!);
      hs.write(encodeUserPassStatus(ok));
      if (!ok) {
        hs.done();
        refused({ src: formatEndpoint(src), reason: 'auth-failed', user: creds.username });
        closeWith(client);
        return;
      }
    }
    const req = await hs.read(parseSocksRequest, 'request');
    hs.done();
    const target: ProxyTarget = { host: req.address.host, port: req.address.port };
    if (req.cmd === CMD_UDP_ASSOCIATE && cfg.udp) return associate(client, src, listener, target);
    if (req.cmd !== CMD_CONNECT) {
      refused({ src: formatEndpoint(src), reason: 'unsupported-command', command: req.cmd });
      closeWith(client, encodeSocksReply(REP.commandNotSupported));
      return;
    }
    const flow = newFlow('socks5', client, src, listener, target);
    const up = await dialFor(flow, target, (e) => closeWith(client, encodeSocksReply(failureStatus(e).socks)));
    if (!up) return;
    const s = up.stream as Partial<net.Socket>;
    client.write(encodeSocksReply(REP.succeeded, { address: s.localAddress ?? '0.0.0.0', port: s.localPort ?? 0 }));
    await relayFlow(flow, up);
  };

  const associate = async (client: net.Socket, src: Endpoint, listener: string, requested: ProxyTarget) => {
    const flow = newFlow('socks5', client, src, listener, { host: 'udp-associate', port: 0 });
    flow.via = 'udp';
    metrics?.active.inc({ listener });
    try {
      const assoc = await startUdpAssociation({
        control: client,
        client: src,
        requested,
        outbound: cfg.udp!,
        resolve: cfg.resolve,
        idleTimeoutMs: cfg.udpIdleTimeoutMs,
        log,
      });
      client.write(encodeSocksReply(REP.succeeded, assoc.bound));
      const r = await assoc.done;
      log.info('conn', {
        ...flowFields(flow),
        up: r.up,
        down: r.down,
        flows: r.flows,
        dropped: r.dropped || undefined,
        dur: `${Date.now() - flow.started}ms`,
        close: 'eof',
      });
    } catch (e) {
      closeWith(client, encodeSocksReply(REP.generalFailure));
      log.info('conn', { ...flowFields(flow), close: 'connect-failed', error: (e as Error).message });
    } finally {
      live.delete(flow.id);
      metrics?.active.dec({ listener });
    }
  };

  const newFlow = (
    inbound: ProxyFlow['inbound'],
    client: net.Socket,
    src: Endpoint,
    listener: string,
    t: ProxyTarget,
  ): ProxyFlow => {
    const dst: Endpoint = { address: t.host, port: t.port, family: t.host.includes(':') ? 6 : 4 };
    const flow: ProxyFlow = { id: nextId++, listener, inbound, src, dst, started: Date.now(), client };
    live.set(flow.id, flow);
    return flow;
  };

  /** The routed connection, or undefined after telling the client why not (`answer`). */
  const dialFor = async (flow: ProxyFlow, target: ProxyTarget, answer: (e: unknown) => void) => {
    const abort = new AbortController();
    const onClose = () => abort.abort();
    flow.client.once('close', onClose);
    const t0 = process.hrtime.bigint();
    const planned = cfg.dial(target, flow.src);
    try {
      const connected = await planned.connect(abort.signal);
      const up = { ...connected, ...(planned.rule ? { rule: planned.rule } : {}) };
      reporter.connected(up.via, Number(process.hrtime.bigint() - t0) / 1e9);
      flow.via = up.via;
      if (planned.domain) flow.domain = planned.domain;
      return up;
    } catch (e) {
      const code = errorCode(e);
      const via = (e instanceof FlowError ? e.outbound : undefined) ?? planned.via;
      const rejected = code === FLOW_CODES.rejected;
      const result = rejected ? 'rejected-by-rule' : 'connect-failed';
      reporter.ended(flow, {
        inbound: flow.inbound,
        via,
        showVia: true,
        domain: planned.domain,
        rule: planned.rule,
        up: 0,
        down: 0,
        durMs: Date.now() - flow.started,
        close: result,
        error: rejected ? undefined : code,
        detail: !rejected && via !== 'direct' ? (e as Error).message : undefined,
      });
      live.delete(flow.id);
      if (!flow.client.destroyed) answer(e);
      return undefined;
    } finally {
      flow.client.removeListener('close', onClose);
    }
  };

  const relayFlow = async (
    flow: ProxyFlow,
    up: { stream: Duplex; via: string; rule?: string; fallbackFrom?: string },
    head?: Buffer,
  ): Promise<void> => {
    metrics?.active.inc({ listener: flow.listener });
    let r: RelayResult;
    try {
      r = await relay(flow.client, up.stream, { idleTimeoutMs: cfg.idleTimeoutMs, ...(head ? { head } : {}) });
    } finally {
      live.delete(flow.id);
      metrics?.active.dec({ listener: flow.listener });
    }
    reporter.ended(flow, {
      inbound: flow.inbound,
      via: up.via,
      showVia: true,
      domain: flow.domain,
      rule: up.rule,
      ...(up.fallbackFrom ? { fallbackFrom: up.fallbackFrom } : {}),
      up: r.bytesUp,
      down: r.bytesDown,
      durMs: Date.now() - flow.started,
      close: r.reason,
      error: r.error,
    });
  };

  await Promise.all(listeners.map((l) => listen(l, (c) => onConnection(c, l.family, l.label), servers, reporter)));
  return {
    get active() {
      return sockets.size;
    },
    addresses: () => servers.map((s) => s.address() as net.AddressInfo),
    connections: () =>
      [...live.values()].map((f) => ({
        id: f.id,
        listener: f.listener,
        src: formatEndpoint(f.src),
        dst: formatEndpoint(f.dst),
        ...(f.domain ? { domain: f.domain } : {}),
        ...(f.via ? { via: f.via } : {}),
        ageMs: Date.now() - f.started,
        ...(f.client.destroyed ? {} : { up: f.client.bytesRead, down: f.client.bytesWritten }),
      })),
    closeConnection: (id) => {
      const f = live.get(id);
      if (!f || f.client.destroyed) return false;
      f.client.destroy();
      return true;
    },
    stopAccepting: () => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => {}),
    drain: (deadlineMs) =>
      new Promise<void>((resolve) => {
        if (sockets.size === 0) return resolve();
        const t = setTimeout(resolve, deadlineMs);
        drained = () => {
          clearTimeout(t);
          resolve();
        };
      }),
    destroyAll: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

/** Last words to a refused client: what it sent next is read and dropped, and a client that never closes is cut off. */
function closeWith(client: net.Socket, bytes?: string | Buffer): void {
  if (client.destroyed) return;
  client.end(bytes ?? '');
  client.resume();
  setTimeout(() => client.destroy(), 2000).unref();
}

function flowFields(f: ProxyFlow): LogFields {
  return { id: f.id, inbound: f.inbound, src: formatEndpoint(f.src), dst: formatEndpoint(f.dst) };
}

function listen(l: ProxyListener, onConn: (c: net.Socket) => void, servers: net.Server[], reporter: FlowReporter) {
  return new Promise<void>((resolve, reject) => {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConn);
    // Accept errors (EMFILE) must not end the proxy: counted, logged at most once a second.
    server.on('error', (e: NodeJS.ErrnoException) => {
      reporter.acceptFailed(l.label, e.code ?? e.message);
      reject(e);
    });
    server.listen({ fd: l.fd }, () => resolve());
    servers.push(server);
  });
}
