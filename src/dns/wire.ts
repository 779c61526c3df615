// DNS wire format (RFC 1035, RFC 6891 EDNS, RFC 2308 negative caching): the part a
// forwarder needs. Pure and bounds-checked: every read is checked against the buffer, names
// follow compression pointers only backwards (so a loop cannot hang us), and every problem
// is a DnsWireError with a short stable code, never a RangeError from Buffer.
//
// Parsed messages keep byte offsets (record start/end, TTL field, RDATA), so a forwarder can
// rewrite ids and TTLs, drop the OPT record or swap the question's letter case in place,
// without re-encoding what the upstream sent (names it does not understand included).
import { isIPv4, isIPv6 } from 'node:net';

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  DS: 43,
  RRSIG: 46,
  DNSKEY: 48,
  SVCB: 64,
  HTTPS: 65,
  ANY: 255,
} as const;

export const CLASS_IN = 1;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

export const OPCODE_QUERY = 0;
export const HEADER_SIZE = 12;
/** Largest UDP payload a client without EDNS accepts (RFC 1035 4.2.1). */
export const CLASSIC_UDP_SIZE = 512;
/** EDNS payload size we advertise upstream (the DNS flag day 2020 value). */
export const EDNS_UDP_SIZE = 1232;
export const MAX_NAME_LENGTH = 255;
export const MAX_LABEL_LENGTH = 63;

export type DnsWireErrorCode =
  | 'short-header'
  | 'truncated'
  | 'bad-label'
  | 'bad-pointer'
  | 'name-too-long'
  | 'bad-name'
  | 'bad-opt';

/** A packet we cannot read (or a name we cannot write). */
export class DnsWireError extends Error {
  constructor(
    readonly code: DnsWireErrorCode,
    readonly offset: number,
    message: string,
  ) {
    super(`${message} (at byte ${offset})`);
    this.name = 'DnsWireError';
  }
}

export interface DnsHeader {
  id: number;
  /** The raw 16-bit flags word. */
  flags: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  /** Low 4 bits of the RCODE (the EDNS extended bits are in `edns.extRcode`). */
  rcode: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export interface DnsQuestion {
  /** Presentation form without the trailing dot, letter case as sent; '' is the root. */
  name: string;
  type: number;
  class: number;
  /** Byte range of the whole question entry. */
  start: number;
  end: number;
}

export type Section = 'answer' | 'authority' | 'additional';

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  section: Section;
  /** Byte range of the whole record. */
  start: number;
  end: number;
  /** Offset of the 32-bit TTL field. */
  ttlOffset: number;
  rdataOffset: number;
  rdataLength: number;
}

export interface EdnsInfo {
  udpSize: number;
  /** Upper 8 bits of the extended RCODE. */
  extRcode: number;
  version: number;
  /** DNSSEC OK. */
  do: boolean;
  /** The OPT record itself (in `additional`). */
  record: DnsRecord;
}

export interface DnsMessage {
  header: DnsHeader;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authority: DnsRecord[];
  /** Additional records, the OPT record included. */
  additional: DnsRecord[];
  edns?: EdnsInfo;
  /** Bytes the sections took (trailing bytes past it are ignored). */
  size: number;
}

// ── reading ─────────────────────────────────────────────────────────────────

function need(buf: Uint8Array, off: number, n: number, what: string): void {
  if (off + n > buf.length)
    throw new DnsWireError('truncated', off, `${what} runs past the end of the ${buf.length}-byte packet`);
}

const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

export function parseHeader(buf: Uint8Array): DnsHeader {
  if (buf.length < HEADER_SIZE)
    throw new DnsWireError('short-header', 0, `a DNS header is 12 bytes, got ${buf.length}`);
  const flags = u16(buf, 2);
  return {
    id: u16(buf, 0),
    flags,
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
    qdcount: u16(buf, 4),
    ancount: u16(buf, 6),
    nscount: u16(buf, 8),
    arcount: u16(buf, 10),
  };
}

