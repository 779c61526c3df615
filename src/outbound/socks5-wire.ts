// The SOCKS5 wire codec (RFC 1928, RFC 1929): pure, with incremental parsers ('need-more'
// until a whole message is there). Kept apart from the outbound (socks5.ts) so the splice
// engine's loop can speak SOCKS5 without loading the node connection code.
import { isIPv4, isIPv6 } from 'node:net';
import { encodeSockaddr, ipv6FromBytes } from '../kernel/sockaddr.js';
import type { Parsed } from './node-conn.js';
import type { Destination } from './types.js';

export const SOCKS_VERSION = 5;
export const METHOD_NO_AUTH = 0x00;
export const METHOD_USERPASS = 0x02;
export const METHOD_NONE_ACCEPTABLE = 0xff;
export const CMD_CONNECT = 1;
export const CMD_UDP_ASSOCIATE = 3;
export const ATYP_IPV4 = 1;
export const ATYP_DOMAIN = 3;
export const ATYP_IPV6 = 4;

/** An address as SOCKS5 (and Shadowsocks) carry it: ATYP + address + port. */
export interface SocksAddress {
  /** IPv4 / IPv6 text, or a domain name. */
  host: string;
  port: number;
  type: typeof ATYP_IPV4 | typeof ATYP_DOMAIN | typeof ATYP_IPV6;
}

/** Text of RFC 1928 reply codes. */
export function socksReplyText(code: number): string {
  switch (code) {
    case 0:
      return 'succeeded';
    case 1:
      return 'general SOCKS server failure';
    case 2:
      return 'connection not allowed by ruleset';
    case 3:
      return 'network unreachable';
    case 4:
      return 'host unreachable';
    case 5:
      return 'connection refused';
    case 6:
      return 'TTL expired';
    case 7:
      return 'command not supported';
    case 8:
      return 'address type not supported';
    default:
      return `unknown reply code ${code}`;
  }
}

/** The address to ask the node for: the sniffed domain when there is a usable one, else the IP. */
export function destinationAddress(dst: Destination): SocksAddress {
  const domain = dst.domain?.replace(/\.$/, '');
  if (domain && Buffer.byteLength(domain) <= 255 && /^[\x21-\x7e]+$/.test(domain)) {
    return { host: domain, port: dst.port, type: ATYP_DOMAIN };
  }
  return { host: dst.ip, port: dst.port, type: dst.family === 6 ? ATYP_IPV6 : ATYP_IPV4 };
}

/** ATYP + address + port. Throws TypeError on an address it cannot carry. */
export function encodeSocksAddress(addr: SocksAddress): Buffer {
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) throw new TypeError(`bad port ${addr.port}`);
  let out: Buffer;
  if (addr.type === ATYP_IPV4) {
    if (!isIPv4(addr.host)) throw new TypeError(`not an IPv4 address: ${addr.host}`);
    // Every node connection encodes one: the four numbers written directly, no sockaddr built.
    out = Buffer.allocUnsafe(7);
    out[0] = ATYP_IPV4;
    const q = addr.host.split('.');
    for (let i = 0; i < 4; i++) out[1 + i] = Number(q[i]);
  } else if (addr.type === ATYP_IPV6) {
    if (!isIPv6(addr.host)) throw new TypeError(`not an IPv6 address: ${addr.host}`);
    out = Buffer.alloc(19);
    out[0] = ATYP_IPV6;
    encodeSockaddr({ address: addr.host, port: 0 }).copy(out, 1, 8, 24);
  } else {
    const name = Buffer.from(addr.host);
    if (name.length < 1 || name.length > 255) throw new TypeError('domain name must be 1-255 bytes');
    out = Buffer.alloc(4 + name.length);
    out[0] = ATYP_DOMAIN;
    out[1] = name.length;
    name.copy(out, 2);
  }
  out.writeUInt16BE(addr.port, out.length - 2);
  return out;
}

