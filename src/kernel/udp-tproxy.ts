// Transparent UDP for TPROXY: a listener that reports each datagram's original destination
// (IP_ORIGDSTADDR / IPV6_ORIGDSTADDR), and reply sockets that send FROM that destination.
//
// How datagrams are received without blocking the event loop
// ----------------------------------------------------------
// Node's dgram cannot ask for IP_RECVORIGDSTADDR nor return control messages, so the
// listener's fd is made here (koffi) and read with recvmmsg(2). Options considered:
//
//  * koffi `fn.async()` for a blocking recvmsg: each pending receive parks one libuv
//    threadpool thread (4 by default, shared with dns.lookup, fs, zlib, crypto): two
//    listeners would take half the pool forever, and one datagram per thread hop is slow.
//    Rejected.
//  * a native addon: fastest, but CI would have to compile it from `npm ci`. Rejected.
//  * `event-loop` (default): koffi ≥ 2.15 exposes libuv's uv_poll_t (`koffi.node.poll`). The
//    non-blocking fd is watched by Node's own epoll; when it is readable we drain it with
//    recvmmsg in batches of 32 (at most 16 batches per wake-up, so one busy listener cannot
//    starve the loop; the poll is level-triggered, the rest comes on the next turn). No
//    thread, no copy beyond one Buffer per datagram, no message passing. koffi marks this API
//    "not yet documented, might change": the lockfile pins koffi, and `auto` falls back to…
//  * `worker`: one worker_thread blocks in poll(2) over all listener fds, drains them with
//    recvmmsg and posts batches (one transferred ArrayBuffer per batch) to the main thread.
//    The number of unacknowledged batches is bounded (a SharedArrayBuffer counter): when the
//    main thread lags, the worker stops reading and the kernel drops, as UDP should.
//    Closing sets a stop flag and shutdown(2)s the fds, which wakes poll(2); the fds are
//    closed only after the worker has exited, so a reused fd number is never read.
//
// Measured on this 2-core machine, receive only, loopback, 64-byte datagrams from a python
// sender (~800k/s offered): event-loop ≈ 650k datagrams/s, worker ≈ 430k/s, plain Node dgram
// (no original destination, for scale) ≈ 430k/s. Through the whole relay in a netns lab
// (client → gw → server, one flow) ≈ 80k/s with either backend: the bottleneck is the upstream
// send (dgram.send + the veth path, ~70% of the profile); receiving costs ~2 µs a datagram.
// (`TPX_UDP_BENCH=1 node --import tsx --test test/e2e/udp-tproxy.test.ts` prints the relay rate.)
import { Worker } from 'node:worker_threads';
import { SyscallError } from '../errors.js';
import {
  addressOf,
  hasEventLoopPoll,
  pollReadable,
  sysBind,
  sysClose,
  sysGetsockname,
  sysRecvmmsg,
  sysSendto,
  sysSetsockoptInt,
  sysShutdown,
  sysSocket,
  type FdPoller,
} from './ffi.js';
import {
  AF_INET,
  AF_INET6,
  EAGAIN,
  IP_ORIGDSTADDR,
  IP_TRANSPARENT,
  IPV6_ORIGDSTADDR,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  MSG_DONTWAIT,
  SHUT_RDWR,
  SO_MARK,
  SO_RCVBUF,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
} from './linux.js';
import { decodeSockaddr, encodeSockaddr, type Endpoint } from './sockaddr.js';
import { MAX_DATAGRAM, RecvBatchLayout, assertSupportedAbi, type ReceivedDatagram } from './udp-msg.js';
import { decodeWorkerBatch, type WorkerInit } from './udp-worker-protocol.js';

export const BATCH = 32;
const MAX_BATCHES_PER_WAKE = 16;

export interface UdpDatagram {
  /** The client. */
  src: Endpoint;
  /** Where the client sent it (IP_ORIGDSTADDR): the TPROXY original destination. */
  origDst: Endpoint;
  payload: Buffer;
}

export type UdpRecvBackend = 'auto' | 'event-loop' | 'worker';

