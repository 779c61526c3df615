// An inspected (header-injecting) flow in the engine's epoll loop: the client's bytes are
// read from the raw descriptor, run through the streaming rewriter and written upstream;
// the server's bytes are copied to the client through the response framer (pushResponse).
// The same rules as the JS relay (relay.ts), transcribed for non-blocking descriptors:
// refusals only after the responses in flight, hold-until-101, head-read timeout, half-close.
// Once the rewriter lets go (passthrough: TLS, a 101) and both queues are empty, the flow
// goes back to the engine's splice pump.
import {
  addressOf,
  errnoName,
  rawRead,
  rawSendMore,
  rawSetsockoptInt,
  rawShutdown,
  rawWrite,
} from '../../kernel/ffi.js';
import { EAGAIN, EINTR, SHUT_WR, SOL_TCP, TCP_NODELAY } from '../../kernel/linux.js';
import { RESPONSE_408, type RewriteEvent } from '../../http/rewriter.js';
import type { UpstreamRewriter } from '../relay.js';

/** Client bytes held while an Upgrade/CONNECT awaits its answer before the client is paused. */
const HOLD_LIMIT = 65536;
/** Pipelined requests without a complete response before the client is paused. */
const MAX_UNANSWERED = 4096;
/** Bytes queued for one side before its source is no longer read. */
const QUEUE_HIGH = 256 << 10;
/** How long a refused client may take to close its side before we close the socket. */
export const LINGER_MS = 2000;
const READ_SIZE = 64 << 10;
const WRITE_COALESCE = 64 << 10;

export type InspectedReason = 'eof' | 'rejected' | 'head-timeout' | 'client-error' | 'upstream-error';

/**
 * What the epoll event that led to a read says of the socket (edge-triggered: bytes or a FIN
 * arriving after the event was taken raise a new one). NO_READ: nothing to read yet.
 * UNTIL_EAGAIN: no such knowledge, read until EAGAIN. SHORT_DRAINED: no FIN or error was
 * seen, so a read shorter than asked emptied the socket (no extra read just to see EAGAIN).
 * SHORT_EOF: the peer's FIN was seen (RDHUP), so after a short read only the EOF is left.
 */
export const NO_READ = -1;
export const UNTIL_EAGAIN = 0;
export const SHORT_DRAINED = 1;
export const SHORT_EOF = 2;
export type ReadHint = typeof NO_READ | typeof UNTIL_EAGAIN | typeof SHORT_DRAINED | typeof SHORT_EOF;

/** The descriptor calls of a flow (raw syscalls in the engine; in-memory sockets in tests). */
export interface InspectIo {
  /** read(2) into the scratch read buffer: bytes, 0 at EOF, or −errno. */
  read(fd: number, len: number): number;
  /**
   * write(2) of b[off, off + len): bytes written, or −errno. `more`: send(2) with MSG_MORE, the
   * bytes wait for the FIN that follows (one segment for both); a push() must follow otherwise.
   */
  write(fd: number, b: Buffer, off: number, len: number, more?: boolean): number;
  /** shutdown(fd, SHUT_WR); errors are left to the other direction to report. */
  shutdown(fd: number): void;
  /** Sends what a `more` write left waiting (TCP_NODELAY on: pushes the pending segment). */
  push(fd: number): void;
}

/** What the flow needs of its connection and the engine. */
export interface InspectedConn {
  fds: [number, number];
  last: number;
  closed: boolean;
  up: { eof: boolean; shut: boolean; bytes: number };
  down: { eof: boolean; shut: boolean; bytes: number };
}

/** The engine's side, one per thread: every call names the connection it is about. */
export interface InspectHost<C extends InspectedConn = InspectedConn> {
  now(): number;
  /** Closes what is still open (RST with `reset`) and records the flow. */
  finish(c: C, reason: InspectedReason, error?: string, reset?: boolean): void;
  /** Closes the upstream descriptor only (the client is still being answered). */
  closeUpstream(c: C, reset: boolean): void;
  /** The rewriter let go and nothing is queued: splice from here on (from the next turn). */
  toSplice(c: C): void;
}