/** One label in presentation form: printable ASCII as is, '.', '\\' and the rest as \DDD. */
function labelText(buf: Uint8Array, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len; i++) {
    const c = buf[i]!;
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

/**
 * A (possibly compressed) name at `off`. `next` is the offset after the name as it sits
 * there (after the first pointer, if any). Pointers must point before the segment that
 * holds them, so every jump goes strictly backwards and reading always ends.
 */
export function readName(buf: Uint8Array, off: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = off;
  let segmentStart = off;
  let next = -1;
  let wire = 1; // the root's zero byte
  for (;;) {
    need(buf, pos, 1, 'name');
    const len = buf[pos]!;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      need(buf, pos, 2, 'compression pointer');
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= segmentStart)
        throw new DnsWireError('bad-pointer', pos, `compression pointer to ${target} does not point backwards`);
      if (next < 0) next = pos + 2;
      pos = segmentStart = target;
      continue;
    }
    if (kind !== 0) throw new DnsWireError('bad-label', pos, `unsupported label type 0x${kind.toString(16)}`);
    need(buf, pos + 1, len, 'label');
    wire += len + 1;
    if (wire > MAX_NAME_LENGTH) throw new DnsWireError('name-too-long', off, 'name longer than 255 bytes');
    labels.push(labelText(buf, pos + 1, len));
    pos += len + 1;
  }
  return { name: labels.join('.'), next };
}

function readQuestion(buf: Uint8Array, off: number): DnsQuestion {
  const { name, next } = readName(buf, off);
  need(buf, next, 4, 'question');
  return { name, type: u16(buf, next), class: u16(buf, next + 2), start: off, end: next + 4 };
}

function readRecord(buf: Uint8Array, off: number, section: Section): DnsRecord {
  const { name, next } = readName(buf, off);
  need(buf, next, 10, 'record header');
  const rdataLength = u16(buf, next + 8);
  need(buf, next + 10, rdataLength, 'record data');
  return {
    name,
    type: u16(buf, next),
    class: u16(buf, next + 2),
    ttl: u32(buf, next + 4),
    section,
    start: off,
    end: next + 10 + rdataLength,
    ttlOffset: next + 4,
    rdataOffset: next + 10,
    rdataLength,
  };
}

/** Parses a whole message. Throws DnsWireError on anything malformed. */
export function parseMessage(buf: Uint8Array): DnsMessage {
  const header = parseHeader(buf);
  let off = HEADER_SIZE;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < header.qdcount; i++) {
    const q = readQuestion(buf, off);
    questions.push(q);
    off = q.end;
  }
  const section = (count: number, which: Section): DnsRecord[] => {
    const out: DnsRecord[] = [];
    for (let i = 0; i < count; i++) {
      const r = readRecord(buf, off, which);
      out.push(r);
      off = r.end;
    }
    return out;
  };
  const answers = section(header.ancount, 'answer');
  const authority = section(header.nscount, 'authority');
  const additional = section(header.arcount, 'additional');
  let edns: EdnsInfo | undefined;
  for (const r of additional) {
    if (r.type !== TYPE.OPT) continue;
    if (edns) throw new DnsWireError('bad-opt', r.start, 'more than one OPT record');
    if (r.name !== '') throw new DnsWireError('bad-opt', r.start, 'OPT record not owned by the root');
    edns = {
      udpSize: r.class,
      extRcode: r.ttl >>> 24,
      version: (r.ttl >>> 16) & 0xff,
      do: (r.ttl & 0x8000) !== 0,
      record: r,
    };
  }
  return { header, questions, answers, authority, additional, ...(edns ? { edns } : {}), size: off };
}

/** parseMessage, or the error as a value. */
export function tryParseMessage(buf: Uint8Array): { ok: true; msg: DnsMessage } | { ok: false; error: DnsWireError } {
  try {
    return { ok: true, msg: parseMessage(buf) };
  } catch (e) {
    if (e instanceof DnsWireError) return { ok: false, error: e };
    throw e;
  }
}

