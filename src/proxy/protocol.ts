// Messages between the supervisor and its data-plane child over the IPC channel.
import type { RunConfig } from '../config/run-config.js';

export interface ChildStart {
  type: 'start';
  /** The generation's settings as the supervisor parsed them (plain data; nodes as parsed specs). */
  cfg: RunConfig;
  /** What belongs to this worker alone. */
  worker: WorkerShare;
}

export interface WorkerShare {
  /** This worker's share of cfg.maxConnections, within the process's descriptor budget. */
  maxConnections: number;
  /** SO_MARK on upstream connections (0: none; the dropped user is excluded by uid instead). */
  outboundMark: number;
  /** Splice engine threads in this process (--workers when the engine serves every flow). */
  engineThreads: number;
  /** Listener fds arrive as the child's file descriptors 4, 5, …, in this order. */
  listeners: { family: 4 | 6; label: string }[];
  /** Proxy mode's listener fds follow the capture listeners', in this order (cfg.proxyMode). */
  proxyListeners: { family: 4 | 6; label: string }[];
  /** The generation's packed domain lists (proxy/rule-lists.ts): the child's descriptor and its length. */
  lists?: { fd: number; length: number };
  /** Members chosen in select groups (group → member), kept by the supervisor: in force before the worker serves. */
  selected?: Record<string, string>;
}

export interface ChildShutdown {
  type: 'shutdown';
  drainMs: number;
}

/**
 * 'dns-flush' empties the DNS forwarder's cache; 'dns-release' closes the forwarder (its port
 * goes to the next generation), 'dns-restore' starts it again. Answer: whether it did.
 */
export type QueryKind = 'metrics' | 'connections' | 'groups' | 'dns-flush' | 'dns-release' | 'dns-restore';

export interface ChildQuery {
  type: 'query';
  id: number;
  what: QueryKind;
}

/** Close one active connection (the console's "close" button); answer: whether it was found. */
export interface ChildCloseConnection {
  type: 'close-connection';
  id: number;
  conn: number;
}

/** Choose the member of a select group; answer: { ok, error? }. */
export interface ChildSelectGroup {
  type: 'select-group';
  id: number;
  group: string;
  member: string;
}

/** The worker's log lines after sequence number `after` (its own LogRing); answer: LogEntry[]. */
export interface ChildLogs {
  type: 'logs';
  id: number;
  after: number;
}

/** Live flows and traffic counters (LiveAnswer), with the flows closed after `closedAfter`. */
export interface ChildLive {
  type: 'live';
  id: number;
  closedAfter: number;
}

export type ToChild =
  | ChildStart
  | ChildShutdown
  | ChildQuery
  | ChildCloseConnection
  | ChildSelectGroup
  | ChildLogs
  | ChildLive;

export type FromChild =
  /** relay: how this worker's flows are relayed (RelayPath). */
  | { type: 'ready'; relay: RelayPath }
  | { type: 'failed'; message: string }
  /** Its servers no longer accept (shutdown): the supervisor may now shut the listening sockets. */
  | { type: 'not-accepting' }
  | { type: 'drained' }
  | { type: 'answer'; id: number; data: unknown };

/**
 * kernel: the splice engine accepts and relays every flow itself (nobody inspects them);
 * splice: flows are accepted and inspected in JS, then handed to the splice engine;
 * js: the JS relay carries every flow.
 */
export type RelayPath = 'kernel' | 'splice' | 'js';

/** First fd of the listeners in the child: 0-2 are stdio, 3 is the IPC channel. */
export const FIRST_LISTENER_FD = 4;
