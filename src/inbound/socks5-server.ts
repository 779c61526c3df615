// The server side of SOCKS5 (RFC 1928) with username/password (RFC 1929): pure, incremental
// parsers of what a client sends ('need-more' until a whole message is there; every length
// comes from the message itself, so nothing grows past 2 + 255 + 255 bytes) and the replies.
// The address codec and the UDP datagram header are shared with the SOCKS5 outbound.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { Parsed } from '../outbound/node-conn.js';
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  ATYP_IPV6,
  decodeSocksAddress,
  encodeSocksAddress,
  METHOD_NO_AUTH,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USERPASS,
  SOCKS_VERSION,
  type SocksAddress,
} from '../outbound/socks5.js';

export { CMD_CONNECT, CMD_UDP_ASSOCIATE, decodeSocksUdpPacket, encodeSocksUdpPacket } from '../outbound/socks5.js';
export type { SocksAddress };

/** RFC 1928 reply codes the server sends. */
export const REP = {
  succeeded: 0,
  generalFailure: 1,
  notAllowed: 2,
  networkUnreachable: 3,
  hostUnreachable: 4,
  connectionRefused: 5,
  ttlExpired: 6,
  commandNotSupported: 7,
  addressTypeNotSupported: 8,
} as const;

/** RFC 1929 sub-negotiation version. */
const USERPASS_VERSION = 1;

/** Version/method selection: the methods the client offers. */
export function parseGreeting(b: Buffer): Parsed<{ methods: number[] }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== SOCKS_VERSION) return { ok: false, error: `not SOCKS5 (version byte ${b[0]})` };
  if (b.length < 2) return 'need-more';
  const n = b[1]!;
  if (n === 0) return { ok: false, error: 'no authentication methods offered' };
  if (b.length < 2 + n) return 'need-more';
  return { ok: true, length: 2 + n, methods: [...b.subarray(2, 2 + n)] };
}

/** The method this server picks: user/password when it has credentials, else no auth; 0xff: none fits. */
export function chooseMethod(offered: readonly number[], authRequired: boolean): number {
  if (authRequired) return offered.includes(METHOD_USERPASS) ? METHOD_USERPASS : METHOD_NONE_ACCEPTABLE;
  return offered.includes(METHOD_NO_AUTH) ? METHOD_NO_AUTH : METHOD_NONE_ACCEPTABLE;
}

export function encodeMethodChoice(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

/** RFC 1929 request: VER ULEN UNAME PLEN PASSWD. */
export function parseUserPass(b: Buffer): Parsed<{ username: string; password: string }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== USERPASS_VERSION) return { ok: false, error: `bad username/password version ${b[0]}` };
  if (b.length < 2) return 'need-more';
  const ulen = b[1]!;
  if (b.length < 3 + ulen) return 'need-more';
  const plen = b[2 + ulen]!;
  const end = 3 + ulen + plen;
  if (b.length < end) return 'need-more';
  return {
    ok: true,
    length: end,
    username: b.toString('utf8', 2, 2 + ulen),
    password: b.toString('utf8', 3 + ulen, end),
  };
}

export function encodeUserPassStatus(ok: boolean): Buffer {
  return Buffer.from([USERPASS_VERSION, ok ? 0 : 1]);
}

/** VER CMD RSV ATYP DST.ADDR DST.PORT. A domain must be printable ASCII (no NUL, no spaces). */
export function parseSocksRequest(b: Buffer): Parsed<{ cmd: number; address: SocksAddress }> {
  if (b.length < 1) return 'need-more';
  if (b[0] !== SOCKS_VERSION) return { ok: false, error: `not SOCKS5 (version byte ${b[0]})` };
  if (b.length < 4) return 'need-more';
  const a = decodeSocksAddress(b, 3);
  if (a === 'need-more' || !a.ok) return a;
  if (a.address.type === ATYP_DOMAIN && !/^[\x21-\x7e]+$/.test(a.address.host))
    return { ok: false, error: 'domain name with control or non-ASCII bytes' };
  return { ok: true, length: 3 + a.length, cmd: b[1]!, address: a.address };
}

/** VER REP RSV BND.ADDR BND.PORT; `bound` unknown (failures): 0.0.0.0:0. */
export function encodeSocksReply(rep: number, bound?: { address: string; port: number }): Buffer {
  const host = bound?.address.replace(/^::ffff:(?=\d+\.)/i, '') ?? '0.0.0.0';
  const type = isIPv4(host) ? ATYP_IPV4 : isIPv6(host) ? ATYP_IPV6 : ATYP_IPV4;
  const addr = encodeSocksAddress({
    host: type === ATYP_IPV4 && !isIPv4(host) ? '0.0.0.0' : host,
    port: bound?.port ?? 0,
    type,
  });
  return Buffer.concat([Buffer.from([SOCKS_VERSION, rep, 0]), addr]);
}

/** Comparison of credentials that takes the same time wherever they differ. */
export function credentialsMatch(
  given: { username: string; password: string },
  want: { username: string; password: string },
): boolean {
  const h = (t: string) => createHash('sha256').update(t).digest();
  const user = timingSafeEqual(h(given.username), h(want.username));
  const pass = timingSafeEqual(h(given.password), h(want.password));
  return user && pass;
}
