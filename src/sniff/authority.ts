// The destination authority (host and port, IP literals included) of an HTTP/1.x request
// head, for --dst-from-host: used only when the kernel has no original destination.
import { isIP } from 'node:net';

export type AuthorityResult = { host: string; port: number } | 'need-more' | 'none';

const HEAD_END = /\r?\n\r?\n/;

/** Parse "name", "name:port", "1.2.3.4:80", "[v6]:port". */
export function parseAuthority(text: string, defaultPort: number): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) return undefined;
  const host = (m[1] ?? m[2])!;
  if (m[1] !== undefined && isIP(host) !== 6) return undefined;
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  if (m[2] !== undefined && !isIP(host) && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(host)) return undefined;
  return { host: host.toLowerCase().replace(/\.$/, ''), port };
}

/** From the absolute-form target if any, else the Host header; 'need-more' until the head ends. */
export function requestAuthority(buf: Buffer, maxBytes: number, defaultPort = 80): AuthorityResult {
  const text = buf.toString('latin1', 0, Math.min(buf.length, maxBytes));
  const end = HEAD_END.exec(text);
  if (!end) return buf.length >= maxBytes ? 'none' : 'need-more';
  const head = text.slice(0, end.index);
  const [requestLine = '', ...lines] = head.split(/\r?\n/);
  const target = requestLine.split(' ')[1] ?? '';
  const abs = /^https?:\/\/(?:[^/?#@]*@)?([^/?#]*)/i.exec(target);
  if (abs) return parseAuthority(abs[1]!, target.toLowerCase().startsWith('https') ? 443 : defaultPort) ?? 'none';
  const hosts = lines.filter((l) => /^host:/i.test(l));
  if (hosts.length !== 1) return 'none';
  return parseAuthority(hosts[0]!.slice(5), defaultPort) ?? 'none';
}
