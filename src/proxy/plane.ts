// What a data plane offers the child process and the supervisor, whichever relays its flows.
import type { RelayPath } from './protocol.js';
import type { LiveBytes, TrafficSnapshot } from '../observe/flow-stats.js';
import type { ConnectionInfo } from '../flow/record.js';

export type { ConnectionInfo } from '../flow/record.js';

export interface ListenerHandle {
  fd: number;
  family: 4 | 6;
  /** For logs only. */
  label: string;
}

/** Live flows and traffic counters in one answer, so that both describe the same moment. */
export interface LiveAnswer {
  flows: ConnectionInfo[];
  traffic: TrafficSnapshot;
}

export interface DataPlane {
  readonly active: number;
  readonly relay: RelayPath;
  connections(): Promise<ConnectionInfo[]>;
  /**
   * Live flows with current bytes, and the traffic counters with flows closed after
   * `closedAfter`; `extra`: live bytes of flows this plane does not own (proxy mode's).
   */
  live(closedAfter: number, extra?: readonly LiveBytes[]): Promise<LiveAnswer>;
  /** Close one active connection; false if not found. */
  closeConnection(id: number): Promise<boolean>;
  /** Stop accepting; resolves when every listener is closed. */
  stopAccepting(): Promise<void>;
  /** Resolves when no connection is active, or after `deadlineMs`. */
  drain(deadlineMs: number): Promise<void>;
  /** Closes every connection, JS-relayed or spliced, and stops the splice engine. */
  destroyAll(): Promise<void>;
}
