// The byte pump between an accepted client socket and its upstream socket.
// Both directions honour backpressure (pause the reader while the writer's buffer is full),
// half-close (an EOF from one side becomes a FIN to the other, the other direction goes on),
// an idle timeout over both directions, and an optional rewriter on the client→server path
// with a deadline for each request head it is gathering (against slowloris).
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RESPONSE_408, type RewriteEvent } from '../http/rewriter.js';

export type CloseReason = 'eof' | 'idle' | 'head-timeout' | 'client-error' | 'upstream-error' | 'rejected' | 'aborted';

export interface RelayResult {
  bytesUp: number; // client → server, as read from the client
  bytesDown: number; // server → client
  reason: CloseReason;
  error?: string;
}

// What the rewriter tells the relay to do with the client's bytes (src/http/rewriter.ts).
export type { RewriteEvent };

/** Rewrites the client→server stream (the HTTP head rewriter implements this). */
export interface UpstreamRewriter {
  push(chunk: Buffer): RewriteEvent[];
  /** Requests rewritten so far, for logs. */
  readonly requests?: number;
  /**
   * True while a request head has begun but not ended: its bytes are held by the rewriter,
   * not forwarded. Read after each push; drives the head-read timeout.
   */
  readonly headPending?: boolean;
  /**
   * Server bytes (forwarded to the client unchanged first). Returns what to do with client
   * bytes the rewriter held while the server had not yet answered an Upgrade/CONNECT.
   */
  pushResponse?(chunk: Buffer): RewriteEvent[];
  /** Client bytes held (the relay stops reading the client above HOLD_LIMIT). */
  readonly heldBytes?: number;
  /** Requests forwarded and not yet answered in full (the relay stops reading above MAX_UNANSWERED). */
  readonly unanswered?: number;
  /** Every forwarded request has been answered in full: a refusal may be written now. */
  responsesComplete?(eof: boolean): boolean;
  /** responsesComplete will become true by itself (the responses can be followed). */
  readonly responsesFollowed?: boolean;
}

/** Client bytes held while an Upgrade/CONNECT awaits its answer before the client is paused. */
const HOLD_LIMIT = 65536;
/** Pipelined requests without a complete response before the client is paused (bounds the framer's queue). */
const MAX_UNANSWERED = 4096;
const backlogged = (rw: UpstreamRewriter): boolean =>
  (rw.heldBytes ?? 0) > HOLD_LIMIT || (rw.unanswered ?? 0) > MAX_UNANSWERED;

export interface RelayOptions {
  idleTimeoutMs: number;
  /**
   * With a rewriter that reports `headPending`: a request head must be complete this long
   * after the push that began it, else the client gets 408 and both sides close
   * ('head-timeout'). Bytes dripping in do not extend it. 0 or absent: no limit.
   */
  headTimeoutMs?: number;
  rewriter?: UpstreamRewriter;
  /** Bytes already read from the client (e.g. by a sniffer) that must go upstream first. */
  head?: Buffer;
}

/** `upstream` is a socket, or any duplex stream an outbound returns (e.g. an encrypted one). */
export function relay(client: Socket, upstream: Duplex, opts: RelayOptions): Promise<RelayResult> {
  return new Promise((resolve) => new RelayedConnection(client, upstream, opts, resolve).start());
}

const flushed = (s: Duplex): boolean => s.writableFinished || s.destroyed;

/** One relayed connection: what both directions share, and the handlers of their events. */
class RelayedConnection {
  private readonly client: Socket;
  private readonly upstream: Duplex;
  private readonly opts: RelayOptions;
  private readonly resolve: (result: RelayResult) => void;
  private readonly headTimeoutMs: number;
  private bytesUp = 0;
  private bytesDown = 0;
  /** Bytes written upstream (after rewriting). */
  private sentUp = 0;
  /** Monotonic (a wall-clock step must not end or prolong the idle timeout). */
  private lastActivity = performance.now();
  private clientEnded = false;
  private upstreamEnded = false;
  private upstreamEndSent = false;
  private settled = false;
  private rewriter: UpstreamRewriter | undefined;
  /** Set when the rewriter refused the client's bytes. */
  private rejected: string | undefined = undefined;
  private rejectedAs: CloseReason = 'rejected'; // or 'head-timeout'
  /** The refusal written once the responses in flight are complete. */
  private rejectResponse: Buffer | undefined = undefined;
  /** Runs only while a head is incomplete. */
  private headTimer: NodeJS.Timeout | undefined = undefined;
  /** Client paused for upstream backpressure. */
  private clientPaused = false;
  /** Client paused because the rewriter holds too much; resumed when the server has answered. */
  private holdPaused = false;
  private upstreamPaused = false;

