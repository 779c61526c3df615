// Streaming HTTP/1.1 request-head rewriter (client → server direction only).
//
// Why this shape: the proxy must stamp headers into every request at nginx speed, so the
// rewriter never parses or rebuilds what it does not change. Per request it locates the
// head, validates just enough to frame messages safely (request line, field syntax,
// Content-Length / Transfer-Encoding / Upgrade), drops the lines it replaces, and appends
// the pre-rendered block from `compileInjectConfig` before the blank line. Everything it
// forwards is a `subarray` view of the buffers it was given: kept header lines, bodies,
// chunk framing. Bodies are skipped by arithmetic (Content-Length, chunk sizes), never
// scanned or copied; only the few framing bytes of chunked encoding are read one by one.
// The one copy: a head that arrives split across pushes is gathered into a small buffer
// (bounded by maxHeadBytes) so it can be validated contiguously; the bytes of a head never
// stay referenced inside the caller's buffers between pushes.
//
// Framing is strict where proxies and servers are known to disagree (request smuggling):
// obs-fold, CL+TE, duplicate CL, TE whose final coding is not chunked, TE in HTTP/1.0,
// bare CR, and — inside chunked bodies — bare LF and control characters in chunk lines are
// all rejected. Heads may use bare LF line endings (the client's endings are kept).
//
// Caller contract (the relay): forwarded chunks are views into the pushed buffers, so a
// pushed buffer must not be reused until those writes complete. Events and their arrays
// belong to the caller and may be kept (e.g. queued while the upstream connects); a push
// with nothing to forward returns a shared frozen empty array. (Measured: allocating the
// one small result array is cheaper in V8 than resetting a reused one's length.)
//
// Policy on an injection port (SECURITY.md): a connection whose first byte could start an
// HTTP/1.x request is HTTP for good: every request is stamped or the connection is refused.
// Only the server turns it into something else (101 to an Upgrade, 2xx to CONNECT, read by
// ResponseFramer from the bytes the relay feeds to pushResponse); until it has answered,
// client bytes after such a request are held (the relay bounds them by pausing the client),
// and stamped as further requests if the server declines. h2c is refused unless allowed.

import {
  type CompiledInject,
  type NameEntry,
  FOLD,
  KIND_CONTENT_LENGTH,
  KIND_REPLACE,
  KIND_TRANSFER_ENCODING,
  KIND_UPGRADE,
  KIND_XFF,
  LOWER,
  TCHAR,
} from './inject-config.js';
import { FR_NONE, FR_SWITCHED, REQ_CONNECT, REQ_HEAD, REQ_UPGRADE, ResponseFramer } from './response-framer.js';

export type RewriteEvent =
  | { kind: 'forward'; chunks: Buffer[] }
  | { kind: 'passthrough' }
  | { kind: 'reject'; status: 400 | 431; reason: string; response: Buffer };

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;
const COMMA = 0x2c;
const DEL = 0x7f;

/**
 * First bytes of a connection that cannot begin an HTTP/1.x method: neither a tchar nor a
 * byte some parser skips as whitespace (HT, LF, VT, FF, CR, SP, and 0x1C-0x1F, 0x85, 0xA0,
 * which Python's str.split() skips). A TLS record starts with 0x14-0x17. Any other first
 * byte commits the connection to HTTP. (Python's http.server still takes "\x16GET / HTTP/1.1"
 * as a request: hence the first-line watch in passthrough, see watchFirstLine.)
 */
const NON_HTTP = new Uint8Array(256);
for (let b = 0; b < 256; b++) NON_HTTP[b] = TCHAR[b] === 1 ? 0 : 1;
for (const b of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0]) NON_HTTP[b] = 0;
/** A first line longer than this is refused by the lenient parsers too (python: 65536). */
const MAX_FIRST_LINE = 65537;
const HTTP_SLASH = Buffer.from('HTTP/', 'latin1');
/** Longest chunk-size line (size + extensions) accepted; guards against endless extensions. */
const MAX_CHUNK_LINE = 16384;

export const RESPONSE_400 = Buffer.from(
  'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
  'latin1',
);
export const RESPONSE_431 = Buffer.from(
  'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
  'latin1',
);
/** What a refused non-HTTP connection (--http-only) is told: nothing, it is closed. */
const NO_RESPONSE = Buffer.alloc(0);
const NO_BYTES = Buffer.alloc(0);
/** The relay's answer to a head that did not arrive within --head-timeout. */
export const RESPONSE_408 = Buffer.from(
  'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
  'latin1',
);

const HEX = new Uint8Array(256).fill(255);
for (let b = 0; b < 10; b++) HEX[0x30 + b] = b;
for (let b = 0; b < 6; b++) {
  HEX[0x41 + b] = 10 + b;
  HEX[0x61 + b] = 10 + b;
}