/** Buffers waiting to be written to one descriptor, oldest first. */
class OutQueue {
  bufs: Buffer[] = [];
  len = 0;
  private off = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.bufs.push(b);
    this.len += b.length;
  }

  /** Writes as much as the socket takes: 0 when empty, 1 when it would block, or −errno. */
  flush(fd: number, scratch: Buffer, io: InspectIo): number {
    while (this.len > 0) {
      const first = this.bufs[0]!;
      let n: number;
      if (this.bufs.length === 1 || first.length - this.off >= WRITE_COALESCE) {
        n = io.write(fd, first, this.off, first.length - this.off);
      } else {
        n = io.write(fd, scratch, 0, this.gather(scratch));
      }
      if (n === -EAGAIN) return 1;
      if (n === -EINTR) continue;
      if (n < 0) return n;
      this.consume(n);
    }
    return 0;
  }

  /**
   * Writes b[0, len) (a scratch buffer, reused after this call) behind what is queued: straight
   * from `b` when nothing is, a copy of what the socket did not take. Results as flush().
   */
  send(fd: number, b: Buffer, len: number, scratch: Buffer, io: InspectIo, more = false): number {
    if (this.len > 0) {
      this.push(Buffer.from(b.subarray(0, len)));
      return this.flush(fd, scratch, io);
    }
    let n = io.write(fd, b, 0, len, more);
    while (n === -EINTR) n = io.write(fd, b, 0, len, more);
    if (n === len) return 0;
    if (n < 0 && n !== -EAGAIN) return n;
    this.push(Buffer.from(b.subarray(Math.max(0, n), len)));
    return 1;
  }

  /** Copies the queue's head into `scratch` (one write for many small pieces). */
  private gather(scratch: Buffer): number {
    let at = 0;
    let off = this.off;
    for (const b of this.bufs) {
      if (at >= scratch.length) break;
      at += b.copy(scratch, at, off);
      off = 0;
    }
    return at;
  }

  private consume(n: number): void {
    this.len -= n;
    while (n > 0) {
      const left = this.bufs[0]!.length - this.off;
      if (n < left) {
        this.off += n;
        return;
      }
      n -= left;
      this.bufs.shift();
      this.off = 0;
    }
  }
}

export interface InspectedOptions {
  rewriter: UpstreamRewriter;
  /** 0: no limit. */
  headTimeoutMs: number;
  /** The server's bytes are transformed on their way to the client (a node's stream cipher). */
  decoder?: StreamDecoder;
}

/** What turns an upstream's bytes into the client's (e.g. Shadowsocks chunks into plaintext). */
export interface StreamDecoder {
  /** `chunk` is the caller's to keep (it may be held); throws when the stream is bad. */
  decode(chunk: Buffer): Buffer[];
  /** At the upstream's EOF: an error code when the stream ended badly. */
  end(clientEnded: boolean): { code: string } | undefined;
}

const backlogged = (rw: UpstreamRewriter): boolean =>
  (rw.heldBytes ?? 0) > HOLD_LIMIT || (rw.unanswered ?? 0) > MAX_UNANSWERED;

/** Per-thread buffers the flows share (every call is synchronous), and the calls on descriptors. */
export class InspectScratch {
  readonly read = Buffer.allocUnsafeSlow(READ_SIZE);
  readonly write = Buffer.allocUnsafeSlow(WRITE_COALESCE);
  readonly io: InspectIo;

  constructor(io?: (s: InspectScratch) => InspectIo) {
    this.io = io ? io(this) : syscallIo(this);
  }
}

function syscallIo(s: InspectScratch): InspectIo {
  const readAddr = addressOf(s.read);
  const writeAddr = addressOf(s.write);
  const opt = Buffer.alloc(4);
  return {
    read: (fd, len) => rawRead(fd, readAddr, len),
    write: (fd, b, off, len, more) => {
      const base = b === s.write ? writeAddr : b === s.read ? readAddr : addressOf(b);
      const addr = off === 0 ? base : base + BigInt(off);
      return more ? rawSendMore(fd, addr, len) : rawWrite(fd, addr, len);
    },
    shutdown: (fd) => void rawShutdown(fd, SHUT_WR),
    push: (fd) => void rawSetsockoptInt(fd, SOL_TCP, TCP_NODELAY, 1, opt),
  };
}

