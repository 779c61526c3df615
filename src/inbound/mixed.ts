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
import { Drain } from '../flow/drain.js';
import { FlowReporter, type ConnectionInfo, type Flow } from '../flow/record.js';
import { relay, type RelayResult } from '../relay/relay.js';
import type { UdpOutbound } from '../udp/types.js';
import type { ProxyDialer, ProxyRoute, ProxyTarget } from './dial.js';
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
  /** Resolves once no connection is left and every flow's end is logged, or at the deadline. */
  drain(deadlineMs: number): Promise<void>;
  /** Destroys the connections left; resolves once their ends are logged (at most 1 s). */
  destroyAll(): Promise<void>;
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
  const inbound = new MixedInboundServer(cfg, log);
  await inbound.listen(listeners);
  return inbound;
}

type RoutedConnection = { stream: Duplex; via: string; rule?: string; fallbackFrom?: string };

/** The listeners of the mixed port, the connections they accepted and the flows being relayed. */
class MixedInboundServer implements MixedInbound {
  private readonly cfg: MixedInboundConfig;
  private readonly log: Logger;
  private readonly metrics: DataPlaneMetrics | undefined;
  private readonly reporter: FlowReporter;
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly live = new Map<number, ProxyFlow>();
  private nextId = PROXY_FLOW_ID_BASE;
  private readonly drainer = new Drain();

  constructor(cfg: MixedInboundConfig, log: Logger) {
    this.cfg = cfg;
    this.log = log;
    this.metrics = cfg.metrics;
    this.reporter = new FlowReporter(log, cfg.metrics, cfg.stats);
  }

  async listen(listeners: ProxyListener[]): Promise<void> {
    await Promise.all(
      listeners.map((l) => listen(l, (c) => this.onConnection(c, l.family, l.label), this.servers, this.reporter)),
    );
  }

  get active(): number {
    return this.sockets.size;
  }

  addresses(): { address: string; port: number }[] {
    return this.servers.map((s) => s.address() as net.AddressInfo);
  }

  connections(): ConnectionInfo[] {
    return [...this.live.values()].map((f) => ({
      id: f.id,
      listener: f.listener,
      src: formatEndpoint(f.src),
      dst: formatEndpoint(f.dst),
      ...(f.domain ? { domain: f.domain } : {}),
      ...(f.via ? { via: f.via } : {}),
      ageMs: Date.now() - f.started,
      ...(f.client.destroyed ? {} : { up: f.client.bytesRead, down: f.client.bytesWritten }),
    }));
  }

  closeConnection(id: number): boolean {
    const f = this.live.get(id);
    if (!f || f.client.destroyed) return false;
    f.client.destroy();
    return true;
  }

  stopAccepting(): Promise<void> {
    return this.drainer.stopAccepting(this.servers);
  }

  drain(deadlineMs: number): Promise<void> {
    return this.drainer.wait(this.pending(), deadlineMs);
  }

  destroyAll(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    // Their relays log them as they see the close: let that happen before the process exits.
    return this.drain(1000);
  }

  /** Connections still open, or flows whose end is not logged yet (0: nothing left). */
  private pending(): number {
    return this.sockets.size + this.live.size;
  }

  private settle(): void {
    this.drainer.settled(this.pending());
  }

  private refused(fields: LogFields & { reason: string }): void {
    this.metrics?.refused.inc({ reason: fields.reason });
    this.log.warn('refused', { inbound: 'proxy', ...fields });
  }

  private onConnection(client: net.Socket, family: 4 | 6, listener: string): void {
    const src: Endpoint = { address: unmapAddress(client.remoteAddress ?? '?'), port: client.remotePort ?? 0, family };
    client.on('error', () => {}); // reported by the relay once attached; before that, just closed
    const sockets = this.sockets;
    if (sockets.size >= this.cfg.maxConnections) {
      this.refused({ src: formatEndpoint(src), reason: 'max-connections', limit: this.cfg.maxConnections });
      client.destroy();
      return;
    }
    sockets.add(client);
    client.once('close', () => {
      sockets.delete(client);
      this.settle();
    });
    void this.serve(client, src, listener).catch((e: Error) => {
      this.refused({
        src: formatEndpoint(src),
        reason: 'handshake-failed',
        error: (e as { code?: string }).code ?? e.message,
      });
      client.destroy();
    });
  }

  private async serve(client: net.Socket, src: Endpoint, listener: string): Promise<void> {
    // One deadline for the whole handshake (greeting, auth, request); the dial has its own.
    const hs = new Handshake(client, 'proxy-inbound', formatEndpoint(src), this.cfg.handshakeTimeoutMs, undefined);
    const first = await hs.read(firstByte, 'first byte');
    if (first.byte === 5) return this.serveSocks(hs, client, src, listener);
    return this.serveHttp(hs, client, src, listener);
  }

  private async serveHttp(hs: Handshake, client: net.Socket, src: Endpoint, listener: string): Promise<void> {
    const { head } = await hs.read(httpHead, 'request head');
    hs.done();
    if (!head.ok) {
      this.refused({ src: formatEndpoint(src), reason: 'bad-request', status: head.status, error: head.error });
      closeWith(client, proxyResponse(head.status, head.error));
      return;
    }
    const auth = head.auth;
    const required = this.cfg.auth;
    if (required && (auth === undefined || auth === 'malformed' || !credentialsMatch(auth, required))) {
      this.refused({
        src: formatEndpoint(src),
        reason: 'auth-failed',
        user: auth && auth !== 'malformed' ? auth.username : undefined,
      });
      closeWith(client, proxyResponse(407));
      return;
    }
    const flow = this.newFlow('http', client, src, listener, head);
    const up = await this.dialFor(flow, head, (e) =>
      closeWith(client, proxyResponse(failureStatus(e).http, (e as Error).message)),
    );
    if (!up) return;
    if (head.kind === 'connect') client.write(proxyResponse(200));
    await this.relayFlow(flow, up, head.upstreamHead);
  }

