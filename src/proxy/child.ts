// Entry point of the data-plane child process. It receives its listeners as inherited file
// descriptors and its settings over IPC, so it can run unprivileged (the supervisor keeps
// the privileges needed for the firewall).
import { createLogger } from '../observe/log.js';
import { batchedStderr } from '../observe/batched-stderr.js';
import { LogRing } from '../observe/log-ring.js';
import { FlowStats, nodeOf } from '../observe/flow-stats.js';
import { DataPlaneMetrics } from '../observe/metrics.js';
import { compileInjectConfig, DEFAULT_MAX_HEAD_BYTES, type CompiledInject } from '../http/inject-config.js';
import { RequestRewriter } from '../http/rewriter.js';
import { NameResolver, resolverForNames } from '../dns/resolver.js';
import { startDataPlane, type DataPlane, type DataPlaneRouting } from './dataplane.js';
import type { LiveAnswer } from './plane.js';
import type { Router } from '../route/index.js';
import { createOutbound, type HostResolver, type TcpOutbound } from '../outbound/index.js';
import { routersOf, type RoutingConfig } from '../config/routing.js';
import { inboundMarkOf, ownPortsOf } from '../config/own-traffic.js';
import type { RunConfig } from '../config/run-config.js';
import type { DnsConfig } from '../config/schema.js';
import { directUdpOutbound, startUdpTproxy, type UdpOutbound, type UdpTproxy } from '../udp/index.js';
import { routedUdpOutbound } from '../flow/udp-routed.js';
import { createUdpOutbound, udpUnsupportedReason } from '../outbound/udp-outbound.js';
import type { Logger } from '../observe/log.js';
import { FIRST_LISTENER_FD, type ChildStart, type FromChild, type ToChild, type WorkerShare } from './protocol.js';
import { startDnsForwarder, type DnsForwarder } from '../dns/forwarder.js';
import { dnsForwarderOptions } from '../dns/config.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { onPluginEvent, type PluginEvent } from '../outbound/sip003.js';
import { buildGroups, udpGroupOutbounds, type Groups } from './groups.js';
import { startMixedInbound, type MixedInbound } from '../inbound/mixed.js';
import { proxyDialer } from '../inbound/dial.js';
import { systemResolver } from '../outbound/node-conn.js';
import { readListFile } from './rule-lists.js';

function send(msg: FromChild): void {
  process.send?.(msg);
}

let plane: DataPlane | undefined;
const metrics = new DataPlaneMetrics();
/** Totals and recently closed flows of this process: the data plane's and proxy mode's. */
const stats = new FlowStats();
/** This worker's last log lines; the supervisor pulls them for the console ('logs'). */
const logRing = new LogRing();
let udp: UdpTproxy | undefined;
let dns: DnsForwarder | undefined;
let restartDns: (() => Promise<void>) | undefined;
let groups: Groups | undefined;
let inbound: MixedInbound | undefined;

/** Outbounds and router from plain config (validated already by the supervisor). */
function buildRouting(
  cfg: RoutingConfig,
  router: Router,
  mark: number,
  connectTimeoutMs: number,
  resolve: HostResolver | undefined,
  log: Logger,
): DataPlaneRouting {
  const outbounds = new Map<string, TcpOutbound>();
  for (const [name, node] of Object.entries(cfg.nodes)) {
    outbounds.set(
      name,
      createOutbound(node.spec, {
        ...(mark ? { mark } : {}),
        ...(resolve ? { resolve } : {}),
        connectTimeoutMs: node.connectTimeoutMs ?? connectTimeoutMs,
      }),
    );
  }
  groups = buildGroups(cfg.groups ?? {}, outbounds, { mark, connectTimeoutMs, log, metrics });
  const fallbacks = new Map(
    Object.entries(cfg.nodes).flatMap(([name, n]) => (n.fallback ? [[name, n.fallback] as const] : [])),
  );
  return { router, outbounds, fallbacks, sniffTimeoutMs: cfg.sniffTimeoutMs };
}