  constructor(client: Socket, upstream: Duplex, opts: RelayOptions, resolve: (result: RelayResult) => void) {
    this.client = client;
    this.upstream = upstream;
    this.opts = opts;
    this.resolve = resolve;
    this.headTimeoutMs = opts.headTimeoutMs ?? 0;
    this.rewriter = opts.rewriter;
  }

  start(): void {
    const { client, upstream, opts } = this;
    // Small replies (an encrypted node's, a rewritten head) must not wait behind Nagle.
    client.setNoDelay(true);
    client.on('data', this.onClientData);
    client.on('end', this.onClientEnd);
    upstream.on('data', this.onUpstreamData);
    upstream.on('end', this.onUpstreamEnd);
    client.on('error', this.onClientError);
    upstream.on('error', this.onUpstreamError);
    // A close without error or both EOFs (e.g. destroyed from outside) still settles.
    client.on('close', this.onClientClose);
    upstream.on('close', this.onUpstreamClose);
    // One timer per connection: the client socket's own idle timer, re-armed while the
    // other direction is still busy.
    client.setTimeout(opts.idleTimeoutMs, this.onIdle);
    if (opts.head && opts.head.length > 0) this.onClientData(opts.head);
    if (client.readableEnded) {
      // The client's EOF arrived while its first bytes were being peeked (sniffing):
      // its 'end' event is gone, so forward the half-close now.
      this.clientEnded = true;
      if (!this.upstreamEndSent) this.endUpstream();
    }
    client.resume();
  }

  private finish(reason: CloseReason, error?: string): void {
    if (this.settled) return;
    this.settled = true;
    this.client.setTimeout(0);
    if (this.headTimer !== undefined) clearTimeout(this.headTimer);
    this.resolve({ bytesUp: this.bytesUp, bytesDown: this.bytesDown, reason, ...(error ? { error } : {}) });
  }

  private fail(reason: CloseReason, err: Error): void {
    // Propagate an abortive close as a reset so the peer sees it as one, not as a clean EOF.
    resetOrDestroy(reason === 'client-error' ? this.upstream : this.client);
    resetOrDestroy(reason === 'client-error' ? this.client : this.upstream);
    this.finish(reason, (err as NodeJS.ErrnoException).code ?? err.message);
  }

  private readonly maybeDone = (): void => {
    if (!this.clientEnded || !this.upstreamEnded || this.settled) return;
    const { client, upstream } = this;
    // Both EOFs seen: close once what is still queued for either side has been handed to
    // the kernel (destroy() now would drop the tail of the last response).
    if (flushed(client) && flushed(upstream)) {
      client.destroy();
      upstream.destroy();
      this.finish(this.rejected ? this.rejectedAs : 'eof', this.rejected);
      return;
    }
    for (const s of [client, upstream]) if (!flushed(s)) s.once('finish', this.maybeDone);
  };

  // ---- client → upstream ----

  private readonly resumeClient = (): void => {
    this.clientPaused = false;
    if (!this.holdPaused) this.client.resume();
  };

  private writeUp(chunk: Buffer): void {
    if (!this.upstream.write(chunk) && !this.clientPaused) {
      this.clientPaused = true;
      this.client.pause();
      this.upstream.once('drain', this.resumeClient);
    }
  }

  private readonly onClientData = (chunk: Buffer): void => {
    this.bytesUp += chunk.length;
    this.lastActivity = performance.now();
    const rewriter = this.rewriter;
    if (!rewriter) {
      this.sentUp += chunk.length;
      return this.writeUp(chunk);
    }
    const requestsBefore = rewriter.requests;
    this.applyEvents(rewriter.push(chunk));
    if (this.rewriter === undefined || this.rejected !== undefined) return;
    if (!this.holdPaused && backlogged(this.rewriter)) {
      this.holdPaused = true; // resumed when the server has answered (pushResponse)
      this.client.pause();
    }
    if (this.headTimeoutMs > 0) this.watchHead(requestsBefore);
  };

