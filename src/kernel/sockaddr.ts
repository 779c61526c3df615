// sockaddr_in / sockaddr_in6 codec (Linux layout). Pure: unit-tested without root.
import { isIPv4, isIPv6 } from 'node:net';
import { AF_INET, AF_INET6 } from './linux.js';

export interface Endpoint {
  /** Textual address: dotted IPv4, or IPv6 without brackets. IPv4-mapped IPv6 is unmapped. */
  address: string;
  port: number;
  family: IpFamily;
}

/** IP version, spelled this one way on the connection path. */
export type IpFamily = 4 | 6;

/** `1.2.3.4:80` or `[::1]:80`: how logs, messages and the admin API write an endpoint. */
export function formatEndpoint(ep: { address: string; port: number }): string {
  return ep.address.includes(':') ? `[${ep.address}]:${ep.port}` : `${ep.address}:${ep.port}`;
}

export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;

function ipv6ToBytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  let text = address;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hextets.
  const dotted = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted) {
    const b = ipv4ToBytes(dotted[1]!);
    text = `${text.slice(0, -dotted[1]!.length)}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const zeros = 8 - headParts.length - tailParts.length;
  const parts = tail === undefined ? headParts : [...headParts, ...Array<string>(zeros).fill('0'), ...tailParts];
  parts.forEach((p, i) => {
    out.writeUInt16BE(parseInt(p, 16), i * 2);
  });
  return out;
}

function ipv4ToBytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((p) => Number(p)));
}

/** Canonical text of 16 IPv6 bytes; IPv4-mapped addresses come back as plain IPv4. */
export function ipv6FromBytes(b: Buffer): string {
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(i));
  // Longest run of zero words (length ≥ 2) becomes '::' (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function encodeSockaddr(ep: { address: string; port: number }): Buffer {
  if (isIPv4(ep.address)) {
    const b = Buffer.alloc(SOCKADDR_IN_SIZE);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(ep.port, 2);
    ipv4ToBytes(ep.address).copy(b, 4);
    return b;
  }
  if (isIPv6(ep.address)) {
    const b = Buffer.alloc(SOCKADDR_IN6_SIZE);
    b.writeUInt16LE(AF_INET6, 0);
    b.writeUInt16BE(ep.port, 2);
    ipv6ToBytes(ep.address).copy(b, 8);
    return b;
  }
  throw new TypeError(`not an IP address: ${ep.address}`);
}

export function decodeSockaddr(b: Buffer): Endpoint {
  const family = b.readUInt16LE(0);
  const port = b.readUInt16BE(2);
  if (family === AF_INET) {
    return { address: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port, family: 4 };
  }
  if (family === AF_INET6) {
    const address = ipv6FromBytes(b.subarray(8, 24));
    return { address, port, family: isIPv4(address) ? 4 : 6 };
  }
  throw new TypeError(`unsupported address family ${family}`);
}

/** Strip the IPv4-mapped prefix Node reports on dual-stack sockets. */
export function unmapAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}