/** Incremental decode of ATYP + address + port at `offset`. */
export function decodeSocksAddress(b: Buffer, offset = 0): Parsed<{ address: SocksAddress }> {
  if (b.length < offset + 1) return 'need-more';
  const atyp = b[offset]!;
  let len: number;
  if (atyp === ATYP_IPV4) len = 1 + 4 + 2;
  else if (atyp === ATYP_IPV6) len = 1 + 16 + 2;
  else if (atyp === ATYP_DOMAIN) {
    if (b.length < offset + 2) return 'need-more';
    const n = b[offset + 1]!;
    if (n === 0) return { ok: false, error: 'empty domain name' };
    len = 2 + n + 2;
  } else return { ok: false, error: `unknown address type ${atyp}` };
  if (b.length < offset + len) return 'need-more';
  const port = b.readUInt16BE(offset + len - 2);
  let host: string;
  if (atyp === ATYP_IPV4) host = `${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}.${b[offset + 4]}`;
  else if (atyp === ATYP_IPV6) {
    // Keep IPv4-mapped addresses as IPv6 text: the type says v6.
    const raw = b.subarray(offset + 1, offset + 17);
    const text = ipv6FromBytes(raw);
    host = isIPv4(text) ? `::ffff:${text}` : text;
  } else host = b.toString('latin1', offset + 2, offset + 2 + b[offset + 1]!);
  return { ok: true, length: len, address: { host, port, type: atyp as SocksAddress['type'] } };
}

// ── client → server messages ─────────────────────────────────────────────────

/** Version/method selection message. */
export function encodeGreeting(methods: readonly number[]): Buffer {
  if (methods.length < 1 || methods.length > 255) throw new TypeError('1-255 methods');
  return Buffer.from([SOCKS_VERSION, methods.length, ...methods]);
}

/** RFC 1929 username/password request. */
export function encodeUserPassAuth(username: string, password: string): Buffer {
  const u = Buffer.from(username);
  const p = Buffer.from(password);
  if (u.length < 1 || u.length > 255) throw new TypeError('SOCKS5 user name must be 1-255 bytes');
  if (p.length > 255) throw new TypeError('SOCKS5 password must be at most 255 bytes');
  return Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]);
}

/** A CONNECT / UDP ASSOCIATE request. */
export function encodeRequest(cmd: number, addr: SocksAddress): Buffer {
  return Buffer.concat([Buffer.from([SOCKS_VERSION, cmd, 0]), encodeSocksAddress(addr)]);
}

// ── server → client messages (incremental, strict) ───────────────────────────

/** VER METHOD */
export function parseMethodReply(b: Buffer): Parsed<{ method: number }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== SOCKS_VERSION) return { ok: false, error: `version ${b[0]} (not a SOCKS5 server)` };
  if (b.length < 2) return 'need-more';
  return { ok: true, length: 2, method: b[1]! };
}

/** RFC 1929: VER(1) STATUS */
export function parseAuthReply(b: Buffer): Parsed<{ success: boolean; status: number }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== 1) return { ok: false, error: `authentication reply version ${b[0]} (expected 1)` };
  if (b.length < 2) return 'need-more';
  return { ok: true, length: 2, success: b[1] === 0, status: b[1]! };
}

/** VER REP RSV ATYP BND.ADDR BND.PORT */
export function parseConnectReply(b: Buffer): Parsed<{ reply: number; bound: SocksAddress }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== SOCKS_VERSION) return { ok: false, error: `reply version ${b[0]} (expected 5)` };
  if (b.length < 3) return 'need-more';
  if (b[2] !== 0) return { ok: false, error: `reserved byte is ${b[2]} (expected 0)` };
  const addr = decodeSocksAddress(b, 3);
  if (addr === 'need-more') return addr;
  if (!addr.ok) return addr;
  return { ok: true, length: 3 + addr.length, reply: b[1]!, bound: addr.address };
}

// ── UDP ASSOCIATE datagrams (RFC 1928 §7), for the UDP relay ─────────────────

export interface SocksUdpPacket {
  /** Fragment number; 0 = standalone (fragmentation is rarely supported: drop frag ≠ 0). */
  frag: number;
  address: SocksAddress;
  payload: Buffer;
}

/** RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA */
export function encodeSocksUdpPacket(p: SocksUdpPacket): Buffer {
  if (!Number.isInteger(p.frag) || p.frag < 0 || p.frag > 255) throw new TypeError(`bad frag ${p.frag}`);
  return Buffer.concat([Buffer.from([0, 0, p.frag]), encodeSocksAddress(p.address), p.payload]);
}

/** A whole datagram: no 'need-more' (a datagram is complete or invalid). */
export function decodeSocksUdpPacket(b: Buffer): { ok: true; packet: SocksUdpPacket } | { ok: false; error: string } {
  if (b.length < 4) return { ok: false, error: 'datagram shorter than the SOCKS5 UDP header' };
  if (b[0] !== 0 || b[1] !== 0) return { ok: false, error: 'reserved bytes are not zero' };
  const addr = decodeSocksAddress(b, 3);
  if (addr === 'need-more') return { ok: false, error: 'truncated address' };
  if (!addr.ok) return addr;
  return { ok: true, packet: { frag: b[2]!, address: addr.address, payload: b.subarray(3 + addr.length) } };
}