export interface UdpTproxyListenerOptions {
  family: 4 | 6;
  port: number;
  /** Default 0.0.0.0 / ::. */
  address?: string;
  /** IP_TRANSPARENT (default true; needs CAP_NET_ADMIN). */
  transparent?: boolean;
  onDatagram: (d: UdpDatagram) => void;
  /** Datagrams that could not be used (truncated, no original destination) and read errors. */
  onDrop?: (reason: string, detail?: string) => void;
  backend?: UdpRecvBackend;
  /** SO_RCVBUF request in bytes (the kernel doubles it, capped by net.core.rmem_max). */
  receiveBuffer?: number;
}

export interface UdpTproxyListener {
  readonly family: 4 | 6;
  readonly fd: number;
  /** The bound address (port resolved when 0 was asked for). */
  readonly local: Endpoint;
  readonly backend: 'event-loop' | 'worker';
  /** Stops receiving and closes the fd. Idempotent. */
  close(): Promise<void>;
}

function setTransparent(fd: number, family: 4 | 6): void {
  if (family === 4) sysSetsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1, 'IP_TRANSPARENT (needs CAP_NET_ADMIN)');
  else sysSetsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT (needs CAP_NET_ADMIN)');
}

/** A non-blocking UDP socket; v6 ones are v6-only so each family keeps its own sockets. */
function udpSocket(family: 4 | 6): number {
  const fd = sysSocket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
  try {
    sysSetsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
    if (family === 6) sysSetsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
  } catch (e) {
    sysClose(fd);
    throw e;
  }
  return fd;
}

/** Bound transparent UDP listener fd with original-destination reporting. */
export function createUdpListenerFd(opts: {
  family: 4 | 6;
  port: number;
  address?: string;
  transparent?: boolean;
  receiveBuffer?: number;
}): number {
  assertSupportedAbi();
  const address = opts.address ?? (opts.family === 4 ? '0.0.0.0' : '::');
  const fd = udpSocket(opts.family);
  try {
    if (opts.transparent !== false) setTransparent(fd, opts.family);
    if (opts.family === 4) sysSetsockoptInt(fd, SOL_IP, IP_ORIGDSTADDR, 1, 'IP_RECVORIGDSTADDR');
    else sysSetsockoptInt(fd, SOL_IPV6, IPV6_ORIGDSTADDR, 1, 'IPV6_RECVORIGDSTADDR');
    if (opts.receiveBuffer) sysSetsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, opts.receiveBuffer, 'SO_RCVBUF');
    sysBind(
      fd,
      encodeSockaddr({ address, port: opts.port }),
      `udp ${opts.family === 6 ? `[${address}]` : address}:${opts.port}`,
    );
    return fd;
  } catch (e) {
    sysClose(fd);
    if (e instanceof SyscallError && e.code === 'EADDRINUSE') {
      throw new SyscallError('bind', e.errno, e.code, `UDP port ${opts.port} is already in use`);
    }
    throw e;
  }
}

/** Turn a received slot into a datagram, or a drop reason. */
function accept(
  d: ReceivedDatagram,
  onDatagram: (d: UdpDatagram) => void,
  onDrop?: (r: string, detail?: string) => void,
): void {
  if (d.truncated) return onDrop?.('truncated', `${d.payload.length} bytes kept`);
  if (!d.src) return onDrop?.('no-source');
  if (!d.origDst) return onDrop?.('no-original-destination');
  onDatagram({ src: d.src, origDst: d.origDst, payload: d.payload });
}

/** Drain a non-blocking fd with recvmmsg, at most `maxBatches` batches (fairness). Throws on errors other than EAGAIN/EINTR. */
export function drainFd(
  fd: number,
  layout: RecvBatchLayout,
  vecAddr: bigint,
  each: (d: ReceivedDatagram) => void,
  maxBatches = MAX_BATCHES_PER_WAKE,
): void {
  for (let b = 0; b < maxBatches; b++) {
    const n = sysRecvmmsg(fd, vecAddr, layout.count, MSG_DONTWAIT);
    for (let i = 0; i < n; i++) each(layout.read(i));
    layout.reset(n);
    if (n < layout.count) return;
  }
}

