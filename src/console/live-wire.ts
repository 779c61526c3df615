// The Live page's JSON, as the console API sends it and the page (ui/src/api.ts) reads it:
// types only, with no imports, so the browser code can share them.

interface Bytes {
  up: number;
  down: number;
}

/** A console connection row. */
export interface ConsoleConnection {
  id: string;
  src: string;
  dst: string;
  domain?: string;
  /** The routing rule that matched (`rules[0]`, `default`). */
  rule?: string;
  node: string;
  /** Through groups: the member chosen, and on through nested groups. */
  path?: string[];
  up: number;
  down: number;
  /** Bytes per second now (from live counters). */
  rate?: Bytes;
  startedAt: string;
}

/** A recently closed flow as the console shows it. */
export interface ClosedConnection extends Omit<ConsoleConnection, 'rate'> {
  durMs: number;
  outcome: string;
  error?: string;
}

export interface TrafficBody {
  t: number;
  /** Bytes per second now. */
  rate: Bytes;
  /** Since the gateway started. */
  totals: Bytes;
  byNode: Record<string, Bytes>;
  closed: ClosedConnection[];
}