const CHUNKED = Buffer.from('chunked', 'latin1');
const H2C = Buffer.from('h2c', 'latin1');

/** b[s, e) is a comma list containing `lower` as an element (case-insensitive). */
function hasToken(b: Buffer, s: number, e: number, lower: Buffer): boolean {
  let j = s;
  while (j < e) {
    while (j < e && (b[j] === SP || b[j] === HT || b[j] === COMMA)) j++;
    let k = j;
    while (k < e && b[k] !== COMMA) k++;
    let ke = k;
    while (ke > j && (b[ke - 1] === SP || b[ke - 1] === HT)) ke--;
    if (ke - j === lower.length) {
      let q = 0;
      while (q < lower.length && LOWER[b[j + q] as number] === lower[q]) q++;
      if (q === lower.length) return true;
    }
    j = k;
  }
  return false;
}

// Parser states.
const S_HEAD = 0; // expecting (or inside) a request head
const S_BODY = 1; // Content-Length body: `remaining` bytes
const S_CS = 2; // chunk size digits
const S_CEXT = 3; // chunk extensions (after ';' or BWS)
const S_CS_LF = 4; // LF ending the chunk-size line
const S_CDATA = 5; // chunk data: `remaining` bytes
const S_CDATA_CR = 6; // CR after chunk data
const S_CDATA_LF = 7; // LF after chunk data
const S_TR_START = 8; // start of a trailer line (or the final CRLF)
const S_TR_NAME = 9; // trailer field name
const S_TR_VALUE = 10; // trailer field value
const S_TR_LF = 11; // LF ending a trailer line
const S_TR_END_LF = 12; // LF ending the message
const S_HOLD = 13; // after an Upgrade/CONNECT request: client bytes held until the server answers
const S_WATCH = 14; // non-HTTP start: raw, but the first line must not hold "HTTP/"
const S_PASS = 15; // passthrough: raw relay
const S_DEAD = 16; // rejected

// Request-line verdicts.
const RL_BAD = -1;
const RL_VERSION = -2;
const RL_H2 = -3;

// Per-head scratch, shared by all rewriters: push() is synchronous and never re-entered,
// so one pair of arrays serves every connection (less memory per idle connection).
// Pairs of offsets; only the first nDrops / nXff entries of a head are meaningful.
const drops: number[] = [];
const xffVals: number[] = [];
let nDrops = 0;
let nXff = 0;

// What scanFields found in the head's field lines (scratch shared like drops).
let fContentLength = -1;
let fTe = false;
let fTeChunked = false;
/** A coding follows chunked. */
let fTeBad = false;
let fUpgrade = false;
let fH2c = false;
/** Why scanFields refused the head. */
let fieldError = '';

function fieldFails(reason: string): number {
  fieldError = reason;
  return -1;
}

/**
 * Scan the field lines of a head from b[p]: note the framing facts and the lines to drop.
 * Returns the start of the blank line, or -1 with fieldError set.
 */
function scanFields(b: Buffer, p: number, byLen: CompiledInject['byLen']): number {
  nDrops = 0;
  nXff = 0;
  fContentLength = -1;
  fTe = false;
  fTeChunked = false;
  fTeBad = false;
  fUpgrade = false;
  fH2c = false;
  for (let first = true; ; first = false) {
    const ls = p;
    let x = b[p];
    if (x === LF) return p;
    if (x === CR) return b[p + 1] === LF ? p : fieldFails('bare CR in request head');
    if (x === SP || x === HT) {
      return fieldFails(
        first ? 'whitespace before the first header line' : 'obsolete line folding (obs-fold) in header',
      );
    }
    while (TCHAR[b[p] as number] === 1) p++;
    const nEnd = p;
    if (b[p] !== COLON || nEnd === ls) return fieldFails('malformed header line');
    p++;
    while (b[p] === SP || b[p] === HT) p++;
    const vStart = p;
    for (;;) {
      x = b[p];
      if (x === undefined || (x < SP ? x !== HT : x === DEL)) break;
      p++;
    }
    let vEnd = p;
    if (x === LF) p += 1;
    else if (x === CR && b[p + 1] === LF) p += 2;
    else return fieldFails('invalid character in header value');
    while (vEnd > vStart && (b[vEnd - 1] === SP || b[vEnd - 1] === HT)) vEnd--;
    const named = nEnd - ls < byLen.length ? byLen[nEnd - ls] : undefined;
    if (named === undefined) continue;
    const kind = fieldKind(b, ls, named);
    if (kind !== 0 && noteField(kind, b, ls, vStart, vEnd, p) < 0) return -1;
  }
}

