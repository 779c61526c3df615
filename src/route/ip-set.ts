// Address and port sets for routing: CIDRs parsed once into merged numeric ranges, looked
// up by binary search (IPv4 as numbers, IPv6 as BigInt).
import { isIPv6 } from 'node:net';
import { parseCidr } from '../firewall/cidr.js';
import type { PortRange } from '../firewall/plan.js';

/** A flow address parsed once per route() call: a v4 number, a v6 BigInt, or null (unparseable). */
export type ParsedIp = { v4: number; v6?: undefined } | { v4?: undefined; v6: bigint } | null;

/** Dotted quad → unsigned 32-bit number, or -1. */
export function ipv4ToNumber(s: string): number {
  let acc = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      acc = acc * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return acc * 256 + part;
}

/**
 * Parse a flow address. IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what dual-stack sockets
 * report) counts as IPv4; a zone (`fe80::1%eth0`) is ignored.
 */
export function parseFlowIp(text: string): ParsedIp {
  const v4 = ipv4ToNumber(text);
  if (v4 >= 0) return { v4 };
  let s = text;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (s.length > 7 && s.charCodeAt(s.length - 1) !== 0x3a && /^::ffff:\d/i.test(s)) {
    const mapped = ipv4ToNumber(s.slice(7));
    if (mapped >= 0) return { v4: mapped };
  }
  if (!isIPv6(s)) return null;
  return { v6: parseCidr(s).addr };
}

/** Sort and merge overlapping or adjacent inclusive ranges. */
function mergeNumbers(ranges: [number, number][]): [number, number][] {
  ranges.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

function mergeBigints(ranges: [bigint, bigint][]): [bigint, bigint][] {
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1n) last[1] = r[1] > last[1] ? r[1] : last[1];
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** Index of the last range whose start ≤ x, or -1. */
function floorIndex<T extends number | bigint>(starts: ArrayLike<T>, x: T): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= x) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** A set of CIDRs of both families. Construct with CIDR texts; invalid text throws UsageError. */
export class CidrSet {
  private readonly v4Start: Float64Array;
  private readonly v4End: Float64Array;
  private readonly v6Start: bigint[];
  private readonly v6End: bigint[];
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    const v4: [number, number][] = [];
    const v6: [bigint, bigint][] = [];
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (c.family === 'ipv4') {
        const start = Number(c.addr);
        v4.push([start, start + 2 ** (32 - c.prefix) - 1]);
      } else v6.push([c.addr, c.addr + (1n << BigInt(128 - c.prefix)) - 1n]);
    }
    const m4 = mergeNumbers(v4);
    const m6 = mergeBigints(v6);
    this.v4Start = Float64Array.from(m4, (r) => r[0]);
    this.v4End = Float64Array.from(m4, (r) => r[1]);
    this.v6Start = m6.map((r) => r[0]);
    this.v6End = m6.map((r) => r[1]);
    this.size = cidrs.length;
  }

  has(ip: ParsedIp): boolean {
    if (ip === null) return false;
    if (ip.v6 === undefined) {
      const i = floorIndex(this.v4Start, ip.v4);
      return i >= 0 && ip.v4 <= this.v4End[i]!;
    }
    const i = floorIndex(this.v6Start, ip.v6);
    return i >= 0 && ip.v6 <= this.v6End[i]!;
  }
}

/** A set of port ranges. */
export class PortSet {
  private readonly starts: Uint32Array;
  private readonly ends: Uint32Array;

  constructor(ranges: readonly PortRange[]) {
    const m = mergeNumbers(ranges.map((r): [number, number] => [r.from, r.to]));
    this.starts = Uint32Array.from(m, (r) => r[0]);
    this.ends = Uint32Array.from(m, (r) => r[1]);
  }

  has(port: number): boolean {
    const i = floorIndex(this.starts, port);
    return i >= 0 && port <= this.ends[i]!;
  }
}
