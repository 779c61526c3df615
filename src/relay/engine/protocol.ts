// Messages between the splice engine (main thread, engine.ts) and its loops (worker.ts).
// Plain structured-clone data.
import type { MessagePort } from 'node:worker_threads';
import type { Endpoint } from '../../kernel/sockaddr.js';
import type { InjectConfig } from '../../http/inject-config.js';
import type { SsMethod } from '../../outbound/uri.js';

/** What an engine loop needs, however it is hosted (a worker thread, or inline on the main thread). */
export interface EngineInit {
  /** Requested pipe size (F_SETPIPE_SZ); the kernel's default is kept if refused. */
  pipeSize: number;
  /** Idle pipes kept open for reuse. */
  pipePool: number;
  /** This thread's place among the engine's `threads`: served flow ids are index+1, +threads, … */
  index: number;
  threads: number;
  /** Int32Array over it: [0] is the number of served flows live in all threads (--max-connections). */
  servedCount: SharedArrayBuffer;
}

/** workerData of a splice worker. */
export interface SpliceWorkerInit extends EngineInit {
  /** eventfd the main thread signals after posting on `port`; owned (closed) by the main thread. */
  wakeFd: number;
  port: MessagePort;
  /** Int32Array over it: [0] ≠ 0 means the process is exiting: leave the loop at once. */
  exitFlag: SharedArrayBuffer;
}

/**
 * How an engine loop talks to the main thread: a worker reads a MessagePort and posts back
 * (structured clone); the inline hosting hands messages over as they are.
 */
export interface EngineHost {
  /** The next message from the main thread; undefined when none is waiting. */
  receive(): ToWorker | undefined;
  /** A message to the main thread. */
  post(m: FromWorker): void;
  /** The engine is shutting down: stop delivering (called before its epoll descriptor closes). */
  close(): void;
  /** Signalled when messages are queued (worker hosting); without it the loop reads them every turn. */
  wakeFd?: number;
  /** [0] ≠ 0: the process is exiting, leave the loop at the next wake (worker hosting). */
  exitFlag?: Int32Array;
}

/**
 * A listening socket the engine serves itself: it accepts, finds the original destination,
 * connects and splices without the connection ever becoming a Node socket (kernel-only
 * flows, for listeners whose flows nobody inspects).
 */
export interface ServedListener {
  /** Listening socket; the worker owns it from now on and closes it at 'unlisten' or close. */
  fd: number;
  family: 4 | 6;
  label: string;
  /** redirect: SO_ORIGINAL_DST; tproxy: the accepted socket's own address. */
  mode: 'redirect' | 'tproxy';
  connectTimeoutMs: number;
  /** ≤ 0: no idle timeout. */
  idleMs: number;
  /** SO_MARK on upstream sockets (the firewall plan skips it); 0: none. */
  mark: number;
  /** TPROXY: connect upstream from the client's own address (IP_TRANSPARENT + bind). */
  preserveSource: boolean;
  /** A destination on one of these ports at one of this host's addresses is tranproxy itself (its listener, admin API, console): refused. */
  ownPorts: number[];
  /** Flows at once over all served listeners; beyond it new ones are refused. */
  maxConnections: number;
  /** Header injection: every flow's client bytes go through the streaming rewriter (inspected flows). */
  inject?: InjectConfig;
  /** With `inject`: a request head must be complete this long after it began (408 after); 0: no limit. */
  headTimeoutMs?: number;
  /** Every flow goes through this node: the loop connects to it and speaks its handshake first. */
  node?: EngineNode;
}

/** A proxy node the engine's loops speak to themselves: SOCKS5, or Shadowsocks AEAD without a plugin. */
export interface EngineNode {
  kind: 'socks5' | 'shadowsocks';
  /** Its name in log lines and metrics (via=). */
  name: string;
  /** An IP address: the loop cannot resolve names. */
  address: Endpoint;
  /** SOCKS5: user/password (optional); Shadowsocks: the password. */
  username?: string;
  password?: string;
  /** Shadowsocks: the AEAD method. */
  method?: SsMethod;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** How long to wait for a client's first bytes to find the domain to ask the node for; 0: never. */
  sniffTimeoutMs: number;
}

/** How a kernel-only flow ended, or why it was refused: one record each, sent in batches. */
export type FlowRecord =
  | {
      t: 'end';
      id: number;
      listener: string;
      src: Endpoint;
      dst: Endpoint;
      /** Date.now() at accept and at the end. */
      started: number;
      ended: number;
      /** Accept to connected upstream; absent when the connect failed. */
      connectMs?: number;
      bytesUp: number;
      bytesDown: number;
      reason:
        | 'eof'
        | 'idle'
        | 'client-error'
        | 'upstream-error'
        | 'aborted'
        | 'connect-failed'
        | 'rejected'
        | 'head-timeout';
      error?: string;
      /** Inspected flows: request heads rewritten. */
      requests?: number;
      /** Through a node: the domain sniffed from the client's first bytes (the node was asked for it). */
      domain?: string;
      /** Through a node: what went wrong in words (the handshake's failure). */
      detail?: string;
    }
  | {
      t: 'refused';
      listener: string;
      src?: Endpoint;
      dst?: Endpoint;
      reason: 'max-connections' | 'loop' | 'no-original-destination' | 'accept-error';
      error?: string;
    };

/** One live kernel-only flow, for the admin API. */
export interface ServedConnection {
  id: number;
  listener: string;
  src: Endpoint;
  dst: Endpoint;
  started: number;
  bytesUp: number;
  bytesDown: number;
  domain?: string;
}

/** main → worker (on `port`, read with receiveMessageOnPort). */
export type ToWorker =
  | {
      t: 'add';
      id: number;
      /** Duplicated descriptors, now owned by the worker: it closes each exactly once. */
      clientFd: number;
      upstreamFd: number;
      /** ≤ 0: no idle timeout. */
      idleMs: number;
    }
  | { t: 'listen'; listener: ServedListener }
  | { t: 'unlisten' }
  | { t: 'list'; req: number }
  /** Close a served flow, or with `handedOver` a handed-over one (by the main thread's id). */
  | { t: 'kill'; req: number; id: number; handedOver?: boolean }
  | { t: 'close' };

/** worker → main (parentPort). */
export type FromWorker =
  | { t: 'ready' }
  | {
      t: 'done';
      id: number;
      bytesUp: number;
      bytesDown: number;
      reason: 'eof' | 'idle' | 'client-error' | 'upstream-error' | 'aborted';
      error?: string;
    }
  /** Kernel-only flows ended since the last batch, upstream connect times since then, live flows per label. */
  | { t: 'flows'; records: FlowRecord[]; active: Record<string, number>; connectMs: number[] }
  /**
   * Handed-over flows whose counters moved since the last report, every BYTES_REPORT_MS:
   * [id, bytesUp, bytesDown] flat, at most one triple per live flow.
   */
  | { t: 'bytes'; flows: number[] }
  | { t: 'unlistened' }
  | { t: 'list'; req: number; conns: ServedConnection[] }
  | { t: 'killed'; req: number; found: boolean }
  | { t: 'closed' }
  | { t: 'fatal'; error: string };