/** Names compared the DNS way: ASCII case-insensitive, trailing dot ignored. */
export function sameName(a: string, b: string): boolean {
  return normalizeName(a) === normalizeName(b);
}

export function normalizeName(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

/** Whether `resp` answers `query`: id, QR, and the same single question. */
export function isResponseTo(resp: DnsMessage, query: DnsMessage): boolean {
  if (!resp.header.qr || resp.header.id !== query.header.id) return false;
  const a = resp.questions[0];
  const b = query.questions[0];
  if (!b) return resp.questions.length === 0;
  return resp.questions.length === 1 && !!a && a.type === b.type && a.class === b.class && sameName(a.name, b.name);
}

// ── caching facts ───────────────────────────────────────────────────────────

/** The SOA MINIMUM field: the last 4 bytes of its RDATA. */
export function soaMinimum(buf: Uint8Array, rr: DnsRecord): number | undefined {
  if (rr.type !== TYPE.SOA || rr.rdataLength < 22) return undefined;
  return u32(buf, rr.rdataOffset + rr.rdataLength - 4);
}

export type CacheVerdict = { kind: 'positive' | 'negative'; ttl: number } | undefined;

/**
 * How long a response may be cached: the minimum TTL over answer and authority records for
 * an answer; for NXDOMAIN / NODATA, min(SOA TTL, SOA MINIMUM) of the authority SOA (RFC 2308
 * §5; without an SOA it is not cached). Truncated responses and other RCODEs are not cached.
 */
export function cacheVerdict(buf: Uint8Array, msg: DnsMessage): CacheVerdict {
  const h = msg.header;
  if (!h.qr || h.tc) return undefined;
  const rcode = h.rcode | ((msg.edns?.extRcode ?? 0) << 4);
  if (rcode === RCODE.NOERROR && msg.answers.length > 0) {
    let ttl = Infinity;
    for (const r of [...msg.answers, ...msg.authority]) ttl = Math.min(ttl, r.ttl);
    return { kind: 'positive', ttl };
  }
  if (rcode === RCODE.NXDOMAIN || (rcode === RCODE.NOERROR && msg.answers.length === 0)) {
    const soa = msg.authority.find((r) => r.type === TYPE.SOA);
    const min = soa && soaMinimum(buf, soa);
    if (soa === undefined || min === undefined) return undefined;
    return { kind: 'negative', ttl: Math.min(soa.ttl, min) };
  }
  return undefined;
}

/** Every record whose TTL field is a TTL (all but OPT). */
export function ttlRecords(msg: DnsMessage): DnsRecord[] {
  return [...msg.answers, ...msg.authority, ...msg.additional.filter((r) => r.type !== TYPE.OPT)];
}

// ── rewriting in place (on copies) ──────────────────────────────────────────

/** A copy with another id. */
export function withId(buf: Uint8Array, id: number): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt16BE(id & 0xffff, 0);
  return out;
}

/** A copy with every TTL set to max(0, min(ttl, cap) - elapsed). */
export function rewriteTtls(buf: Uint8Array, msg: DnsMessage, elapsedSeconds: number, cap = Infinity): Buffer {
  const out = Buffer.from(buf);
  for (const r of ttlRecords(msg))
    out.writeUInt32BE(Math.max(0, Math.min(r.ttl, cap) - elapsedSeconds) >>> 0, r.ttlOffset);
  return out;
}

/**
 * `resp` with the question bytes of `query` (same name up to letter case, same length): a
 * client that randomises case (0x20) gets its own spelling back. Names in the answer that
 * point at the question follow along. Returns `resp` itself when the two do not line up.
 */