/** The KIND_* of the field named at b[ls] among the names of its length, or 0 for one the rewriter ignores. */
function fieldKind(b: Buffer, ls: number, list: NameEntry[]): number {
  for (let li = 0; li < list.length; li++) {
    const lower = list[li]!.lower;
    const fold = list[li]!.kind >= KIND_XFF ? FOLD : LOWER;
    let j = 0;
    while (j < lower.length && fold[b[ls + j] as number] === lower[j]) j++;
    if (j === lower.length) return list[li]!.kind;
  }
  return 0;
}

/** Note a field the rewriter acts on (value b[vStart, vEnd), line b[ls, lineEnd)); returns lineEnd, or -1 with fieldError set. */
function noteField(kind: number, b: Buffer, ls: number, vStart: number, vEnd: number, lineEnd: number): number {
  switch (kind) {
    case KIND_CONTENT_LENGTH: {
      if (fContentLength >= 0) return fieldFails('more than one Content-Length header');
      const v = contentLength(b, vStart, vEnd);
      if (v < 0) return fieldFails('invalid Content-Length');
      fContentLength = v;
      break;
    }
    case KIND_TRANSFER_ENCODING:
      fTe = true;
      noteTransferCodings(b, vStart, vEnd);
      break;
    case KIND_UPGRADE:
      if (vEnd > vStart) fUpgrade = true;
      if (hasToken(b, vStart, vEnd, H2C)) fH2c = true;
      break;
    case KIND_XFF:
      drops[nDrops++] = ls;
      drops[nDrops++] = lineEnd;
      if (vEnd > vStart) {
        xffVals[nXff++] = vStart;
        xffVals[nXff++] = vEnd;
      }
      break;
    case KIND_REPLACE:
      drops[nDrops++] = ls;
      drops[nDrops++] = lineEnd;
      break;
  }
  return lineEnd;
}

