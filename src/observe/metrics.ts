// Prometheus metrics of one data-plane process (prom-client, a private registry). The
// supervisor collects every worker's JSON snapshot over IPC and aggregates them, so the
// admin endpoint shows one set of numbers however many workers run.
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type GaugeConfiguration } from 'prom-client';

/** A registry's getMetricsAsJSON() output: plain data, fine for IPC. */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export class DataPlaneMetrics {
  readonly registry = new Registry();

  /** A gauge in this registry (for code that keeps prom-client out of its own imports). */
  gauge<T extends string>(config: Omit<GaugeConfiguration<T>, 'registers'>): Gauge<T> {
    return new Gauge({ ...config, registers: [this.registry] });
  }

  readonly active = new Gauge({
    name: 'tranproxy_connections_active',
    help: 'Connections being relayed',
    labelNames: ['listener'],
    registers: [this.registry],
  });
  readonly total = new Counter({
    name: 'tranproxy_connections_total',
    help: 'Connections handled, by listener, outbound and result',
    labelNames: ['listener', 'outbound', 'result'],
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'tranproxy_bytes_total',
    help: 'Bytes relayed, by direction (up: client to server)',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly connectSeconds = new Histogram({
    name: 'tranproxy_upstream_connect_seconds',
    help: 'Time to a connected upstream (including node handshakes), by outbound',
    labelNames: ['outbound'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly injected = new Counter({
    name: 'tranproxy_http_requests_injected_total',
    help: 'HTTP requests whose head was rewritten',
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'tranproxy_connections_refused_total',
    help: 'Connections refused before relaying, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  snapshot(): Promise<MetricsSnapshot> {
    return this.registry.getMetricsAsJSON();
  }
}

/** Supervisor-side metrics (rule applies and errors) plus aggregation of worker snapshots. */
export class SupervisorMetrics {
  readonly registry = new Registry();
  readonly ruleApplies = new Counter({
    name: 'tranproxy_rule_applies_total',
    help: 'Firewall plan applies',
    registers: [this.registry],
  });
  readonly ruleErrors = new Counter({
    name: 'tranproxy_rule_errors_total',
    help: 'Firewall applies or removals that failed',
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'tranproxy_reloads_total',
    help: 'Configuration reloads, by result',
    labelNames: ['result'],
    registers: [this.registry],
  });

  async render(workers: MetricsSnapshot[]): Promise<string> {
    const own = await this.registry.getMetricsAsJSON();
    const merged = AggregatorRegistry.aggregate([own, ...workers] as never);
    return merged.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