  private async serveSocks(hs: Handshake, client: net.Socket, src: Endpoint, listener: string): Promise<void> {
    if (!(await this.socksAuthenticated(hs, client, src))) return;
    const req = await hs.read(parseSocksRequest, 'request');
    hs.done();
    const target: ProxyTarget = { host: req.address.host, port: req.address.port };
    if (req.cmd === CMD_UDP_ASSOCIATE && this.cfg.udp) return this.associate(client, src, listener, target);
    if (req.cmd !== CMD_CONNECT) {
      this.refused({ src: formatEndpoint(src), reason: 'unsupported-command', command: req.cmd });
      closeWith(client, encodeSocksReply(REP.commandNotSupported));
      return;
    }
    const flow = this.newFlow('socks5', client, src, listener, target);
    const up = await this.dialFor(flow, target, (e) => closeWith(client, encodeSocksReply(failureStatus(e).socks)));
    if (!up) return;
    const s = up.stream as Partial<net.Socket>;
    client.write(encodeSocksReply(REP.succeeded, { address: s.localAddress ?? '0.0.0.0', port: s.localPort ?? 0 }));
    await this.relayFlow(flow, up);
  }

  /** The SOCKS5 greeting and, when required, username/password: false once the client is refused. */
  private async socksAuthenticated(hs: Handshake, client: net.Socket, src: Endpoint): Promise<boolean> {
    const greeting = await hs.read(parseGreeting, 'greeting');
    const method = chooseMethod(greeting.methods, this.cfg.auth !== undefined);
    hs.write(encodeMethodChoice(method));
    if (method === METHOD_NONE_ACCEPTABLE) {
      hs.done();
      this.refused({ src: formatEndpoint(src), reason: 'auth-failed', error: 'no acceptable SOCKS5 method' });
      closeWith(client);
      return false;
    }
    if (method === METHOD_USERPASS) {
      const creds = await hs.read(parseUserPass, 'username/password');
      const ok = credentialsMatch(creds, this.cfg.auth!);
      hs.write(encodeUserPassStatus(ok));
      if (!ok) {
        hs.done();
        this.refused({ src: formatEndpoint(src), reason: 'auth-failed', user: creds.username });
        closeWith(client);
        return false;
      }
    }
    return true;
  }

  private async associate(client: net.Socket, src: Endpoint, listener: string, requested: ProxyTarget): Promise<void> {
    const { cfg, log, metrics } = this;
    const flow = this.newFlow('socks5', client, src, listener, { host: 'udp-associate', port: 0 });
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
      this.live.delete(flow.id);
      metrics?.active.dec({ listener });
      this.settle();
    }
  }

  private newFlow(
    inbound: ProxyFlow['inbound'],
    client: net.Socket,
    src: Endpoint,
    listener: string,
    t: ProxyTarget,
  ): ProxyFlow {
    const dst: Endpoint = { address: t.host, port: t.port, family: t.host.includes(':') ? 6 : 4 };
    const flow: ProxyFlow = { id: this.nextId++, listener, inbound, src, dst, started: Date.now(), client };
    this.live.set(flow.id, flow);
    return flow;
  }

  /** The routed connection, or undefined after telling the client why not (`answer`). */
  private async dialFor(
    flow: ProxyFlow,
    target: ProxyTarget,
    answer: (e: unknown) => void,
  ): Promise<RoutedConnection | undefined> {
    const abort = new AbortController();
    const onClose = () => abort.abort();
    flow.client.once('close', onClose);
    const t0 = process.hrtime.bigint();
    const planned = this.cfg.dial(target, flow.src);
    try {
      const connected = await planned.connect(abort.signal);
      const up = { ...connected, ...(planned.rule ? { rule: planned.rule } : {}) };
      this.reporter.connected(up.via, Number(process.hrtime.bigint() - t0) / 1e9);
      flow.via = up.via;
      if (planned.domain) flow.domain = planned.domain;
      return up;
    } catch (e) {
      this.dialFailed(flow, planned, e);
      if (!flow.client.destroyed) answer(e);
      return undefined;
    } finally {
      flow.client.removeListener('close', onClose);
    }
  }

  /** A flow whose dial failed (or a rule rejected) ends here: logged, counted, forgotten. */
  private dialFailed(flow: ProxyFlow, planned: ProxyRoute, e: unknown): void {
    const code = errorCode(e);
    const via = (e instanceof FlowError ? e.outbound : undefined) ?? planned.via;
    const rejected = code === FLOW_CODES.rejected;
    this.reporter.ended(flow, {
      inbound: flow.inbound,
      via,
      showVia: true,
      domain: planned.domain,
      rule: planned.rule,
      up: 0,
      down: 0,
      durMs: Date.now() - flow.started,
      close: rejected ? 'rejected-by-rule' : 'connect-failed',
      error: rejected ? undefined : code,
      detail: !rejected && via !== 'direct' ? (e as Error).message : undefined,
    });
    this.live.delete(flow.id);
    this.settle();
  }

  private async relayFlow(flow: ProxyFlow, up: RoutedConnection, head?: Buffer): Promise<void> {
    const metrics = this.metrics;
    metrics?.active.inc({ listener: flow.listener });
    let r: RelayResult;
    try {
      r = await relay(flow.client, up.stream, { idleTimeoutMs: this.cfg.idleTimeoutMs, ...(head ? { head } : {}) });
    } finally {
      this.live.delete(flow.id);
      metrics?.active.dec({ listener: flow.listener });
    }
    this.reporter.ended(flow, {
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
    this.settle();
  }
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
