// The data plane: accept intercepted connections on the listeners, recover the original
// destination, connect to it and relay. Runs in a child process (possibly unprivileged);
// the supervisor owns the firewall.
import net from 'node:net';
import { originalDestination } from '../kernel/sockets.js';
import { formatEndpoint, unmapAddress, type Endpoint } from '../kernel/sockaddr.js';
import { directOutbound, rejectOutbound } from '../outbound/builtin.js';
import { errorCode, FLOW_CODES, FlowError } from '../errors.js';
import { admit, isLoopForNamedTarget, type AdmissionPolicy } from '../flow/admission.js';
import {
  connectTcp,
  fakeDomain,
  route,
  type Connected,
  type Dispatch,
  type FakeIpMap,
  type Route,
} from '../flow/dispatch.js';
import { relay, type RelayResult, type UpstreamRewriter } from '../relay/relay.js';
import { relayAuto, wouldSplice } from '../relay/zero-copy.js';
import {
  createSpliceEngine,
  servedHosting,
  spliceAvailable,
  type EngineFlow,
  type EngineHosting,
  type SpliceEngine,
} from '../relay/engine/engine.js';
import { LocalAddresses } from '../kernel/local-addresses.js';
import { engineServes, startServedPlane } from './served-plane.js';
import type { Logger } from '../observe/log.js';
import { Drain } from '../flow/drain.js';
import { closedOf, FlowReporter, type Flow, type FlowEnd, type Refusal } from '../flow/record.js';
import type { ConnectionInfo, DataPlane, ListenerHandle, LiveAnswer } from './plane.js';
import type { RelayPath } from './protocol.js';
import { FlowStats, nodeOf, type LiveBytes } from '../observe/flow-stats.js';
import { memberPath } from './live-flows.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { CaptureMode } from '../firewall/plan.js';
import type { RelayEngineChoice } from '../config/run-config.js';
import { requestAuthority } from '../sniff/authority.js';
import { peek } from '../sniff/peek.js';
import { sniff } from '../sniff/index.js';
import type { Router } from '../route/index.js';
import type { TcpOutbound } from '../outbound/types.js';
import type { InjectConfig } from '../http/inject-config.js';
import type { EngineNode } from '../relay/engine/protocol.js';

export type { ConnectionInfo, DataPlane, ListenerHandle, LiveAnswer } from './plane.js';
export type { Flow } from '../flow/record.js';

export interface DataPlaneConfig {
  mode: CaptureMode;
  listenPort: number;
  /** Ports of our own services (listener, admin, console): a destination on one at a local address is refused. */
  ownPorts?: number[];
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** With a rewriter: how long a request head may take once begun (408 after); 0: no limit. */
  headTimeoutMs?: number;
  maxConnections: number;
  /** SO_MARK on outbound sockets (needs CAP_NET_ADMIN); 0: none. */
  outboundMark: number;
  /**
   * TPROXY inbound keeping the client's address: SO_MARK (the TPROXY mark) on connections to
   * a local app, so its replies to the client's address come back to us; 0: none.
   */
  inboundMark?: number;
  preserveSource: boolean;
  /** Without an original destination from the kernel, read it from the Host header. */
  dstFromHost?: { resolve(name: string): Promise<{ address: string; family: 4 | 6 }>; maxHeadBytes: number };
  routing?: DataPlaneRouting;
  metrics?: DataPlaneMetrics;
  /** Builds a rewriter for the client→server stream of a new connection, if any. */
  rewriterFor?: (flow: Flow) => UpstreamRewriter | undefined;
  /** The injection that `rewriterFor` applies, as plain data: the engine runs it in its threads. */
  inject?: InjectConfig;
  /** Engine threads (epoll loops sharing the listeners); default 1. */
  engineThreads?: number;
  /**
   * Byte pump: 'auto' (default) hands flows nobody needs to inspect to the splice engine and
   * keeps the JS relay for the rest and as the fallback; 'js' never splices; 'splice' is
   * 'auto' that refuses to start without the engine.
   */
  relay?: RelayEngineChoice;
  /** Totals and recently closed flows, shared with proxy mode so the Live view counts both. */
  stats?: FlowStats;
  /** With routing: the one node the engine may carry every flow through itself (engineNodeOf). */
  node?: EngineNode;
  /** With node and no routing: the routing, built when the engine cannot carry the flows. */
  routingIfJs?: () => Promise<DataPlaneRouting>;
}