export class InspectedFlow<C extends InspectedConn = InspectedConn> {
  private rw: UpstreamRewriter | undefined;
  private readonly toUp = new OutQueue();
  private readonly toClient = new OutQueue();
  private sentUp = 0;
  requests = 0;
  private rejected: string | undefined;
  private rejectedAs: InspectedReason = 'rejected';
  private rejectResponse: Buffer | undefined;
  private answered = false;
  private upstreamEndSent = false;
  private upstreamClosed = false;
  private holdPaused = false;
  /** Client reads stopped with bytes maybe left (backpressure): read again when it clears. */
  private clientStalled = false;
  private upstreamStalled = false;
  headDeadline = 0;
  lingerDeadline = 0;
  /** Handed back to the splice pump: this object is done. */
  private spliced = false;
  /** A response went to the client with MSG_MORE: its FIN (or a push) must follow this turn. */
  private corked = false;

  constructor(
    private readonly c: C,
    private readonly host: InspectHost<C>,
    private readonly s: InspectScratch,
    private readonly opts: InspectedOptions,
  ) {
    this.rw = opts.rewriter;
  }

  /** The next deadline (head timeout or linger), 0 for none. */
  get deadline(): number {
    if (this.headDeadline === 0) return this.lingerDeadline;
    if (this.lingerDeadline === 0) return this.headDeadline;
    return Math.min(this.headDeadline, this.lingerDeadline);
  }

  /** Connected: what the events taken so far say each side has to read. */
  start(client: ReadHint, upstream: ReadHint): void {
    if (client !== NO_READ) this.onClientReadable(client);
    if (upstream !== NO_READ && !this.c.closed) this.onUpstreamReadable(upstream);
  }

  onEvent(side: 0 | 1, read: ReadHint, writable: boolean): void {
    if (this.spliced) return;
    if (side === 0) {
      if (read !== NO_READ) this.onClientReadable(read);
      if (writable && !this.c.closed) this.flushClient();
    } else {
      if (read !== NO_READ) this.onUpstreamReadable(read);
      if (writable && !this.c.closed) this.flushUp();
    }
  }

  onSocketError(side: 0 | 1, error: string): void {
    if (side === 1 && this.rejected !== undefined) return this.upstreamGone();
    this.host.finish(this.c, side === 0 ? 'client-error' : 'upstream-error', error, true);
  }

  /** Bytes for the upstream that come from no client read (a node's request header): queued and written. */
  sendUp(chunks: Buffer[]): void {
    for (const b of chunks) {
      this.sentUp += b.length;
      this.toUp.push(b);
    }
    this.flushUp();
  }

  /** Head timeout and linger, from the engine's sweep. */
  onTimer(now: number): void {
    if (this.lingerDeadline > 0 && now >= this.lingerDeadline) {
      return this.host.finish(this.c, this.rejectedAs, this.rejected);
    }
    if (this.headDeadline > 0 && now >= this.headDeadline) {
      this.headDeadline = 0;
      if (this.rejected !== undefined) return;
      // We stopped reading (upstream backpressure): the client cannot finish the head.
      if (this.clientStalled) {
        this.headDeadline = now + this.opts.headTimeoutMs;
        return;
      }
      // The upstream has not seen a byte of this head: 408 after the earlier responses.
      this.reject(408, `request head not complete within ${this.opts.headTimeoutMs}ms`, RESPONSE_408, 'head-timeout');
    }
  }

  // ---- client → upstream ----

