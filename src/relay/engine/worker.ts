// The splice engine's loop: one epoll loop that relays every connection handed to it with
// splice(2), socket → pipe → socket, one pipe per direction while bytes are in flight.
// Hosted by a worker thread (main() below: blocks in epoll_wait, a plain synchronous koffi
// call; the main thread posts on a MessagePort and signals an eventfd, the loop reads with
// receiveMessageOnPort) or inline on the main thread (inline.ts: one turn at a time).
//
// Per direction (src socket → pipe → dst socket):
//   - read:  splice(src → pipe) while the pipe has room; 0 = EOF; EAGAIN = wait for EPOLLIN.
//   - write: splice(pipe → dst) while the pipe holds bytes; EAGAIN = wait for EPOLLOUT.
//   - EOF and an empty pipe: shutdown(dst, SHUT_WR) (half-close); the other direction goes on.
// Backpressure is the pipe: a full pipe stops the reads until dst takes bytes.
// Sockets are registered once, edge-triggered, for IN|OUT|RDHUP: a direction only ever
// stops on EAGAIN (or EOF), so the next edge always comes. Pipes are taken from a small pool
// when a direction has bytes to move and returned as soon as they are empty, so an idle
// connection holds only its two socket descriptors (no pipe fds, no pipe buffers).
//
// Kernel-only flows ('listen'): for listeners whose flows nobody inspects, the loop also
// accepts itself (accept4, SO_ORIGINAL_DST or getsockname, a non-blocking connect) and the
// connection never becomes a Node socket: a third of the system calls of a hand-over and no
// JS objects beyond the Conn below. How each ended goes back in one batch per loop turn.
import { isMainThread, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import {
  addressOf,
  errnoName,
  eventfdDrain,
  getsockoptInt,
  rawAccept,
  rawBind,
  rawClose,
  rawConnect,
  rawEpollCtl,
  rawEpollWait,
  rawFcntl,
  rawLocalOrOriginal,
  rawPeek,
  rawPipe,
  rawRead,
  rawSetsockoptInt,
  rawShutdown,
  rawSplice,
  rawTcpSocket,
  rawWrite,
  scratchSockaddr,
  setLingerZero,
  sockaddrScratch,
  sysEpollCreate,
} from '../../kernel/ffi.js';
import {
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EMFILE,
  ENFILE,
  ENOBUFS,
  ENOMEM,
  EPOLLERR,
  EPOLLET,
  EPOLLEXCLUSIVE,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  F_GETFL,
  F_GETPIPE_SZ,
  F_SETFL,
  F_SETPIPE_SZ,
  IPV6_TRANSPARENT,
  IP_TRANSPARENT,
  O_NONBLOCK,
  SHUT_WR,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SOL_TCP,
  SO_ERROR,
  SO_MARK,
  SPLICE_F_MORE,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
  TCP_NODELAY,
} from '../../kernel/linux.js';
import type {
  EngineHost,
  EngineInit,
  EngineNode,
  FlowRecord,
  FromWorker,
  ServedConnection,
  ServedListener,
  SpliceWorkerInit,
  ToWorker,
} from './protocol.js';
import { decodeSockaddr, encodeSockaddr, formatEndpoint, type Endpoint } from '../../kernel/sockaddr.js';
import { compileInjectConfig, type CompiledInject } from '../../http/inject-config.js';
import { RequestRewriter } from '../../http/rewriter.js';
import {
  InspectedFlow,
  InspectScratch,
  NO_READ,
  SHORT_DRAINED,
  SHORT_EOF,
  UNTIL_EAGAIN,
  type InspectHost,
  type InspectedReason,
  type ReadHint,
} from './inspected.js';
import { LocalAddresses } from '../../kernel/local-addresses.js';
import { admit } from '../../flow/admission.js';
import { startThreadProfile } from './thread-profile.js';
import { sniff } from '../../sniff/index.js';
import { TLS_SNIFF_LIMIT } from '../../sniff/result.js';
import { Socks5Dialog } from './socks5-dialog.js';
import { SsSession } from './ss-session.js';
import { masterKey, SS_CIPHERS, type SsCipherInfo } from '../../outbound/shadowsocks-aead.js';
import { destinationAddress, encodeSocksAddress } from '../../outbound/socks5-wire.js';

const MAX_EVENTS = 256;
const FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
/** Bytes one direction may move per turn before others get theirs (fairness). */
const TURN_BUDGET = 4 << 20;
const WAKE_TOKEN = 0;
/** epoll tokens: 0 the eventfd, 1…FIRST_CONN_KEY*2−1 listeners, then connection key × 2 + side. */
const FIRST_CONN_KEY = 512;
const SOCKET_EVENTS = (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0;
/**
 * Accepts per listener per loop turn (the listener is level-triggered: the rest come next turn).
 * With several threads on one listener a burst also ends once this thread holds more than its
 * share (below): a thread that drained a burst of new clients would keep them all (keep-alive
 * flows stay where they were accepted) while the others idle. One accept per turn instead
 * cost a loop turn and an epoll_wait per connection: 2.1-3.4 against 1.5-2.4 s of the engine
 * threads' CPU per 10k new connections.
 */
const ACCEPT_BURST = 64;
/**
 * A thread holding more than its share of the served flows (plus this slack) leaves new
 * clients to the others for REBALANCE_MS: on a loaded machine the thread woken first stays
 * the listener's only "sleeper" until it runs, and would take a whole burst anyway.
 */
const REBALANCE_SLACK = 2;
const REBALANCE_MS = 2;
/** After EMFILE/ENFILE/ENOBUFS on accept, the listener rests this long (the backlog keeps the clients). */
const ACCEPT_PAUSE_MS = 100;
const ETIMEDOUT = 110;
/** A read shorter than this (and than the room asked for) counts as draining the socket… */
const SHORT_READ = 64 << 10;
/** …when the pipe has at least this capacity (256 slots: a short read cannot be slots running out). */
const SHORT_READ_PIPE = 1 << 20;
/** Flow records wait at most this long (or until there are RECORD_BATCH) before they are posted. */
const RECORD_FLUSH_MS = 20;
const RECORD_BATCH = 256;
/** Live byte counters of handed-over flows go to the main thread this often (changed ones only). */
const BYTES_REPORT_MS = 500;
/** A client's first bytes peeked for a domain: enough for the sniffers' limits. */
const PEEK_SIZE = TLS_SNIFF_LIMIT + 1024;

type Side = 0 | 1; // 0: client, 1: upstream
type Reason = Extract<FromWorker, { t: 'done' }>['reason'] | InspectedReason;

interface Pipe {
  r: number;
  w: number;
  cap: number;
}

interface Dir {
  conn: Conn;
  src: number;
  dst: number;
  srcSide: Side;
  dstSide: Side;
  pipe: Pipe | undefined;
  inPipe: number;
  eof: boolean;
  shut: boolean;
  bytes: number;
}

interface Conn {
  /** epoll token base (key × 2 + side); worker-local. */
  key: number;
  /** The id reported back: the main thread's for hand-overs, the flow id for served flows. */
  id: number;
  fds: [number, number];
  idleMs: number;
  last: number;
  up: Dir; // client → upstream
  down: Dir; // upstream → client
  closed: boolean;
  /** up + down bytes at the last 'bytes' report. */
  reported: number;
  /** Set for kernel-only flows (accepted by this worker). */
  served?: Served;
  /** Set while an inspected flow's bytes go through the rewriter (copied, not spliced). */
  insp?: InspectedFlow<Conn>;
  /** Request heads an inspected flow rewrote (kept once it splices). */
  requests?: number;
  /** Through a Shadowsocks node: its session (the ciphers; freed at close). */
  ss?: SsSession;
}

interface Served {
  listener: Listener;
  src: Endpoint;
  dst: Endpoint;
  /** Date.now() at accept (for records). */
  started: number;
  /** The loop's monotonic clock at accept. */
  t0: number;
  /** Until the upstream connect completes: no bytes move, the deadline applies. */
  connecting: boolean;
  /** epoll events of the client's socket while connecting (held back until connected). */
  clientEvents: number;
  connectDeadline: number;
  connectMs?: number;
  /** Through a node: waiting for the client's first bytes (to sniff a domain) until then; 0: not waiting. */
  sniffUntil: number;
  domain?: string;
  /** Through a node: its handshake, from the TCP connect to the CONNECT reply. */
  dialog?: Socks5Dialog;
  /** The handshake's first message went out (the TCP connect to the node completed). */
  greeted: boolean;
}

/** A listener's node as the loop dials it. */
interface NodeDial {
  cfg: EngineNode;
  /** Its sockaddr (kept referenced: connect(2) reads it by address). */
  sa: Buffer;
  /** Shadowsocks: the cipher and master key. */
  ss?: { info: SsCipherInfo; master: Buffer };
  addr: bigint;
  /** host:port, as messages name it. */
  where: string;
}

interface Listener {
  token: number;
  cfg: ServedListener;
  /** In epoll; false while resting after EMFILE (until `resumeAt`) or after 'unlisten'. */
  armed: boolean;
  resumeAt: number;
  active: number;
  /** Header injection on this listener's flows. */
  inject?: CompiledInject;
  /** Every flow goes through this node. */
  node?: NodeDial;
}

/** What an epoll event (or several, or'ed) says of reading its socket (see ReadHint). */
function readHint(mask: number): ReadHint {
  if ((mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === 0) return NO_READ;
  if (mask & (EPOLLHUP | EPOLLERR)) return UNTIL_EAGAIN;
  return mask & EPOLLRDHUP ? SHORT_EOF : SHORT_DRAINED;
}

/** The peer's FIN has arrived, and no error or reset: reading ends at EOF. */
const finSeen = (mask: number): boolean => (mask & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === EPOLLRDHUP;

function makeDir(conn: Conn, src: number, dst: number, srcSide: Side): Dir {
  return {
    conn,
    src,
    dst,
    srcSide,
    dstSide: srcSide === 0 ? 1 : 0,
    pipe: undefined,
    inPipe: 0,
    eof: false,
    shut: false,
    bytes: 0,
  };
}

export class Engine {
  /** Readable while events are ready: the inline hosting polls it from the Node event loop. */
  readonly epfd: number;
  /** By key. */
  private readonly conns = new Map<number, Conn>();
  private nextKey = FIRST_CONN_KEY;
  /** Kernel-only flows: listeners by token, live flows by id, records not yet sent. */
  private readonly listeners = new Map<number, Listener>();
  private nextListenerToken = 1;
  private readonly served = new Map<number, Conn>();
  private nextServedId: number;
  /** Served flows live in every thread of the engine (shared with them). */
  private readonly servedCount: Int32Array;
  private outbox: FlowRecord[] = [];
  /** Upstream connect times (ms) since the last batch: the metric counts a flow once connected. */
  private connectTimes: number[] = [];
  private activeChanged = false;
  private lastFlush = 0;
  private readonly sa = sockaddrScratch();
  private readonly sa2 = sockaddrScratch();
  private readonly local = new LocalAddresses();
  private readonly pool: Pipe[] = [];
  private readonly events = Buffer.alloc(EPOLL_EVENT_SIZE * MAX_EVENTS);
  private readonly eventsAddr: bigint;
  private readonly ctlScratch = Buffer.alloc(64);
  private readonly scratch = Buffer.alloc(64);
  /** Node handshakes: one message in or out at a time. */
  private readonly hsBuf = Buffer.alloc(1024);
  private readonly hsAddr = addressOf(this.hsBuf);
  private peekBuf: Buffer | undefined;
  private peekAddr = 0n;
  private inspectScratch: InspectScratch | undefined;
  /** What inspected flows call back (one object for all: no closures per connection). */
  private readonly inspectHost: InspectHost<Conn> = {
    now: () => this.now,
    finish: (c, reason, error, reset) => this.finish(c, reason, error, reset),
    closeUpstream: (c, reset) => this.closeUpstream(c, reset),
    toSplice: (c) => {
      c.requests = c.insp?.requests;
      c.insp = undefined;
      this.again.push(c.up, c.down);
    },
  };
  /** Directions that used up their turn and must go on without waiting for an edge. */
  private again: Dir[] = [];
  /** Directions that could not get a pipe (descriptors exhausted); retried later. */
  private readonly starved = new Set<Dir>();
  /** Monotonic ms: a wall-clock step must not move deadlines. Records take Date.now(). */
  private now = performance.now();
  /**
   * `now` of the last epoll_wait that returned less than a full batch (no event left unread):
   * idleness counts to there, so after a stall a flow whose events are not read yet stays.
   */
  private drainedAt = this.now;
  private sweepMs = 1000;
  private nextSweep = 0;
  private nextBytesReport = 0;
  private stopping = false;
  private readonly out: (m: FromWorker) => void;

  constructor(
    private readonly init: EngineInit,
    private readonly host: EngineHost,
  ) {
    this.out = host.post;
    this.servedCount = new Int32Array(init.servedCount);
    this.nextServedId = init.index + 1;
    this.epfd = sysEpollCreate();
    this.eventsAddr = addressOf(this.events);
    if (host.wakeFd === undefined) return;
    const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, host.wakeFd, EPOLLIN, WAKE_TOKEN, this.ctlScratch);
    if (r < 0) throw new Error(`epoll_ctl(eventfd): ${errnoName(-r)}`);
  }

  /** True once 'close' was handled (or the process is exiting): no more turns. */
  get stopped(): boolean {
    return this.stopping;
  }

  /** The worker hosting: this thread does nothing else, so the loop blocks in epoll_wait. */
  run(): void {
    this.out({ t: 'ready' });
    const stopProfile = startThreadProfile(this.init.index);
    while (!this.stopping) this.turn(this.waitMs());
    stopProfile?.();
  }

  /** How long the next turn may wait for events: −1 until one comes, 0 not at all. */
  waitMs(): number {
    let timeout = -1;
    if (this.again.length > 0) timeout = 0;
    else if (this.conns.size > 0 || this.resting()) timeout = Math.max(0, this.nextSweep - performance.now());
    if (this.conns.size > this.served.size && timeout !== 0) {
      const reportIn = Math.max(0, this.nextBytesReport - performance.now());
      if (timeout < 0 || reportIn < timeout) timeout = reportIn;
    }
    if (this.unreported()) {
      const flushIn = Math.max(0, this.lastFlush + RECORD_FLUSH_MS - performance.now());
      if (timeout < 0 || flushIn < timeout) timeout = flushIn;
    }
    return timeout;
  }

  /**
   * One loop turn: waits up to `timeout` ms for events, handles them, then the queued
   * messages (on a wake, or every turn when the host has no wake eventfd), then timers.
   * Returns how many events it handled.
   */
  turn(timeout: number): number {
    const ev = this.events;
    const n = rawEpollWait(this.epfd, this.eventsAddr, MAX_EVENTS, timeout);
    this.now = performance.now();
    if (n < 0) {
      if (n === -EINTR) return 0;
      throw new Error(`epoll_wait: ${errnoName(-n)}`);
    }
    if (n < MAX_EVENTS) this.drainedAt = this.now;
    let wake = this.host.wakeFd === undefined;
    for (let i = 0; i < n; i++) {
      const off = i * EPOLL_EVENT_SIZE;
      const mask = ev.readUInt32LE(off);
      const token = ev.readUInt32LE(off + EPOLL_DATA_OFFSET);
      if (token === WAKE_TOKEN) wake = true;
      else if (token < FIRST_CONN_KEY * 2) this.onListenerEvent(token);
      else this.onSocketEvent(token, mask);
    }
    if (this.again.length > 0) {
      const list = this.again;
      this.again = [];
      for (const d of list) if (!d.conn.closed) this.pump(d);
    }
    if (wake) this.onWake();
    if (this.now >= this.nextSweep) this.sweep();
    this.flushRecords();
    if (this.now >= this.nextBytesReport) this.reportBytes();
    return n;
  }

  private onSocketEvent(token: number, mask: number): void {
    const c = this.conns.get(token >>> 1);
    if (!c) return; // stale: already closed
    const side = (token & 1) as Side;
    const s = c.served;
    if (s?.connecting) {
      // Client events wait: once connected, the client's side is pumped anyway.
      if (side === 0) {
        s.clientEvents |= mask;
        if (s.sniffUntil > 0) this.sniffClient(c);
      } else if (s.greeted) this.onNodeBytes(c, mask);
      else if (mask & (EPOLLOUT | EPOLLERR | EPOLLHUP)) this.onConnected(c, mask);
      return;
    }
    if (c.insp) return this.inspectedEvent(c, c.insp, side, mask);
    if (mask & EPOLLERR) {
      const r = getsockoptInt(c.fds[side], SOL_SOCKET, SO_ERROR, this.scratch);
      const err = 'value' in r ? r.value : r.errno;
      if (err > 0) return this.fail(c, side, err);
    }
    const from = side === 0 ? c.up : c.down; // this socket is its source
    const to = side === 0 ? c.down : c.up; // this socket is its destination
    if (
      mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) &&
      !c.closed &&
      !from.eof &&
      from.inPipe === 0 &&
      !this.starved.has(from)
    ) {
      this.pump(from, (mask & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === 0, finSeen(mask));
    }
    if (mask & (EPOLLOUT | EPOLLHUP | EPOLLERR) && to.inPipe > 0 && !c.closed) this.pump(to);
  }

  /** Moves bytes in one direction until it must wait for an edge (or its turn is over). */
  /**
   * Moves bytes in one direction until it must wait for an edge (or its turn is over).
   * `shortMeansDrained`: the edge that led here said nothing of a FIN or an error, so a read
   * shorter than asked means the socket is empty for now (any later segment raises a new
   * edge): no extra splice just to see EAGAIN. Only with a pipe large enough that a short
   * read cannot be a pipe out of slots.
   */
  private pump(d: Dir, shortMeansDrained = false, finSeen = false): void {
    const c = d.conn;
    // The source's FIN is in: every write of this call is followed by another or by the FIN
    // (shutdown or close) before the call returns, or the socket is full (ACKs push it), so the
    // bytes wait for it (SPLICE_F_MORE) and the last of them leave in the FIN's segment.
    const writeFlags = finSeen ? FLAGS | SPLICE_F_MORE : FLAGS;
    let budget = TURN_BUDGET;
    let drained = false; // the source has nothing more for now: wait for its next edge
    for (;;) {
      let dstBlocked = false;
      if (!d.eof && !drained) {
        if (!d.pipe && !this.acquire(d)) {
          this.starved.add(d);
          return;
        }
        const pipe = d.pipe!;
        const room = pipe.cap - d.inPipe;
        if (room > 0) {
          const wasEmpty = d.inPipe === 0;
          const n = rawSplice(d.src, pipe.w, room, FLAGS);
          if (n > 0) {
            d.inPipe += n;
            d.bytes += n;
            budget -= n;
            c.last = this.now;
            if (shortMeansDrained && n < room && n < SHORT_READ && pipe.cap >= SHORT_READ_PIPE) drained = true;
          } else if (n === 0) d.eof = true;
          else if (n === -EAGAIN)
            drained = wasEmpty; // else: maybe only the pipe was full
          else if (n !== -EINTR) return this.fail(c, d.srcSide, -n);
        }
      }
      if (d.inPipe > 0) {
        const n = rawSplice(d.pipe!.r, d.dst, d.inPipe, writeFlags);
        if (n > 0) {
          d.inPipe -= n;
          c.last = this.now;
        } else if (n === -EAGAIN) dstBlocked = true;
        else if (n === 0) throw new Error('splice from a non-empty pipe returned 0');
        else if (n !== -EINTR) return this.fail(c, d.dstSide, -n);
      }
      if (d.inPipe === 0) {
        if (d.eof) {
          this.release(d);
          if (!d.shut) {
            d.shut = true;
            // The other way already done: close(2) right below sends the FIN (its receive
            // queue is empty up to the peer's FIN, so no RST).
            const other = d === c.up ? c.down : c.up;
            if (!other.shut) rawShutdown(d.dst, SHUT_WR); // ENOTCONN after a reset: reported by the other direction
          }
          if (c.up.shut && c.down.shut) this.finish(c, 'eof');
          return;
        }
        if (drained) {
          this.release(d);
          return;
        }
      } else if (dstBlocked) return;
      if (budget <= 0) {
        this.again.push(d);
        return;
      }
    }
  }

  private acquire(d: Dir): boolean {
    let p = this.pool.pop();
    if (!p) {
      const r = rawPipe(this.scratch);
      if (typeof r === 'number') return false;
      let cap = rawFcntl(r[1], F_SETPIPE_SZ, this.init.pipeSize);
      if (cap <= 0) cap = rawFcntl(r[1], F_GETPIPE_SZ, 0);
      p = { r: r[0], w: r[1], cap: cap > 0 ? cap : 65536 };
    }
    d.pipe = p;
    return true;
  }

  /** Returns an empty pipe to the pool; a pipe still holding bytes is closed. */
  private release(d: Dir): void {
    const p = d.pipe;
    if (!p) return;
    d.pipe = undefined;
    if (d.inPipe === 0 && this.pool.length < this.init.pipePool && !this.stopping) this.pool.push(p);
    else {
      rawClose(p.r);
      rawClose(p.w);
    }
    d.inPipe = 0;
  }

  private newConn(id: number, clientFd: number, upstreamFd: number, idleMs: number): Conn {
    const c = {
      key: this.takeKey(),
      id,
      fds: [clientFd, upstreamFd],
      idleMs,
      last: this.now,
      closed: false,
      reported: 0,
    } as Conn;
    c.up = makeDir(c, clientFd, upstreamFd, 0);
    c.down = makeDir(c, upstreamFd, clientFd, 1);
    this.conns.set(c.key, c);
    if (idleMs > 0) this.sweepAtLeastEvery(idleMs);
    return c;
  }

  private takeKey(): number {
    // Wraps after 2^30 connections; a key still in use is skipped.
    do {
      this.nextKey = this.nextKey >= 0x3fffffff ? FIRST_CONN_KEY : this.nextKey + 1;
    } while (this.conns.has(this.nextKey));
    return this.nextKey;
  }

  /** Sweeps (idle and connect deadlines) often enough for a timeout of `ms`. */
  private sweepAtLeastEvery(ms: number): void {
    const s = Math.min(1000, Math.max(5, Math.floor(ms / 8)));
    if (s < this.sweepMs) {
      this.sweepMs = s;
      this.nextSweep = Math.min(this.nextSweep, this.now + s);
    }
  }

  private add(m: Extract<ToWorker, { t: 'add' }>): void {
    const c = this.newConn(m.id, m.clientFd, m.upstreamFd, m.idleMs);
    for (let side: Side = 0; side <= 1; side++) {
      const fd = c.fds[side];
      // The descriptors share their file status flags with Node's: normally non-blocking already.
      const fl = rawFcntl(fd, F_GETFL, 0);
      if (fl >= 0 && !(fl & O_NONBLOCK)) rawFcntl(fd, F_SETFL, fl | O_NONBLOCK);
      const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, fd, SOCKET_EVENTS, c.key * 2 + side, this.ctlScratch);
      if (r < 0) return this.finish(c, 'aborted', `epoll_ctl: ${errnoName(-r)}`);
    }
    // Bytes may already be queued: no need to wait for the first edge.
    this.pump(c.up);
    if (!c.closed) this.pump(c.down);
  }

  private fail(c: Conn, side: Side, errno: number): void {
    this.finish(c, side === 0 ? 'client-error' : 'upstream-error', errnoName(errno), true);
  }

  /** Closes every descriptor of a connection exactly once and reports it. */
  private finish(c: Conn, reason: Reason, error?: string, reset = false): void {
    if (!this.close(c, reset)) return;
    const s = c.served;
    if (!s)
      return this.out({
        t: 'done',
        id: c.id,
        bytesUp: c.up.bytes,
        bytesDown: c.down.bytes,
        reason: reason as Extract<FromWorker, { t: 'done' }>['reason'],
        ...(error ? { error } : {}),
      });
    this.record(c, reason, error);
  }

  /** Closes every descriptor of a connection exactly once; true if it was still open. */
  private close(c: Conn, reset: boolean, resetSide: Side | 'both' = 'both'): boolean {
    if (c.closed) return false;
    c.closed = true;
    this.conns.delete(c.key);
    this.starved.delete(c.up);
    this.starved.delete(c.down);
    for (let side: Side = 0; side <= 1; side++) {
      const fd = c.fds[side];
      if (fd < 0) continue; // an inspected flow's upstream, closed while the client is answered
      // close(2) then sends an RST, like Node's resetAndDestroy()
      if (reset && (resetSide === 'both' || resetSide === side)) setLingerZero(fd);
      // A served flow's descriptors are the only references to their sockets: close(2)
      // takes them out of epoll. A hand-over's could (in theory) be shared: delete first.
      if (!c.served) rawEpollCtl(this.epfd, EPOLL_CTL_DEL, fd, 0, 0, this.ctlScratch); // ENOENT if never added
      rawClose(fd);
    }
    this.release(c.up);
    this.release(c.down);
    c.ss?.free();
    return true;
  }

  private record(c: Conn, reason: Extract<FlowRecord, { t: 'end' }>['reason'], error?: string, detail?: string): void {
    const s = c.served!;
    this.served.delete(c.id);
    Atomics.sub(this.servedCount, 0, 1);
    s.listener.active--;
    this.activeChanged = true;
    const r: Extract<FlowRecord, { t: 'end' }> = {
      t: 'end',
      id: c.id,
      listener: s.listener.cfg.label,
      src: s.src,
      dst: s.dst,
      started: s.started,
      ended: Date.now(),
      bytesUp: c.up.bytes,
      bytesDown: c.down.bytes,
      reason,
    };
    // Optional fields assigned, not spread (one record per connection).
    if (s.connectMs !== undefined) r.connectMs = s.connectMs;
    if (error) r.error = error;
    if (s.listener.inject) r.requests = c.insp?.requests ?? c.requests ?? 0;
    if (s.domain) r.domain = s.domain;
    if (detail) r.detail = detail;
    else if (c.ss?.failure) r.detail = c.ss.failure.detail;
    this.outbox.push(r);
  }

  private sweep(): void {
    this.nextSweep = this.now + this.sweepMs;
    for (const c of this.conns.values()) {
      const s = c.served;
      if (s?.connecting) {
        if (s.sniffUntil > 0) {
          if (this.now >= s.sniffUntil) this.dialNode(c);
        } else if (this.now >= s.connectDeadline) {
          if (s.greeted) this.handshakeTimedOut(c);
          else this.connectFailed(c, ETIMEDOUT);
        }
      } else if (c.idleMs > 0 && this.drainedAt - c.last >= c.idleMs) this.finish(c, 'idle');
      else if (c.insp && c.insp.deadline > 0 && this.now >= c.insp.deadline) c.insp.onTimer(this.now);
    }
    for (const l of this.listeners.values()) if (!l.armed && l.resumeAt > 0 && this.now >= l.resumeAt) this.arm(l);
    if (this.starved.size > 0) {
      const list = [...this.starved];
      this.starved.clear();
      for (const d of list) if (!d.conn.closed) this.pump(d);
    }
  }

  private onWake(): void {
    const { wakeFd, exitFlag } = this.host;
    if (wakeFd !== undefined) eventfdDrain(wakeFd, this.scratch);
    // The process is exiting (Node waits for its workers, and this one would sit in
    // epoll_wait forever): stop now; the kernel closes the descriptors with the process.
    if (exitFlag && Atomics.load(exitFlag, 0) !== 0) {
      this.stopping = true;
      return;
    }
    for (let msg = this.host.receive(); msg; msg = this.host.receive()) {
      if (msg.t === 'add') this.add(msg);
      else if (msg.t === 'listen') this.listen(msg.listener);
      else if (msg.t === 'unlisten') this.unlisten();
      else if (msg.t === 'list') {
        this.flushRecords(true); // what has ended is reported before what is live
        this.out({ t: 'list', req: msg.req, conns: this.list() });
      } else if (msg.t === 'kill') {
        const c = msg.handedOver ? this.handedOver(msg.id) : this.served.get(msg.id);
        if (c) this.finish(c, 'aborted', 'closed by request');
        this.out({ t: 'killed', req: msg.req, found: c !== undefined });
      } else if (msg.t === 'close') return this.shutdown();
    }
  }

  /** Counters of handed-over flows that moved since the last report (served flows are listed on demand). */
  private reportBytes(): void {
    this.nextBytesReport = this.now + BYTES_REPORT_MS;
    const flows: number[] = [];
    for (const c of this.conns.values()) {
      if (c.served) continue;
      const sum = c.up.bytes + c.down.bytes;
      if (sum === c.reported) continue;
      c.reported = sum;
      flows.push(c.id, c.up.bytes, c.down.bytes);
    }
    if (flows.length) this.out({ t: 'bytes', flows });
  }

  private handedOver(id: number): Conn | undefined {
    for (const c of this.conns.values()) if (!c.served && c.id === id) return c;
    return undefined;
  }

  // ---- kernel-only flows ----

  private listen(cfg: ServedListener): void {
    const l: Listener = { token: this.nextListenerToken++, cfg, armed: false, resumeAt: 0, active: 0 };
    if (cfg.inject) {
      l.inject = compileInjectConfig(cfg.inject);
      if (cfg.headTimeoutMs) this.sweepAtLeastEvery(cfg.headTimeoutMs);
    }
    if (cfg.node) l.node = this.nodeDial(cfg.node);
    if (l.token >= FIRST_CONN_KEY * 2) throw new Error('too many served listeners');
    this.listeners.set(l.token, l);
    if (cfg.connectTimeoutMs > 0) this.sweepAtLeastEvery(cfg.connectTimeoutMs);
    // accept4 must never block this loop (the flag is shared with every copy of the socket,
    // which Node would set non-blocking too).
    const fl = rawFcntl(cfg.fd, F_GETFL, 0);
    if (fl >= 0 && !(fl & O_NONBLOCK)) rawFcntl(cfg.fd, F_SETFL, fl | O_NONBLOCK);
    this.arm(l);
  }

  /** (Re)registers a listener, level-triggered: pending clients are picked up turn after turn. */
  private arm(l: Listener): void {
    l.resumeAt = 0;
    // Every thread waits on the same listening socket; EPOLLEXCLUSIVE wakes one of them per
    // new connection instead of all (no thundering herd).
    const events = this.init.threads > 1 ? (EPOLLIN | EPOLLEXCLUSIVE) >>> 0 : EPOLLIN;
    const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, l.cfg.fd, events, l.token, this.ctlScratch);
    if (r < 0) throw new Error(`epoll_ctl(listener ${l.cfg.label}): ${errnoName(-r)}`);
    l.armed = true;
  }

  private disarm(l: Listener, resumeAt: number): void {
    if (l.armed) rawEpollCtl(this.epfd, EPOLL_CTL_DEL, l.cfg.fd, 0, 0, this.ctlScratch);
    l.armed = false;
    l.resumeAt = resumeAt;
    if (resumeAt > 0) this.nextSweep = Math.min(this.nextSweep, resumeAt);
  }

  private resting(): boolean {
    for (const l of this.listeners.values()) if (l.resumeAt > 0) return true;
    return false;
  }

  /** Stops accepting: the listening descriptors are closed (other processes' copies stay). */
  private unlisten(): void {
    for (const l of this.listeners.values()) {
      this.disarm(l, 0);
      rawClose(l.cfg.fd);
    }
    this.listeners.clear();
    this.out({ t: 'unlistened' });
  }

  private onListenerEvent(token: number): void {
    const l = this.listeners.get(token);
    if (!l?.armed) return;
    const cfg = l.cfg;
    if (this.overShare()) return this.disarm(l, this.now + REBALANCE_MS);
    for (let i = 0; i < ACCEPT_BURST; i++) {
      if (i > 0 && this.overShare()) return; // the rest of the backlog is the other threads'
      const fd = rawAccept(cfg.fd, this.sa);
      if (fd < 0) {
        if (fd === -EAGAIN) return;
        if (fd === -EINTR || fd === -103 /* ECONNABORTED */) continue;
        // Out of descriptors or memory: rest this listener a moment (clients wait in the
        // backlog), keep relaying the flows we have.
        if (fd === -EMFILE || fd === -ENFILE || fd === -ENOBUFS || fd === -ENOMEM)
          this.disarm(l, this.now + ACCEPT_PAUSE_MS);
        this.outbox.push({ t: 'refused', listener: cfg.label, reason: 'accept-error', error: errnoName(-fd) });
        return;
      }
      this.accepted(l, fd);
    }
  }

  /** Several threads share the listeners, and this one holds more than its share of their flows. */
  private overShare(): boolean {
    const threads = this.init.threads;
    return threads > 1 && this.served.size > Atomics.load(this.servedCount, 0) / threads + REBALANCE_SLACK;
  }

  private refuse(
    cfg: ServedListener,
    fd: number,
    reason: Extract<FlowRecord, { t: 'refused' }>['reason'],
    src: Endpoint | undefined,
    dst: Endpoint | undefined,
    error: string | undefined,
  ): void {
    rawClose(fd);
    this.outbox.push({
      t: 'refused',
      listener: cfg.label,
      ...(src ? { src } : {}),
      ...(dst ? { dst } : {}),
      reason,
      ...(error ? { error } : {}),
    });
  }

  /** The connection being admitted (admit() asks for its destination only below the limit). */
  private admitting = { fd: -1, cfg: undefined as ServedListener | undefined };
  private readonly originalDst = (): Endpoint | { error: string } => {
    const { fd, cfg } = this.admitting;
    const r = rawLocalOrOriginal(fd, cfg!.mode === 'redirect' ? cfg!.family : undefined, this.sa2);
    return r < 0 ? { error: errnoName(-r) } : decodeSockaddr(scratchSockaddr(this.sa2));
  };
  private readonly isLocal = (address: string): boolean => this.local.has(address);

  private accepted(l: Listener, fd: number): void {
    const cfg = l.cfg;
    let src: Endpoint;
    try {
      src = decodeSockaddr(scratchSockaddr(this.sa));
    } catch {
      return this.refuse(cfg, fd, 'no-original-destination', undefined, undefined, 'unknown peer address family');
    }
    this.admitting.fd = fd;
    this.admitting.cfg = cfg;
    const a = admit(cfg, Atomics.load(this.servedCount, 0), this.originalDst, this.isLocal);
    if (!a.ok) return this.refuse(cfg, fd, a.reason, src, a.dst, a.error);
    const dst = a.dst;

    const c = this.newConn(this.nextServedId, fd, -1, cfg.idleMs);
    this.nextServedId += this.init.threads;
    Atomics.add(this.servedCount, 0, 1);
    c.served = {
      listener: l,
      src,
      dst,
      started: Date.now(),
      t0: this.now,
      connecting: true,
      clientEvents: 0,
      connectDeadline: cfg.connectTimeoutMs > 0 ? this.now + cfg.connectTimeoutMs : Infinity,
      sniffUntil: 0,
      greeted: false,
    };
    this.served.set(c.id, c);
    l.active++;
    this.activeChanged = true;
    if (l.node) return this.startNodeFlow(c, l.node);
    if (l.inject) c.insp = this.inspect(c, l.inject, cfg.headTimeoutMs ?? 0);
    // The upstream socket: same family as the destination's sockaddr, our mark, the client's source.
    const dstAddr = this.sa2;
    const family = dstAddr.buf.readUInt16LE(0) === 2 ? 4 : 6;
    if (!this.openUpstream(c, family, dstAddr.addr, dstAddr.buf.readUInt32LE(128), cfg.preserveSource)) return;
    if (this.register(c, 0)) this.register(c, 1);
    // Registration reports a writable (connected) socket at once; onConnected runs then.
  }

  /** Opens the upstream socket (nodelay, mark, TPROXY source) and starts connecting; false once failed and recorded. */
  private openUpstream(c: Conn, family: 4 | 6, addr: bigint, len: number, spoof: boolean): boolean {
    const cfg = c.served!.listener.cfg;
    const ufd = rawTcpSocket(family);
    if (ufd < 0) {
      this.connectFailed(c, -ufd);
      return false;
    }
    c.fds[1] = ufd;
    c.up.dst = ufd;
    c.down.src = ufd;
    let e = rawSetsockoptInt(ufd, SOL_TCP, TCP_NODELAY, 1, this.scratch);
    if (e === 0 && cfg.mark) e = rawSetsockoptInt(ufd, SOL_SOCKET, SO_MARK, cfg.mark, this.scratch);
    if (e === 0 && spoof) {
      e = rawSetsockoptInt(
        ufd,
        family === 4 ? SOL_IP : SOL_IPV6,
        family === 4 ? IP_TRANSPARENT : IPV6_TRANSPARENT,
        1,
        this.scratch,
      );
      if (e === 0) {
        this.sa.buf.writeUInt16BE(0, 2); // the client's address, any port
        e = rawBind(ufd, this.sa.addr, this.sa.buf.readUInt32LE(128));
      }
    }
    if (e === 0) {
      e = rawConnect(ufd, addr, len);
      if (e === -EINPROGRESS) e = 0;
    }
    if (e < 0) this.connectFailed(c, -e);
    return e >= 0;
  }

  /** Adds one side's socket to epoll; false once the flow is finished for it. */
  private register(c: Conn, side: Side): boolean {
    const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, c.fds[side], SOCKET_EVENTS, c.key * 2 + side, this.ctlScratch);
    if (r < 0) this.finish(c, 'aborted', `epoll_ctl: ${errnoName(-r)}`);
    return r >= 0;
  }

  private onConnected(c: Conn, mask: number): void {
    const s = c.served!;
    // A failed connect raises EPOLLERR; a plain EPOLLOUT is a connected socket.
    if (mask & (EPOLLERR | EPOLLHUP)) {
      const r = getsockoptInt(c.fds[1], SOL_SOCKET, SO_ERROR, this.scratch);
      const err = 'value' in r ? r.value : r.errno || 111; /* ECONNREFUSED */
      if (err > 0) return this.connectFailed(c, err);
    }
    if (s.dialog) return this.greet(c, s, mask);
    this.connected(c, s);
    if (c.ss) return this.startSs(c, c.ss, s, mask);
    if (c.insp) return c.insp.start(readHint(s.clientEvents), readHint(mask));
    // The client's edges were held back while connecting. The upstream's first edge is this
    // one: a server that speaks first may already have sent (on a fast link the handshake and
    // its first bytes can land before the socket is even in epoll), so it is pumped too then.
    this.pump(c.up, (s.clientEvents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === 0, finSeen(s.clientEvents));
    if (!c.closed && mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
      this.pump(c.down, (mask & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === 0, finSeen(mask));
  }

  /** The upstream (or the node's handshake) is done: bytes may move, the connect time counts. */
  private connected(c: Conn, s: Served): void {
    s.connecting = false;
    s.connectMs = this.now - s.t0;
    this.connectTimes.push(s.connectMs);
    c.last = this.now;
  }

  /** The client gets an RST (as the JS path's resetAndDestroy), the upstream socket a close. */
  private connectFailed(c: Conn, errno: number): void {
    if (!this.close(c, true, 0)) return;
    const node = c.served!.listener.node;
    this.record(c, 'connect-failed', errnoName(errno), node ? nodeConnectText(node, errno) : undefined);
  }

  // ---- flows through a node ----

  private nodeDial(cfg: EngineNode): NodeDial {
    const sa = encodeSockaddr(cfg.address);
    for (const ms of [cfg.connectTimeoutMs, cfg.handshakeTimeoutMs, cfg.sniffTimeoutMs])
      if (ms > 0) this.sweepAtLeastEvery(ms);
    const ss =
      cfg.kind === 'shadowsocks'
        ? { info: SS_CIPHERS[cfg.method!], master: masterKey(cfg.method!, cfg.password ?? '') }
        : undefined;
    return { cfg, sa, addr: addressOf(sa), where: formatEndpoint(cfg.address), ...(ss ? { ss } : {}) };
  }

  /** Waits for the client's first bytes when a domain may be sniffed from them, else dials at once. */
  private startNodeFlow(c: Conn, n: NodeDial): void {
    if (n.cfg.sniffTimeoutMs <= 0) return this.dialNode(c);
    c.served!.sniffUntil = this.now + n.cfg.sniffTimeoutMs;
    this.register(c, 0);
  }

  /** Peeks at what the client sent so far (the bytes stay queued for the relay): a domain, or wait for more. */
  private sniffClient(c: Conn): void {
    const s = c.served!;
    if (!this.peekBuf) {
      this.peekBuf = Buffer.allocUnsafeSlow(PEEK_SIZE);
      this.peekAddr = addressOf(this.peekBuf);
    }
    const n = rawPeek(c.fds[0], this.peekAddr, PEEK_SIZE);
    if (n === -EAGAIN || n === -EINTR) return;
    if (n < 0) return this.finish(c, 'client-error', errnoName(-n), true);
    if (n > 0) {
      const r = sniff(this.peekBuf.subarray(0, n));
      // More may come (a new edge), unless the client's side has ended.
      if (r === 'need-more' && n < PEEK_SIZE && !(s.clientEvents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
      if (r !== 'need-more' && r.domain) s.domain = r.domain;
    }
    this.dialNode(c);
  }

  /** Connects to the node; its handshake starts once connected (onConnected → greet). */
  private dialNode(c: Conn): void {
    const s = c.served!;
    const n = s.listener.node!;
    const registered = s.sniffUntil > 0;
    s.sniffUntil = 0;
    s.connectDeadline = this.now + n.cfg.connectTimeoutMs;
    if (n.ss) {
      const dst = {
        ip: s.dst.address,
        port: s.dst.port,
        family: s.dst.family,
        ...(s.domain ? { domain: s.domain } : {}),
      };
      const header = encodeSocksAddress(destinationAddress(dst));
      c.ss = new SsSession(n.ss.info, n.ss.master, header, `${n.cfg.name}: node ${n.where}`);
    } else {
      const creds =
        n.cfg.username !== undefined ? { username: n.cfg.username, password: n.cfg.password ?? '' } : undefined;
      s.dialog = new Socks5Dialog(n.where, { dst: s.dst, ...(s.domain ? { domain: s.domain } : {}) }, creds);
    }
    if (!this.openUpstream(c, n.cfg.address.family, n.addr, n.sa.length, false)) return;
    if (registered || this.register(c, 0)) this.register(c, 1);
  }

  private greet(c: Conn, s: Served, mask: number): void {
    s.greeted = true;
    s.connectDeadline = this.now + s.listener.node!.cfg.handshakeTimeoutMs;
    if (this.nodeSend(c, s.dialog!.first()) && mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) this.onNodeBytes(c, mask);
  }

  /** One handshake message to the node (a few hundred bytes into a fresh socket: all or nothing). */
  private nodeSend(c: Conn, bytes: Buffer): boolean {
    bytes.copy(this.hsBuf);
    let n = rawWrite(c.fds[1], this.hsAddr, bytes.length);
    while (n === -EINTR) n = rawWrite(c.fds[1], this.hsAddr, bytes.length);
    if (n === bytes.length) return true;
    const where = c.served!.listener.node!.where;
    const why = n < 0 ? errnoName(-n) : `${n} of ${bytes.length} bytes written`;
    this.nodeFailed(
      c,
      n < 0 ? errnoName(-n) : 'EHANDSHAKE',
      `connection to node ${where} failed during handshake: ${why}`,
    );
    return false;
  }

  /** The node's replies, read exactly (what follows the last one stays for the splice). */
  private onNodeBytes(c: Conn, mask: number): void {
    const s = c.served!;
    const where = s.listener.node!.where;
    for (;;) {
      const n = rawRead(c.fds[1], this.hsAddr, s.dialog!.want());
      if (n === -EAGAIN) {
        if (mask & EPOLLERR) {
          const r = getsockoptInt(c.fds[1], SOL_SOCKET, SO_ERROR, this.scratch);
          const err = 'value' in r ? r.value : r.errno;
          if (err > 0)
            this.nodeFailed(
              c,
              errnoName(err),
              `connection to node ${where} failed during handshake: ${errnoName(err)}`,
            );
        }
        return;
      }
      if (n === -EINTR) continue;
      if (n < 0)
        return this.nodeFailed(
          c,
          errnoName(-n),
          `connection to node ${where} failed during handshake: ${errnoName(-n)}`,
        );
      const step = n === 0 ? s.dialog!.closed() : s.dialog!.feed(this.hsBuf.subarray(0, n));
      if (step.t === 'failed') return this.nodeFailed(c, step.code, step.detail);
      if (step.t === 'send' && !this.nodeSend(c, step.bytes)) return;
      if (step.t === 'done') return this.nodeReady(c, s);
    }
  }

  /** CONNECT answered: from here the flow is spliced like any other. */
  private nodeReady(c: Conn, s: Served): void {
    s.dialog = undefined;
    this.connected(c, s);
    this.pump(c.up, (s.clientEvents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) === 0, finSeen(s.clientEvents));
    // The target may have spoken already: its bytes wait behind the reply (no edge will say so).
    if (!c.closed) this.pump(c.down);
  }

  /** Shadowsocks: no handshake; the flow's bytes go through the session both ways from here. */
  private startSs(c: Conn, ss: SsSession, s: Served, mask: number): void {
    this.inspectScratch ??= new InspectScratch();
    const insp = new InspectedFlow(c, this.inspectHost, this.inspectScratch, {
      rewriter: ss,
      headTimeoutMs: 0,
      decoder: ss,
    });
    c.insp = insp;
    insp.start(readHint(s.clientEvents), readHint(mask));
    // The client said nothing yet (the server speaks first): the target goes alone.
    const header = c.closed ? undefined : ss.takeHeader();
    if (header) insp.sendUp(header);
  }

  private handshakeTimedOut(c: Conn): void {
    const n = c.served!.listener.node!;
    this.nodeFailed(c, 'ETIMEDOUT', `handshake with node ${n.where} timed out after ${n.cfg.handshakeTimeoutMs} ms`);
  }

  /** The handshake failed: client reset, node closed, the record says why (as the JS path's line). */
  private nodeFailed(c: Conn, code: string, detail: string): void {
    if (!this.close(c, true, 0)) return;
    this.record(c, 'connect-failed', code, `${c.served!.listener.node!.cfg.name}: ${detail}`);
  }

  // ---- inspected flows ----

  private inspect(c: Conn, inject: CompiledInject, headTimeoutMs: number): InspectedFlow<Conn> {
    this.inspectScratch ??= new InspectScratch();
    return new InspectedFlow(c, this.inspectHost, this.inspectScratch, {
      rewriter: new RequestRewriter(inject),
      headTimeoutMs,
    });
  }

  private inspectedEvent(c: Conn, insp: InspectedFlow, side: Side, mask: number): void {
    if (mask & EPOLLERR) {
      const r = getsockoptInt(c.fds[side], SOL_SOCKET, SO_ERROR, this.scratch);
      const err = 'value' in r ? r.value : r.errno;
      if (err > 0) return insp.onSocketError(side, errnoName(err));
    }
    insp.onEvent(side, readHint(mask), (mask & (EPOLLOUT | EPOLLHUP | EPOLLERR)) !== 0);
  }

  /** An inspected flow's upstream closes early (refusals): the client's side goes on. */
  private closeUpstream(c: Conn, reset: boolean): void {
    const fd = c.fds[1];
    if (fd < 0) return;
    if (reset) setLingerZero(fd);
    rawClose(fd);
    c.fds[1] = -1;
  }

  private list(): ServedConnection[] {
    return [...this.served.values()].map((c) => ({
      id: c.id,
      listener: c.served!.listener.cfg.label,
      src: c.served!.src,
      dst: c.served!.dst,
      started: c.served!.started,
      bytesUp: c.up.bytes,
      bytesDown: c.down.bytes,
      ...(c.served!.domain ? { domain: c.served!.domain } : {}),
    }));
  }

  private unreported(): boolean {
    return this.outbox.length > 0 || this.activeChanged || this.connectTimes.length > 0;
  }

  /** Posts the records (and live counts) at most every RECORD_FLUSH_MS, or at once if `now`. */
  private flushRecords(now = false): void {
    if (!this.unreported()) return;
    if (!now && this.outbox.length < RECORD_BATCH && this.now - this.lastFlush < RECORD_FLUSH_MS) return;
    this.lastFlush = this.now;
    const active: Record<string, number> = {};
    for (const l of this.listeners.values()) active[l.cfg.label] = (active[l.cfg.label] ?? 0) + l.active;
    // Listeners already closed (unlisten) still have flows: count those by label too.
    for (const c of this.served.values()) {
      const label = c.served!.listener.cfg.label;
      if (!this.listeners.has(c.served!.listener.token)) active[label] = (active[label] ?? 0) + 1;
    }
    this.out({ t: 'flows', records: this.outbox, active, connectMs: this.connectTimes });
    this.outbox = [];
    this.connectTimes = [];
    this.activeChanged = false;
  }

  /** Engine close: every live connection is closed (FIN, like destroy()) and reported. */
  private shutdown(): void {
    this.stopping = true;
    this.unlisten();
    for (const c of [...this.conns.values()]) this.finish(c, 'aborted', 'engine closed');
    this.flushRecords(true);
    for (const p of this.pool.splice(0)) {
      rawClose(p.r);
      rawClose(p.w);
    }
    if (this.host.wakeFd !== undefined) rawEpollCtl(this.epfd, EPOLL_CTL_DEL, this.host.wakeFd, 0, 0, this.ctlScratch);
    this.host.close();
    rawClose(this.epfd);
    this.out({ t: 'closed' });
  }
}

function main(init: SpliceWorkerInit): void {
  const { port } = init;
  const host: EngineHost = {
    receive: () => receiveMessageOnPort(port)?.message as ToWorker | undefined,
    post: (m) => parentPort!.postMessage(m),
    close: () => port.close(),
    wakeFd: init.wakeFd,
    exitFlag: new Int32Array(init.exitFlag),
  };
  try {
    new Engine(init, host).run();
  } catch (e) {
    host.post({ t: 'fatal', error: (e as Error).stack ?? String(e) });
  }
}

// The inline hosting (inline.ts) imports this module on the main thread for the Engine alone.
if (!isMainThread && (workerData as Partial<SpliceWorkerInit> | null)?.port) main(workerData as SpliceWorkerInit);

/** A failed connect to a node in the words of the JS path's (node-conn.ts). */
function nodeConnectText(n: NodeDial, errno: number): string {
  const code = errnoName(errno);
  const text =
    code === 'ECONNREFUSED'
      ? `node ${n.where} refused the connection (is the proxy running?)`
      : code === 'ETIMEDOUT'
        ? `connect to node ${n.where} timed out after ${n.cfg.connectTimeoutMs} ms`
        : `connect to node ${n.where}: ${code}`;
  return `${n.cfg.name}: ${text}`;
}
