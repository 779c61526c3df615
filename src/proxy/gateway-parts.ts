// The data plane's gateway parts: node outbounds and groups, the DNS forwarder, UDP routing
// and proxy mode's inbound. Loaded by plane-runtime.ts only when the configuration has them,
// so a sidecar (no nodes, no DNS, no UDP) keeps none of this code resident.
import type { DataPlaneRouting } from './dataplane.js';
import type { Router } from '../route/index.js';
import { createOutbound, type HostResolver, type TcpOutbound } from '../outbound/index.js';
import type { RoutingConfig } from '../config/routing.js';
import { ownPortsOf } from '../config/own-traffic.js';
import type { RunConfig } from '../config/run-config.js';
import type { DnsConfig } from '../config/schema.js';
import { directUdpOutbound, type UdpOutbound } from '../udp/index.js';
import { routedUdpOutbound } from '../flow/udp-routed.js';
import { createUdpOutbound, udpUnsupportedReason } from '../outbound/udp-outbound.js';
import type { Logger } from '../observe/log.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { WorkerShare } from './protocol.js';
import { startDnsForwarder, type DnsForwarder } from '../dns/forwarder.js';
import { dnsForwarderOptions } from '../dns/config.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { onPluginEvent, type PluginEvent } from '../outbound/sip003.js';
import { buildGroups, udpGroupOutbounds, type Groups } from './groups.js';
import { startMixedInbound, type MixedInbound } from '../inbound/mixed.js';
import { proxyDialer } from '../inbound/dial.js';
import { systemResolver } from '../outbound/node-conn.js';

export type { Groups, MixedInbound, DnsForwarder };
export { startUdpTproxy, directUdpOutbound } from '../udp/index.js';

/** Outbounds and router from plain config (validated already by the supervisor). */
export function buildRouting(
  cfg: RoutingConfig,
  router: Router,
  opts: { mark: number; connectTimeoutMs: number; resolve: HostResolver | undefined; log: Logger },
  metrics: DataPlaneMetrics | undefined,
): { routing: DataPlaneRouting; groups: Groups } {
  const { mark, connectTimeoutMs, resolve, log } = opts;
  logPluginsTo(log);
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
  const groups = buildGroups(cfg.groups ?? {}, outbounds, { mark, connectTimeoutMs, log, metrics });
  const fallbacks = new Map(
    Object.entries(cfg.nodes).flatMap(([name, n]) => (n.fallback ? [[name, n.fallback] as const] : [])),
  );
  return { routing: { router, outbounds, fallbacks, sniffTimeoutMs: cfg.sniffTimeoutMs }, groups };
}

/**
 * UDP side of the routing: the same rules (network 'udp') and fake-IP map, a UDP outbound
 * per node that can carry UDP (SOCKS5 UDP ASSOCIATE, Shadowsocks); flows routed to other
 * nodes (HTTP CONNECT) are refused with the reason.
 */
export function buildUdpRouting(
  cfg: RoutingConfig,
  routing: DataPlaneRouting,
  router: Router,
  groups: Groups | undefined,
  opts: { mark: number; connectTimeoutMs: number; resolve: HostResolver | undefined; log: Logger },
): UdpOutbound {
  const { mark, connectTimeoutMs, resolve, log } = opts;
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

let pluginLog: Logger | undefined;

/** Plugin events go to the newest generation's logger (one subscription per process). */
function logPluginsTo(log: Logger): void {
  if (!pluginLog) onPluginEvent((e) => logPluginEvent(pluginLog!, e));
  pluginLog = log;
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

/** Proxy mode: the mixed inbound on its listeners, routed like captured flows. */
export function startProxyMode(
  cfg: RunConfig,
  worker: WorkerShare,
  fds: number[],
  parts: { routing: DataPlaneRouting | undefined; udpRouter: Router | undefined; groups: Groups | undefined },
  resolveNames: HostResolver | undefined,
  log: Logger,
  metrics: DataPlaneMetrics | undefined,
): Promise<MixedInbound> {
  const proxy = cfg.proxyMode!;
  const { routing, udpRouter } = parts;
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
      ? buildUdpRouting(cfg.routing, routing, udpRouter, parts.groups, {
          mark,
          connectTimeoutMs: cfg.connectTimeoutMs,
          resolve: resolveNames,
          log,
        })
      : directUdpOutbound(mark ? { mark } : {});
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
      ...(metrics ? { metrics } : {}),
    },
    worker.proxyListeners.map((l, i) => ({ fd: fds[i]!, family: l.family, label: l.label })),
    log,
  );
}

/** The DNS forwarder lives next to the data plane, so fake-IP lookups are calls. */
export async function startDns(
  dnsCfg: DnsConfig,
  routing: DataPlaneRouting,
  cfg: RunConfig,
  opts: { mark: number; families: (4 | 6)[]; log: Logger },
  keep: (d: DnsForwarder | undefined) => void,
  current: () => DnsForwarder | undefined,
): Promise<() => Promise<void>> {
  const { mark, families, log } = opts;
  const dnsOptions = dnsForwarderOptions(dnsCfg, {
    log,
    ...(dnsCfg.via !== 'direct' ? { via: routing.outbounds.get(dnsCfg.via)! } : {}),
    ...(mark ? { mark } : {}),
    fallbackNameservers: cfg.resolver.nameservers,
    families,
  });
  // Kept so this worker can hand the DNS port to the next generation ('dns-release') and
  // take it back if that generation fails to start ('dns-restore').
  const restart = async () => keep(await startDnsForwarder(dnsOptions));
  await restart();
  const forwarder = current()!;
  if (dnsCfg.fakeIp?.enabled) {
    routing.fakeIp = {
      lookup: (ip) => (current() ?? forwarder).lookupFakeIp(ip),
      resolveReal: (d, f) => (current() ?? forwarder).resolveReal(d, f),
    };
  }
  log.info('dns ready:', {
    listen: forwarder.addresses.map((a) => formatEndpoint(a)).join(','),
    via: dnsCfg.via,
    'fake-ip': dnsCfg.fakeIp?.enabled ? dnsCfg.fakeIp.range : 'off',
  });
  return restart;
}
