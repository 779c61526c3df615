// What a sniffer says about the first bytes of a connection, and the host-name check the
// sniffers share. Sniffers only look at a Buffer; they never consume or modify it.

/**
 * - `{ domain }`: the protocol was recognised and carries this DNS name (lower case, no
 *   trailing dot, no port).
 * - `'need-more'`: so far the bytes fit the protocol; call again with more bytes.
 * - `'not-this-protocol'`: the bytes cannot be this protocol.
 * - `'no-domain'`: it is this protocol, but no usable name is there (none sent, an IP
 *   literal, malformed, or the size limit was reached first).
 */
export type SniffResult = { domain: string } | 'need-more' | 'not-this-protocol' | 'no-domain';

/** Bytes an HTTP/1.x request head may take before the HTTP sniffer gives up. */
export const HTTP_SNIFF_LIMIT = 8 * 1024;
/** Bytes a TLS ClientHello (all its records) may take before the TLS sniffer gives up. */
export const TLS_SNIFF_LIMIT = 32 * 1024;

export interface SniffOptions {
  /** Give up ('no-domain') once this many bytes are buffered without an answer. */
  maxBytes?: number;
}

// Letters, digits, '-', '_' (seen in real names) and '.'.
const HOST_CHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) HOST_CHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) HOST_CHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) HOST_CHAR[c] = 1;
HOST_CHAR[0x2d] = 1;
HOST_CHAR[0x5f] = 1;
HOST_CHAR[0x2e] = 1;

/**
 * A DNS name from a Host header or SNI, normalised: lower case, one trailing dot removed.
 * undefined for anything that is not a plausible DNS name: empty, too long, bad characters,
 * empty labels, labels over 63 bytes, or an IPv4 literal (all-numeric last label).
 */
export function normalizeHostName(text: string): string | undefined {
  let s = text;
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0 || s.length > 253) return undefined;
  let label = 0;
  let lastLabelStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || HOST_CHAR[c] === 0) return undefined;
    if (c === 0x2e) {
      if (label === 0) return undefined;
      label = 0;
      lastLabelStart = i + 1;
    } else if (++label > 63) return undefined;
  }
  if (label === 0) return undefined;
  // A numeric top-level label is an IPv4 address (or junk), never a DNS name to route by.
  if (/^\d+$/.test(s.slice(lastLabelStart))) return undefined;
  return s.toLowerCase();
}
