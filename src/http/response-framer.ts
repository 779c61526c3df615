// Streaming HTTP/1.x response framer (server → client direction), read-only.
//
// Why it exists: on an injection port only the server may turn a connection into something
// that is not HTTP/1.x (101 to an Upgrade request, 2xx to CONNECT), and a refusal (400/408/
// 431) may only be written to the client between responses. Both need to know where each
// response ends. The framer never changes or copies response bytes (the relay forwards the
// chunks as they come): it walks status lines and framing headers and skips bodies by
// arithmetic (Content-Length, chunk sizes); only chunk-size lines and a head split across
// reads (bounded) are looked at byte by byte.
//
// What the framer cannot follow (a malformed head, conflicting lengths, a head over
// MAX_RESPONSE_HEAD) makes it `lost`: it stops, and from then on no upgrade is ever
// accepted and refusals wait for the server's EOF. A close-delimited body is followed until
// EOF, likewise without further decisions.

import { LOWER } from './inject-config.js';

/** Flags of a forwarded request, queued until its final response. */
export const REQ_HEAD = 1;
export const REQ_CONNECT = 2;
export const REQ_UPGRADE = 4;

/** push() verdicts about the request the rewriter is holding the connection for. */
export const FR_NONE = 0;
/** The server switched protocols (101 to an Upgrade, 2xx to CONNECT): the rest is not HTTP. */
export const FR_SWITCHED = 1;
/** The Upgrade/CONNECT request got a final answer that does not switch (or can no longer get one). */
export const FR_DECLINED = 2;

/** Largest response head the framer gathers; beyond it the framer is lost (no refusal relies on it). */
export const MAX_RESPONSE_HEAD = 65536;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COMMA = 0x2c;

const HEX = new Uint8Array(256).fill(255);
for (let b = 0; b < 10; b++) HEX[0x30 + b] = b;
for (let b = 0; b < 6; b++) {
  HEX[0x41 + b] = 10 + b;
  HEX[0x61 + b] = 10 + b;
}

const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding', 'latin1');
const CHUNKED = Buffer.from('chunked', 'latin1');

// States.
const S_HEAD = 0; // at (or inside) a response head
const S_BODY = 1; // Content-Length body: `remaining` bytes
const S_CSIZE = 2; // chunk-size line (size, extensions) up to LF
const S_CDATA = 3; // chunk data: `remaining` bytes, then CRLF (counted in remaining)
const S_TRAILER = 4; // trailer lines until an empty line
const S_EOF = 5; // close-delimited body: everything until EOF
const S_SWITCHED = 6; // protocol switched: not HTTP any more
const S_LOST = 7; // framing could not be followed

export class ResponseFramer {
  private state = S_HEAD;
  /** Flags of forwarded requests still waiting for their final response (FIFO). */
  private readonly queue: number[] = [];
  private qHead = 0;
  private remaining = 0;
  private csVal = 0;
  private csDigits = 0;
  /** Past the size digits of a chunk-size line (extensions follow). */
  private csExt = false;
  private lineLen = 0;
  /** Trailer: bytes on the current line (0 at a line start). */
  private trLine = 0;
  private hbuf: Buffer | null = null;
  private hlen = 0;
  /** True while an Upgrade/CONNECT request waits for its answer (the rewriter holds the client). */
  awaiting = false;

  /** A request was forwarded; its response comes after those of earlier requests. */
  expect(flags: number): void {
    this.queue.push(flags);
  }

  /** The framer still knows where responses end (it has not given up). */
  get following(): boolean {
    return this.state !== S_LOST;
  }

  /** Requests forwarded whose final response has not fully arrived. */
  get pending(): number {
    return this.queue.length - this.qHead;
  }

  /**
   * Every response to a forwarded request is complete and nothing else has begun: a refusal
   * may be written now. At the server's EOF a close-delimited last response is complete too.
   */
  complete(eof: boolean): boolean {
    if (this.state === S_EOF) return eof;
    return this.state === S_HEAD && this.hlen === 0 && this.pending === 0;
  }

