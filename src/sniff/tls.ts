// TLS sniffer: the server_name (SNI) of a ClientHello, also when the ClientHello spans
// several records or arrives in pieces. Every read is bounds-checked against both the
// bytes present and the lengths the message declares, so any input is safe.
import { normalizeHostName, TLS_SNIFF_LIMIT, type SniffOptions, type SniffResult } from './result.js';

const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
/** A plaintext record carries at most 2^14 bytes; a little slack for lax clients. */
const MAX_RECORD = (1 << 14) + 2048;

// Internal outcomes of a read past the end: more bytes may follow, or the message lies.
const NEED_MORE = 1;
const MALFORMED = 2;

class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    /** Bytes present. */
    readonly avail: number,
  ) {}

  /** Reserve n bytes inside [pos, end): MALFORMED past the declared end, NEED_MORE past the data. */
  private take(n: number, end: number): number {
    const at = this.pos;
    if (at + n > end) throw MALFORMED;
    if (at + n > this.avail) throw NEED_MORE;
    this.pos = at + n;
    return at;
  }

  u8(end: number): number {
    return this.buf[this.take(1, end)]!;
  }

  u16(end: number): number {
    const at = this.take(2, end);
    return (this.buf[at]! << 8) | this.buf[at + 1]!;
  }

  u24(end: number): number {
    const at = this.take(3, end);
    return (this.buf[at]! << 16) | (this.buf[at + 1]! << 8) | this.buf[at + 2]!;
  }

  skip(n: number, end: number): void {
    this.take(n, end);
  }

  /** The end of a nested block of `len` bytes starting here; MALFORMED if it overruns `end`. */
  block(len: number, end: number): number {
    if (this.pos + len > end) throw MALFORMED;
    return this.pos + len;
  }
}

/** True when a record header could start a TLS handshake (content type, version 3.x, sane length). */
function recordHeaderOk(buf: Buffer, at: number): boolean {
  const len = (buf[at + 3]! << 8) | buf[at + 4]!;
  return buf[at] === CONTENT_HANDSHAKE && buf[at + 1] === 0x03 && buf[at + 2]! <= 0x04 && len > 0 && len <= MAX_RECORD;
}

/** Parse the reassembled handshake bytes; returns the host name bytes' text, null for none. */
function parseClientHello(r: Reader): string | null {
  if (r.u8(Infinity) !== HANDSHAKE_CLIENT_HELLO) throw MALFORMED;
  const helloLen = r.u24(Infinity);
  const end = r.block(helloLen, Infinity);
  r.skip(2, end); // legacy_version
  r.skip(32, end); // random
  const sid = r.u8(end);
  if (sid > 32) throw MALFORMED;
  r.skip(sid, end);
  const suites = r.u16(end);
  if (suites < 2 || suites % 2 !== 0) throw MALFORMED;
  r.skip(suites, end);
  const comp = r.u8(end);
  if (comp < 1) throw MALFORMED;
  r.skip(comp, end);
  if (r.pos === end) return null; // no extensions at all (very old clients)
  const extEnd = r.block(r.u16(end), end);
  while (r.pos < extEnd) {
    const type = r.u16(extEnd);
    const extLen = r.u16(extEnd);
    const thisEnd = r.block(extLen, extEnd);
    if (type !== EXT_SERVER_NAME) {
      r.skip(extLen, extEnd);
      continue;
    }
    const listEnd = r.block(r.u16(thisEnd), thisEnd);
    while (r.pos < listEnd) {
      const nameType = r.u8(listEnd);
      const nameLen = r.u16(listEnd);
      const at = r.pos;
      r.skip(nameLen, listEnd);
      if (nameType === NAME_TYPE_HOST) return r.buf.toString('latin1', at, at + nameLen);
    }
    return null;
  }
  return null;
}

/**
 * Sniff a TLS ClientHello for its SNI. 'not-this-protocol' as soon as the first bytes
 * cannot start a TLS handshake record carrying a ClientHello; 'need-more' while the
 * ClientHello is incomplete and fewer than `maxBytes` (default 32 KiB) are buffered;
 * 'no-domain' for a ClientHello without (usable) SNI, a malformed one, or at the limit.
 * Records that follow the ClientHello (0-RTT data, ChangeCipherSpec) are ignored.
 */
export function sniffTls(buf: Buffer, opts?: SniffOptions): SniffResult {
  const limit = opts?.maxBytes ?? TLS_SNIFF_LIMIT;
  const len = buf.length;
  if (len === 0) return 'need-more';
  if (buf[0] !== CONTENT_HANDSHAKE) return 'not-this-protocol';
  if (len < 6) {
    // Check what is there: version 3.x, a sane length.
    if (len >= 2 && buf[1] !== 0x03) return 'not-this-protocol';
    if (len >= 3 && buf[2]! > 0x04) return 'not-this-protocol';
    if (len >= 5 && !recordHeaderOk(buf, 0)) return 'not-this-protocol';
    return 'need-more';
  }
  if (!recordHeaderOk(buf, 0) || buf[5] !== HANDSHAKE_CLIENT_HELLO) return 'not-this-protocol';
  const more = (): SniffResult => (len >= limit ? 'no-domain' : 'need-more');

  // Reassemble the handshake bytes from consecutive handshake records.
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1; // total handshake bytes (4 + hello length), once known
  let pos = 0;
  // A record that cannot continue the handshake ends it: parse what came before, so the
  // answer is the same whether the bytes arrive at once or in pieces (an SNI seen before
  // the bad record counts either way; a ClientHello cut short by it is malformed).
  let broken = false;
  while (pos < len && (need < 0 || have < need)) {
    if (len - pos < 5) break;
    if (!recordHeaderOk(buf, pos)) {
      broken = true;
      break;
    }
    const recLen = (buf[pos + 3]! << 8) | buf[pos + 4]!;
    const start = pos + 5;
    const end = Math.min(start + recLen, len);
    parts.push(buf.subarray(start, end));
    have += end - start;
    pos = start + recLen;
    if (need < 0 && have >= 4) {
      const first = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      need = 4 + ((first[1]! << 16) | (first[2]! << 8) | first[3]!);
    }
  }
  const hs = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
  const reader = new Reader(hs, need < 0 ? hs.length : Math.min(hs.length, need));
  let name: string | null;
  try {
    name = parseClientHello(reader);
  } catch (e) {
    if (e === NEED_MORE) return broken ? 'no-domain' : more();
    if (e === MALFORMED) return 'no-domain';
    throw e;
  }
  if (name === null) return 'no-domain';
  const domain = normalizeHostName(name);
  return domain === undefined ? 'no-domain' : { domain };
}
