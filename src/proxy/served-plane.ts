// The data plane for listeners whose flows nobody inspects but the header rewriter (no routing,
// no --dst-from-host), or whose every flow goes through one SOCKS5 node (no rules): the splice
// engine accepts, connects and relays them itself, so no connection ever becomes a Node socket
// (src/relay/engine/worker.ts). This side turns the engine's batched flow records into the
// same log lines and metrics the JS path writes.
import { isIP } from 'node:net';
import { closedOf, FlowReporter, type FlowEnd } from '../flow/record.js';
import type { FlowRecord, ServedListener, SpliceEngine } from '../relay/engine/engine.js';
import type { EngineNode } from '../relay/engine/protocol.js';
import type { RoutingConfig } from '../config/routing.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import type { Logger } from '../observe/log.js';
import type { RelayEngineChoice } from '../config/run-config.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { CaptureMode } from '../firewall/plan.js';
import type { InjectConfig } from '../http/inject-config.js';
import type { ConnectionInfo, DataPlane, ListenerHandle } from './plane.js';
import { FlowStats } from '../observe/flow-stats.js';

/** What the engine needs to serve listeners itself. */
export interface ServedConfig {
  mode: CaptureMode;
  listenPort: number;
  ownPorts?: number[];
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  outboundMark: number;
  preserveSource: boolean;
  metrics?: DataPlaneMetrics;
  /** Header injection, run by the engine's threads on every flow's client bytes. */
  inject?: InjectConfig;
  /** With inject: a request head must be complete this long after it began; 0: no limit. */
  headTimeoutMs?: number;
  /** Totals and recently closed flows, shared with proxy mode. */
  stats?: FlowStats;
  /** Every flow goes through this node (engineNodeOf). */
  node?: EngineNode;
}

/** What decides whether the engine serves a data plane's flows (supervisor and child agree). */
export interface ServedPlaneInputs {
  relay?: RelayEngineChoice;
  /** Header injection as plain data (the engine's threads run the rewriter). */
  inject?: unknown;
  /** Some other inspection the engine cannot run (a rewriter without its plain config). */
  otherInspection?: boolean;
  routing?: unknown;
  dstFromHost?: unknown;
  inboundMark?: number;
  /** With routing: the one node every flow goes through, when the engine can speak to it (engineNodeOf). */
  node?: EngineNode;
}

/** True when the engine accepts and relays every flow itself (given that splice works here). */
export function engineServes(o: ServedPlaneInputs): boolean {
  return o.relay !== 'js' && !o.otherInspection && (!o.routing || !!o.node) && !o.dstFromHost && !o.inboundMark;
}

/** node-conn.ts's DEFAULT_HANDSHAKE_TIMEOUT_MS (not imported: a sidecar's data plane loads no outbound code). */
export const NODE_HANDSHAKE_TIMEOUT_MS = 10_000;

/** What decides whether the engine can carry a gateway's flows through its node. */
export interface NodeEligibility {
  routing?: RoutingConfig;
  udp?: boolean;
  proxyMode?: unknown;
  inject?: unknown;
  connectTimeoutMs: number;
}

/**
 * The node every TCP flow goes through, when the engine's loop can speak to it itself: no
 * rules or groups (the outbound needs no sniffing to be known), no DNS forwarder (fake IPs),
 * no UDP capture, proxy mode or header injection, and a SOCKS5 or Shadowsocks (no plugin) node
 * at an IP address without a fallback. Otherwise undefined: the JS path as before.
 */
export function engineNodeOf(cfg: NodeEligibility): EngineNode | undefined {
  const r = cfg.routing;
  if (!r || cfg.udp || cfg.proxyMode || cfg.inject) return undefined;
  if (r.rules.length > 0 || Object.keys(r.groups ?? {}).length > 0 || r.dns || r.defaultUdpOutbound !== undefined)
    return undefined;
  const node = Object.hasOwn(r.nodes, r.defaultOutbound) ? r.nodes[r.defaultOutbound] : undefined;
  const spec = node?.spec;
  if (!node || node.fallback !== undefined) return undefined;
  if (spec?.kind !== 'socks5' && (spec?.kind !== 'shadowsocks' || spec.plugin)) return undefined;
  const family = isIP(spec.host);
  if (family === 0) return undefined;
  return {
    kind: spec.kind,
    name: r.defaultOutbound,
    address: { address: spec.host, port: spec.port, family: family as 4 | 6 },
    ...(spec.kind === 'shadowsocks' ? { method: spec.method, password: spec.password } : {}),
    ...(spec.kind === 'socks5' && spec.username !== undefined
      ? { username: spec.username, password: spec.password ?? '' }
      : {}),
    connectTimeoutMs: node.connectTimeoutMs ?? cfg.connectTimeoutMs,
    handshakeTimeoutMs: NODE_HANDSHAKE_TIMEOUT_MS,
    sniffTimeoutMs: r.sniffTimeoutMs,
  };
}