/** --relay splice on a system where splice(2) via koffi cannot work. */
export class SpliceUnavailableError extends Error {
  override readonly name = 'SpliceUnavailableError';
  constructor() {
    super(
      '--relay splice: the splice(2) engine is not available here (needs Linux x86-64/AArch64 and koffi); use --relay auto or js',
    );
  }
}

/** Gateway routing, built by the data-plane process from plain config. */
export interface DataPlaneRouting {
  router: Router;
  /** Upstream nodes by name ('direct' and 'reject' are built in). */
  outbounds: Map<string, TcpOutbound>;
  /** Node name → the outbound to try when that node cannot be reached. */
  fallbacks?: Map<string, string>;
  sniffTimeoutMs: number;
  /** Fake-IP DNS: map a destination back to its domain, and find real addresses for direct flows. */
  fakeIp?: FakeIpMap;
}

interface LiveFlow {
  flow: Flow;
  via?: string;
  domain?: string;
  rule?: string;
  path?: string[];
  /** Weak: a flow handed to the splice engine must not keep its socket object alive. */
  client?: WeakRef<net.Socket>;
  /** In the splice engine: its live counters (reported every 500 ms) and how to end it. */
  spliced?: EngineFlow;
}

export async function startDataPlane(
  cfg: DataPlaneConfig,
  listeners: ListenerHandle[],
  log: Logger,
): Promise<DataPlane> {
  const relayChoice = cfg.relay ?? 'auto';
  if (relayChoice === 'splice' && !spliceAvailable()) throw new SpliceUnavailableError();
  const engine = new LazySpliceEngine(relayChoice, cfg.engineThreads ?? 1, log);
  // The engine accepts and relays these flows itself: nobody inspects their bytes, or only
  // the header rewriter, which runs in the engine's threads.
  if (engine.undecided && engineServes({ ...cfg, otherInspection: !!cfg.rewriterFor && !cfg.inject })) {
    // One loop doing all the work runs on this thread (no second V8 isolate): the sidecar.
    const eng = engine.get(servedHosting());
    if (eng) return startServedPlane(cfg, listeners, log, eng);
  }
  const routing = cfg.routing ?? (await cfg.routingIfJs?.());
  const plane = new JsDataPlane(routing ? { ...cfg, routing } : cfg, log, engine);
  await plane.listen(listeners);
  return plane;
}

/** The splice engine, started on the first flow that can use it: a sidecar whose flows all get headers never needs it. */
class LazySpliceEngine {
  /** undefined: not started yet; null: none (--relay js, unavailable, failed to start, or closed). */
  private engine: SpliceEngine | null | undefined;
  private closed = false;
  private readonly threads: number;
  private readonly log: Logger;

  constructor(choice: RelayEngineChoice, threads: number, log: Logger) {
    this.threads = threads;
    this.log = log;
    this.engine = choice === 'js' || !spliceAvailable() ? null : undefined;
    if (choice === 'auto' && this.engine === null)
      log.warn('splice relay unavailable here; every flow uses the JS relay', {});
  }

  get undecided(): boolean {
    return this.engine === undefined;
  }

  get none(): boolean {
    return this.engine === null;
  }

  get(hosting: EngineHosting = 'worker'): SpliceEngine | null {
    if (this.engine !== undefined || this.closed) return this.engine ?? null;
    try {
      this.engine = createSpliceEngine({ threads: this.threads, hosting });
    } catch (e) {
      this.engine = null;
      this.log.warn('splice relay failed to start; every flow uses the JS relay', { error: (e as Error).message });
    }
    return this.engine;
  }

  /** Spliced flows end as 'aborted' (and get their log lines) before the workers stop. */
  async close(): Promise<void> {
    this.closed = true;
    const e = this.engine;
    this.engine = null;
    if (e) await e.close();
  }
}