/**
 * UDP side of the routing: the same rules (network 'udp') and fake-IP map, a UDP outbound
 * per node that can carry UDP (SOCKS5 UDP ASSOCIATE, Shadowsocks); flows routed to other
 * nodes (HTTP CONNECT) are refused with the reason.
 */
function buildUdpRouting(
  cfg: RoutingConfig,
  routing: DataPlaneRouting,
  router: Router,
  mark: number,
  connectTimeoutMs: number,
  log: Logger,
  resolve: HostResolver | undefined,
): UdpOutbound {
  const outbounds = new Map<string, UdpOutbound>();
  const unsupported = new Map<string, string>();
  for (const [name, node] of Object.entries(cfg.nodes)) {
    const ob = createUdpOutbound(node.spec, {
      ...(mark ? { mark } : {}),
      ...(resolve ? { resolve } : {}),
      connectTimeoutMs: node.connectTimeoutMs ?? connectTimeoutMs,
    });
    if (ob) outbounds.set(name, ob);
    else unsupported.set(name, udpUnsupportedReason(node.spec) ?? `node '${name}' cannot carry UDP`);
  }
  const direct = directUdpOutbound(mark ? { mark } : {});
  for (const [name, ob] of udpGroupOutbounds(groups?.byName ?? new Map(), new Map(outbounds), direct, unsupported))
    outbounds.set(name, ob);
  return routedUdpOutbound(router, outbounds, direct, {
    log,
    unsupported,
    ...(routing.fakeIp ? { fakeIp: routing.fakeIp } : {}),
  });
}

function rewriterFactory(inject: CompiledInject): () => RequestRewriter {
  return () => new RequestRewriter(inject);
}

function logPluginEvent(log: Logger, e: PluginEvent): void {
  if (e.type === 'started')
    log.info('plugin started:', { node: e.node, plugin: e.plugin, pid: e.pid, listen: `127.0.0.1:${e.port}` });
  else if (e.type === 'exited')
    log.warn('plugin exited:', {
      node: e.node,
      plugin: e.plugin,
      pid: e.pid,
      status: e.signal ?? e.code ?? undefined,
      'restart-in-ms': e.restartInMs,
      stderr: e.stderr || undefined,
    });
  else log.error(`plugin failed: node '${e.node}': ${e.error}`);
}

async function start({ cfg, worker }: ChildStart): Promise<void> {
  const log = createLogger(cfg.logFormat, batchedStderr(), logRing); // one write per event-loop turn
  onPluginEvent((e) => logPluginEvent(log, e));
  const resolver = new NameResolver(cfg.resolver);
  const mark = worker.outboundMark;
  const families = worker.listeners.map((l) => l.family);
  const resolveNames = resolverForNames(cfg.resolver, cfg.nameserversGiven);
  // The rules compile once here, for TCP and UDP alike; domain lists are used as packed.
  const lists = worker.lists ? readListFile(worker.lists.fd, worker.lists.length) : undefined;
  const routers = cfg.routing ? routersOf(cfg.routing, lists) : undefined;
  const routing =
    cfg.routing && routers
      ? buildRouting(cfg.routing, routers.tcp, mark, cfg.connectTimeoutMs, resolveNames, log)
      : undefined;
  if (cfg.routing?.dns && routing) await startDns(cfg.routing.dns, routing, cfg, mark, families, log);
  plane = await startDataPlane(
    {
      mode: cfg.mode,
      listenPort: cfg.listenPort,
      ownPorts: ownPortsOf(cfg),
      connectTimeoutMs: cfg.connectTimeoutMs,
      idleTimeoutMs: cfg.idleTimeoutMs,
      headTimeoutMs: cfg.headTimeoutMs,
      maxConnections: worker.maxConnections,
      outboundMark: mark,
      ...(inboundMarkOf(cfg) ? { inboundMark: inboundMarkOf(cfg) } : {}),
      preserveSource: cfg.preserveSource,
      ...(cfg.dstFromHost
        ? {
            dstFromHost: {
              resolve: (n: string) => resolver.resolve(n),
              maxHeadBytes: cfg.inject?.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES,
            },
          }
        : {}),
      ...(routing ? { routing } : {}),
      metrics,
      stats,
      relay: cfg.relay,
      engineThreads: worker.engineThreads,
      ...(cfg.inject ? { inject: cfg.inject, rewriterFor: rewriterFactory(compileInjectConfig(cfg.inject)) } : {}),
    },
    worker.listeners.map((l, i) => ({ fd: FIRST_LISTENER_FD + i, family: l.family, label: l.label })),
    log,
  );
  if (cfg.proxyMode)
    inbound = await startProxyMode(cfg, cfg.proxyMode, worker, routing, routers?.udp, resolveNames, log);
  if (cfg.udp) {
    udp = await startUdpTproxy({
      port: cfg.listenPort,
      families,
      idleTimeoutMs: cfg.udpIdleTimeoutMs,
      ...(mark ? { mark } : {}),
      ...(cfg.routing && routing && routers
        ? {
            outbound: buildUdpRouting(cfg.routing, routing, routers.udp, mark, cfg.connectTimeoutMs, log, resolveNames),
          }
        : {}),
      log,
    });
  }
}