  private onClientReadable(hint: ReadHint = UNTIL_EAGAIN): void {
    const c = this.c;
    if (this.rejected !== undefined) {
      if (this.answered) this.dropClientBytes();
      return;
    }
    this.clientStalled = false;
    while (!c.up.eof && !c.closed && !this.spliced && this.rejected === undefined) {
      if (this.toUp.len > QUEUE_HIGH || this.holdPaused) {
        this.clientStalled = true;
        break;
      }
      const n = this.s.io.read(c.fds[0], READ_SIZE);
      if (n === -EAGAIN) break;
      if (n === -EINTR) continue;
      if (n < 0) return this.host.finish(this.c, 'client-error', errnoName(-n), true);
      if (n === 0) {
        this.clientEof();
        break;
      }
      // The rewriter forwards views of what it is given: each read gets its own buffer.
      const chunk = Buffer.allocUnsafe(n);
      this.s.read.copy(chunk, 0, 0, n);
      c.up.bytes += n;
      c.last = this.host.now();
      this.fromClient(chunk);
      if (n < READ_SIZE && hint === SHORT_DRAINED) break;
      if (n < READ_SIZE && hint === SHORT_EOF && !c.closed && !this.spliced && this.rejected === undefined) {
        this.clientEof();
        break;
      }
    }
    if (!c.closed && !this.spliced) this.flushUp();
  }

  private fromClient(chunk: Buffer): void {
    const rw = this.rw;
    if (!rw) {
      this.sentUp += chunk.length;
      return this.toUp.push(chunk);
    }
    const requestsBefore = rw.requests;
    this.apply(rw.push(chunk));
    this.requests = rw.requests ?? 0;
    if (this.rw === undefined || this.rejected !== undefined) return;
    if (!this.holdPaused && backlogged(this.rw)) this.holdPaused = true;
    if (this.opts.headTimeoutMs > 0) this.watchHead(requestsBefore);
  }

  /** Carry out the rewriter's verdicts: forward, switch to raw passthrough, or refuse. */
  private apply(events: RewriteEvent[]): void {
    for (const ev of events) {
      if (ev.kind === 'forward') {
        for (const b of ev.chunks) {
          this.sentUp += b.length;
          this.toUp.push(b);
        }
      } else if (ev.kind === 'passthrough') this.rw = undefined;
      else return this.reject(ev.status, ev.reason, ev.response);
    }
  }

  /** One deadline per head, from its first chunk; later chunks of it do not move it. */
  private watchHead(requestsBefore: number | undefined): void {
    const rw = this.rw;
    if (rw?.headPending) {
      if (this.headDeadline === 0 || rw.requests !== requestsBefore)
        this.headDeadline = this.host.now() + this.opts.headTimeoutMs;
    } else this.headDeadline = 0;
  }

  private clientEof(): void {
    this.c.up.eof = true;
    if (!this.rw?.heldBytes) this.upstreamEndSent = true; // the FIN follows the queue (flushUp)
    this.maybeDone();
  }

  private flushUp(): void {
    const c = this.c;
    if (this.upstreamClosed || this.spliced) return;
    const r = this.toUp.flush(c.fds[1], this.s.write, this.s.io);
    if (r < 0) {
      if (this.rejected !== undefined) return this.upstreamGone();
      return this.host.finish(this.c, 'upstream-error', errnoName(-r), true);
    }
    if (r === 0 && this.upstreamEndSent && !c.up.shut) {
      c.up.shut = true;
      // Both sides ended and the server's was relayed: the close right after sends the FIN.
      if (!(c.up.eof && this.downDone())) this.s.io.shutdown(c.fds[1]);
    }
    if (this.clientStalled && this.toUp.len <= QUEUE_HIGH && !this.holdPaused) this.onClientReadable();
    else this.maybeDone();
  }

  // ---- upstream → client ----

  private onUpstreamReadable(hint: ReadHint = UNTIL_EAGAIN): void {
    this.readUpstream(hint);
    if (!this.corked) return;
    this.corked = false;
    // No FIN or close followed the last response bytes: send them now.
    const c = this.c;
    if (!c.closed && !c.down.shut && c.fds[0] >= 0) this.s.io.push(c.fds[0]);
  }