export async function openUdpTproxyListener(opts: UdpTproxyListenerOptions): Promise<UdpTproxyListener> {
  const backend = opts.backend ?? 'auto';
  const useLoop = backend === 'event-loop' || (backend === 'auto' && hasEventLoopPoll());
  const fd = createUdpListenerFd(opts);
  const local = decodeSockaddr(sysGetsockname(fd));
  try {
    return useLoop ? eventLoopListener(fd, local, opts) : await workerListener(fd, local, opts);
  } catch (e) {
    sysClose(fd);
    throw e;
  }
}

function eventLoopListener(fd: number, local: Endpoint, opts: UdpTproxyListenerOptions): UdpTproxyListener {
  const layout = new RecvBatchLayout(BATCH, MAX_DATAGRAM + 1, addressOf);
  const vecAddr = addressOf(layout.vec);
  const each = (d: ReceivedDatagram) => accept(d, opts.onDatagram, opts.onDrop);
  let closed = false;
  const poller: FdPoller = pollReadable(
    fd,
    () => {
      try {
        drainFd(fd, layout, vecAddr, each);
      } catch (e) {
        opts.onDrop?.('recv-error', (e as Error).message);
      }
    },
    (status) => opts.onDrop?.('poll-error', String(status)),
  );
  return {
    family: opts.family,
    fd,
    local,
    backend: 'event-loop',
    close: async () => {
      if (closed) return;
      closed = true;
      poller.close(); // removes the fd from epoll synchronously; must precede close(2)
      sysShutdown(fd, SHUT_RDWR);
      sysClose(fd);
      layout.reset(0); // keeps the batch buffers (whose addresses the kernel writes to) referenced until here
    },
  };
}

// ---- worker backend ----

const MAX_INFLIGHT_BATCHES = 64;

/** The receive worker, built (.js) or, when running from sources under tsx, via tsx's API. */
function spawnWorker(workerData: WorkerInit): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./udp-worker.js', import.meta.url), { workerData });
  // tsx's --import hooks do not reach worker threads: register them inside the worker first.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./udp-worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { eval: true, workerData });
}

async function workerListener(fd: number, local: Endpoint, opts: UdpTproxyListenerOptions): Promise<UdpTproxyListener> {
  const control = new Int32Array(new SharedArrayBuffer(8)); // [0] stop flag, [1] batches in flight
  const init: WorkerInit = {
    fds: [fd],
    batch: BATCH,
    slotSize: MAX_DATAGRAM + 1,
    control: control.buffer as SharedArrayBuffer,
    maxInflight: MAX_INFLIGHT_BATCHES,
  };
  const worker = spawnWorker(init);
  let closing: Promise<void> | undefined;
  const exit = new Promise<void>((resolve) =>
    worker.once('exit', (code) => {
      if (!closing) opts.onDrop?.('recv-error', `receive worker exited (${code}): no more datagrams on this listener`);
      resolve();
    }),
  );
  worker.on('error', (e) => opts.onDrop?.('recv-error', e.message));
  worker.on('message', (msg: { batch: ArrayBuffer } | { ready: true }) => {
    if (!('batch' in msg)) return;
    Atomics.sub(control, 1, 1);
    Atomics.notify(control, 1);
    for (const d of decodeWorkerBatch(Buffer.from(msg.batch))) accept(d, opts.onDatagram, opts.onDrop);
  });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
    void exit.then(() => reject(new Error('udp receive worker exited during start-up')));
  });
  return {
    family: opts.family,
    fd,
    local,
    backend: 'worker',
    close: () =>
      (closing ??= (async () => {
        Atomics.store(control, 0, 1);
        Atomics.notify(control, 1); // in case it waits for the main thread to catch up
        sysShutdown(fd, SHUT_RDWR); // wakes the worker's poll(2)
        const t = setTimeout(() => void worker.terminate(), 2000);
        await exit;
        clearTimeout(t);
        sysClose(fd); // only now: the worker can no longer touch this fd number
      })()),
  };
}

// ---- reply path: send from the original destination ----

