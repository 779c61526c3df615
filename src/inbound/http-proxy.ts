// The HTTP proxy side of the mixed inbound: a pure parser of one request head (CONNECT
// host:port, or an absolute-form `GET http://host/…` to forward), bounded to
// MAX_PROXY_HEAD_BYTES, and the responses the proxy itself sends. A forwarded request is
// rewritten to origin form with the hop-by-hop and proxy headers removed and
// `Connection: close`, so one client connection carries one request and the bytes after the
// head (a body, then the response) are relayed untouched.
import { isIPv4, isIPv6 } from 'node:net';

/** Largest request head accepted (431 beyond). */
export const MAX_PROXY_HEAD_BYTES = 16 * 1024;

export interface Credentials {
  username: string;
  password: string;
}

export interface ProxyRequest {
  kind: 'connect' | 'forward';
  /** Domain name or IP address (IPv6 without brackets). */
  host: string;
  port: number;
  /** Bytes of the client's head (what follows is body or tunnel data). */
  length: number;
  /** forward: the head to send upstream, in origin form. */
  upstreamHead?: Buffer;
  /** From Proxy-Authorization: Basic; 'malformed' for any other form. */
  auth?: Credentials | 'malformed';
}

export interface ProxyRefusal {
  ok: false;
  status: 400 | 431 | 505;
  error: string;
}

export type ProxyHeadResult = 'need-more' | ({ ok: true } & ProxyRequest) | ProxyRefusal;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
/** Headers that concern only this hop (RFC 9110 §7.6.1) or only the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'upgrade']);

const refuse = (status: ProxyRefusal['status'], error: string): ProxyRefusal => ({ ok: false, status, error });

/** Parses the head at the start of `b` once it is complete; never reads past MAX_PROXY_HEAD_BYTES. */
export function parseProxyHead(b: Buffer): ProxyHeadResult {
  const window = b.length > MAX_PROXY_HEAD_BYTES ? b.subarray(0, MAX_PROXY_HEAD_BYTES) : b;
  const end = window.indexOf('\r\n\r\n');
  if (end < 0) return b.length >= MAX_PROXY_HEAD_BYTES ? refuse(431, 'request head too large') : 'need-more';
  const text = window.toString('latin1', 0, end);
  if (/[\0\n\r]/.test(text.replaceAll('\r\n', ''))) return refuse(400, 'bare CR, LF or NUL in the request head');
  const [requestLine = '', ...lines] = text.split('\r\n');
  if (/^\S+ \S+ HTTP\/[02-9]/.test(requestLine)) return refuse(505, 'only HTTP/1.x');
  const m = REQUEST_LINE.exec(requestLine);
  if (!m) return refuse(400, 'malformed request line');
  const [, method = '', target = '', minor = '1'] = m;
  const headers = parseHeaders(lines);
  if (typeof headers === 'string') return refuse(400, headers);
  const auth = authOf(headers);
  if (method.toUpperCase() === 'CONNECT') {
    const a = parseAuthority(target, undefined);
    if (typeof a === 'string') return refuse(400, a);
    return { ok: true, kind: 'connect', ...a, length: end + 4, ...(auth ? { auth } : {}) };
  }
  const url = /^http:\/\/([^/?#]*)(.*)$/i.exec(target);
  if (!url) {
    return refuse(
      400,
      /^[a-z][a-z0-9+.-]*:\/\//i.test(target)
        ? 'only http:// URLs are forwarded; use CONNECT for https'
        : 'not a proxy request (the target must be an absolute http:// URL, or CONNECT host:port)',
    );
  }
  const authority = url[1] ?? '';
  const a = parseAuthority(authority, 80);
  if (typeof a === 'string') return refuse(400, a);
  const path = url[2]?.startsWith('/') ? url[2] : `/${url[2] ?? ''}`;
  const upstreamHead = forwardHead(`${method} ${path.replace(/#.*$/, '')} HTTP/1.${minor}`, authority, headers);
  if (typeof upstreamHead === 'string') return refuse(400, upstreamHead);
  return { ok: true, kind: 'forward', ...a, length: end + 4, upstreamHead, ...(auth ? { auth } : {}) };
}

type Header = [name: string, value: string];

function parseHeaders(lines: string[]): Header[] | string {
  const out: Header[] = [];
  for (const line of lines) {
    if (line.startsWith(' ') || line.startsWith('\t')) return 'folded header line';
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) return 'malformed header line';
    out.push([name, line.slice(colon + 1).trim()]);
  }
  return out;
}

function authOf(headers: Header[]): Credentials | 'malformed' | undefined {
  const values = headers.filter(([n]) => n.toLowerCase() === 'proxy-authorization').map(([, v]) => v);
  if (values.length === 0) return undefined;
  const m = values.length === 1 ? /^Basic +([A-Za-z0-9+/]+=*)$/i.exec(values[0]!) : null;
  if (!m) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** host:port (IPv6 in brackets); the default port when the authority has none, if any. */
export function parseAuthority(text: string, defaultPort: number | undefined): { host: string; port: number } | string {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]@]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) return `bad host '${text.slice(0, 100)}'`;
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined ? !isIPv6(host) : !isIPv4(host) && !isHostName(host))
    return `bad host '${host.slice(0, 100)}'`;
  const port = m[3] !== undefined ? Number(m[3]) : defaultPort;
  if (port === undefined) return `'${text.slice(0, 100)}' has no port`;
  if (port < 1 || port > 65535) return `bad port ${port}`;
  return { host, port };
}

function isHostName(s: string): boolean {
  return (
    s.length <= 253 &&
    /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(s)
  );
}

/** Origin-form head for the server: Host from the URL, hop-by-hop headers gone, Connection: close. */
function forwardHead(requestLine: string, authority: string, headers: Header[]): Buffer | string {
  const lower = headers.map(([n]) => n.toLowerCase());
  if (lower.includes('transfer-encoding') && lower.includes('content-length'))
    return 'both Transfer-Encoding and Content-Length';
  const lengths = new Set(headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v));
  if (lengths.size > 1) return 'conflicting Content-Length headers';
  const connectionTokens = headers
    .filter(([n]) => n.toLowerCase() === 'connection')
    .flatMap(([, v]) => v.split(',').map((t) => t.trim().toLowerCase()))
    .filter(Boolean);
  const drop = new Set([...HOP_BY_HOP, 'host', ...connectionTokens]);
  const kept = headers.filter(([n]) => !drop.has(n.toLowerCase()));
  let head = `${requestLine}\r\nHost: ${authority}\r\n`;
  for (const [n, v] of kept) head += `${n}: ${v}\r\n`;
  head += 'Connection: close\r\n\r\n';
  return Buffer.from(head, 'latin1');
}

const REASONS: Record<number, string> = {
  200: 'Connection established',
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** A response from the proxy itself; everything but 200 closes the connection. */
export function proxyResponse(status: number, detail = ''): string {
  const reason = REASONS[status] ?? 'Error';
  if (status === 200) return `HTTP/1.1 200 ${reason}\r\n\r\n`;
  const body = detail ? `${detail}\n` : '';
  const auth = status === 407 ? 'Proxy-Authenticate: Basic realm="tranproxy"\r\n' : '';
  return `HTTP/1.1 ${status} ${reason}\r\n${auth}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
