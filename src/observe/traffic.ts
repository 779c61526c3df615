// The supervisor's view of traffic across worker generations: totals and per-node bytes since
// start, throughput and per-flow rates from live counters, and the last closed flows. Each
// update brings every worker's counters (bytes moved so far, live flows included); only growth
// counts, so a worker that leaves, or a counter read a moment early, never makes a total shrink.
import type { Bytes, ClosedFlow, TrafficSnapshot } from './flow-stats.js';

export interface WorkerTraffic {
  pid: number;
  traffic: TrafficSnapshot;
  /** Live flows' bytes so far, by a key unique across workers. */
  flows: { key: string; up: number; down: number }[];
}

export type ClosedRow = ClosedFlow & { worker: number };

interface Sample extends Bytes {
  t: number;
}

/** Rates over at least this long: engine counters arrive every 500 ms, a longer window smooths that step. */
export const RATE_WINDOW_MS = 2000;
/** High-water marks kept for this many workers (every reload starts new ones). */
const KEEP_WORKERS = 64;

/** Bytes per second between the newest sample and the newest one at least `windowMs` older. */
export function rateOf(samples: readonly Sample[], windowMs: number): Bytes {
  const last = samples[samples.length - 1];
  if (!last) return { up: 0, down: 0 };
  let base: Sample | undefined;
  for (let i = samples.length - 2; i >= 0; i--) {
    base = samples[i];
    if (last.t - base!.t >= windowMs) break;
  }
  if (!base || last.t <= base.t) return { up: 0, down: 0 };
  const dt = (last.t - base.t) / 1000;
  return { up: Math.max(0, (last.up - base.up) / dt), down: Math.max(0, (last.down - base.down) / dt) };
}

/** Adds `sample` and drops what no window needs any more (keeps one sample older than the window). */
function keep(samples: Sample[], sample: Sample, windowMs: number): void {
  samples.push(sample);
  while (samples.length > 2 && sample.t - samples[1]!.t >= windowMs) samples.shift();
}

export class TrafficTotals {
  private readonly total: Bytes = { up: 0, down: 0 };
  private readonly nodes = new Map<string, Bytes>();
  private readonly marks = new Map<number, { moved: Bytes; byNode: Map<string, Bytes> }>();
  private readonly cursors = new Map<number, number>();
  private closed: ClosedRow[] = [];
  private readonly samples: Sample[] = [];
  private readonly flowSamples = new Map<string, Sample[]>();

  constructor(
    readonly windowMs = RATE_WINDOW_MS,
    readonly keepClosed = 200,
  ) {}

  /** The last closed-flow sequence number seen from this worker (ask it for newer ones). */
  cursor(pid: number): number {
    return this.cursors.get(pid) ?? 0;
  }

  update(now: number, workers: readonly WorkerTraffic[]): void {
    const seenFlows = new Set<string>();
    for (const w of workers) {
      let mark = this.marks.get(w.pid);
      if (!mark) {
        this.marks.set(w.pid, (mark = { moved: { up: 0, down: 0 }, byNode: new Map() }));
        if (this.marks.size > KEEP_WORKERS) this.forget(this.marks.keys().next().value!);
      }
      grow(this.total, mark.moved, w.traffic.moved);
      for (const [node, b] of Object.entries(w.traffic.byNode)) {
        let m = mark.byNode.get(node);
        if (!m) mark.byNode.set(node, (m = { up: 0, down: 0 }));
        let n = this.nodes.get(node);
        if (!n) this.nodes.set(node, (n = { up: 0, down: 0 }));
        grow(n, m, b);
      }
      for (const c of w.traffic.closed) {
        if (c.seq <= this.cursor(w.pid)) continue;
        this.closed.push({ ...c, worker: w.pid });
        this.cursors.set(w.pid, c.seq);
      }
      for (const f of w.flows) {
        seenFlows.add(f.key);
        let s = this.flowSamples.get(f.key);
        if (!s) this.flowSamples.set(f.key, (s = []));
        keep(s, { t: now, up: f.up, down: f.down }, this.windowMs);
      }
    }
    if (this.closed.length > this.keepClosed * 2) this.closed = this.closed.slice(-this.keepClosed);
    for (const k of this.flowSamples.keys()) if (!seenFlows.has(k)) this.flowSamples.delete(k);
    keep(this.samples, { t: now, ...this.total }, this.windowMs);
  }

  private forget(pid: number): void {
    this.marks.delete(pid);
    this.cursors.delete(pid);
  }

  /** Bytes moved since start, over every worker. */
  totals(): Bytes {
    return { ...this.total };
  }

  /** Throughput now, bytes per second. */
  rate(): Bytes {
    return rateOf(this.samples, this.windowMs);
  }

  flowRate(key: string): Bytes {
    return rateOf(this.flowSamples.get(key) ?? [], this.windowMs);
  }

  byNode(): Record<string, Bytes> {
    return Object.fromEntries([...this.nodes].map(([k, v]) => [k, { ...v }]));
  }

  /** Newest first. */
  recentlyClosed(): ClosedRow[] {
    return this.closed.slice(-this.keepClosed).reverse();
  }
}

/** Adds to `into` how far `now` is above the high-water mark `mark`, and raises the mark. */
function grow(into: Bytes, mark: Bytes, now: Bytes): void {
  if (now.up > mark.up) {
    into.up += now.up - mark.up;
    mark.up = now.up;
  }
  if (now.down > mark.down) {
    into.down += now.down - mark.down;
    mark.down = now.down;
  }
}