export function withQuestionOf(resp: Buffer, respMsg: DnsMessage, query: Uint8Array, queryMsg: DnsMessage): Buffer {
  const a = respMsg.questions[0];
  const b = queryMsg.questions[0];
  if (!a || !b || respMsg.questions.length !== 1 || a.end - a.start !== b.end - b.start || a.start !== b.start)
    return resp;
  if (a.type !== b.type || a.class !== b.class || !sameName(a.name, b.name)) return resp;
  const out = Buffer.from(resp);
  out.set(query.subarray(b.start, b.end), a.start);
  return out;
}

/** A copy without the OPT record (for a client that did not send EDNS). */
export function withoutOpt(buf: Uint8Array, msg: DnsMessage): Buffer {
  const opt = msg.edns?.record;
  if (!opt) return Buffer.from(buf);
  const out = Buffer.concat([buf.subarray(0, opt.start), buf.subarray(opt.end, msg.size)]);
  out.writeUInt16BE(msg.header.arcount - 1, 10);
  return out;
}

/** The UDP payload a client accepts: 512 without EDNS, else its advertised size (at least 512). */
export function clientUdpLimit(query: DnsMessage): number {
  return query.edns ? Math.max(CLASSIC_UDP_SIZE, query.edns.udpSize) : CLASSIC_UDP_SIZE;
}

/**
 * A response that fits `limit` bytes: as is when it does, else header with TC=1 + the
 * query's question (+ an OPT record when the query had EDNS), so the client retries over TCP.
 */
export function fitUdp(resp: Buffer, query: Uint8Array, queryMsg: DnsMessage, limit: number): Buffer {
  if (resp.length <= limit) return resp;
  const q = queryMsg.questions[0];
  const question = q ? query.subarray(q.start, q.end) : Buffer.alloc(0);
  const out = Buffer.concat([
    resp.subarray(0, HEADER_SIZE),
    question,
    queryMsg.edns ? optRecord(EDNS_UDP_SIZE, false) : Buffer.alloc(0),
  ]);
  out.writeUInt16BE(out.readUInt16BE(2) | 0x0200, 2);
  out.writeUInt16BE(q ? 1 : 0, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(queryMsg.edns ? 1 : 0, 10);
  return out;
}

// ── writing ─────────────────────────────────────────────────────────────────

/** Wire form of a presentation-form name ('' or '.' is the root; \DDD and \X escapes). */
export function encodeName(name: string): Buffer {
  const text = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  if (text === '') return Buffer.from([0]);
  const bytes: number[] = [];
  let label: number[] = [];
  const flush = () => {
    if (label.length === 0) throw new DnsWireError('bad-name', 0, `empty label in '${name}'`);
    if (label.length > MAX_LABEL_LENGTH)
      throw new DnsWireError('bad-name', 0, `label longer than 63 bytes in '${name}'`);
    bytes.push(label.length, ...label);
    label = [];
  };
  const raw = Buffer.from(text, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x2e) flush();
    else if (c === 0x5c) {
      const d = raw.subarray(i + 1, i + 4).toString('latin1');
      if (/^\d{3}$/.test(d) && Number(d) <= 255) {
        label.push(Number(d));
        i += 3;
      } else if (i + 1 < raw.length) label.push(raw[++i]!);
      else throw new DnsWireError('bad-name', 0, `dangling '\\' in '${name}'`);
    } else label.push(c);
  }
  flush();
  bytes.push(0);
  if (bytes.length > MAX_NAME_LENGTH) throw new DnsWireError('name-too-long', 0, `'${name}' is longer than 255 bytes`);
  return Buffer.from(bytes);
}

/** An OPT pseudo-record (RFC 6891) with no options. */
export function optRecord(udpSize: number, dnssecOk: boolean, extRcode = 0): Buffer {
  const b = Buffer.alloc(11);
  b[0] = 0; // root
  b.writeUInt16BE(TYPE.OPT, 1);
  b.writeUInt16BE(udpSize, 3);
  b.writeUInt32BE(((extRcode & 0xff) << 24) | (dnssecOk ? 0x8000 : 0), 5);
  b.writeUInt16BE(0, 9);
  return b;
}