  private readUpstream(hint: ReadHint): void {
    const c = this.c;
    this.upstreamStalled = false;
    while (!c.down.eof && !c.closed && !this.spliced && !this.upstreamClosed) {
      if (this.toClient.len > QUEUE_HIGH) {
        this.upstreamStalled = true;
        return;
      }
      const n = this.s.io.read(c.fds[1], READ_SIZE);
      if (n === -EAGAIN) return;
      if (n === -EINTR) continue;
      if (n < 0) {
        if (this.rejected !== undefined) return this.upstreamGone();
        return this.host.finish(this.c, 'upstream-error', errnoName(-n), true);
      }
      if (n === 0) return this.upstreamEof();
      c.last = this.host.now();
      if (this.opts.decoder) {
        if (!this.decodeInto(n)) return;
        continue;
      }
      c.down.bytes += n;
      // Server bytes go to the client unchanged first (no copy if the socket takes them all),
      // then may decide a held request.
      const rw = this.rw;
      const view = rw?.pushResponse !== undefined ? this.s.read.subarray(0, n) : undefined;
      // A short read after the peer's FIN was seen: the FIN follows these bytes in one segment.
      this.flushClient(n, n < READ_SIZE && hint === SHORT_EOF);
      if (view !== undefined && !c.closed) this.onResponse(view);
      if (n < READ_SIZE && hint === SHORT_DRAINED) return;
      // The FIN is next: it follows the bytes just written at once (no read to find it).
      if (n < READ_SIZE && hint === SHORT_EOF && !c.closed && !this.spliced && !this.upstreamClosed)
        return this.upstreamEof();
    }
  }

  /** A decoder's plaintext of the n bytes just read, queued and written to the client; false once the flow failed. */
  private decodeInto(n: number): boolean {
    let plain: Buffer[];
    try {
      plain = this.opts.decoder!.decode(Buffer.from(this.s.read.subarray(0, n)));
    } catch (e) {
      this.host.finish(this.c, 'upstream-error', (e as { code?: string }).code ?? 'EPROTO', true);
      return false;
    }
    // What the client gets is counted (as the JS path counts its socket's writes), not the cipher's overhead.
    for (const p of plain) {
      this.c.down.bytes += p.length;
      this.toClient.push(p);
    }
    this.flushClient();
    return !this.c.closed && !this.upstreamStalled;
  }

  private onResponse(chunk: Buffer): void {
    const rw = this.rw!;
    if (rw.pushResponse === undefined) return;
    if (this.rejected !== undefined) {
      rw.pushResponse(chunk);
      if (this.rejectResponse === undefined) return;
      if (rw.responsesComplete?.(false)) this.answerAfterResponses();
      else if (!rw.responsesFollowed && !this.upstreamEndSent) this.endUpstream(); // the framer gave up: wait for EOF
      return;
    }
    this.apply(rw.pushResponse(chunk));
    this.requests = this.rw?.requests ?? this.requests;
    if (this.rejected !== undefined) return;
    if (this.holdPaused && (this.rw === undefined || !backlogged(this.rw))) {
      this.holdPaused = false;
      this.clientStalled = true; // read what waited
    }
    if (this.c.up.eof && !this.upstreamEndSent && !this.rw?.heldBytes) this.upstreamEndSent = true;
    this.flushUp();
  }

  private upstreamEof(): void {
    const bad = this.opts.decoder?.end(this.c.up.eof);
    if (bad) return this.host.finish(this.c, 'upstream-error', bad.code, true);
    this.c.down.eof = true;
    if (this.rejected !== undefined && this.sentUp > 0) {
      // A response cut short by the EOF gets no refusal appended (it would read as body).
      const complete = this.rw?.responsesComplete?.(true) ?? true;
      return this.answerRejected(complete ? this.rejectResponse : undefined);
    }
    this.flushClient();
  }