/** Proxy mode: the mixed inbound on its listeners, routed like captured flows. */
function startProxyMode(
  cfg: RunConfig,
  proxy: NonNullable<RunConfig['proxyMode']>,
  worker: WorkerShare,
  routing: DataPlaneRouting | undefined,
  udpRouter: Router | undefined,
  resolveNames: HostResolver | undefined,
  log: Logger,
): Promise<MixedInbound> {
  const resolve = resolveNames ?? systemResolver;
  const mark = worker.outboundMark;
  const dial = proxyDialer({
    ...(routing ? { routing } : {}),
    resolve,
    connectTimeoutMs: cfg.connectTimeoutMs,
    mark,
    ownPorts: ownPortsOf(cfg),
    log,
  });
  const udpOutbound =
    cfg.routing && routing && udpRouter
      ? buildUdpRouting(cfg.routing, routing, udpRouter, mark, cfg.connectTimeoutMs, log, resolveNames)
      : directUdpOutbound(mark ? { mark } : {});
  const first = FIRST_LISTENER_FD + worker.listeners.length;
  return startMixedInbound(
    {
      dial,
      udp: udpOutbound,
      resolve,
      ...(proxy.auth ? { auth: proxy.auth } : {}),
      handshakeTimeoutMs: cfg.connectTimeoutMs,
      idleTimeoutMs: cfg.idleTimeoutMs,
      udpIdleTimeoutMs: cfg.udpIdleTimeoutMs,
      maxConnections: worker.maxConnections,
      metrics,
      stats,
    },
    worker.proxyListeners.map((l, i) => ({ fd: first + i, family: l.family, label: l.label })),
    log,
  );
}

/** The DNS forwarder lives here, next to the data plane, so fake-IP lookups are calls. */
async function startDns(
  dnsCfg: DnsConfig,
  routing: DataPlaneRouting,
  cfg: RunConfig,
  mark: number,
  families: (4 | 6)[],
  log: Logger,
): Promise<void> {
  const dnsOptions = dnsForwarderOptions(dnsCfg, {
    log,
    ...(dnsCfg.via !== 'direct' ? { via: routing.outbounds.get(dnsCfg.via)! } : {}),
    ...(mark ? { mark } : {}),
    fallbackNameservers: cfg.resolver.nameservers,
    families,
  });
  // Kept so this worker can hand the DNS port to the next generation ('dns-release') and
  // take it back if that generation fails to start ('dns-restore').
  restartDns = async () => {
    dns = await startDnsForwarder(dnsOptions);
  };
  await restartDns();
  const forwarder = dns!;
  if (dnsCfg.fakeIp?.enabled) {
    routing.fakeIp = {
      lookup: (ip) => (dns ?? forwarder).lookupFakeIp(ip),
      resolveReal: (d, f) => (dns ?? forwarder).resolveReal(d, f),
    };
  }
  log.info('dns ready:', {
    listen: forwarder.addresses.map((a) => formatEndpoint(a)).join(','),
    via: dnsCfg.via,
    'fake-ip': dnsCfg.fakeIp?.enabled ? dnsCfg.fakeIp.range : 'off',
  });
}