  /** Carry out the rewriter's verdicts: forward, switch to raw passthrough, or refuse. */
  private applyEvents(events: RewriteEvent[]): void {
    if (events.length === 0) return;
    const upstream = this.upstream;
    upstream.cork(); // one writev for head pieces + body
    try {
      for (const ev of events) {
        if (ev.kind === 'forward') {
          for (const c of ev.chunks) {
            this.sentUp += c.length;
            this.writeUp(c);
          }
        } else if (ev.kind === 'passthrough') this.rewriter = undefined;
        else return this.reject(ev.status, ev.reason, ev.response);
      }
    } finally {
      upstream.uncork();
    }
  }

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    // Held bytes still go up if the server declines or accepts the switch: end after them.
    if (!this.rewriter?.heldBytes && !this.upstreamEndSent) this.endUpstream();
    this.maybeDone();
  };

  private endUpstream(): void {
    this.upstreamEndSent = true;
    this.upstream.end();
  }

  // ---- upstream → client ----

  private readonly resumeUpstream = (): void => {
    this.upstreamPaused = false;
    this.upstream.resume();
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    this.bytesDown += chunk.length;
    this.lastActivity = performance.now();
    if (!this.client.write(chunk) && !this.upstreamPaused) {
      this.upstreamPaused = true;
      this.upstream.pause();
      this.client.once('drain', this.resumeUpstream);
    }
    if (this.rewriter !== undefined) this.onResponseData(chunk);
  };

  /**
   * Server bytes on a rewritten connection: they may decide a held Upgrade/CONNECT, or
   * complete the last response before a pending refusal.
   */
  private onResponseData(chunk: Buffer): void {
    const rw = this.rewriter;
    if (rw?.pushResponse === undefined) return;
    if (this.rejected !== undefined) {
      rw.pushResponse(chunk);
      if (this.rejectResponse === undefined) return;
      if (rw.responsesComplete?.(false)) this.answerAfterResponses();
      else if (!rw.responsesFollowed && !this.upstreamEndSent) this.endUpstream(); // the framer gave up: wait for EOF
      return;
    }
    this.applyEvents(rw.pushResponse(chunk));
    if (this.rejected !== undefined) return;
    if (this.holdPaused && (this.rewriter === undefined || !backlogged(this.rewriter))) {
      this.holdPaused = false;
      if (!this.clientPaused) this.client.resume();
    }
    if (this.clientEnded && !this.upstreamEndSent && !this.rewriter?.heldBytes) this.endUpstream();
  }

  private readonly onUpstreamEnd = (): void => {
    this.upstreamEnded = true;
    if (this.rejected !== undefined && this.sentUp > 0) {
      // A response cut short by the EOF gets no refusal appended (it would read as body).
      return void this.answerRejected(this.completeAtEof() ? this.rejectResponse : undefined);
    }
    this.client.end();
    this.maybeDone();
  };

  // ---- head-read timeout ----

  // A head that arrives whole in one chunk (the usual case) never starts a timer; one split
  // across chunks gets a single timer from its first chunk, which later chunks of the same
  // head leave alone (a client dripping bytes cannot push the deadline) and a new head
  // restarts. No timer while idle between requests or while a body streams: the rewriter
  // holds no head then.
  private watchHead(requestsBefore: number | undefined): void {
    if (this.rewriter?.headPending) {
      if (this.headTimer === undefined) this.headTimer = setTimeout(this.onHeadTimeout, this.headTimeoutMs);
      else if (this.rewriter.requests !== requestsBefore) this.headTimer.refresh(); // that head ended, this one began
    } else if (this.headTimer !== undefined) {
      clearTimeout(this.headTimer);
      this.headTimer = undefined;
    }
  }

  private readonly onHeadTimeout = (): void => {
    this.headTimer = undefined;
    if (this.settled || this.rejected !== undefined) return;
    if (this.clientPaused) {
      // We stopped reading (upstream backpressure): the client cannot finish the head.
      this.headTimer = setTimeout(this.onHeadTimeout, this.headTimeoutMs);
      return;
    }
    // The upstream has not seen a byte of this head (the rewriter holds it), so nothing
    // it sent can be a response to it: 408 after the responses to earlier requests.
    this.reject(408, `request head not complete within ${this.headTimeoutMs}ms`, RESPONSE_408, 'head-timeout');
  };

  // ---- refusals ----

  /**
   * A bad request: answer it, but only after the responses to the requests forwarded
   * before it (pipelining), so the client sees responses in order.
   */
  private reject(status: number, reason: string, response: Buffer, as: CloseReason = 'rejected'): void {
    const { client, upstream, rewriter } = this;
    this.rejected = `${status} ${reason}`;
    this.rejectedAs = as;
    if (this.headTimer !== undefined) clearTimeout(this.headTimer);
    this.headTimer = undefined;
    client.removeListener('data', this.onClientData);
    client.pause();
    if (this.sentUp === 0) {
      upstream.destroy();
      // A server that spoke first (bytesDown > 0) is no HTTP server waiting for this head.
      return this.answerRejected(as === 'head-timeout' && this.bytesDown > 0 ? undefined : response);
    }
    this.rejectResponse = response;
    // The refusal goes to the client only once every response in flight is complete (the
    // response framer says so, here or as server bytes arrive; else at the server's EOF):
    // written earlier it would land in the middle of a response body. The upstream is not
    // half-closed while the framer can follow it: servers (nginx) abort a response in
    // flight when the client's side ends.
    if (rewriter?.responsesComplete?.(false)) return this.answerAfterResponses();
    if (!rewriter?.responsesFollowed && !this.upstreamEndSent) this.endUpstream(); // the server answers, then closes
    upstream.once('close', () => {
      // Closed without EOF (reset, or by us): a refusal only if nothing was cut short.
      if (!client.writableEnded) {
        this.answerRejected(this.rewriter?.responsesComplete?.(false) ? this.rejectResponse : undefined);
      }
    });
  }

  private completeAtEof(): boolean {
    return this.rewriter?.responsesComplete?.(true) ?? true;
  }

  private answerAfterResponses(): void {
    // A reset, not a FIN: a server must not parse an unfinished line at EOF as a request.
    resetOrDestroy(this.upstream);
    if (!this.client.writableEnded) this.answerRejected(this.rejectResponse);
  }

  private answerRejected(response: Buffer | undefined): void {
    const client = this.client;
    if (response) client.end(response);
    else client.end();
    // A refused or slow client may never close its side (nor stop sending a body we will
    // not forward). Read and drop what it still sends for a moment (closing with unread
    // bytes would reset the connection, and the reset can destroy the answer in flight),
    // then close: it must not hold the socket until the idle timeout.
    client.resume();
    const t = setTimeout(() => client.destroy(), LINGER_MS);
    client.once('close', () => clearTimeout(t));
  }

  // ---- errors, closes, idleness ----

  private readonly onClientError = (e: Error): void => this.fail('client-error', e);

  private readonly onUpstreamError = (e: Error): void => {
    if (this.rejected) this.upstream.destroy();
    else this.fail('upstream-error', e);
  };

  private readonly onClientClose = (): void => {
    if (this.rejected) this.finish(this.rejectedAs, this.rejected);
    else if (this.clientEnded && this.upstreamEnded)
      this.maybeDone(); // closed while flushing
    else if (!this.settled) {
      this.upstream.destroy();
      this.finish('aborted');
    }
  };

  private readonly onUpstreamClose = (): void => {
    if (this.clientEnded && this.upstreamEnded)
      this.maybeDone(); // closed while flushing
    else if (!this.settled && !this.upstreamEnded && !this.rejected) {
      this.client.destroy();
      this.finish('aborted');
    }
  };

  private readonly onIdle = (): void => {
    const idleTimeoutMs = this.opts.idleTimeoutMs;
    const quiet = performance.now() - this.lastActivity;
    if (quiet >= idleTimeoutMs) {
      this.client.destroy();
      this.upstream.destroy();
      this.finish('idle');
    } else {
      this.client.setTimeout(idleTimeoutMs - quiet + 1, this.onIdle);
    }
  };
}

/** How long a client answered 408 may take to close its side before we close the socket. */
const LINGER_MS = 2000;

function resetOrDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream instanceof Socket && !stream.connecting) stream.resetAndDestroy();
  else stream.destroy();
}