/** The Content-Length value b[s, e), or -1 if it is not 1-16 digits of a safe integer. */
function contentLength(b: Buffer, s: number, e: number): number {
  const n = e - s;
  if (n === 0 || n > 16) return -1;
  let v = 0;
  for (let j = s; j < e; j++) {
    const d = (b[j] as number) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return Number.isSafeInteger(v) ? v : -1;
}

/** Walk a Transfer-Encoding comma list b[s, e): chunked must be the final coding and appear once. */
function noteTransferCodings(b: Buffer, s: number, e: number): void {
  let j = s;
  while (j < e) {
    while (j < e && (b[j] === SP || b[j] === HT || b[j] === COMMA)) j++;
    if (j === e) break;
    let k = j;
    while (k < e && b[k] !== COMMA) k++;
    let ke = k;
    while (ke > j && (b[ke - 1] === SP || b[ke - 1] === HT)) ke--;
    if (fTeChunked) fTeBad = true; // something after chunked
    let isChunked = ke - j === 7;
    for (let q = 0; isChunked && q < 7; q++) if (LOWER[b[j + q] as number] !== CHUNKED[q]) isChunked = false;
    if (isChunked) fTeChunked = true;
    j = k;
  }
}

/** Why the framing facts of a scanned head refuse it, or null. */
function framingRefusal(http10: boolean, allowH2c: boolean): string | null {
  if (fTe) {
    if (fContentLength >= 0) return 'Transfer-Encoding together with Content-Length';
    if (http10) return 'Transfer-Encoding in an HTTP/1.0 request';
    if (!fTeChunked || fTeBad) return 'Transfer-Encoding whose final coding is not chunked';
  }
  if (fH2c && !allowH2c) return 'Upgrade: h2c refused on an injection port (--allow-h2c)';
  return null;
}

/** Returned when a push produces no event (frozen: shared by all rewriters). */
const NO_EVENTS = Object.freeze([]) as unknown as RewriteEvent[];

export class RequestRewriter {
  private readonly inj: CompiledInject;
  private state = S_HEAD;
  private count = 0;
  /** The connection's first byte has been judged (HTTP or not). */
  private started = false;
  /** An Upgrade/CONNECT request was forwarded: bytes after its message wait for the answer. */
  private awaiting = false;
  private held: Buffer[] | null = null;
  private heldLen = 0;
  private readonly framer = new ResponseFramer();
  /** S_WATCH: bytes seen, and the last (up to 4) of them for a "HTTP/" split across pushes. */
  private watched = 0;
  private watchCarry: Buffer = NO_BYTES;

  // A head split across pushes, gathered here (copied; bounded by maxHeadBytes).
  private hbuf: Buffer | null = null;
  private hlen = 0;
  /** End-of-head scan carry: 0 none, 1 after LF, 2 after LF CR. */
  private hs = 0;
  /** Request line of the pending head already validated / scanned up to. */
  private rlChecked = false;
  private rlScan = 0;

  // Body framing.
  private remaining = 0;
  private csVal = 0;
  private csDigits = 0;
  private lineLen = 0;
  private trLen = 0;

  // Request-line facts (set by parseRequestLine).
  private rlConnect = false;
  private rlHttp10 = false;
  private rlHead = false;

  // Per-push output.
  private out: Buffer[] | null = null;
  /** Events of a push that ended in passthrough or reject. */
  private res: RewriteEvent[] = NO_EVENTS;
  /** Start of the not-yet-emitted forward range in the current chunk. */
  private fwd = 0;

  constructor(inject: CompiledInject) {
    this.inj = inject;
  }

  /** Heads rewritten so far. */
  get requests(): number {
    return this.count;
  }

  /**
   * A request head has begun (its first byte after any empty lines) and not ended: its
   * bytes are gathered here, unforwarded. False between requests, in bodies, after
   * passthrough or reject. The relay's head-read timeout runs while this is true.
   */
  get headPending(): boolean {
    return this.hlen > 0 && this.state === S_HEAD;
  }

  /** Client bytes held after an Upgrade/CONNECT request until the server answers it. */
  get heldBytes(): number {
    return this.heldLen;
  }

  /**
   * Every forwarded request has its complete response and no other response has begun, so
   * a refusal written to the client now is read as the answer to the refused request. With
   * `eof` (the server closed): also true after a close-delimited last response.
   */
  responsesComplete(eof: boolean): boolean {
    return this.framer.complete(eof);
  }

  /** Requests forwarded whose response has not fully arrived (0 once the framer gave up). */
  get unanswered(): number {
    return this.framer.following ? this.framer.pending : 0;
  }

  /** False once the server's responses could not be followed (only its EOF ends them then). */
  get responsesFollowed(): boolean {
    return this.framer.following;
  }

  /**
   * Feed the next client chunk; returns the events in order (at most one 'forward',
   * possibly followed by 'passthrough' or 'reject'). After 'passthrough' further pushes
   * are forwarded raw; after 'reject' they return no events.
   */
  push(chunk: Buffer): RewriteEvent[] {
    const len = chunk.length;
    if (len === 0) return NO_EVENTS;
    if (this.state === S_HOLD) {
      this.hold(chunk);
      return NO_EVENTS;
    }
    if (!this.started) {
      this.started = true;
      if (NON_HTTP[chunk[0] as number] === 1) return this.notHttp(chunk);
    }
    if (this.state === S_WATCH) return this.watchFirstLine(chunk);
    if (this.state >= S_PASS) {
      return this.state === S_PASS ? [{ kind: 'forward', chunks: [chunk] }] : NO_EVENTS;
    }
    this.out = null;
    this.fwd = 0;
    let pos = 0;
    while (pos < len) {
      switch (this.state) {
        case S_HEAD:
          pos = this.head(chunk, pos);
          break;
        case S_BODY: {
          const n = Math.min(this.remaining, len - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_HEAD;
          break;
        }
        default:
          pos = this.framing(chunk, pos);
      }
      if (this.state >= S_PASS) {
        // passthrough / reject: events prepared
        const res = this.res;
        this.res = NO_EVENTS;
        this.out = null;
        return res;
      }
    }
    this.flush(chunk, len);
    const out = this.out;
    if (out === null) return NO_EVENTS;
    this.out = null; // do not keep the caller's buffers alive between pushes
    return [{ kind: 'forward', chunks: out }];
  }

  /**
   * Feed the next server chunk (the caller forwards it to the client unchanged, before
   * acting on the events). Events come when the server answers a held Upgrade/CONNECT
   * request: switched → the held bytes raw, then 'passthrough'; declined → the held bytes
   * as requests (stamped, or a reject).
   */
  pushResponse(chunk: Buffer): RewriteEvent[] {
    if (this.state === S_PASS) return NO_EVENTS;
    const v = this.framer.push(chunk);
    if (this.state === S_DEAD) return NO_EVENTS; // only framed, for placing the refusal
    if (v === FR_NONE) return NO_EVENTS;
    this.awaiting = false;
    const held = this.held;
    this.held = null;
    this.heldLen = 0;
    if (v === FR_SWITCHED) {
      this.state = S_PASS;
      this.hbuf = null;
      return held === null ? [{ kind: 'passthrough' }] : [{ kind: 'forward', chunks: held }, { kind: 'passthrough' }];
    }
    if (this.state === S_HOLD) this.state = S_HEAD;
    if (held === null) return NO_EVENTS;
    const events: RewriteEvent[] = [];
    for (const h of held) for (const ev of this.push(h)) events.push(ev);
    return events;
  }

  private hold(b: Buffer): void {
    if (b.length === 0) return;
    if (this.held === null) this.held = [b];
    else this.held.push(b);
    this.heldLen += b.length;
  }

  /** The connection's first byte cannot start an HTTP request (e.g. TLS). */
  private notHttp(chunk: Buffer): RewriteEvent[] {
    if (this.inj.policy.httpOnly) {
      this.state = S_DEAD;
      return [{ kind: 'reject', status: 400, reason: 'not HTTP/1.x (--http-only)', response: NO_RESPONSE }];
    }
    this.state = S_WATCH;
    this.watched = 0;
    return this.watchFirstLine(chunk);
  }

  /**
   * Raw bytes of a non-HTTP connection, until its first LF: lenient parsers (python's
   * http.server, wsgiref) take any first line of three words ending in an HTTP version as a
   * request, whatever its method bytes. A first line holding "HTTP/" is refused (the relay
   * resets the upstream, so the unfinished line is never parsed); after an LF without it,
   * or MAX_FIRST_LINE bytes, the connection is passthrough.
   */
  private watchFirstLine(c: Buffer): RewriteEvent[] {
    const lf = c.indexOf(LF);
    const line = lf < 0 ? c : c.subarray(0, lf);
    const carry = this.watchCarry;
    const across = carry.length > 0 && Buffer.concat([carry, line.subarray(0, 4)]).indexOf(HTTP_SLASH) >= 0;
    if (across || line.indexOf(HTTP_SLASH) >= 0) {
      this.state = S_DEAD;
      return [
        {
          kind: 'reject',
          status: 400,
          reason: 'non-HTTP connection whose first line holds "HTTP/"',
          response: NO_RESPONSE,
        },
      ];
    }
    this.watched += c.length;
    if (lf >= 0 || this.watched >= MAX_FIRST_LINE) {
      this.state = S_PASS;
      this.watchCarry = NO_BYTES;
      return [{ kind: 'forward', chunks: [c] }, { kind: 'passthrough' }];
    }
    // The last 4 bytes seen (copied: the caller owns c), however short the pushes.
    const tail = c.length >= 4 ? c : Buffer.concat([carry, c]);
    this.watchCarry = Buffer.from(tail.subarray(Math.max(0, tail.length - 4)));
    return [{ kind: 'forward', chunks: [c] }];
  }

  // ---- output helpers ----------------------------------------------------------------------

  private emit(b: Buffer): void {
    if (this.out === null) this.out = [b];
    else this.out.push(b);
  }

  /** Emit the forward range [fwd, end) of the current chunk. */
  private flush(c: Buffer, end: number): void {
    if (end > this.fwd) {
      this.emit(this.fwd === 0 && end === c.length ? c : c.subarray(this.fwd, end));
      this.fwd = end;
    }
  }

  /** Prepare the events of a push that ends with `last`. */
  private finish(last: RewriteEvent): void {
    this.res = this.out === null ? [last] : [{ kind: 'forward', chunks: this.out }, last];
    this.out = null;
  }

  /** Switch to passthrough: everything from fwd to the end of the chunk is forwarded raw. */
  private passthrough(c: Buffer): number {
    this.flush(c, c.length);
    this.finish({ kind: 'passthrough' });
    this.state = S_PASS;
    this.hbuf = null;
    return c.length;
  }

  /** Reject: forward [fwd, upto) (earlier complete messages), then the reject event. */
  private reject(c: Buffer, upto: number, status: 400 | 431, reason: string): number {
    this.flush(c, upto);
    this.finish({ kind: 'reject', status, reason, response: status === 400 ? RESPONSE_400 : RESPONSE_431 });
    this.state = S_DEAD;
    this.hbuf = null;
    return c.length;
  }

  // ---- heads ---------------------------------------------------------------------------------

  private append(c: Buffer, from: number, to: number): void {
    const need = this.hlen + (to - from);
    let hb = this.hbuf;
    if (hb === null || need > hb.length) {
      let cap = hb === null ? 1024 : hb.length * 2;
      if (cap < need) cap = need;
      const nb = Buffer.allocUnsafe(cap);
      if (hb !== null) hb.copy(nb, 0, 0, this.hlen);
      this.hbuf = hb = nb;
    }
    c.copy(hb, this.hlen, from, to);
    this.hlen = need;
  }

  /**
   * Find the end of the head (just past LF LF or LF CR LF) in c from `from`, continuing the
   * carried scan state. Returns the end index or -1.
   */
  private scanEnd(c: Buffer, from: number): number {
    const len = c.length;
    let i = from;
    if (this.hs !== 0 && i < len) {
      if (this.hs === 1) {
        if (c[i] === LF) return i + 1;
        if (c[i] === CR) {
          i++;
          if (i === len) {
            this.hs = 2;
            return -1;
          }
          if (c[i] === LF) return i + 1;
        }
      } else if (c[i] === LF) {
        return i + 1;
      }
      this.hs = 0;
    }
    for (;;) {
      const j = c.indexOf(LF, i);
      if (j < 0) {
        this.hs = 0;
        return -1;
      }
      const k = j + 1;
      if (k === len) {
        this.hs = 1;
        return -1;
      }
      const x = c[k];
      if (x === LF) return k + 1;
      if (x === CR) {
        if (k + 1 === len) {
          this.hs = 2;
          return -1;
        }
        if (c[k + 1] === LF) return k + 2;
      }
      i = k;
    }
  }

  private head(c: Buffer, pos: number): number {
    const len = c.length;
    if (this.awaiting) {
      // The server has not yet answered the Upgrade/CONNECT request: hold the rest.
      this.flush(c, pos);
      this.hold(pos === 0 ? c : c.subarray(pos));
      this.state = S_HOLD;
      this.fwd = len;
      return len;
    }
    const max = this.inj.maxHeadBytes;
    const pending = this.hlen > 0;
    if (!pending) {
      // Empty lines before a request line are ignored by servers (RFC 9112 §2.2): keep them
      // in the forward range and start the head at the request line.
      while (pos < len && (c[pos] === CR || c[pos] === LF)) pos++;
      if (pos === len) return pos;
      // Not a method's first byte: no need to wait for the line to end (" GET", "\x00").
      if (TCHAR[c[pos] as number] !== 1) return this.reject(c, pos, 400, 'malformed request line');
      this.hs = 0;
    }
    const base = pos;

    const e = this.scanEnd(c, base);
    if (e < 0 || this.hlen + (e - base) > max) {
      // Head incomplete (or complete but too large): gather what fits under the limit.
      // The request line is judged before the size, and the same way whatever the chunking.
      const total = this.hlen + (len - base);
      const take = total > max ? len - (total - max) : len;
      this.flush(c, base);
      if (take > base) this.append(c, base, take);
      this.fwd = take;
      if (!this.rlChecked && this.hlen > 0) {
        // Judge the request line as soon as it is complete, so that a text protocol that
        // only looks like HTTP is answered at once instead of waiting for a blank line.
        const hb = this.hbuf as Buffer;
        const nl = hb.indexOf(LF, this.rlScan);
        if (nl >= 0 && nl < this.hlen) {
          this.rlChecked = true;
          const r = this.parseRequestLine(hb, 0);
          if (r === RL_H2) return this.h2Preface(c, base, true);
          if (r < 0)
            return this.reject(c, base, 400, r === RL_VERSION ? 'unsupported HTTP version' : 'malformed request line');
        } else {
          this.rlScan = this.hlen;
        }
      }
      if (total > max) return this.reject(c, base, 431, `request head larger than ${max} bytes`);
      return len;
    }

    if (!pending) return this.rewrite(c, c, base, e, e);
    this.append(c, 0, e);
    const hb = this.hbuf as Buffer;
    const hl = this.hlen;
    this.hbuf = null;
    this.hlen = 0;
    return this.rewrite(c, hb, 0, hl, e);
  }

  /**
   * "PRI * HTTP/2.0" (h2c with prior knowledge): refused unless allowed, and allowed only as
   * the connection's first request (then raw from here). `gathered`: the preface is in hbuf
   * and c has been consumed up to fwd; else it starts at c[base].
   */
  private h2Preface(c: Buffer, base: number, gathered: boolean): number {
    if (!this.inj.policy.allowH2c || this.count > 0) {
      return this.reject(c, base, 400, 'HTTP/2 prior knowledge (h2c) refused on an injection port (--allow-h2c)');
    }
    if (gathered) this.emit((this.hbuf as Buffer).subarray(0, this.hlen));
    return this.passthrough(c);
  }

  /**
   * Validate the request line at b[s..]. Returns the index just past its LF, or RL_BAD /
   * RL_VERSION / RL_H2. Sets rlConnect and rlHttp10.
   */
  private parseRequestLine(b: Buffer, s: number): number {
    let p = s;
    while (TCHAR[b[p] as number] === 1) p++;
    const mEnd = p;
    if (mEnd === s || b[p] !== SP) return RL_BAD;
    p++;
    const tStart = p;
    for (;;) {
      const x = b[p];
      if (x === undefined || x <= SP || x === DEL) break;
      p++;
    }
    if (p === tStart || b[p] !== SP) return RL_BAD;
    const tEnd = p;
    p++;
    // "HTTP/" (case-sensitive)
    if (b[p] !== 0x48 || b[p + 1] !== 0x54 || b[p + 2] !== 0x54 || b[p + 3] !== 0x50 || b[p + 4] !== 0x2f)
      return RL_BAD;
    const major = (b[p + 5] as number) - 0x30;
    const minor = (b[p + 7] as number) - 0x30;
    if (major < 0 || major > 9 || b[p + 6] !== 0x2e || minor < 0 || minor > 9) return RL_BAD;
    p += 8;
    if (b[p] === CR) p++;
    if (b[p] !== LF) return RL_BAD;
    if (major !== 1) {
      // "PRI * HTTP/2.0": HTTP/2 with prior knowledge — not ours to rewrite.
      if (
        major === 2 &&
        minor === 0 &&
        mEnd - s === 3 &&
        b[s] === 0x50 &&
        b[s + 1] === 0x52 &&
        b[s + 2] === 0x49 &&
        tEnd - tStart === 1 &&
        b[tStart] === 0x2a
      )
        return RL_H2;
      return RL_VERSION;
    }
    this.rlConnect =
      mEnd - s === 7 &&
      b[s] === 0x43 &&
      b[s + 1] === 0x4f &&
      b[s + 2] === 0x4e &&
      b[s + 3] === 0x4e &&
      b[s + 4] === 0x45 &&
      b[s + 5] === 0x43 &&
      b[s + 6] === 0x54; // "CONNECT"
    this.rlHttp10 = minor === 0;
    this.rlHead = mEnd - s === 4 && b[s] === 0x48 && b[s + 1] === 0x45 && b[s + 2] === 0x41 && b[s + 3] === 0x44; // "HEAD"
    return p + 1;
  }

  /**
   * Validate and rewrite the complete head b[s, e). `c` is the current chunk and `ce` the
   * index in c just past the head; b === c when the head lies within this chunk.
   */
  private rewrite(c: Buffer, b: Buffer, s: number, e: number, ce: number): number {
    const inPlace = b === c;
    // Where a rejected head's bytes start in c (earlier bytes are complete messages).
    const rejAt = inPlace ? s : 0;
    const p = this.parseRequestLine(b, s);
    if (p < 0) return this.refuseRequestLine(c, b, s, e, ce, p);
    const bl = scanFields(b, p, this.inj.byLen);
    if (bl < 0) return this.reject(c, rejAt, 400, fieldError);
    const refusal = framingRefusal(this.rlHttp10, this.inj.policy.allowH2c);
    if (refusal !== null) return this.reject(c, rejAt, 400, refusal);
    this.emitHead(c, b, s, e, bl, ce);
    this.startMessage();
    return ce;
  }

  /** A complete head whose request line is not HTTP/1.x: h2c prior knowledge or a 400. */
  private refuseRequestLine(c: Buffer, b: Buffer, s: number, e: number, ce: number, verdict: number): number {
    const inPlace = b === c;
    const rejAt = inPlace ? s : 0;
    if (verdict !== RL_H2) {
      return this.reject(c, rejAt, 400, verdict === RL_VERSION ? 'unsupported HTTP version' : 'malformed request line');
    }
    if (!inPlace && this.inj.policy.allowH2c && this.count === 0) {
      this.emit(b.subarray(s, e));
      this.fwd = ce;
    }
    return this.h2Preface(c, rejAt, false);
  }

  /**
   * Emit the head b[s, e) without its dropped lines (views), the injected block before the
   * blank line at bl; the chunk c is then consumed up to ce.
   */
  private emitHead(c: Buffer, b: Buffer, s: number, e: number, bl: number, ce: number): void {
    const inj = this.inj;
    const inPlace = b === c;
    if (inj.empty) {
      if (!inPlace) {
        this.emit(b.subarray(s, e));
        this.fwd = ce;
      } // else: the head stays in the forward range
      return;
    }
    let seg = inPlace ? this.fwd : s;
    for (let i = 0; i < nDrops; i += 2) {
      const ds = drops[i]!;
      if (ds > seg) this.emit(b.subarray(seg, ds));
      seg = drops[i + 1]!;
    }
    if (bl > seg) this.emit(b.subarray(seg, bl));
    const lfOnly = b[bl] === LF;
    if (inj.xffAppend && nXff > 0) {
      this.emit(this.mergedXff(b));
      this.emit(lfOnly ? inj.restLF : inj.restCRLF);
    } else {
      this.emit(lfOnly ? inj.blockLF : inj.blockCRLF);
    }
    this.fwd = ce;
  }

  /** A head was forwarded: expect its response and frame its body from the facts scanFields found. */
  private startMessage(): void {
    this.count++;
    this.rlChecked = false;
    this.rlScan = 0;
    const upgrade = fUpgrade;
    // The response framer pairs responses with requests; a protocol switch is the server's call.
    this.framer.expect((this.rlHead ? REQ_HEAD : 0) | (this.rlConnect ? REQ_CONNECT : 0) | (upgrade ? REQ_UPGRADE : 0));
    if (this.rlConnect || upgrade) this.awaiting = this.framer.awaiting = true;
    if (fTe) {
      this.state = S_CS;
      this.csVal = 0;
      this.csDigits = 0;
      this.lineLen = 0;
    } else if (fContentLength > 0) {
      this.state = S_BODY;
      this.remaining = fContentLength;
    }
  }

  /** "X-Forwarded-For: <client values joined by ', '>, <value>\r\n" */
  private mergedXff(b: Buffer): Buffer {
    const pre = this.inj.xffPrefix;
    const suf = this.inj.xffSuffix;
    const vals = xffVals;
    let n = pre.length + suf.length + (nXff / 2 - 1) * 2;
    for (let i = 0; i < nXff; i += 2) n += vals[i + 1]! - vals[i]!;
    // Short pieces: byte loops beat native copy calls here.
    const o = Buffer.allocUnsafe(n);
    let w = 0;
    for (let j = 0; j < pre.length; j++) o[w++] = pre[j]!;
    for (let i = 0; i < nXff; i += 2) {
      if (i > 0) {
        o[w++] = COMMA;
        o[w++] = SP;
      }
      for (let j = vals[i]!, end = vals[i + 1]!; j < end; j++) o[w++] = b[j]!;
    }
    for (let j = 0; j < suf.length; j++) o[w++] = suf[j]!;
    return o;
  }

  // ---- chunked body framing -------------------------------------------------------------------

  private framing(c: Buffer, pos: number): number {
    const len = c.length;
    let st = this.state;
    while (pos < len) {
      const x = c[pos] as number;
      switch (st) {
        case S_CDATA: {
          const n = Math.min(this.remaining, len - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) st = S_CDATA_CR;
          continue;
        }
        case S_CS: {
          const h = HEX[x] as number;
          if (h !== 255) {
            const v = this.csVal * 16 + h;
            if (v > Number.MAX_SAFE_INTEGER) return this.reject(c, pos, 400, 'chunk size too large');
            this.csVal = v;
            this.csDigits++;
          } else if (this.csDigits === 0) {
            return this.reject(c, pos, 400, 'malformed chunk size');
          } else if (x === CR) {
            st = S_CS_LF;
          } else if (x === SEMI || x === SP || x === HT) {
            st = S_CEXT;
          } else {
            return this.reject(c, pos, 400, 'malformed chunk size');
          }
          if (++this.lineLen > MAX_CHUNK_LINE) return this.reject(c, pos, 400, 'chunk-size line too long');
          break;
        }
        case S_CEXT:
          if (x === CR) st = S_CS_LF;
          else if ((x < SP && x !== HT) || x === DEL)
            return this.reject(c, pos, 400, 'invalid character in chunk extension');
          if (++this.lineLen > MAX_CHUNK_LINE) return this.reject(c, pos, 400, 'chunk extensions too long');
          break;
        case S_CS_LF:
          if (x !== LF) return this.reject(c, pos, 400, 'malformed chunk size');
          if (this.csVal > 0) {
            st = S_CDATA;
            this.remaining = this.csVal;
          } else {
            st = S_TR_START;
            this.trLen = 0;
          }
          break;
        case S_CDATA_CR:
          if (x !== CR) return this.reject(c, pos, 400, 'missing CRLF after chunk data');
          st = S_CDATA_LF;
          break;
        case S_CDATA_LF:
          if (x !== LF) return this.reject(c, pos, 400, 'missing CRLF after chunk data');
          st = S_CS;
          this.csVal = 0;
          this.csDigits = 0;
          this.lineLen = 0;
          break;
        case S_TR_START:
          if (x === CR) st = S_TR_END_LF;
          else if (x === SP || x === HT) return this.reject(c, pos, 400, 'obsolete line folding (obs-fold) in trailer');
          else if (TCHAR[x] === 1) st = S_TR_NAME;
          else return this.reject(c, pos, 400, 'malformed trailer line');
          break;
        case S_TR_NAME:
          if (x === COLON) st = S_TR_VALUE;
          else if (TCHAR[x] !== 1) return this.reject(c, pos, 400, 'malformed trailer line');
          break;
        case S_TR_VALUE:
          if (x === CR) st = S_TR_LF;
          else if ((x < SP && x !== HT) || x === DEL) return this.reject(c, pos, 400, 'invalid character in trailer');
          break;
        case S_TR_LF:
          if (x !== LF) return this.reject(c, pos, 400, 'bare CR in trailer');
          st = S_TR_START;
          break;
        case S_TR_END_LF:
          if (x !== LF) return this.reject(c, pos, 400, 'bare CR in trailer');
          this.state = S_HEAD;
          return pos + 1;
      }
      if (st >= S_TR_START && ++this.trLen > this.inj.maxHeadBytes) {
        return this.reject(c, pos, 431, `trailer section larger than ${this.inj.maxHeadBytes} bytes`);
      }
      pos++;
    }
    this.state = st;
    return pos;
  }
}