/** How a connection without its original destination is answered (--dst-from-host). */
const RESPONSE_400 = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';
const RESPONSE_502 = 'HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/** The destination the kernel kept for an intercepted connection (REDIRECT: SO_ORIGINAL_DST; TPROXY: the local address). */
function interceptedDestination(client: net.Socket, family: 4 | 6, mode: CaptureMode): Endpoint | { error: string } {
  try {
    return mode === 'redirect'
      ? originalDestination(client, family)
      : { address: unmapAddress(client.localAddress ?? ''), port: client.localPort ?? 0, family };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Where a flow goes: the route chosen and the bytes sniffing read from the client. */
interface RoutedFlow {
  route: Route<TcpOutbound>;
  head: Buffer | undefined;
}

/** The data plane whose flows JS accepts: relayed in JS, or handed to the splice engine. */
class JsDataPlane implements DataPlane {
  relay: RelayPath = 'js';
  private readonly cfg: DataPlaneConfig;
  private readonly log: Logger;
  private readonly engine: LazySpliceEngine;
  private readonly servers: net.Server[] = [];
  // Client sockets the JS side holds (sniffing, connecting, JS relay). A spliced flow's
  // sockets leave at hand-over (their 'close'), so nothing keeps the Node objects alive.
  private readonly sockets = new Set<net.Socket>();
  // Flows from accept to their log line, wherever their bytes are (JS or splice engine).
  private flows = 0;
  private readonly local = new LocalAddresses();
  private nextId = 1;
  private readonly drainer = new Drain();
  private readonly metrics: DataPlaneMetrics | undefined;
  private readonly liveFlows = new Map<number, LiveFlow>();
  private readonly report: FlowReporter;
  private readonly stats: FlowStats;
  private readonly policy: AdmissionPolicy;
  private readonly routing: DataPlaneRouting | undefined;
  private readonly dispatch: Dispatch<TcpOutbound>;

  constructor(cfg: DataPlaneConfig, log: Logger, engine: LazySpliceEngine) {
    this.cfg = cfg;
    this.log = log;
    this.engine = engine;
    this.metrics = cfg.metrics;
    this.report = new FlowReporter(log, cfg.metrics);
    this.stats = cfg.stats ?? new FlowStats();
    this.policy = {
      maxConnections: cfg.maxConnections,
      ownPorts: [...new Set([cfg.listenPort, ...(cfg.ownPorts ?? [])])],
    };
    this.routing = cfg.routing;
    this.dispatch = this.tcpDispatch();
  }

  listen(listeners: ListenerHandle[]): Promise<void> {
    return Promise.all(listeners.map((l) => this.listenOn(l))).then(() => {
      this.relay = this.engine.none ? 'js' : 'splice';
    });
  }

  private listenOn(l: ListenerHandle): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) =>
        this.onConnection(c, l.family, l.label),
      );
      server.on('error', (e) => {
        // Accept errors (EMFILE when descriptors run out) must not kill the proxy: libuv
        // keeps listening and sheds the pending connection.
        this.report.acceptFailed(l.label, (e as NodeJS.ErrnoException).code ?? e.message);
        reject(e);
      });
      server.listen({ fd: l.fd }, () => resolve());
      this.servers.push(server);
    });
  }

  /** direct and reject built in, the routing's nodes by name. */
  private tcpDispatch(): Dispatch<TcpOutbound> {
    const { cfg, local, routing } = this;
    const builtins = new Map<string, TcpOutbound>([
      [
        'direct',
        directOutbound((dst, ctx) => ({
          connectTimeoutMs: cfg.connectTimeoutMs,
          mark: (cfg.inboundMark && local.has(dst.ip) ? cfg.inboundMark : cfg.outboundMark) || undefined,
          spoofSource: cfg.preserveSource ? ctx.source.address : undefined,
        })),
      ],
      ['reject', rejectOutbound],
    ]);
    return {
      outbounds: { get: (name) => builtins.get(name) ?? routing?.outbounds.get(name) },
      ...(routing ? { router: routing.router } : {}),
      ...(routing?.fallbacks ? { fallbacks: routing.fallbacks } : {}),
      // Read per flow: the child sets fake-IP on the routing after building it.
      get fakeIp() {
        return routing?.fakeIp;
      },
    };
  }

  // ---- the DataPlane interface ----

  get active(): number {
    return this.flows;
  }

  async connections(): Promise<ConnectionInfo[]> {
    return this.liveRows();
  }

  async live(closedAfter: number, extra: readonly LiveBytes[] = []): Promise<LiveAnswer> {
    const flows = this.liveRows();
    const bytes = flows.map((f) => ({
      up: f.up ?? 0,
      down: f.down ?? 0,
      ...(f.via ? { node: nodeOf(f.via, f.path) } : {}),
    }));
    return { flows, traffic: this.stats.snapshot([...bytes, ...extra], closedAfter) };
  }

  async closeConnection(id: number): Promise<boolean> {
    const l = this.liveFlows.get(id);
    if (l?.spliced) return l.spliced.close();
    const c = l?.client?.deref();
    if (!c || c.destroyed) return false;
    c.destroy();
    return true;
  }

  stopAccepting(): Promise<void> {
    return this.drainer.stopAccepting(this.servers);
  }

  drain(deadlineMs: number): Promise<void> {
    return this.drainer.wait(this.flows, deadlineMs);
  }

  async destroyAll(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    // Their relays log them as they see the close: let that happen before the process exits.
    await this.drain(1000);
    await this.engine.close();
  }

  private liveRows(): ConnectionInfo[] {
    return [...this.liveFlows.values()].map((l) => ({
      id: l.flow.id,
      listener: l.flow.listener,
      src: formatEndpoint(l.flow.src),
      dst: formatEndpoint(l.flow.dst),
      ...(l.domain ? { domain: l.domain } : {}),
      ...(l.via ? { via: l.via } : {}),
      ...(l.rule ? { rule: l.rule } : {}),
      ...(l.path ? { path: l.path } : {}),
      ageMs: Date.now() - l.flow.started,
      ...(l.spliced ? l.spliced.bytes() : bytesOf(l.client?.deref())),
    }));
  }

  // ---- accepting ----

  private readonly isLocal = (address: string): boolean => this.local.has(address);

  private refused(r: Refusal): void {
    this.report.refused(r);
  }

  /** The flow's line and metrics, and its entry in the recently closed list. */
  private ended(flow: Flow, end: FlowEnd, path?: string[]): void {
    this.report.ended(flow, end);
    this.stats.recordClosed(closedOf(flow, end, path));
  }

  private track(client: net.Socket): void {
    this.flows++;
    const sockets = this.sockets;
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => {}); // reported by relay once attached; before that, just closed
  }

  private readonly finishFlow = (): void => {
    this.flows--;
    this.drainer.settled(this.flows);
  };

  private onConnection(client: net.Socket, family: 4 | 6, listener: string): void {
    client.pause();
    const started = Date.now();
    const src: Endpoint = { address: unmapAddress(client.remoteAddress ?? '?'), port: client.remotePort ?? 0, family };
    const mode = this.cfg.mode;
    const admission = admit(this.policy, this.flows, () => interceptedDestination(client, family, mode), this.isLocal);
    if (!admission.ok && admission.reason === 'no-original-destination' && this.cfg.dstFromHost) {
      this.track(client);
      void this.destinationFromHost(client, src, started, listener).finally(this.finishFlow);
      return;
    }
    if (!admission.ok) {
      const { reason, error } = admission;
      this.refused({
        src,
        ...(admission.dst ? { dst: admission.dst } : {}),
        reason,
        ...(reason === 'max-connections' ? { limit: this.cfg.maxConnections } : {}),
        ...(error ? { error } : {}),
      });
      client.destroy();
      return;
    }
    const dst = admission.dst;
    this.track(client);
    const flow: Flow = { id: this.nextId++, listener, src, dst, started };
    // No closure here holds `client`: after a splice hand-over it must be collectable.
    void this.handle(flow, client).finally(this.finishFlow);
  }

  /** --dst-from-host: read the request head, resolve its Host, then relay as usual. */
  private async destinationFromHost(
    client: net.Socket,
    src: Endpoint,
    started: number,
    listener: string,
  ): Promise<void> {
    const opts = this.cfg.dstFromHost!;
    const peeked = await peek(client, (b) => requestAuthority(b, opts.maxHeadBytes), this.cfg.connectTimeoutMs);
    const head = peeked.head;
    const authority = peeked.result ?? 'none';
    if (authority === 'none') {
      this.refused({ src, reason: 'no-original-destination', error: 'no usable Host header' });
      if (!client.destroyed) client.end(RESPONSE_400);
      return;
    }
    let dst: Endpoint;
    try {
      const r = await opts.resolve(authority.host);
      dst = { address: r.address, port: authority.port, family: r.family };
    } catch (e) {
      this.refused({ src, reason: 'resolve-failed', host: authority.host, error: (e as Error).message });
      if (!client.destroyed) client.end(RESPONSE_502);
      return;
    }
    // A Host header must not reach this host's own loopback services (admin API, …).
    if (isLoopForNamedTarget(this.policy, dst, this.isLocal)) {
      this.refused({ src, dst, reason: 'loop' });
      client.destroy();
      return;
    }
    // Returned, not awaited: this frame (and its reference to `client`) ends here.
    return this.handle({ id: this.nextId++, listener, src, dst, started }, client, head);
  }

  // ---- routing and connecting ----

  /** The domain a flow's first bytes name (HTTP Host, TLS SNI), when routing wants one. */
  private async sniffDomain(
    flow: Flow,
    client: net.Socket,
    head: Buffer | undefined,
  ): Promise<{ domain?: string; head: Buffer | undefined }> {
    const routing = this.routing;
    // A fake-IP destination names its domain outright; no sniffing needed for it.
    if (!routing || fakeDomain(this.dispatch, flow.dst.address)) return { head };
    if (head) {
      const r = sniff(head);
      return r === 'need-more' || !r.domain ? { head } : { domain: r.domain, head };
    }
    const peeked = await peek(client, (b) => sniff(b), routing.sniffTimeoutMs);
    const domain = peeked.result?.domain;
    return { ...(domain ? { domain } : {}), head: peeked.head.length ? peeked.head : undefined };
  }

  /** Where a flow goes: sniff (if routing), pick an outbound. */
  private async routeFlow(flow: Flow, client: net.Socket, head: Buffer | undefined): Promise<RoutedFlow> {
    const sniffed = await this.sniffDomain(flow, client, head);
    const dst = flow.dst;
    const r = route(this.dispatch, {
      network: 'tcp',
      src: flow.src,
      dst: {
        ip: dst.address,
        port: dst.port,
        family: dst.family,
        ...(sniffed.domain ? { domain: sniffed.domain } : {}),
      },
    });
    return { route: r, head: sniffed.head };
  }

  private handle(flow: Flow, client: net.Socket, head?: Buffer): Promise<void> {
    const liveFlow: LiveFlow = { flow, client: new WeakRef(client) };
    const { liveFlows, metrics } = this;
    liveFlows.set(flow.id, liveFlow);
    metrics?.active.inc({ listener: flow.listener });
    return this.relayFlow(flow, client, head, liveFlow).finally(() => {
      liveFlows.delete(flow.id);
      metrics?.active.dec({ listener: flow.listener });
    });
  }

  /** Route and connect a flow; undefined once a failure is reported (and the client reset). */
  private async connectFlow(
    flow: Flow,
    client: net.Socket,
    head: Buffer | undefined,
  ): Promise<{ routed: RoutedFlow; up: Connected } | undefined> {
    const connectStart = process.hrtime.bigint();
    let routed: RoutedFlow | undefined;
    let up: Connected;
    try {
      routed = await this.routeFlow(flow, client, head);
      up = await connectTcp(this.dispatch, routed.route, {
        source: flow.src,
        log: this.log,
        clientGone: () => client.destroyed,
      });
    } catch (e) {
      this.connectFailed(flow, client, routed, e);
      return undefined;
    }
    this.report.connected(up.via, Number(process.hrtime.bigint() - connectStart) / 1e9);
    return { routed, up };
  }

  private connectFailed(flow: Flow, client: net.Socket, routed: RoutedFlow | undefined, e: unknown): void {
    const code = errorCode(e);
    const via = (e instanceof FlowError ? e.outbound : undefined) ?? routed?.route.via ?? 'direct';
    const rejected = code === FLOW_CODES.rejected;
    resetClient(client);
    this.ended(flow, {
      via,
      showVia: true,
      domain: routed?.route.dst.domain,
      rule: routed?.route.rule,
      up: 0,
      down: 0,
      durMs: Date.now() - flow.started,
      close: rejected ? 'rejected-by-rule' : 'connect-failed',
      error: rejected ? undefined : code,
      detail: rejected || via === 'direct' ? undefined : (e as Error).message,
    });
  }

  /** What the Live view and the log line say of a connected flow. */
  private connectedMeta(routed: RoutedFlow, up: Connected, liveFlow: LiveFlow): FlowMeta {
    const domain = routed.route.dst.domain;
    const rule = routed.route.rule;
    liveFlow.via = up.via;
    const carried = this.dispatch.outbounds.get(up.via);
    const path = this.routing && carried ? memberPath(this.routing.outbounds, carried) : [];
    if (domain) liveFlow.domain = domain;
    if (rule) liveFlow.rule = rule;
    if (path.length) liveFlow.path = path;
    return {
      via: up.via,
      ...(domain ? { domain } : {}),
      ...(rule ? { rule } : {}),
      ...(path.length ? { path } : {}),
      ...(up.fallbackFrom ? { fallbackFrom: up.fallbackFrom } : {}),
    };
  }

  // ---- relaying ----

  private async relayFlow(flow: Flow, client: net.Socket, head: Buffer | undefined, liveFlow: LiveFlow): Promise<void> {
    const connected = await this.connectFlow(flow, client, head);
    if (!connected) return;
    const { routed, up } = connected;
    const meta = this.connectedMeta(routed, up, liveFlow);
    const upstream = up.stream;
    if (client.destroyed) {
      upstream.destroy();
      const durMs = Date.now() - flow.started;
      this.ended(flow, { via: up.via, up: 0, down: 0, durMs, close: 'client-gone' }, meta.path);
      return;
    }
    const cfg = this.cfg;
    const rewriter = cfg.rewriterFor?.(flow);
    const eng = rewriter ? null : this.engine.get();
    if (eng && wouldSplice(client, upstream, {})) {
      // Returned, not awaited: once handed over, nothing in JS refers to the sockets any more.
      // relayAuto falls back to the JS relay itself if the engine refuses the pair.
      return this.reportSpliced(
        flow,
        meta,
        undefined,
        relayAuto(client, upstream, {
          idleTimeoutMs: cfg.idleTimeoutMs,
          engine: eng,
          onSpliced: (f) => {
            liveFlow.spliced = f;
          },
          ...(routed.head ? { head: routed.head } : {}),
        }),
        'splice',
      );
    }
    const r = await relay(client, upstream, {
      idleTimeoutMs: cfg.idleTimeoutMs,
      ...(rewriter ? { rewriter, headTimeoutMs: cfg.headTimeoutMs ?? 0 } : {}),
      ...(routed.head ? { head: routed.head } : {}),
    });
    this.finishLog(flow, meta, rewriter, r);
  }

  private reportSpliced(
    flow: Flow,
    meta: FlowMeta,
    rewriter: UpstreamRewriter | undefined,
    p: Promise<RelayResult>,
    engineName: 'splice',
  ): Promise<void> {
    return p.then((r) => this.finishLog(flow, meta, rewriter, r, engineName));
  }

  private finishLog(
    flow: Flow,
    meta: FlowMeta,
    rewriter: UpstreamRewriter | undefined,
    r: RelayResult,
    engineName?: 'splice',
  ): void {
    this.ended(
      flow,
      {
        via: meta.via,
        showVia: this.cfg.routing !== undefined,
        domain: meta.domain,
        fallbackFrom: meta.fallbackFrom,
        rule: meta.rule,
        up: r.bytesUp,
        down: r.bytesDown,
        durMs: Date.now() - flow.started,
        close: r.reason,
        error: r.error,
        requests: rewriter?.requests,
        relay: engineName,
      },
      meta.path,
    );
  }
}

/** What the log line and metrics need of a connected flow (not its sockets). */
interface FlowMeta {
  via: string;
  domain?: string;
  rule?: string;
  path?: string[];
  fallbackFrom?: string;
}

function bytesOf(client: net.Socket | undefined): { up?: number; down?: number } {
  return client ? { up: client.bytesRead, down: client.bytesWritten } : {};
}

function resetClient(client: net.Socket): void {
  const s = client as net.Socket & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
  else client.destroy();
}
