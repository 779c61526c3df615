// The splice engine's worker thread: one epoll loop that relays every connection handed to
// it with splice(2), socket → pipe → socket, one pipe per direction while bytes are in
// flight. Blocks in epoll_wait (a plain synchronous koffi call: this thread does nothing
// else); the main thread posts new connections on a MessagePort and signals an eventfd,
// the loop picks them up with receiveMessageOnPort.
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
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import {
  EAGAIN,
  EINTR,
  EPOLLERR,
  EPOLLET,
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
  F_SETPIPE_SZ,
  O_NONBLOCK,
  SHUT_WR,
  SOL_SOCKET,
  SO_ERROR,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
  addressOf,
  errnoName,
  eventfdDrain,
  getsockoptInt,
  rawClose,
  rawEpollCtl,
  rawEpollWait,
  rawFcntl,
  rawPipe,
  rawShutdown,
  rawSplice,
  setLingerZero,
  sysEpollCreate,
} from './splice-ffi.js';
import type { FromWorker, SpliceWorkerInit, ToWorker } from './splice-protocol.js';

const F_SETFL = 4;
const MAX_EVENTS = 256;
const FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
/** Bytes one direction may move per turn before others get theirs (fairness). */
const TURN_BUDGET = 4 << 20;
const WAKE_TOKEN = 0;
const SOCKET_EVENTS = (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0;

type Side = 0 | 1; // 0: client, 1: upstream
type Reason = Extract<FromWorker, { t: 'done' }>['reason'];

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
  id: number;
  fds: [number, number];
  idleMs: number;
  last: number;
  up: Dir; // client → upstream
  down: Dir; // upstream → client
  closed: boolean;
}

function makeDir(conn: Conn, src: number, dst: number, srcSide: Side): Dir {
  return { conn, src, dst, srcSide, dstSide: srcSide === 0 ? 1 : 0, pipe: undefined, inPipe: 0, eof: false, shut: false, bytes: 0 };
}

class Engine {
  private readonly epfd: number;
  private readonly conns = new Map<number, Conn>();
  private readonly pool: Pipe[] = [];
  private readonly events = Buffer.alloc(EPOLL_EVENT_SIZE * MAX_EVENTS);
  private readonly eventsAddr: bigint;
  private readonly ctlScratch = Buffer.alloc(64);
  private readonly scratch = Buffer.alloc(64);
  /** Directions that used up their turn and must go on without waiting for an edge. */
  private again: Dir[] = [];
  /** Directions that could not get a pipe (descriptors exhausted); retried later. */
  private readonly starved = new Set<Dir>();
  private now = Date.now();
  private sweepMs = 1000;
  private nextSweep = 0;
  private stopping = false;
  private readonly exitFlag: Int32Array;

