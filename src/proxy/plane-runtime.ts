// One generation of the data plane in this process: the listeners' data plane plus, when the
// configuration asks for them, node routing, DNS, UDP and proxy mode (gateway-parts.ts,
// loaded only then). The forked child (child.ts) and `run --one-process` (one-process.ts)
// both serve through it.
import type { Logger } from '../observe/log.js';
import type { DataPlaneMetrics, MetricsSnapshot } from '../observe/metrics.js';
import { compileInjectConfig, DEFAULT_MAX_HEAD_BYTES, type CompiledInject } from '../http/inject-config.js';
import { RequestRewriter } from '../http/rewriter.js';
import { startDataPlane, type DataPlane, type DataPlaneRouting } from './dataplane.js';
import { engineNodeOf } from './served-plane.js';
import type { ConnectionInfo, LiveAnswer } from './plane.js';
import type { Router } from '../route/index.js';
import { inboundMarkOf, ownPortsOf } from '../config/own-traffic.js';
import type { RunConfig } from '../config/run-config.js';
import type { RelayPath, WorkerShare } from './protocol.js';
import type { GroupState } from '../outbound/group.js';
import type * as GatewayParts from './gateway-parts.js';

type Parts = typeof GatewayParts;
type Closable = { close(): Promise<void> };

/** Whether this configuration needs anything beyond the listeners' data plane. */
function needsGatewayParts(cfg: RunConfig): boolean {
  return cfg.routing !== undefined || cfg.udp || cfg.proxyMode !== undefined;
}

function rewriterFactory(inject: CompiledInject): () => RequestRewriter {
  return () => new RequestRewriter(inject);
}

export class PlaneRuntime {
  private plane: DataPlane | undefined;
  private groups: GatewayParts.Groups | undefined;
  private inbound: GatewayParts.MixedInbound | undefined;
  private udp: Closable | undefined;
  private dns: GatewayParts.DnsForwarder | undefined;
  private restartDns: (() => Promise<void>) | undefined;

  /** metrics: undefined keeps prom-client out of the process (no admin API asked for). */
  constructor(private readonly metrics: DataPlaneMetrics | undefined) {}

  /** How its flows are relayed; undefined until its data plane started. */
  get relay(): RelayPath | undefined {
    return this.plane?.relay;
  }

