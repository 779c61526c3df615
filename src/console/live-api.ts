// The Live page's data from the supervisor's live view: connection rows with rule, group
// member and rate, throughput and per-node totals from live counters, recently closed flows.
import type { Bytes } from '../observe/flow-stats.js';
import type { ClosedConnection, ConsoleConnection, TrafficBody } from './live-wire.js';

export type { ConsoleConnection } from './live-wire.js';
import type { LiveView, SupervisorControl, WorkerConnection } from '../proxy/supervisor.js';

export function connectionRow(c: WorkerConnection, now = Date.now()): ConsoleConnection {
  return {
    id: `${c.worker}-${c.id}`,
    src: c.src,
    dst: c.dst,
    ...(c.domain ? { domain: c.domain } : {}),
    ...(c.rule ? { rule: c.rule } : {}),
    node: c.via ?? '',
    ...(c.path?.length ? { path: c.path } : {}),
    up: c.up ?? 0,
    down: c.down ?? 0,
    startedAt: new Date(now - c.ageMs).toISOString(),
  };
}

const round = (b: Bytes): Bytes => ({ up: Math.round(b.up), down: Math.round(b.down) });

export function liveConnections(view: LiveView): ConsoleConnection[] {
  return view.flows.map((f) => ({ ...connectionRow(f, view.t), rate: round(f.rate) }));
}

export function closedRows(view: LiveView): ClosedConnection[] {
  return view.closed.map((c) => ({
    id: `${c.worker}-${c.id}`,
    src: c.src,
    dst: c.dst,
    ...(c.domain ? { domain: c.domain } : {}),
    ...(c.rule ? { rule: c.rule } : {}),
    node: c.via ?? '',
    ...(c.path?.length ? { path: c.path } : {}),
    up: c.up,
    down: c.down,
    startedAt: new Date(c.started).toISOString(),
    durMs: c.durMs,
    outcome: c.outcome,
    ...(c.error ? { error: c.error } : {}),
  }));
}

export function trafficBody(view: LiveView): TrafficBody {
  return { t: view.t, rate: round(view.rate), totals: view.totals, byNode: view.byNode, closed: closedRows(view) };
}

/** GET /api/traffic. */
export async function readTraffic(control: SupervisorControl): Promise<TrafficBody | undefined> {
  return control.live ? trafficBody(await control.live()) : undefined;
}