  constructor(
    private readonly init: SpliceWorkerInit,
    private readonly port: MessagePort,
    private readonly out: (m: FromWorker) => void,
  ) {
    this.exitFlag = new Int32Array(init.exitFlag);
    this.epfd = sysEpollCreate();
    this.eventsAddr = addressOf(this.events);
    const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, init.wakeFd, EPOLLIN, WAKE_TOKEN, this.ctlScratch);
    if (r < 0) throw new Error(`epoll_ctl(eventfd): ${errnoName(-r)}`);
  }

  run(): void {
    this.out({ t: 'ready' });
    const ev = this.events;
    while (!this.stopping) {
      let timeout = -1;
      if (this.again.length > 0) timeout = 0;
      else if (this.conns.size > 0) timeout = Math.max(0, this.nextSweep - Date.now());
      const n = rawEpollWait(this.epfd, this.eventsAddr, MAX_EVENTS, timeout);
      this.now = Date.now();
      if (n < 0) {
        if (n === -EINTR) continue;
        throw new Error(`epoll_wait: ${errnoName(-n)}`);
      }
      let wake = false;
      for (let i = 0; i < n; i++) {
        const off = i * EPOLL_EVENT_SIZE;
        const mask = ev.readUInt32LE(off);
        const token = ev.readUInt32LE(off + EPOLL_DATA_OFFSET);
        if (token === WAKE_TOKEN) wake = true;
        else this.onSocketEvent(token, mask);
      }
      if (this.again.length > 0) {
        const list = this.again;
        this.again = [];
        for (const d of list) if (!d.conn.closed) this.pump(d);
      }
      if (wake) this.onWake();
      if (this.now >= this.nextSweep) this.sweep();
    }
  }

  private onSocketEvent(token: number, mask: number): void {
    const c = this.conns.get(token >>> 1);
    if (!c) return; // stale: already closed
    const side = (token & 1) as Side;
    if (mask & EPOLLERR) {
      const r = getsockoptInt(c.fds[side], SOL_SOCKET, SO_ERROR, this.scratch);
      const err = 'value' in r ? r.value : r.errno;
      if (err > 0) return this.fail(c, side, err);
    }
    const from = side === 0 ? c.up : c.down; // this socket is its source
    const to = side === 0 ? c.down : c.up; // this socket is its destination
    if (mask & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) && !c.closed && !from.eof && from.inPipe === 0 && !this.starved.has(from)) this.pump(from);
    if (mask & (EPOLLOUT | EPOLLHUP | EPOLLERR) && to.inPipe > 0 && !c.closed) this.pump(to);
  }

  /** Moves bytes in one direction until it must wait for an edge (or its turn is over). */
  private pump(d: Dir): void {
    const c = d.conn;
    let budget = TURN_BUDGET;
    for (;;) {
      let srcBlocked = false; // EAGAIN from the source with an empty pipe: wait for EPOLLIN
      let dstBlocked = false;
      if (!d.eof) {
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
          } else if (n === 0) d.eof = true;
          else if (n === -EAGAIN) srcBlocked = wasEmpty; // else: maybe only the pipe was full
          else if (n !== -EINTR) return this.fail(c, d.srcSide, -n);
        }
      }
      if (d.inPipe > 0) {
        const n = rawSplice(d.pipe!.r, d.dst, d.inPipe, FLAGS);
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
            rawShutdown(d.dst, SHUT_WR); // ENOTCONN after a reset: reported by the other direction
          }
          if (c.up.shut && c.down.shut) this.finish(c, 'eof');
          return;
        }
        if (srcBlocked) {
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

  private add(m: Extract<ToWorker, { t: 'add' }>): void {
    const c = { id: m.id, fds: [m.clientFd, m.upstreamFd], idleMs: m.idleMs, last: this.now, closed: false } as Conn;
    c.up = makeDir(c, m.clientFd, m.upstreamFd, 0);
    c.down = makeDir(c, m.upstreamFd, m.clientFd, 1);
    this.conns.set(c.id, c);
    if (m.idleMs > 0) {
      const s = Math.min(1000, Math.max(5, Math.floor(m.idleMs / 8)));
      if (s < this.sweepMs) {
        this.sweepMs = s;
        this.nextSweep = Math.min(this.nextSweep, this.now + s);
      }
    }
    for (const side of [0, 1] as const) {
      const fd = c.fds[side];
      // The descriptors share their file status flags with Node's: normally non-blocking already.
      const fl = rawFcntl(fd, F_GETFL, 0);
      if (fl >= 0 && !(fl & O_NONBLOCK)) rawFcntl(fd, F_SETFL, fl | O_NONBLOCK);
      const r = rawEpollCtl(this.epfd, EPOLL_CTL_ADD, fd, SOCKET_EVENTS, c.id * 2 + side, this.ctlScratch);
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
    if (c.closed) return;
    c.closed = true;
    this.conns.delete(c.id);
    this.starved.delete(c.up);
    this.starved.delete(c.down);
    for (const side of [0, 1] as const) {
      const fd = c.fds[side];
      if (reset) setLingerZero(fd); // close(2) then sends an RST, like Node's resetAndDestroy()
      rawEpollCtl(this.epfd, EPOLL_CTL_DEL, fd, 0, 0, this.ctlScratch); // ENOENT if never added
      rawClose(fd);
    }
    this.release(c.up);
    this.release(c.down);
    this.out({ t: 'done', id: c.id, bytesUp: c.up.bytes, bytesDown: c.down.bytes, reason, ...(error ? { error } : {}) });
  }

  private sweep(): void {
    this.nextSweep = this.now + this.sweepMs;
    for (const c of this.conns.values()) {
      if (c.idleMs > 0 && this.now - c.last >= c.idleMs) this.finish(c, 'idle');
    }
    if (this.starved.size > 0) {
      const list = [...this.starved];
      this.starved.clear();
      for (const d of list) if (!d.conn.closed) this.pump(d);
    }
  }

  private onWake(): void {
    eventfdDrain(this.init.wakeFd, this.scratch);
    // The process is exiting (Node waits for its workers, and this one would sit in
    // epoll_wait forever): stop now; the kernel closes the descriptors with the process.
    if (Atomics.load(this.exitFlag, 0) !== 0) {
      this.stopping = true;
      return;
    }
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const msg = m.message as ToWorker;
      if (msg.t === 'add') this.add(msg);
      else if (msg.t === 'close') return this.shutdown();
    }
  }

  /** Engine close: every live connection is closed (FIN, like destroy()) and reported. */
  private shutdown(): void {
    this.stopping = true;
    for (const c of [...this.conns.values()]) this.finish(c, 'aborted', 'engine closed');
    for (const p of this.pool.splice(0)) {
      rawClose(p.r);
      rawClose(p.w);
    }
    rawEpollCtl(this.epfd, EPOLL_CTL_DEL, this.init.wakeFd, 0, 0, this.ctlScratch);
    rawClose(this.epfd);
    this.port.close();
    this.out({ t: 'closed' });
  }
}

function main(): void {
  const init = workerData as SpliceWorkerInit;
  const post = (m: FromWorker): void => parentPort!.postMessage(m);
  try {
    new Engine(init, init.port, post).run();
  } catch (e) {
    post({ t: 'fatal', error: (e as Error).stack ?? String(e) });
  }
}

main();