export interface QueryOptions {
  id: number;
  name: string;
  type: number;
  class?: number;
  /** Recursion desired (default true). */
  rd?: boolean;
  /** Checking disabled. */
  cd?: boolean;
  /** Add an OPT record. */
  edns?: { udpSize?: number; do?: boolean };
}

export function buildQuery(o: QueryOptions): Buffer {
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(o.id & 0xffff, 0);
  header.writeUInt16BE(((o.rd ?? true) ? 0x0100 : 0) | (o.cd ? 0x0010 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(o.edns ? 1 : 0, 10);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(o.type, 0);
  tail.writeUInt16BE(o.class ?? CLASS_IN, 2);
  const parts = [header, encodeName(o.name), tail];
  if (o.edns) parts.push(optRecord(o.edns.udpSize ?? EDNS_UDP_SIZE, o.edns.do ?? false));
  return Buffer.concat(parts);
}

export interface AnswerRecord {
  /** Owner name; default: the question's name (written as a pointer to it). */
  name?: string;
  type: number;
  class?: number;
  ttl: number;
  rdata: Uint8Array;
}

export interface ResponseOptions {
  rcode: number;
  answers?: AnswerRecord[];
  authority?: AnswerRecord[];
  aa?: boolean;
  /** Recursion available (default true). */
  ra?: boolean;
  /** Add an OPT record (default: when the query had one). */
  edns?: boolean;
}

function encodeRecord(r: AnswerRecord, questionPointer: boolean): Buffer {
  const owner = r.name === undefined && questionPointer ? Buffer.from([0xc0, HEADER_SIZE]) : encodeName(r.name ?? '');
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(r.type, 0);
  fixed.writeUInt16BE(r.class ?? CLASS_IN, 2);
  fixed.writeUInt32BE(Math.max(0, Math.floor(r.ttl)) >>> 0, 4);
  if (r.rdata.length > 0xffff) throw new DnsWireError('truncated', 0, 'record data longer than 65535 bytes');
  fixed.writeUInt16BE(r.rdata.length, 8);
  return Buffer.concat([owner, fixed, r.rdata]);
}

/**
 * A response to `query` (parsed as `msg`): same id and opcode, RD and CD copied, the question
 * bytes echoed as the client wrote them, then the given records.
 */
export function buildResponse(query: Uint8Array, msg: DnsMessage, o: ResponseOptions): Buffer {
  const q = msg.questions[0];
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(msg.header.id, 0);
  const flags =
    0x8000 |
    ((msg.header.opcode & 0xf) << 11) |
    (o.aa ? 0x0400 : 0) |
    (msg.header.rd ? 0x0100 : 0) |
    ((o.ra ?? true) ? 0x0080 : 0) |
    (msg.header.cd ? 0x0010 : 0) |
    (o.rcode & 0xf);
  header.writeUInt16BE(flags, 2);
  const answers = (o.answers ?? []).map((r) => encodeRecord(r, !!q));
  const authority = (o.authority ?? []).map((r) => encodeRecord(r, !!q));
  const edns = o.edns ?? !!msg.edns;
  header.writeUInt16BE(q ? 1 : 0, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authority.length, 8);
  header.writeUInt16BE(edns ? 1 : 0, 10);
  const parts: Buffer[] = [header];
  if (q) parts.push(Buffer.from(query.subarray(q.start, q.end)));
  parts.push(...answers, ...authority);
  if (edns) parts.push(optRecord(EDNS_UDP_SIZE, msg.edns?.do ?? false, o.rcode >> 4));
  return Buffer.concat(parts);
}

/**
 * FORMERR for a packet we could not parse, when at least its header is readable and it is a
 * query; undefined otherwise (a packet that short, or a stray response, is dropped).
 */
export function formErrFor(packet: Uint8Array): Buffer | undefined {
  if (packet.length < HEADER_SIZE) return undefined;
  const h = parseHeader(packet);
  if (h.qr) return undefined;
  const out = Buffer.alloc(HEADER_SIZE);
  out.writeUInt16BE(h.id, 0);
  out.writeUInt16BE(0x8000 | ((h.opcode & 0xf) << 11) | (h.rd ? 0x0100 : 0) | RCODE.FORMERR, 2);
  return out;
}

// ── record data ─────────────────────────────────────────────────────────────

export function ipRdata(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (isIPv6(ip)) {
    const big = ipv6ToBigInt(ip);
    const out = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) out[i] = Number((big >> BigInt(8 * (15 - i))) & 0xffn);
    return out;
  }
  throw new TypeError(`not an IP address: ${ip}`);
}

/** IPv6 text → 128-bit integer (accepts an embedded IPv4 tail). */
export function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length) + ((n[0]! << 8) | n[1]!).toString(16)}:${((n[2]! << 8) | n[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

export function bigIntToIpv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(16 * i)) & 0xffffn));
  // Longest run of zero groups (length ≥ 2) becomes '::' (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** The address a reverse name stands for (d.c.b.a.in-addr.arpa, nibbles.ip6.arpa), if any. */