process.on('message', (msg: ToChild) => {
  if (msg.type === 'start') {
    start(msg).then(
      () => send({ type: 'ready', relay: plane!.relay }),
      (e: Error) => send({ type: 'failed', message: e.message }),
    );
  } else if (msg.type === 'query') {
    const answer = (data: unknown) => process.send?.({ type: 'answer', id: msg.id, data });
    if (msg.what === 'connections')
      void (plane?.connections() ?? Promise.resolve([])).then(
        (c) => answer([...c, ...(inbound?.connections() ?? [])]),
        () => answer(inbound?.connections() ?? []),
      );
    else if (msg.what === 'groups') answer(groups?.states() ?? []);
    else if (msg.what === 'dns-release') {
      const d = dns;
      dns = undefined;
      void (d?.close() ?? Promise.resolve()).then(
        () => answer(d !== undefined),
        () => answer(false),
      );
    } else if (msg.what === 'dns-restore') {
      if (dns || !restartDns) answer(false);
      else
        void restartDns().then(
          () => answer(true),
          () => answer(false),
        );
    } else if (msg.what === 'dns-flush') {
      dns?.clearCache();
      answer(dns !== undefined);
    } else void metrics.snapshot().then(answer, () => answer(undefined));
  } else if (msg.type === 'select-group') {
    const g = groups?.byName.get(msg.group);
    try {
      if (!g) throw new Error(`no group named '${msg.group}'`);
      g.select(msg.member);
      process.send?.({ type: 'answer', id: msg.id, data: { ok: true } });
    } catch (e) {
      process.send?.({ type: 'answer', id: msg.id, data: { ok: false, error: (e as Error).message } });
    }
  } else if (msg.type === 'live') {
    const answer = (data: unknown) => process.send?.({ type: 'answer', id: msg.id, data });
    // Proxy-mode flows are listed and counted too (one FlowStats for both).
    const proxyFlows = inbound?.connections() ?? [];
    const proxyBytes = proxyFlows.map((f) => ({ up: f.up ?? 0, down: f.down ?? 0, node: nodeOf(f.via, undefined) }));
    const withProxy = (a: LiveAnswer | undefined) => (a ? { ...a, flows: [...a.flows, ...proxyFlows] } : a);
    void (plane?.live(msg.closedAfter, proxyBytes) ?? Promise.resolve(undefined)).then(
      (a) => answer(withProxy(a)),
      () => answer(undefined),
    );
  } else if (msg.type === 'logs') {
    process.send?.({ type: 'answer', id: msg.id, data: logRing.read({ since: msg.after, limit: 2000 }).entries });
  } else if (msg.type === 'close-connection') {
    const closed = inbound?.closeConnection(msg.conn) ? Promise.resolve(true) : undefined;
    void (closed ?? plane?.closeConnection(msg.conn) ?? Promise.resolve(false)).then(
      (data) => process.send?.({ type: 'answer', id: msg.id, data }),
      () => process.send?.({ type: 'answer', id: msg.id, data: false }),
    );
  } else if (msg.type === 'shutdown') {
    const p = plane;
    if (!p) process.exit(0);
    void Promise.all([p.stopAccepting(), inbound?.stopAccepting(), udp?.close(), dns?.close()])
      .then(() => Promise.all([p.drain(msg.drainMs), inbound?.drain(msg.drainMs)]))
      .then(() => {
        inbound?.destroyAll();
        return p.destroyAll();
      })
      .then(() => {
        send({ type: 'drained' });
        process.exit(0);
      });
  }
});

// The supervisor going away (even by SIGKILL) closes the IPC channel: do not outlive it.
process.on('disconnect', () => process.exit(0));
// Signals are the supervisor's business (it forwards a shutdown message).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('SIGHUP', () => {});
