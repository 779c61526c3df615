// A flow's record: what it is (Flow), how it ended (FlowEnd), and the one `conn` / `refused`
// log line and metrics update every data plane (JS relay, splice engine, served listeners) writes.
import { formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';
import type { LogFields, Logger } from '../observe/log.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import type { ClosedFlow, FlowStats } from '../observe/flow-stats.js';

/** One accepted TCP flow. */
export interface Flow {
  id: number;
  /** Label of the listener that accepted it. */
  listener: string;
  src: Endpoint;
  dst: Endpoint;
  /** Date.now() at accept. */
  started: number;
}

/** Why a flow was refused before relaying (the `reason` of its line and metric label). */
export type RefusalReason = 'max-connections' | 'no-original-destination' | 'loop' | 'resolve-failed' | 'accept-error';

export interface Refusal {
  reason: RefusalReason;
  src?: Endpoint;
  dst?: Endpoint;
  /** The limit that was reached (max-connections). */
  limit?: number;
  /** The Host that did not resolve (resolve-failed). */
  host?: string;
  error?: string;
}

/** How a flow ended: the fields of its `conn` line beyond id, src and dst. */
export interface FlowEnd {
  /** Outbound that carried (or failed) the flow; the metric label is 'direct' when absent. */
  via?: string;
  /** Write `via=` in the line (routing on); the metric label is written either way. */
  showVia?: boolean;
  domain?: string;
  /** The rule that routed the flow: `rules[3]` or `default`. */
  rule?: string;
  /** The node chosen but unreachable, when a fallback carried the flow. */
  fallbackFrom?: string;
  up: number;
  down: number;
  durMs: number;
  /** close reason: eof, idle, reset, connect-failed, rejected-by-rule, client-gone, … */
  close: string;
  /** A stable error code (ECONNREFUSED, EREJECTED, …). */
  error?: string;
  /** The node's own words on a failed connect. */
  detail?: string;
  /** HTTP requests that had headers injected. */
  requests?: number;
  /** Engine flows: spliced (nobody inspects them) or run through the rewriter in the engine. */
  relay?: 'splice' | 'engine';
  /** Proxy mode: the protocol the client spoke to the mixed inbound (http, socks5). */
  inbound?: string;
}

/** The `conn` line's fields, in the order every data plane writes them. */
export function connFields(flow: { id: number; src: Endpoint; dst: Endpoint }, end: FlowEnd): LogFields {
  return {
    id: flow.id,
    inbound: end.inbound,
    src: formatEndpoint(flow.src),
    dst: formatEndpoint(flow.dst),
    domain: end.domain,
    via: end.showVia ? end.via : undefined,
    'fallback-from': end.fallbackFrom,
    route: end.rule,
    up: end.up,
    down: end.down,
    dur: `${end.durMs}ms`,
    close: end.close,
    error: end.error,
    detail: end.detail,
    requests: end.requests,
    relay: end.relay,
  };
}

/** The `refused` line's fields. */
export function refusedFields(r: Refusal): LogFields {
  return {
    ...(r.src ? { src: formatEndpoint(r.src) } : {}),
    ...(r.dst ? { dst: formatEndpoint(r.dst) } : {}),
    reason: r.reason,
    ...(r.limit !== undefined ? { limit: r.limit } : {}),
    ...(r.host !== undefined ? { host: r.host } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

/** Writes flow lines and metrics: one place for what a refusal and an ended flow leave behind. */
/** The "recently closed" entry of a flow that ended with `end`. */
export function closedOf(
  flow: { id: number; src: Endpoint; dst: Endpoint; started: number },
  end: FlowEnd,
  path?: string[],
): Omit<ClosedFlow, 'seq'> {
  return {
    id: flow.id,
    src: formatEndpoint(flow.src),
    dst: formatEndpoint(flow.dst),
    ...(end.domain ? { domain: end.domain } : {}),
    ...(end.rule ? { rule: end.rule } : {}),
    ...(end.via ? { via: end.via } : {}),
    ...(path?.length ? { path } : {}),
    up: end.up,
    down: end.down,
    started: flow.started,
    durMs: end.durMs,
    outcome: end.close,
    ...(end.error ? { error: end.error } : {}),
  };
}

/** One active flow, as the admin API shows it. */
export interface ConnectionInfo {
  id: number;
  listener: string;
  src: string;
  dst: string;
  domain?: string;
  via?: string;
  /** The routing rule that matched (`rules[0]`, `default`). */
  rule?: string;
  /** Through groups: the member chosen, and on through nested groups. */
  path?: string[];
  ageMs: number;
  /** Bytes so far from / to the client (JS relay: its socket's counters; splice engine: its reports). */
  up?: number;
  down?: number;
}

/** Metric updates of flows ended in one batch, added up (one update per label set, not per flow). */
interface Tally {
  /** `listener\0outbound\0result` → flows. */
  total: Map<string, number>;
  up: number;
  down: number;
  injected: number;
}

export class FlowReporter {
  private lastAcceptError = 0;
  private tally: Tally | undefined;

  constructor(
    private readonly log: Logger,
    private readonly metrics: DataPlaneMetrics | undefined,
    /** Where ended flows go for the Live view's totals and "recently closed" (proxy mode). */
    private readonly stats?: FlowStats,
  ) {}

  refused(r: Refusal): void {
    this.metrics?.refused.inc({ reason: r.reason });
    this.log.warn('refused', refusedFields(r));
  }

  /** Accept failed (EMFILE when descriptors run out): counted always, logged at most once a second. */
  acceptFailed(listener: string, error: string | undefined, now = Date.now()): void {
    this.metrics?.refused.inc({ reason: 'accept-error' });
    if (now - this.lastAcceptError <= 1000) return;
    this.lastAcceptError = now;
    this.log.error('accept failed', { listener, error });
  }

  /** The outbound connected after `seconds`. */
  connected(via: string, seconds: number): void {
    this.metrics?.connectSeconds.observe({ outbound: via }, seconds);
  }

  ended(flow: { id: number; listener: string; src: Endpoint; dst: Endpoint; started: number }, end: FlowEnd): void {
    this.stats?.recordClosed(closedOf(flow, end));
    const t = this.tally;
    if (t) {
      const key = `${flow.listener}\0${end.via ?? 'direct'}\0${end.close}`;
      t.total.set(key, (t.total.get(key) ?? 0) + 1);
      t.up += end.up;
      t.down += end.down;
      t.injected += end.requests ?? 0;
    } else if (this.metrics) {
      this.metrics.total.inc({ listener: flow.listener, outbound: end.via ?? 'direct', result: end.close });
      this.metrics.bytes.inc({ direction: 'up' }, end.up);
      this.metrics.bytes.inc({ direction: 'down' }, end.down);
      if (end.requests) this.metrics.injected.inc(end.requests);
    }
    this.log.info('conn', connFields(flow, end));
  }

  /**
   * Many flows ended at once (the engine's batches): each gets its line as from ended(), and
   * their metrics are added up and applied once at the end (prom-client hashes the labels of
   * every update: four updates per flow were a tenth of the main thread's time per connection).
   */
  endedBatch(each: (ended: FlowReporter['ended']) => void): void {
    if (!this.metrics) return each((flow, end) => this.ended(flow, end));
    const t: Tally = { total: new Map(), up: 0, down: 0, injected: 0 };
    this.tally = t;
    try {
      each((flow, end) => this.ended(flow, end));
    } finally {
      this.tally = undefined;
      const m = this.metrics;
      for (const [key, n] of t.total) {
        const [listener, outbound, result] = key.split('\0') as [string, string, string];
        m.total.inc({ listener, outbound, result }, n);
      }
      if (t.total.size > 0) {
        m.bytes.inc({ direction: 'up' }, t.up);
        m.bytes.inc({ direction: 'down' }, t.down);
      }
      if (t.injected) m.injected.inc(t.injected);
    }
  }
}
