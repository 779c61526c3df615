// What a data plane offers the child process and the supervisor, whichever relays its flows.
import type { RelayPath } from './protocol.js';

export interface ListenerHandle {
  fd: number;
  family: 4 | 6;
  /** For logs only. */
  label: string;
}

/** One active flow, as the admin API shows it. */
export interface ConnectionInfo {
  id: number;
  listener: string;
  src: string;
  dst: string;
  domain?: string;
  via?: string;
  ageMs: number;
  /** Bytes so far from / to the client, while its socket is in JS (a spliced flow counts in the kernel). */
  up?: number;
  down?: number;
}

export interface DataPlane {
  readonly active: number;
  readonly relay: RelayPath;
  connections(): Promise<ConnectionInfo[]>;
  /** Close one active connection; false if not found. */
  closeConnection(id: number): Promise<boolean>;
  /** Stop accepting; resolves when every listener is closed. */
  stopAccepting(): Promise<void>;
  /** Resolves when no connection is active, or after `deadlineMs`. */
  drain(deadlineMs: number): Promise<void>;
  /** Closes every connection, JS-relayed or spliced, and stops the splice engine. */
  destroyAll(): Promise<void>;
}
