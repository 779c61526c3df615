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
  return new Promise((resolve) => {
    let bytesUp = 0;
    let bytesDown = 0;
    let lastActivity = Date.now();
    let clientEnded = false;
    let upstreamEnded = false;
    let settled = false;
    let rewriter = opts.rewriter;
    let rejected: string | undefined; // set when the rewriter refused the client's bytes
    let rejectedAs: CloseReason = 'rejected'; // or 'head-timeout'
    const headTimeoutMs = opts.headTimeoutMs ?? 0;
    let headTimer: NodeJS.Timeout | undefined; // runs only while a head is incomplete
    // Small replies (an encrypted node's, a rewritten head) must not wait behind Nagle.
    client.setNoDelay(true);

    const finish = (reason: CloseReason, error?: string): void => {
      if (settled) return;
      settled = true;
      client.setTimeout(0);
      if (headTimer !== undefined) clearTimeout(headTimer);
      resolve({ bytesUp, bytesDown, reason, ...(error ? { error } : {}) });
    };

    const fail = (reason: CloseReason, err: Error): void => {
      // Propagate an abortive close as a reset so the peer sees it as one, not as a clean EOF.
      resetOrDestroy(reason === 'client-error' ? upstream : client);
      resetOrDestroy(reason === 'client-error' ? client : upstream);
      finish(reason, (err as NodeJS.ErrnoException).code ?? err.message);
    };

    const maybeDone = (): void => {
      if (!clientEnded || !upstreamEnded || settled) return;
      // Both EOFs seen: close once what is still queued for either side has been handed to
      // the kernel (destroy() now would drop the tail of the last response).
      const flushed = (s: Duplex): boolean => s.writableFinished || s.destroyed;
      if (flushed(client) && flushed(upstream)) {
        client.destroy();
        upstream.destroy();
        finish(rejected ? rejectedAs : 'eof', rejected);
        return;
      }
      for (const s of [client, upstream]) if (!flushed(s)) s.once('finish', maybeDone);
    };

    // client → upstream
    let clientPaused = false;
    const resumeClient = (): void => {
      clientPaused = false;
      if (!holdPaused) client.resume();
    };
    const writeUp = (chunk: Buffer): void => {
      if (!upstream.write(chunk) && !clientPaused) {
        clientPaused = true;
        client.pause();
        upstream.once('drain', resumeClient);
      }
    };
    let sentUp = 0; // bytes written upstream (after rewriting)
    const onClientData = (chunk: Buffer): void => {
      bytesUp += chunk.length;
      lastActivity = Date.now();
      if (!rewriter) {
        sentUp += chunk.length;
        return writeUp(chunk);
      }
      const requestsBefore = rewriter.requests;
      applyEvents(rewriter.push(chunk));
      if (rewriter === undefined || rejected !== undefined) return;
      if (!holdPaused && backlogged(rewriter)) {
        holdPaused = true; // resumed when the server has answered (pushResponse)
        client.pause();
      }
      if (headTimeoutMs > 0) watchHead(requestsBefore);
    };
    // Carry out the rewriter's verdicts: forward, switch to raw passthrough, or refuse.
    const applyEvents = (events: RewriteEvent[]): void => {
      if (events.length === 0) return;
      upstream.cork(); // one writev for head pieces + body
      try {
        for (const ev of events) {
          if (ev.kind === 'forward') {
            for (const c of ev.chunks) {
              sentUp += c.length;
              writeUp(c);
            }
          } else if (ev.kind === 'passthrough') rewriter = undefined;
          else return reject(ev.status, ev.reason, ev.response);
        }
      } finally {
        upstream.uncork();
      }
    };
    let holdPaused = false;
    // Server bytes on a rewritten connection: they may decide a held Upgrade/CONNECT, or
    // complete the last response before a pending refusal.
    const onResponseData = (chunk: Buffer): void => {
      const rw = rewriter;
      if (rw?.pushResponse === undefined) return;
      if (rejected !== undefined) {
        rw.pushResponse(chunk);
        if (rejectResponse === undefined) return;
        if (rw.responsesComplete?.(false)) answerAfterResponses();
        else if (!rw.responsesFollowed && !upstreamEndSent) endUpstream(); // the framer gave up: wait for EOF
        return;
      }
      applyEvents(rw.pushResponse(chunk));
      if (rejected !== undefined) return;
      if (holdPaused && (rewriter === undefined || !backlogged(rewriter))) {
        holdPaused = false;
        if (!clientPaused) client.resume();
      }
      if (clientEnded && !upstreamEndSent && !rewriter?.heldBytes) endUpstream();
    };
    let upstreamEndSent = false;
    const endUpstream = (): void => {
      upstreamEndSent = true;
      upstream.end();
    };

    // Head-read timeout. A head that arrives whole in one chunk (the usual case) never
    // starts a timer; one split across chunks gets a single timer from its first chunk,
    // which later chunks of the same head leave alone (a client dripping bytes cannot push
    // the deadline) and a new head restarts. No timer while idle between requests or while
    // a body streams: the rewriter holds no head then.
    const watchHead = (requestsBefore: number | undefined): void => {
      if (rewriter?.headPending) {
        if (headTimer === undefined) headTimer = setTimeout(onHeadTimeout, headTimeoutMs);
        else if (rewriter.requests !== requestsBefore) headTimer.refresh(); // that head ended, this one began
      } else if (headTimer !== undefined) {
        clearTimeout(headTimer);
        headTimer = undefined;
      }
    };
    const onHeadTimeout = (): void => {
      headTimer = undefined;
      if (settled || rejected !== undefined) return;
      if (clientPaused) {
        // We stopped reading (upstream backpressure): the client cannot finish the head.
        headTimer = setTimeout(onHeadTimeout, headTimeoutMs);
        return;
      }
      // The upstream has not seen a byte of this head (the rewriter holds it), so nothing
      // it sent can be a response to it: 408 after the responses to earlier requests.
      reject(408, `request head not complete within ${headTimeoutMs}ms`, RESPONSE_408, 'head-timeout');
    };
    // A bad request: answer it, but only after the responses to the requests forwarded
    // before it (pipelining), so the client sees responses in order.
    let rejectResponse: Buffer | undefined;
    const reject = (status: number, reason: string, response: Buffer, as: CloseReason = 'rejected'): void => {
      rejected = `${status} ${reason}`;
      rejectedAs = as;
      if (headTimer !== undefined) clearTimeout(headTimer);
      headTimer = undefined;
      client.removeListener('data', onClientData);
      client.pause();
      if (sentUp === 0) {
        upstream.destroy();
        // A server that spoke first (bytesDown > 0) is no HTTP server waiting for this head.
        return answerRejected(as === 'head-timeout' && bytesDown > 0 ? undefined : response);
      }
      rejectResponse = response;
      // The refusal goes to the client only once every response in flight is complete (the
      // response framer says so, here or as server bytes arrive; else at the server's EOF):
      // written earlier it would land in the middle of a response body. The upstream is not
      // half-closed while the framer can follow it: servers (nginx) abort a response in
      // flight when the client's side ends.
      if (rewriter?.responsesComplete?.(false)) return answerAfterResponses();
      if (!rewriter?.responsesFollowed && !upstreamEndSent) endUpstream(); // the server answers, then closes
      upstream.once('close', () => {
        // Closed without EOF (reset, or by us): a refusal only if nothing was cut short.
        if (!client.writableEnded) answerRejected(rewriter?.responsesComplete?.(false) ? rejectResponse : undefined);
      });
    };
    const completeAtEof = (): boolean => rewriter?.responsesComplete?.(true) ?? true;
    const answerAfterResponses = (): void => {
      // A reset, not a FIN: a server must not parse an unfinished line at EOF as a request.
      resetOrDestroy(upstream);
      if (!client.writableEnded) answerRejected(rejectResponse);
    };
    const answerRejected = (response: Buffer | undefined): void => {
      if (response) client.end(response);
      else client.end();
      // A refused or slow client may never close its side (nor stop sending a body we will
      // not forward). Read and drop what it still sends for a moment (closing with unread
      // bytes would reset the connection, and the reset can destroy the answer in flight),
      // then close: it must not hold the socket until the idle timeout.
      client.resume();
      const t = setTimeout(() => client.destroy(), LINGER_MS);
      client.once('close', () => clearTimeout(t));
    };
    client.on('data', onClientData);
    client.on('end', () => {
      clientEnded = true;
      // Held bytes still go up if the server declines or accepts the switch: end after them.
      if (!rewriter?.heldBytes && !upstreamEndSent) endUpstream();
      maybeDone();
    });

    // upstream → client
    let upstreamPaused = false;
    const resumeUpstream = (): void => {
      upstreamPaused = false;
      upstream.resume();
    };
    upstream.on('data', (chunk: Buffer) => {
      bytesDown += chunk.length;
      lastActivity = Date.now();
      if (!client.write(chunk) && !upstreamPaused) {
        upstreamPaused = true;
        upstream.pause();
        client.once('drain', resumeUpstream);
      }
      if (rewriter !== undefined) onResponseData(chunk);
    });
    upstream.on('end', () => {
      upstreamEnded = true;
      if (rejected !== undefined && sentUp > 0) {
        // A response cut short by the EOF gets no refusal appended (it would read as body).
        return void answerRejected(completeAtEof() ? rejectResponse : undefined);
      }
      client.end();
      maybeDone();
    });

    client.on('error', (e) => fail('client-error', e));
    upstream.on('error', (e) => (rejected ? upstream.destroy() : fail('upstream-error', e)));
    // A close without error or both EOFs (e.g. destroyed from outside) still settles.
    client.on('close', () => {
      if (rejected) finish(rejectedAs, rejected);
      else if (clientEnded && upstreamEnded)
        maybeDone(); // closed while flushing
      else if (!settled) {
        upstream.destroy();
        finish('aborted');
      }
    });
    upstream.on('close', () => {
      if (clientEnded && upstreamEnded)
        maybeDone(); // closed while flushing
      else if (!settled && !upstreamEnded && !rejected) {
        client.destroy();
        finish('aborted');
      }
    });

    // One timer per connection: the client socket's own idle timer, re-armed while the
    // other direction is still busy.
    client.setTimeout(opts.idleTimeoutMs, function onIdle() {
      const quiet = Date.now() - lastActivity;
      if (quiet >= opts.idleTimeoutMs) {
        client.destroy();
        upstream.destroy();
        finish('idle');
      } else {
        client.setTimeout(opts.idleTimeoutMs - quiet + 1, onIdle);
      }
    });

    if (opts.head && opts.head.length > 0) onClientData(opts.head);
    if (client.readableEnded) {
      // The client's EOF arrived while its first bytes were being peeked (sniffing):
      // its 'end' event is gone, so forward the half-close now.
      clientEnded = true;
      if (!upstreamEndSent) endUpstream();
    }
    client.resume();
  });
}

/** How long a client answered 408 may take to close its side before we close the socket. */
const LINGER_MS = 2000;

function resetOrDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream instanceof Socket && !stream.connecting) stream.resetAndDestroy();
  else stream.destroy();
}
