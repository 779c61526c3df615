// Pieces of node URIs shared by every scheme's parser (uri.ts, uri-v2ray.ts): host:port,
// percent-decoding, lenient base64. Pure.
import { isIP } from 'node:net';

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

export function parseHostPort(text: string, fail: (p: string) => never): { host: string; port: number } {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) fail("IPv6 address without closing ']'");
    host = pctDecode(text.slice(1, close), 'the host', fail);
    if (isIP(host) !== 6) fail(`'${host}' in brackets is not an IPv6 address`);
    const after = text.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) fail(`unexpected '${after}' after the IPv6 address`);
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const c = text.lastIndexOf(':');
    if (c >= 0 && text.indexOf(':') !== c) fail('IPv6 addresses must be written in brackets, e.g. [::1]:1080');
    host = pctDecode(c >= 0 ? text.slice(0, c) : text, 'the host', fail);
    portText = c >= 0 ? text.slice(c + 1) : undefined;
    if (host === '') fail('missing host');
    if (isIP(host) === 0 && !HOSTNAME.test(host)) fail(`'${host}' is not a valid host name or IP address`);
  }
  if (portText === undefined || portText === '') fail('missing port (e.g. host:1080)');
  if (!/^\d{1,5}$/.test(portText!)) fail(`port '${portText}' is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) fail(`port ${port} is out of range 1-65535`);
  return { host, port };
}

export function pctDecode(text: string, what: string, fail: (p: string) => never): string {
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    return fail(`bad percent-encoding in ${what}`);
  }
}

/** Standard or URL-safe base64, padding optional; undefined when it is not valid UTF-8 base64. */
export function decodeBase64(text: string): string | undefined {
  const t = text.replace(/=+$/, '');
  if (t === '' || !/^[A-Za-z0-9+/_-]+$/.test(t) || t.length % 4 === 1) return undefined;
  const bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