export function reverseNameToIp(name: string): string | undefined {
  const n = normalizeName(name);
  let m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(n);
  if (m) {
    const parts = [m[4], m[3], m[2], m[1]].map(Number);
    return parts.every((p) => p <= 255) ? parts.join('.') : undefined;
  }
  m = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(n);
  if (m) {
    const nibbles = m[1]!.split('.').slice(0, 32).reverse().join('');
    return bigIntToIpv6(BigInt(`0x${nibbles}`));
  }
  return undefined;
}

/** RDATA in a readable form for the common types (tests, logs); hex for the rest. */
export function rdataText(buf: Uint8Array, rr: DnsRecord): string {
  const o = rr.rdataOffset;
  const n = rr.rdataLength;
  switch (rr.type) {
    case TYPE.A:
      if (n === 4) return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
      break;
    case TYPE.AAAA:
      if (n === 16) {
        let v = 0n;
        for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(buf[o + i]!);
        return bigIntToIpv6(v);
      }
      break;
    case TYPE.CNAME:
    case TYPE.NS:
    case TYPE.PTR:
      return readName(buf, o).name;
    case TYPE.SOA: {
      const mname = readName(buf, o);
      const rname = readName(buf, mname.next);
      need(buf, rname.next, 20, 'SOA');
      const f = [0, 4, 8, 12, 16].map((k) => u32(buf, rname.next + k));
      return `${mname.name} ${rname.name} ${f.join(' ')}`;
    }
    case TYPE.TXT: {
      const parts: string[] = [];
      for (let i = o; i < o + n; ) {
        const len = buf[i]!;
        need(buf, i + 1, len, 'TXT string');
        parts.push(JSON.stringify(Buffer.from(buf.subarray(i + 1, i + 1 + len)).toString('latin1')));
        i += 1 + len;
      }
      return parts.join(' ');
    }
  }
  return Buffer.from(buf.subarray(o, o + n)).toString('hex');
}

// ── the fast path: a plain query read without a full parse ─────────────────

/** What the forwarder's fast path needs of a query (see peekQuery). */
export interface QuickQuery {
  id: number;
  rd: boolean;
  cd: boolean;
  /** Question name lower-cased, no trailing dot ('' for the root). */
  name: string;
  type: number;
  class: number;
  /** End of the question entry (it starts at HEADER_SIZE). */
  questionEnd: number;
  /** The query's OPT record: its UDP size and DO bit; undefined without EDNS. */
  edns: { udpSize: number; do: boolean } | undefined;
}

const nameScratch = Buffer.allocUnsafe(MAX_NAME_LENGTH);