  /** Writes what is queued for the client, after it the first `fromRead` bytes of the read buffer. */
  private flushClient(fromRead = 0, more = false): void {
    const c = this.c;
    if (this.spliced) return;
    const r =
      fromRead > 0
        ? this.toClient.send(c.fds[0], this.s.read, fromRead, this.s.write, this.s.io, more)
        : this.toClient.flush(c.fds[0], this.s.write, this.s.io);
    if (r < 0) return this.host.finish(this.c, 'client-error', errnoName(-r), true);
    if (more) this.corked = true;
    if (r === 1) return;
    if ((c.down.eof || this.answered) && !c.down.shut) {
      c.down.shut = true;
      // Both sides ended and the client's was relayed: the close right after sends the FIN.
      if (this.answered || !this.upDone()) this.s.io.shutdown(c.fds[0]);
    }
    if (this.upstreamStalled) this.onUpstreamReadable();
    if (!c.closed) this.maybeDone();
  }

  /** The server's side ended and all of it reached the client. */
  private downDone(): boolean {
    return this.c.down.eof && this.c.down.shut && this.toClient.len === 0;
  }

  /** The client's side ended and all of it reached the server. */
  private upDone(): boolean {
    return this.c.up.eof && this.c.up.shut && this.toUp.len === 0;
  }

  private endUpstream(): void {
    this.upstreamEndSent = true;
    this.flushUp();
  }

  // ---- refusals ----

  /** A bad request: answered only after the responses to the requests forwarded before it. */
  private reject(status: number, reason: string, response: Buffer, as: InspectedReason = 'rejected'): void {
    this.rejected = `${status} ${reason}`;
    this.rejectedAs = as;
    this.headDeadline = 0;
    if (this.sentUp === 0) {
      this.closeUpstream(false);
      // A server that spoke first is no HTTP server waiting for this head.
      return this.answerRejected(as === 'head-timeout' && this.c.down.bytes > 0 ? undefined : response);
    }
    this.rejectResponse = response;
    const rw = this.rw;
    if (rw?.responsesComplete?.(false)) return this.answerAfterResponses();
    // The upstream is not half-closed while the framer can follow it (servers abort a
    // response in flight when the client's side ends).
    if (!rw?.responsesFollowed && !this.upstreamEndSent) this.endUpstream();
  }

  private answerAfterResponses(): void {
    // A reset, not a FIN: a server must not parse an unfinished line at EOF as a request.
    this.closeUpstream(true);
    this.answerRejected(this.rejectResponse);
  }

  /** The upstream closed or failed without EOF while a refusal waits. */
  private upstreamGone(): void {
    this.closeUpstream(false);
    this.answerRejected(this.rw?.responsesComplete?.(false) ? this.rejectResponse : undefined);
  }

  private closeUpstream(reset: boolean): void {
    if (this.upstreamClosed) return;
    this.upstreamClosed = true;
    this.host.closeUpstream(this.c, reset);
  }

  private answerRejected(response: Buffer | undefined): void {
    if (this.answered) return;
    this.answered = true;
    this.closeUpstream(false);
    if (response) this.toClient.push(response);
    // A refused client may never close its side: read and drop what it still sends for a
    // moment (closing with unread bytes would reset the answer in flight), then close.
    this.lingerDeadline = this.host.now() + LINGER_MS;
    this.flushClient();
    if (!this.c.closed) this.dropClientBytes();
  }

  private dropClientBytes(): void {
    const c = this.c;
    for (;;) {
      const n = this.s.io.read(c.fds[0], READ_SIZE);
      if (n === -EINTR) continue;
      if (n === -EAGAIN) return;
      if (n > 0) {
        c.up.bytes += n;
        continue;
      }
      c.up.eof = true;
      return this.maybeDone();
    }
  }

  private maybeDone(): void {
    const c = this.c;
    if (c.closed || this.spliced) return;
    if (this.answered) {
      if (c.up.eof && this.toClient.len === 0) this.host.finish(this.c, this.rejectedAs, this.rejected);
      return;
    }
    if (this.rw === undefined && this.toUp.len === 0 && this.toClient.len === 0 && !c.up.eof && !c.down.eof) {
      this.spliced = true;
      return this.host.toSplice(this.c);
    }
    if (c.up.eof && c.down.eof && c.up.shut && c.down.shut && this.toUp.len === 0 && this.toClient.len === 0)
      this.host.finish(this.c, 'eof');
  }
}
