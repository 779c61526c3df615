// HTTP CONNECT outbound (RFC 9110 §9.3.6) with optional Basic proxy authentication.
// The response-head parser is pure, strict and incremental ('need-more' until the blank line).
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  connectNode,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  Handshake,
  NodeOutbound,
  printable,
  type Parsed,
} from './node-conn.js';
import { destinationAddress } from './socks5.js';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';
import type { HttpNodeSpec } from './uri.js';

/** Longest response head accepted from a proxy. */
export const MAX_CONNECT_RESPONSE_HEAD = 16 * 1024;

/** `host:port` as a CONNECT request-target / Host value (IPv6 in brackets). */
export function connectAuthority(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

export function encodeConnectRequest(authority: string, auth?: { username: string; password: string }): Buffer {
  if (/[\s\x00-\x1f\x7f]/.test(authority))
    throw new TypeError('CONNECT target contains whitespace or control characters');
  let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (auth)
    head += `Proxy-Authorization: Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

export interface ConnectResponse {
  status: number;
  /** The status line as received (latin1), without CRLF. */
  statusLine: string;
  /** Header fields in order, names as received. */
  headers: Array<[string, string]>;
}

const PREFIX = Buffer.from('HTTP/1.');
const STATUS_LINE = /^HTTP\/1\.[01] ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;

/**
 * Parses the proxy's response head. `length` is the size of the head including the blank
 * line; bytes after it belong to the tunnel. CRLF line ends only, no obs-fold, no bare CR/LF.
 */
export function parseConnectResponse(b: Buffer, maxHead = MAX_CONNECT_RESPONSE_HEAD): Parsed<ConnectResponse> {
  const n = Math.min(b.length, PREFIX.length);
  if (b.subarray(0, n).compare(PREFIX, 0, n) !== 0)
    return { ok: false, error: 'response does not start with HTTP/1.x (not an HTTP proxy?)' };
  const end = b.indexOf('\r\n\r\n', 0, 'latin1');
  if (end < 0) {
    if (b.length >= maxHead) return { ok: false, error: `response head longer than ${maxHead} bytes` };
    // A bare LF anywhere already makes the head invalid: say so now instead of timing out.
    const lf = bareLineFeed(b, b.length);
    if (lf) return { ok: false, error: lf };
    return 'need-more';
  }
  const length = end + 4;
  if (length > maxHead) return { ok: false, error: `response head longer than ${maxHead} bytes` };
  const lf = bareLineFeed(b, end + 2);
  if (lf) return { ok: false, error: lf };
  const lines = b.toString('latin1', 0, end).split('\r\n');
  const statusLine = lines[0]!;
  const m = STATUS_LINE.exec(statusLine);
  if (!m) return { ok: false, error: `malformed status line '${printable(statusLine)}'` };
  const headers: Array<[string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(' ') || line.startsWith('\t'))
      return { ok: false, error: 'obsolete line folding in the response head' };
    const f = FIELD.exec(line);
    if (!f) return { ok: false, error: `malformed header line '${printable(line, 80)}'` };
    headers.push([f[1]!, f[2]!]);
  }
  return { ok: true, length, status: Number(m[1]), statusLine, headers };
}

function bareLineFeed(b: Buffer, upTo: number): string | undefined {
  for (let i = b.indexOf(0x0a); i >= 0 && i < upTo; i = b.indexOf(0x0a, i + 1)) {
    if (i === 0 || b[i - 1] !== 0x0d) return 'bare LF in the response head';
  }
  for (let i = b.indexOf(0x0d); i >= 0 && i < upTo - 1; i = b.indexOf(0x0d, i + 1)) {
    if (b[i + 1] !== 0x0a) return 'bare CR in the response head';
  }
  return undefined;
}

export class HttpConnectOutbound extends NodeOutbound<HttpNodeSpec> implements TcpOutbound {
  readonly kind = 'http';

  async connect(dst: Destination, ctx: ConnectContext): Promise<Duplex> {
    const target = destinationAddress(dst);
    const authority = connectAuthority(target.host, target.port);
    let request: Buffer;
    try {
      request = encodeConnectRequest(
        authority,
        this.spec.username !== undefined
          ? { username: this.spec.username, password: this.spec.password ?? '' }
          : undefined,
      );
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot ask node ${this.where} for ${printable(authority)}: ${(e as Error).message}`,
      );
    }
    const socket = await connectNode(this.name, this.spec.host, this.spec.port, this.opts, ctx.signal);
    const hs = new Handshake(
      socket,
      this.name,
      this.where,
      this.opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      ctx.signal,
    );
    hs.write(request);
    const r = await hs.read(parseConnectResponse, 'CONNECT response');
    if (r.status !== 200) {
      // 407 is the proxy's own authentication; some proxies (tinyproxy) answer CONNECT with 401.
      const auth = r.status === 407 || r.status === 401;
      const code = auth ? 'EAUTH' : 'EREFUSED';
      const hint = auth
        ? this.spec.username !== undefined
          ? ' (wrong user name or password?)'
          : ' (add user:password to the node URI)'
        : '';
      hs.failWith(
        code,
        `node ${this.where} refused CONNECT ${printable(authority)}: ${printable(r.statusLine)}${hint}`,
      );
    }
    return hs.done();
  }
}