/**
 * The header, question and OPT of the commonest query: QR=0, opcode QUERY, one question whose
 * name is plain letters, digits, '-' and '_' (no escapes, no pointers), no answer or authority
 * records, at most one additional record, an OPT. Anything else is undefined: the caller
 * takes the full parse, which gives the same answer (the fast path must never differ).
 */
export function peekQuery(buf: Uint8Array): QuickQuery | undefined {
  if (buf.length < HEADER_SIZE + 5) return undefined;
  const flags = u16(buf, 2);
  if ((flags & 0xf800) !== 0 || u16(buf, 4) !== 1 || u16(buf, 6) !== 0 || u16(buf, 8) !== 0) return undefined;
  const arcount = u16(buf, 10);
  if (arcount > 1) return undefined;
  let off = HEADER_SIZE;
  let n = 0;
  for (;;) {
    const len = buf[off]!;
    if (len === 0) break;
    if (len > MAX_LABEL_LENGTH || off + 1 + len >= buf.length || n + len + 3 > MAX_NAME_LENGTH) return undefined;
    if (n > 0) nameScratch[n++] = 0x2e;
    for (let i = off + 1; i <= off + len; i++) {
      let c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      else if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) return undefined;
      nameScratch[n++] = c;
    }
    off += len + 1;
  }
  const questionEnd = off + 5;
  if (questionEnd > buf.length) return undefined;
  let edns: QuickQuery['edns'];
  if (arcount === 1) {
    // OPT: root owner, type 41, class = UDP size, TTL = ext-rcode/version/flags, rdata.
    const o = questionEnd;
    if (o + 11 > buf.length || buf[o] !== 0 || u16(buf, o + 1) !== TYPE.OPT || o + 11 + u16(buf, o + 9) > buf.length)
      return undefined;
    edns = { udpSize: u16(buf, o + 3), do: (buf[o + 7]! & 0x80) !== 0 };
  }
  return {
    id: u16(buf, 0),
    rd: (flags & 0x0100) !== 0,
    cd: (flags & 0x0010) !== 0,
    name: nameScratch.toString('latin1', 0, n),
    type: u16(buf, off + 1),
    class: u16(buf, off + 3),
    questionEnd,
    edns,
  };
}

/** Offset after the (possibly compressed) name at `off`, or -1 when it runs past the end. */
function skipName(buf: Uint8Array, off: number): number {
  for (let hops = 0; off < buf.length && hops < 128; hops++) {
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (len > MAX_LABEL_LENGTH) return -1;
    off += len + 1;
  }
  return -1;
}

/**
 * Where the OPT record of a response lies, walking its records from `from` (the end of its
 * single question) without decoding them: [start, end], [0, 0] when it has none, undefined when
 * the records run past the end (malformed).
 */
export function optSpan(buf: Uint8Array, from: number): [number, number] | undefined {
  const records = u16(buf, 6) + u16(buf, 8) + u16(buf, 10);
  let off = from;
  let span: [number, number] = [0, 0];
  for (let i = 0; i < records; i++) {
    const start = off;
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return undefined;
    const end = off + 10 + u16(buf, off + 8);
    if (end > buf.length) return undefined;
    if (u16(buf, off) === TYPE.OPT) span = [start, end];
    off = end;
  }
  return span;
}

/**
 * Whether `resp` (QR set, one question) asks the question at [HEADER_SIZE, end) of `query`,
 * whose name is lower case: the name compared up to ASCII letter case, type and class exactly.
 */
export function sameQuestionBytes(resp: Uint8Array, query: Uint8Array, end: number): boolean {
  if (resp.length < end || (resp[2]! & 0x80) === 0 || u16(resp, 4) !== 1) return false;
  const nameEnd = end - 4;
  for (let i = HEADER_SIZE; i < nameEnd; i++) {
    const a = resp[i]!;
    if ((a >= 0x41 && a <= 0x5a ? a | 0x20 : a) !== query[i]) return false;
  }
  return u32(resp, nameEnd) === u32(query, nameEnd);
}