  /** Feed the next server chunk (it is forwarded by the caller unchanged). */
  push(c: Buffer): number {
    let verdict = FR_NONE;
    let pos = 0;
    const len = c.length;
    while (pos < len && this.state < S_EOF) {
      switch (this.state) {
        case S_HEAD: {
          const r = this.head(c, pos);
          if (r < 0) {
            pos = len;
            break;
          }
          pos = r;
          if ((this.state as number) === S_SWITCHED) return FR_SWITCHED;
          if (this.decided) {
            this.decided = false;
            verdict = FR_DECLINED;
          }
          break;
        }
        case S_BODY: {
          const n = Math.min(this.remaining, len - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_HEAD;
          break;
        }
        case S_CDATA: {
          const n = Math.min(this.remaining, len - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.startChunk();
          break;
        }
        default:
          pos = this.framing(c, pos);
      }
    }
    if (this.awaiting && this.state >= S_EOF) {
      // No later response can be seen: the held request never switches.
      this.awaiting = false;
      verdict = FR_DECLINED;
    }
    return verdict;
  }

  /** Set by head() when the awaited Upgrade/CONNECT request got a final, non-switching answer. */
  private decided = false;

  private lose(): number {
    this.state = S_LOST;
    this.hbuf = null;
    return -1;
  }

  /** Consume a response head from c[pos..]; returns the index after it, or -1 (all consumed). */
  private head(c: Buffer, pos: number): number {
    let b = c;
    let s = pos;
    let end: number;
    if (this.hlen === 0) {
      // Stray CRLFs between responses are tolerated as clients do.
      while (pos < c.length && (c[pos] === CR || c[pos] === LF)) pos++;
      if (pos === c.length) return -1;
      s = pos;
      end = scanHead(c, pos); // the whole head in this chunk: its lines are walked once
    } else end = findHeadEnd(c, pos, this.hbuf, this.hlen);
    if (end < 0) {
      if (this.hlen + (c.length - pos) > MAX_RESPONSE_HEAD) return this.lose();
      this.gather(c, pos, c.length);
      return -1;
    }
    let e = end;
    if (this.hlen + end - pos > MAX_RESPONSE_HEAD) return this.lose(); // the same however split
    if (this.hlen > 0) {
      this.gather(c, pos, end);
      b = this.hbuf as Buffer;
      s = 0;
      e = this.hlen;
      this.hbuf = null;
      this.hlen = 0;
      scanHead(b, 0);
    }
    return this.onHead(b, s, e) ? end : this.lose();
  }

  private gather(c: Buffer, from: number, to: number): void {
    const need = this.hlen + (to - from);
    let hb = this.hbuf;
    if (hb === null || need > hb.length) {
      const nb = Buffer.allocUnsafe(Math.max(need, hb === null ? 1024 : hb.length * 2));
      if (hb !== null) hb.copy(nb, 0, 0, this.hlen);
      this.hbuf = hb = nb;
    }
    c.copy(hb, this.hlen, from, to);
    this.hlen = need;
  }

  /** Judge the complete head b[s, e): status and framing. False: cannot be followed. */
  private onHead(b: Buffer, s: number, e: number): boolean {
    // "HTTP/1.x SP 3DIGIT"
    if (
      b[s] !== 0x48 ||
      b[s + 1] !== 0x54 ||
      b[s + 2] !== 0x54 ||
      b[s + 3] !== 0x50 ||
      b[s + 4] !== 0x2f ||
      b[s + 5] !== 0x31 ||
      b[s + 6] !== 0x2e ||
      b[s + 8] !== SP
    )
      return false;
    let status = 0;
    for (let i = s + 9; i < s + 12; i++) {
      const d = (b[i] as number) - 0x30;
      if (d < 0 || d > 9) return false;
      status = status * 10 + d;
    }
    const x = b[s + 12];
    if (x !== SP && x !== CR && x !== LF) return false;
    const flags = this.pending > 0 ? (this.queue[this.qHead] as number) : 0;
    if (status < 200) {
      if (status !== 101) return true; // interim (100, 103): the final response follows
      if ((flags & REQ_UPGRADE) === 0) return false; // a switch nobody asked for
      this.state = S_SWITCHED;
      this.awaiting = false;
      return true;
    }
    if ((flags & REQ_CONNECT) !== 0 && status < 300) {
      this.state = S_SWITCHED;
      this.awaiting = false;
      return true;
    }
    this.dequeue(flags);
    if ((flags & REQ_HEAD) !== 0 || status === 204 || status === 304) return true; // no body
    return this.bodyFraming();
  }

  private dequeue(flags: number): void {
    if (this.pending > 0) {
      this.qHead++;
      if (this.qHead === this.queue.length) {
        this.queue.length = 0;
        this.qHead = 0;
      } else if (this.qHead > 1024) {
        this.queue.splice(0, this.qHead);
        this.qHead = 0;
      }
    }
    if (this.awaiting && (flags & (REQ_UPGRADE | REQ_CONNECT)) !== 0) {
      this.awaiting = false;
      this.decided = true;
    }
  }

  /** Body framing from what scanHead found in the head's fields. */
  private bodyFraming(): boolean {
    if (hBad) return false;
    if (hTe === 1) this.startChunk();
    else if (hTe === 2) this.state = S_EOF;
    else if (hCl > 0) {
      this.state = S_BODY;
      this.remaining = hCl;
    } else if (hCl < 0) this.state = S_EOF;
    return true;
  }

  private startChunk(): void {
    this.state = S_CSIZE;
    this.csVal = 0;
    this.csDigits = 0;
    this.csExt = false;
    this.lineLen = 0;
  }

  /** Chunk-size lines (size, then extensions up to LF) and trailers. */
  private framing(c: Buffer, pos: number): number {
    const len = c.length;
    while (pos < len) {
      const x = c[pos++] as number;
      if (this.state === S_CSIZE) {
        if (++this.lineLen > 16384) return (this.lose(), len);
        if (x === LF) {
          if (this.csDigits === 0) return (this.lose(), len);
          if (this.csVal === 0) {
            this.state = S_TRAILER;
            this.trLine = 0;
          } else {
            this.state = S_CDATA;
            this.remaining = this.csVal + 2;
          } // data + CRLF
          return pos;
        }
        const h = HEX[x] as number;
        if (h !== 255 && !this.csExt) {
          this.csVal = this.csVal * 16 + h;
          this.csDigits++;
          if (this.csVal > Number.MAX_SAFE_INTEGER) return (this.lose(), len);
        } else {
          this.csExt = true;
        }
      } else if (x === LF) {
        // S_TRAILER
        if (this.trLine === 0) {
          this.state = S_HEAD;
          return pos;
        }
        this.trLine = 0;
      } else if (x !== CR || this.trLine > 0) {
        if (++this.trLine > MAX_RESPONSE_HEAD) return (this.lose(), len);
      }
    }
    return pos;
  }
}

function nameIs(b: Buffer, at: number, lower: Buffer): boolean {
  for (let j = 0; j < lower.length; j++) if (LOWER[b[at + j] as number] !== lower[j]) return false;
  return true;
}

/** Decimal Content-Length b[s, e), or -1. */
function parseLength(b: Buffer, s: number, e: number): number {
  if (e === s || e - s > 16) return -1;
  let v = 0;
  for (let j = s; j < e; j++) {
    const d = (b[j] as number) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

function lastCodingChunked(b: Buffer, s: number, e: number): boolean {
  let k = e;
  while (k > s && b[k - 1] !== COMMA) k--;
  while (k < e && (b[k] === SP || b[k] === HT)) k++;
  return e - k === 7 && nameIs(b, k, CHUNKED);
}

// What scanHead found in a head's fields (shared scratch: push() is synchronous).
let hCl = -1;
/** Transfer-Encoding: 0 none, 1 chunked last, 2 another coding last. */
let hTe = 0;
/** Content-Length values that disagree or are not a length. */
let hBad = false;

/**
 * Walk the head starting at b[s] (its status line) line by line, once: returns the index just
 * past its end (LF LF or LF CR LF), or -1 if b ends first; on the way notes Content-Length and
 * Transfer-Encoding in hCl, hTe and hBad (meaningful only when the end was found).
 */
function scanHead(b: Buffer, s: number): number {
  const len = b.length;
  hCl = -1;
  hTe = 0;
  hBad = false;
  let p = b.indexOf(LF, s) + 1; // past the status line
  if (p === 0) return -1;
  for (;;) {
    if (p >= len) return -1;
    const x = b[p];
    if (x === LF) return p + 1;
    if (x === CR) {
      if (p + 1 >= len) return -1;
      if (b[p + 1] === LF) return p + 2;
    }
    // A field line: its colon and its LF in one pass (response field lines are short).
    const ls = p;
    let colon = -1;
    while (p < len) {
      const y = b[p];
      if (y === LF) break;
      if (y === 0x3a && colon < 0) colon = p;
      p++;
    }
    if (p === len) return -1;
    const nl = p++;
    if (colon < 0) continue; // garbage the client must judge
    const nLen = colon - ls;
    if (nLen !== 14 && nLen !== 17) continue;
    let vs = colon + 1;
    let ve = nl;
    while (vs < ve && (b[vs] === SP || b[vs] === HT)) vs++;
    while (ve > vs && (b[ve - 1] === SP || b[ve - 1] === HT || b[ve - 1] === CR)) ve--;
    if (nLen === 14 && nameIs(b, ls, CONTENT_LENGTH)) {
      const v = parseLength(b, vs, ve);
      if (v < 0 || (hCl >= 0 && v !== hCl)) hBad = true;
      else hCl = v;
    } else if (nLen === 17 && nameIs(b, ls, TRANSFER_ENCODING)) {
      hTe = lastCodingChunked(b, vs, ve) ? 1 : 2;
    }
  }
}

/**
 * End of a head (index just past LF LF or LF CR LF) in c from pos, or -1. hb[0, hlen) is the
 * gathered start of the head (then pos is 0): the terminator may begin in its last 2 bytes.
 */
function findHeadEnd(c: Buffer, pos: number, hb: Buffer | null, hlen: number): number {
  const at = (i: number): number | undefined => (i >= 0 ? c[i] : (hb as Buffer)[hlen + i]);
  for (let i = hb !== null ? -Math.min(hlen, 2) : pos; i < pos; i++) {
    if (at(i) !== LF) continue;
    if (at(i + 1) === LF) return i + 2;
    if (at(i + 1) === CR && at(i + 2) === LF) return i + 3;
  }
  for (let i = c.indexOf(LF, pos); i >= 0; i = c.indexOf(LF, i + 1)) {
    const n1 = c[i + 1];
    if (n1 === LF) return i + 2;
    if (n1 === CR && c[i + 2] === LF) return i + 3;
  }
  return -1;
}