  /**
   * Serves the listeners at `fds` (worker.listeners' then worker.proxyListeners', in order)
   * with `cfg`; `lists`: the bytes its rules' domain-list references point into (packRuleLists).
   */
  async start(cfg: RunConfig, worker: WorkerShare, fds: number[], log: Logger, lists?: Uint8Array): Promise<RelayPath> {
    // With one node the engine speaks to, the engine carries every flow: the JS routing (node
    // protocols, gateway parts) is built only if it cannot (--relay js, no engine here).
    const engineNode = engineNodeOf(cfg);
    const parts = needsGatewayParts(cfg) && !engineNode ? await import('./gateway-parts.js') : undefined;
    const mark = worker.outboundMark;
    const families = worker.listeners.map((l) => l.family);
    const { resolverForNames, NameResolver } = await import('../dns/resolver.js');
    const resolveNames = resolverForNames(cfg.resolver, cfg.nameserversGiven);
    const opts = { mark, connectTimeoutMs: cfg.connectTimeoutMs, resolve: resolveNames, log };
    // The rules compile once here, for TCP and UDP alike.
    const routers =
      cfg.routing && !engineNode ? (await import('../config/routing.js')).routersOf(cfg.routing, lists) : undefined;
    let routing: DataPlaneRouting | undefined;
    if (parts && cfg.routing && routers) {
      ({ routing, groups: this.groups } = parts.buildRouting(cfg.routing, routers.tcp, opts, this.metrics));
      this.keepSelections(worker.selected ?? {}, log);
      if (cfg.routing.dns) await this.startDns(parts, cfg, routing, mark, families, log);
    }
    const resolver = cfg.dstFromHost ? new NameResolver(cfg.resolver) : undefined;
    this.plane = await startDataPlane(
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
        ...(resolver
          ? {
              dstFromHost: {
                resolve: (n: string) => resolver.resolve(n),
                maxHeadBytes: cfg.inject?.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES,
              },
            }
          : {}),
        ...(routing ? { routing } : {}),
        ...(engineNode ? { node: engineNode, routingIfJs: () => this.nodeRouting(cfg, opts, lists) } : {}),
        ...(this.metrics ? { metrics: this.metrics } : {}),
        relay: cfg.relay,
        engineThreads: worker.engineThreads,
        ...(cfg.inject ? { inject: cfg.inject, rewriterFor: rewriterFactory(compileInjectConfig(cfg.inject)) } : {}),
      },
      worker.listeners.map((l, i) => ({ fd: fds[i]!, family: l.family, label: l.label })),
      log,
    );
    if (parts)
      await this.startUdpAndProxy(parts, cfg, worker, fds.slice(worker.listeners.length), {
        routing,
        routers,
        opts,
        families,
      });
    return this.plane.relay;
  }

  /** The JS routing of a configuration whose every flow goes to one node (engineNodeOf): no rules, groups or DNS. */
  private async nodeRouting(
    cfg: RunConfig,
    opts: Parameters<typeof GatewayParts.buildRouting>[2],
    lists: Uint8Array | undefined,
  ): Promise<DataPlaneRouting> {
    const [parts, { routersOf }] = await Promise.all([import('./gateway-parts.js'), import('../config/routing.js')]);
    const routing = cfg.routing!;
    const built = parts.buildRouting(routing, routersOf(routing, lists).tcp, opts, this.metrics);
    this.groups = built.groups;
    return built.routing;
  }

  private async startDns(
    parts: Parts,
    cfg: RunConfig,
    routing: DataPlaneRouting,
    mark: number,
    families: (4 | 6)[],
    log: Logger,
  ): Promise<void> {
    this.restartDns = await parts.startDns(
      cfg.routing!.dns!,
      routing,
      cfg,
      { mark, families, log },
      (d) => {
        this.dns = d;
      },
      () => this.dns,
    );
  }

  private async startUdpAndProxy(
    parts: Parts,
    cfg: RunConfig,
    worker: WorkerShare,
    proxyFds: number[],
    with_: {
      routing: DataPlaneRouting | undefined;
      routers: { tcp: Router; udp: Router } | undefined;
      opts: Parameters<Parts['buildUdpRouting']>[4];
      families: (4 | 6)[];
    },
  ): Promise<void> {
    const { routing, routers, opts, families } = with_;
    const { mark, log } = opts;
    if (cfg.proxyMode)
      this.inbound = await parts.startProxyMode(
        cfg,
        worker,
        proxyFds,
        { routing, udpRouter: routers?.udp, groups: this.groups },
        opts.resolve,
        log,
        this.metrics,
      );
    if (cfg.udp) {
      this.udp = await parts.startUdpTproxy({
        port: cfg.listenPort,
        families,
        idleTimeoutMs: cfg.udpIdleTimeoutMs,
        ...(mark ? { mark } : {}),
        ...(cfg.routing && routing && routers
          ? { outbound: parts.buildUdpRouting(cfg.routing, routing, routers.udp, this.groups, opts) }
          : {}),
        log,
      });
    }
  }

  async connections(): Promise<ConnectionInfo[]> {
    const own = this.inbound?.connections() ?? [];
    const plane = await (this.plane?.connections() ?? Promise.resolve([])).catch(() => []);
    return [...plane, ...own];
  }

  /** Live flows (proxy mode's listed too: their bytes are not in the traffic counters yet). */
  async live(closedAfter: number): Promise<LiveAnswer | undefined> {
    const a = await (this.plane?.live(closedAfter) ?? Promise.resolve(undefined)).catch(() => undefined);
    return a && this.inbound ? { ...a, flows: [...a.flows, ...this.inbound.connections()] } : a;
  }

  groupStates(): GroupState[] {
    return this.groups?.states() ?? [];
  }

  /** Choose a select group's member; throws with the reason. */
  /** The members chosen before this worker started (a crash, a reload); one no longer in the config is dropped. */
  private keepSelections(selected: Record<string, string>, log: Logger): void {
    for (const [group, member] of Object.entries(selected)) {
      try {
        this.selectGroup(group, member);
      } catch (e) {
        log.warn(`group '${group}': the member chosen before is not kept: ${(e as Error).message}`);
      }
    }
  }

  selectGroup(group: string, member: string): void {
    const g = this.groups?.byName.get(group);
    if (!g) throw new Error(`no group named '${group}'`);
    g.select(member);
  }

  /** Close the DNS forwarder (its port goes to the next generation); whether there was one. */
  async releaseDns(): Promise<boolean> {
    const d = this.dns;
    this.dns = undefined;
    await d?.close();
    return d !== undefined;
  }

  async restoreDns(): Promise<boolean> {
    if (this.dns || !this.restartDns) return false;
    await this.restartDns();
    return true;
  }

  flushDns(): boolean {
    this.dns?.clearCache();
    return this.dns !== undefined;
  }

  metricSnapshot(): Promise<MetricsSnapshot | undefined> {
    return this.metrics ? this.metrics.snapshot() : Promise.resolve(undefined);
  }

  async closeConnection(id: number): Promise<boolean> {
    if (this.inbound?.closeConnection(id)) return true;
    return (await this.plane?.closeConnection(id)) ?? false;
  }

  /**
   * Stop accepting, let connections finish for up to drainMs, then close the rest.
   * `notAccepting` runs once nothing of this runtime accepts any more.
   */
  async shutdown(drainMs: number, notAccepting?: () => void): Promise<void> {
    const p = this.plane;
    if (!p) return notAccepting?.();
    await Promise.all([p.stopAccepting(), this.inbound?.stopAccepting(), this.udp?.close(), this.dns?.close()]);
    notAccepting?.();
    await Promise.all([p.drain(drainMs), this.inbound?.drain(drainMs)]);
    await Promise.all([this.inbound?.destroyAll(), p.destroyAll()]);
  }
}
