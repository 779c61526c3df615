// HTTP/1.x sniffer: the destination name from the request target (absolute-form or
// CONNECT authority-form) or the Host header of a request head. Looks at the bytes only.
import { HTTP_SNIFF_LIMIT, normalizeHostName, type SniffOptions, type SniffResult } from './result.js';

const SP = 0x20;
const HT = 0x09;
const CR = 0x0d;
const LF = 0x0a;
/** Longest method we accept (PROPPATCH, MKCALENDAR… fit easily). */
const MAX_METHOD = 24;
const VERSION = Buffer.from('HTTP/1.', 'latin1');

function isMethodChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x5f; // A-Z - _
}

/** "host", "host:port", "[v6]" or "[v6]:port" → the DNS name, or undefined (IP literal, junk). */
export function hostOfAuthority(authority: string): string | undefined {
  if (authority.startsWith('[')) return undefined; // an IPv6 literal is never a domain
  const colon = authority.indexOf(':');
  let host = authority;
  if (colon >= 0) {
    const port = authority.slice(colon + 1);
    if (!/^\d{0,5}$/.test(port)) return undefined;
    host = authority.slice(0, colon);
  }
  return normalizeHostName(host);
}

/** The authority of an absolute-form target (http://user@host:port/path), or undefined if not absolute-form. */
function authorityOfAbsolute(target: string): string | undefined {
  const m = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (!m) return undefined;
  const auth = m[1]!;
  return auth.slice(auth.lastIndexOf('@') + 1);
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === SP || s.charCodeAt(a) === HT)) a++;
  while (b > a && (s.charCodeAt(b - 1) === SP || s.charCodeAt(b - 1) === HT)) b--;
  return s.slice(a, b);
}

function isHostName(buf: Buffer, at: number): boolean {
  return (
    (buf[at]! | 0x20) === 0x68 && // h
    (buf[at + 1]! | 0x20) === 0x6f && // o
    (buf[at + 2]! | 0x20) === 0x73 && // s
    (buf[at + 3]! | 0x20) === 0x74 && // t
    buf[at + 4] === 0x3a // :
  );
}

/**
 * Sniff an HTTP/1.x request head. 'need-more' until the head ends (empty line) or
 * `maxBytes` (default 8 KiB) is buffered; then the name from the absolute-form target or
 * CONNECT authority if there is one, else from the single Host header. Two Host headers, a
 * folded Host header, an IP literal or a malformed name give 'no-domain'.
 */
export function sniffHttp(buf: Buffer, opts?: SniffOptions): SniffResult {
  const limit = opts?.maxBytes ?? HTTP_SNIFF_LIMIT;
  const len = buf.length;
  const more = (): SniffResult => (len >= limit ? 'no-domain' : 'need-more');
  // Request line: METHOD SP target SP HTTP/1.x CRLF (a bare LF is tolerated).
  let i = 0;
  while (i < len && isMethodChar(buf[i]!)) if (++i > MAX_METHOD) return 'not-this-protocol';
  if (i === len) return len >= limit ? 'not-this-protocol' : 'need-more';
  if (i === 0 || buf[i] !== SP) return 'not-this-protocol';
  const methodEnd = i++;
  const targetStart = i;
  while (i < len && buf[i]! > SP && buf[i]! < 0x7f) i++;
  if (i === len) return more();
  if (i === targetStart || buf[i] !== SP) return 'not-this-protocol';
  const targetEnd = i++;
  for (let k = 0; k < VERSION.length; k++, i++) {
    if (i === len) return more();
    if (buf[i] !== VERSION[k]) return 'not-this-protocol';
  }
  if (i === len) return more();
  if (buf[i]! < 0x30 || buf[i]! > 0x39) return 'not-this-protocol';
  i++;
  if (i === len) return more();
  if (buf[i] === CR) {
    i++;
    if (i === len) return more();
  }
  if (buf[i] !== LF) return 'not-this-protocol';
  i++;
  // From here on it is HTTP.
  const method = buf.toString('latin1', 0, methodEnd);
  const target = buf.toString('latin1', targetStart, targetEnd);
  // Header lines until the empty line.
  let hosts = 0;
  let host = '';
  let folded = false;
  let lastWasHost = false;
  let complete = false;
  let pos = i;
  const scanEnd = Math.min(len, limit);
  while (pos < scanEnd) {
    const nl = buf.indexOf(LF, pos);
    if (nl < 0 || nl >= scanEnd) break;
    const end = nl > pos && buf[nl - 1] === CR ? nl - 1 : nl;
    if (end === pos) {
      complete = true;
      break;
    }
    const c = buf[pos];
    if (c === SP || c === HT) {
      if (lastWasHost) folded = true; // obsolete line folding of the Host value: ambiguous
    } else if (end - pos >= 5 && isHostName(buf, pos)) {
      hosts++;
      host = trimOws(buf.toString('latin1', pos + 5, end));
      lastWasHost = true;
      pos = nl + 1;
      continue;
    }
    lastWasHost = false;
    pos = nl + 1;
  }
  if (!complete && len < limit) return 'need-more';
  let authority: string | undefined;
  if (method === 'CONNECT') authority = target;
  else authority = authorityOfAbsolute(target);
  if (authority === undefined) {
    if (hosts !== 1 || folded) return 'no-domain';
    authority = host;
  }
  const name = hostOfAuthority(authority);
  return name === undefined ? 'no-domain' : { domain: name };
}