/** A transparent UDP socket bound to a foreign address (the original destination). */
export class TransparentUdpSender {
  readonly fd: number;
  private closed = false;
  /** Datagrams dropped because the socket buffer was full (EAGAIN) or the send failed. */
  drops = 0;

  constructor(
    readonly from: Endpoint,
    mark?: number,
  ) {
    const fd = udpSocket(from.family);
    try {
      setTransparent(fd, from.family);
      // Our own replies must never be captured again (OUTPUT capture skips the bypass mark).
      if (mark) sysSetsockoptInt(fd, SOL_SOCKET, SO_MARK, mark, 'SO_MARK (needs CAP_NET_ADMIN)');
      sysBind(
        fd,
        encodeSockaddr(from),
        `reply socket ${from.family === 6 ? `[${from.address}]` : from.address}:${from.port}`,
      );
    } catch (e) {
      sysClose(fd);
      throw e;
    }
    this.fd = fd;
  }

  /** Send one datagram to `to` (a pre-encoded sockaddr, see encodeSockaddr). False on drop. */
  sendTo(to: Buffer, payload: Buffer): boolean {
    if (this.closed) return false;
    const n = sysSendto(this.fd, payload, MSG_DONTWAIT, to);
    if (n < 0) {
      this.drops++;
      if (-n !== EAGAIN) this.lastError = -n;
      return false;
    }
    return true;
  }

  lastError: number | undefined;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sysShutdown(this.fd, SHUT_RDWR);
    sysClose(this.fd);
  }
}

export interface ReplyPoolOptions {
  /** Close a sender unused for this long (default 30 s). */
  idleTimeoutMs?: number;
  mark?: number;
  now?: () => number;
}

/**
 * Reply senders cached per original destination ("addr|port"): every flow to the same
 * destination shares one socket. Senders idle for idleTimeoutMs are closed by sweep(),
 * which the owner calls periodically.
 */
export class UdpReplyPool {
  private readonly senders = new Map<string, { sender: TransparentUdpSender; lastUsed: number }>();
  private readonly idleMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: ReplyPoolOptions = {}) {
    this.idleMs = opts.idleTimeoutMs ?? 30_000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.senders.size;
  }

  /** The sender for `from`, created on first use. Throws SyscallError when binding fails. */
  get(from: Endpoint): TransparentUdpSender {
    const key = `${from.address}|${from.port}`;
    let e = this.senders.get(key);
    if (!e) {
      e = { sender: new TransparentUdpSender(from, this.opts.mark), lastUsed: 0 };
      this.senders.set(key, e);
    }
    e.lastUsed = this.now();
    return e.sender;
  }

  /** Send `payload` to `to` (encoded sockaddr) from `from`. */
  send(from: Endpoint, to: Buffer, payload: Buffer): boolean {
    return this.get(from).sendTo(to, payload);
  }

  /** Close senders idle for longer than the timeout; returns how many were closed. */
  sweep(): number {
    const limit = this.now() - this.idleMs;
    let n = 0;
    for (const [key, e] of this.senders) {
      if (e.lastUsed <= limit) {
        e.sender.close();
        this.senders.delete(key);
        n++;
      }
    }
    return n;
  }

  close(): void {
    for (const e of this.senders.values()) e.sender.close();
    this.senders.clear();
  }
}

/**
 * An fd for an upstream UDP socket carrying SO_MARK, for `dgram` to adopt via bind({ fd }).
 * It is already bound to an ephemeral port: libuv's uv_udp_open() sets SO_REUSEADDR, and two
 * SO_REUSEADDR sockets left to autobind at connect() may be given the SAME local port —
 * identical 4-tuples towards one server, whose replies then reach the wrong flow.
 */
export function createMarkedUdpFd(family: 4 | 6, mark: number): number {
  const fd = sysSocket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC);
  try {
    sysSetsockoptInt(fd, SOL_SOCKET, SO_MARK, mark, 'SO_MARK (needs CAP_NET_ADMIN)');
    if (family === 6) sysSetsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
    sysBind(fd, encodeSockaddr({ address: family === 4 ? '0.0.0.0' : '::', port: 0 }), 'ephemeral port');
  } catch (e) {
    sysClose(fd);
    throw e;
  }
  return fd;
}
