// What one data-plane worker knows of its traffic beyond the live flows: the last closed
// flows (a bounded ring) and bytes moved per outbound node. Live flows' current bytes are
// added at snapshot time, so `moved` grows while a transfer runs, not when it ends.

export interface Bytes {
  up: number;
  down: number;
}

/** A flow that ended, for the console's "recently closed" list. */
export interface ClosedFlow {
  /** Increases by one per closed flow of this worker. */
  seq: number;
  id: number;
  src: string;
  dst: string;
  domain?: string;
  /** The rule that matched (`rules[0]`, `default`). */
  rule?: string;
  /** The outbound the rule chose (a node, a group, direct, reject). */
  via?: string;
  /** Through groups: the member chosen at connect time, and on through nested groups. */
  path?: string[];
  up: number;
  down: number;
  /** Date.now() at accept. */
  started: number;
  durMs: number;
  /** How it ended: eof, idle, client-error, connect-failed, rejected-by-rule, … */
  outcome: string;
  error?: string;
}

/** A live flow's share of the counters: the node its bytes go through (the last of path, or via; none yet while connecting). */
export interface LiveBytes extends Bytes {
  node?: string;
}

export interface TrafficSnapshot {
  /** Bytes moved so far: closed flows plus live flows' current counts. */
  moved: Bytes;
  /** The same, per node. */
  byNode: Record<string, Bytes>;
  /** Closed flows after the asked-for sequence number (oldest first). */
  closed: ClosedFlow[];
}

/** The node a flow's bytes count for: the group member it went through, else its outbound. */
export function nodeOf(via: string | undefined, path: readonly string[] | undefined): string {
  return path?.length ? path[path.length - 1]! : (via ?? 'direct');
}

const add = (to: Bytes, up: number, down: number): void => {
  to.up += up;
  to.down += down;
};

export class FlowStats {
  private closed: ClosedFlow[] = [];
  private seq = 0;
  private readonly closedBytes: Bytes = { up: 0, down: 0 };
  private readonly closedByNode = new Map<string, Bytes>();

  constructor(readonly keepClosed = 200) {}

  recordClosed(f: Omit<ClosedFlow, 'seq'>): void {
    const entry: ClosedFlow = { seq: ++this.seq, ...f };
    this.closed.push(entry);
    if (this.closed.length > this.keepClosed * 2) this.closed = this.closed.slice(-this.keepClosed);
    add(this.closedBytes, f.up, f.down);
    const node = nodeOf(f.via, f.path);
    let n = this.closedByNode.get(node);
    if (!n) this.closedByNode.set(node, (n = { up: 0, down: 0 }));
    add(n, f.up, f.down);
  }

  snapshot(live: Iterable<LiveBytes>, closedAfter: number): TrafficSnapshot {
    const moved = { ...this.closedBytes };
    const byNode: Record<string, Bytes> = {};
    for (const [k, v] of this.closedByNode) byNode[k] = { ...v };
    for (const l of live) {
      add(moved, l.up, l.down);
      if (l.node) add((byNode[l.node] ??= { up: 0, down: 0 }), l.up, l.down);
    }
    const recent = this.closed.slice(-this.keepClosed);
    return { moved, byNode, closed: recent.filter((c) => c.seq > closedAfter) };
  }
}
