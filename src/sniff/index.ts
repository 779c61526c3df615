// Protocol sniffing over the first bytes of a connection: which protocol, and the
// destination name it carries. Pure: the caller keeps (and later relays) the bytes.
import { sniffHttp } from './http.js';
import { HTTP_SNIFF_LIMIT, TLS_SNIFF_LIMIT, type SniffResult } from './result.js';
import { sniffTls } from './tls.js';

export { sniffHttp, hostOfAuthority } from './http.js';
export { sniffTls } from './tls.js';
export { HTTP_SNIFF_LIMIT, TLS_SNIFF_LIMIT, normalizeHostName, type SniffOptions, type SniffResult } from './result.js';

export type SniffedProtocol = 'http' | 'tls' | 'unknown';
export interface Sniffed {
  protocol: SniffedProtocol;
  /** Present when the protocol carries a usable DNS name. */
  domain?: string;
}

export interface CombinedSniffOptions {
  /** Default HTTP_SNIFF_LIMIT (8 KiB). */
  httpMaxBytes?: number;
  /** Default TLS_SNIFF_LIMIT (32 KiB). */
  tlsMaxBytes?: number;
}

function settle(r: SniffResult, protocol: SniffedProtocol): Sniffed | 'need-more' | undefined {
  if (r === 'need-more') return r;
  if (r === 'not-this-protocol') return undefined;
  return r === 'no-domain' ? { protocol } : { protocol, domain: r.domain };
}

/**
 * TLS first (its first byte, 0x16, is never the start of an HTTP method), then HTTP.
 * 'need-more' while either could still answer; `{ protocol: 'unknown' }` when neither fits.
 * Callers should also bound the wait with a timer: server-speaks-first protocols send nothing.
 */
export function sniff(buf: Buffer, opts?: CombinedSniffOptions): Sniffed | 'need-more' {
  const tls = settle(sniffTls(buf, { maxBytes: opts?.tlsMaxBytes ?? TLS_SNIFF_LIMIT }), 'tls');
  if (tls !== undefined) return tls;
  const http = settle(sniffHttp(buf, { maxBytes: opts?.httpMaxBytes ?? HTTP_SNIFF_LIMIT }), 'http');
  return http ?? { protocol: 'unknown' };
}