/** Hands the listeners to the engine; the returned plane reports and controls its flows. */
export function startServedPlane(
  cfg: ServedConfig,
  listeners: ListenerHandle[],
  log: Logger,
  engine: SpliceEngine,
): DataPlane {
  const metrics = cfg.metrics;
  const report = new FlowReporter(log, metrics);
  let active = 0;
  let drained: (() => void) | undefined;
  const labels = new Set(listeners.map((l) => l.label));
  const stats = cfg.stats ?? new FlowStats();
  const via = cfg.node?.name ?? 'direct';

  const onRecord = (r: FlowRecord, ended: FlowReporter['ended']): void => {
    if (r.t === 'refused') {
      if (r.reason === 'accept-error') return report.acceptFailed(r.listener, r.error);
      return report.refused({
        ...(r.src ? { src: r.src } : {}),
        ...(r.dst ? { dst: r.dst } : {}),
        reason: r.reason,
        ...(r.reason === 'max-connections' ? { limit: cfg.maxConnections } : {}),
        ...(r.error ? { error: r.error } : {}),
      });
    }
    // Optional fields assigned, not spread: this runs once per connection.
    const end: FlowEnd = {
      via,
      up: r.bytesUp,
      down: r.bytesDown,
      durMs: r.ended - r.started,
      close: r.reason,
    };
    if (cfg.node) {
      end.showVia = true;
      end.rule = 'default';
      if (r.domain) end.domain = r.domain;
      if (r.detail) end.detail = r.detail;
    }
    if (r.error) end.error = r.error;
    if (r.requests !== undefined) end.requests = r.requests;
    if (r.reason !== 'connect-failed')
      end.relay = r.requests === undefined && cfg.node?.kind !== 'shadowsocks' ? 'splice' : 'engine';
    ended(r, end);
    stats.recordClosed(closedOf(r, end));
  };

  const connections = (): Promise<ConnectionInfo[]> => servedConnections(engine, via, cfg.node !== undefined);

  engine.serve(
    listeners.map((l) => servedListener(cfg, l)),
    {
      records(records, byLabel, connectMs) {
        for (const ms of connectMs) report.connected(via, ms / 1000);
        if (records.length > 0)
          report.endedBatch((ended) => {
            for (const r of records) onRecord(r, ended);
          });
        active = 0;
        for (const label of labels) {
          const n = byLabel[label] ?? 0;
          active += n;
          metrics?.active.set({ listener: label }, n);
        }
        if (active === 0 && drained) drained();
      },
      failed(error) {
        // Nothing accepts any more: exit, so that the supervisor starts a new worker.
        log.error('splice engine failed; data plane exits', { error });
        process.exitCode = 1;
        setImmediate(() => process.exit(1));
      },
    },
  );

  return {
    get active() {
      return active;
    },
    relay: 'kernel',
    connections,
    live: async (closedAfter, extra = []) => {
      const flows = await connections();
      const bytes = flows.map((f) => ({ up: f.up ?? 0, down: f.down ?? 0, node: via }));
      return { flows, traffic: stats.snapshot([...bytes, ...extra], closedAfter) };
    },
    closeConnection: (id) => engine.closeServed(id),
    stopAccepting: () => engine.stopServing(),
    drain: (deadlineMs) =>
      new Promise<void>((resolve) => {
        if (active === 0) return resolve();
        const t = setTimeout(resolve, deadlineMs);
        drained = () => {
          drained = undefined;
          clearTimeout(t);
          resolve();
        };
      }),
    destroyAll: () => engine.close(),
  };
}

/** What the engine needs to accept and relay on one listener. */
function servedListener(cfg: ServedConfig, l: ListenerHandle): ServedListener {
  return {
    fd: l.fd,
    family: l.family,
    label: l.label,
    mode: cfg.mode,
    connectTimeoutMs: cfg.connectTimeoutMs,
    idleMs: cfg.idleTimeoutMs,
    mark: cfg.outboundMark,
    preserveSource: cfg.preserveSource,
    ownPorts: [...new Set([cfg.listenPort, ...(cfg.ownPorts ?? [])])],
    maxConnections: cfg.maxConnections,
    ...(cfg.inject ? { inject: cfg.inject, headTimeoutMs: cfg.headTimeoutMs ?? 0 } : {}),
    ...(cfg.node ? { node: cfg.node } : {}),
  };
}

/** The engine's live flows as /connections rows. */
async function servedConnections(engine: SpliceEngine, via: string, routed: boolean): Promise<ConnectionInfo[]> {
  const now = Date.now();
  return (await engine.servedConnections()).map((c) => ({
    id: c.id,
    listener: c.listener,
    src: formatEndpoint(c.src),
    dst: formatEndpoint(c.dst),
    ...(c.domain ? { domain: c.domain } : {}),
    via,
    ...(routed ? { rule: 'default' } : {}),
    ageMs: now - c.started,
    up: c.bytesUp,
    down: c.bytesDown,
  }));
}
