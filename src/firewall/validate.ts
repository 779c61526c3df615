// Defensive validation + normalisation of a CapturePlan, shared by every renderer so nft
// and iptables render the same meaning from the same canonical data.
import { UsageError } from '../errors.js';
import { normalizeCidrs } from './cidr.js';
import type { CapturePlan, Cidr, Family, PortRange, Protocol } from './plan.js';

export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const U32_MAX = 0xffffffff;

function isInt(n: unknown, lo: number, hi: number): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= lo && n <= hi;
}

function port(n: unknown, what: string): number {
  if (!isInt(n, 1, 65535)) throw new UsageError(`${what}: port ${String(n)} is not in 1-65535`);
  return n;
}

/** Sort, then merge overlapping or adjacent ranges. */
export function normalizePorts(ranges: readonly PortRange[], what: string): PortRange[] {
  const sorted = ranges
    .map((r) => {
      const from = port(r.from, what);
      const to = port(r.to, what);
      if (from > to) throw new UsageError(`${what}: range ${from}-${to} is reversed`);
      return { from, to };
    })
    .sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

function ids(list: readonly number[], what: string): number[] {
  for (const n of list) if (!isInt(n, 0, U32_MAX - 1)) throw new UsageError(`${what}: ${String(n)} is not a valid id`);
  return [...new Set(list)].sort((a, b) => a - b);
}

// Linux interface names: 1-15 bytes, no '/', ':', whitespace or quotes (wildcards not supported).
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

function subset<T extends string>(list: readonly T[], allowed: readonly T[], what: string, nonEmpty: boolean): T[] {
  for (const x of list) if (!allowed.includes(x)) throw new UsageError(`${what}: unknown value '${String(x)}'`);
  if (nonEmpty && list.length === 0) throw new UsageError(`${what}: at least one value is required`);
  return allowed.filter((x) => list.includes(x)); // canonical order, duplicates dropped
}

/** Returns a normalised copy; throws UsageError on anything a kernel would reject or misread. */
export function validatePlan(plan: CapturePlan): CapturePlan {
  if (plan.mode !== 'redirect' && plan.mode !== 'tproxy')
    throw new UsageError(`mode: unknown value '${String(plan.mode)}'`);
  const capture = subset(plan.capture, ['output', 'prerouting', 'inbound'], 'capture', true);
  const families = subset(plan.families, FAMILIES, 'families', true);
  const protocols = subset(plan.protocols, PROTOCOLS, 'protocols', true);
  if (plan.mode === 'redirect' && protocols.includes('udp')) {
    throw new UsageError('protocols: UDP capture needs TPROXY mode (REDIRECT cannot recover a UDP destination)');
  }
  const proxyPort = port(plan.proxyPort, 'proxyPort');
  const bypassMask = mask(plan.bypassMark, plan.bypassMask, 'bypassMark');
  const tproxyMask = plan.mode === 'tproxy' ? mask(plan.tproxyMark, plan.tproxyMask, 'tproxyMark') : FULL_MASK;
  if (plan.mode === 'tproxy') {
    // The proxy's SO_MARK must not match `ip rule fwmark`: its own traffic would come back to it.
    if ((plan.bypassMark & tproxyMask) >>> 0 === plan.tproxyMark) {
      throw new UsageError(
        `bypassMark ${markText(plan.bypassMark, bypassMask)} matches tproxyMark ${markText(plan.tproxyMark, tproxyMask)} (the proxy’s own traffic would loop back): choose marks that differ in the TPROXY mask bits`,
      );
    }
    // 253-255 are the kernel's default/main/local tables; 0 is "unspecified".
    if (!isInt(plan.tproxyTable, 1, U32_MAX) || [253, 254, 255].includes(plan.tproxyTable)) {
      throw new UsageError('tproxyTable must be a route table id in 1-4294967295 other than 253, 254, 255');
    }
    // 0 is the `local` table's rule; 32766/32767 are main/default, which must come after ours.
    if (plan.rulePref !== undefined && !isInt(plan.rulePref, 1, 32765)) {
      throw new UsageError(`rulePref ${String(plan.rulePref)} must be from 1 to 32765 (before the main table's rule)`);
    }
  }
  for (const name of plan.inInterfaces) {
    if (!IFNAME.test(name) || name === '.' || name === '..') {
      throw new UsageError(`inInterfaces: '${name}' is not a valid interface name`);
    }
  }
  const cidrs = (list: readonly Cidr[], what: string) => normalizeCidrs(list, what);
  return {
    ...plan,
    capture,
    families,
    protocols,
    proxyPort,
    includePorts: normalizePorts(plan.includePorts, 'includePorts'),
    excludePorts: normalizePorts(plan.excludePorts, 'excludePorts'),
    includeDestinations: cidrs(plan.includeDestinations, 'includeDestinations'),
    excludeDestinations: cidrs(plan.excludeDestinations, 'excludeDestinations'),
    sourceCidrs: cidrs(plan.sourceCidrs, 'sourceCidrs'),
    inInterfaces: [...new Set(plan.inInterfaces)].sort(),
    excludeUids: ids(plan.excludeUids, 'excludeUids'),
    excludeGids: ids(plan.excludeGids, 'excludeGids'),
    bypassMask,
    tproxyMask,
    inboundPorts: normalizePorts(plan.inboundPorts ?? [], 'inboundPorts'),
    excludeInboundPorts: normalizePorts(plan.excludeInboundPorts ?? [], 'excludeInboundPorts'),
    inboundPreserveSource:
      plan.mode === 'tproxy' && capture.includes('inbound') && (plan.inboundPreserveSource ?? false),
  };
}

export const FULL_MASK = 0xffffffff;

/** The mask of a mark (default: all bits); the mark must be non-zero and inside it. */
function mask(mark: number, m: number | undefined, what: string): number {
  const full = m ?? FULL_MASK;
  if (!isInt(full, 1, U32_MAX)) throw new UsageError(`${what}: mask must be a non-zero 32-bit number`);
  if (!isInt(mark, 1, U32_MAX)) throw new UsageError(`${what} must be a non-zero 32-bit mark`);
  if ((mark & ~full) >>> 0 !== 0) throw new UsageError(`${what}: ${hex(mark)} has bits outside its mask ${hex(full)}`);
  return full;
}

/** "0x1e7", or "0x1/0x1" when only some bits count. */
export function markText(mark: number, m: number = FULL_MASK): string {
  return m === FULL_MASK ? hex(mark) : `${hex(mark)}/${hex(m)}`;
}

/** CIDR texts of one family. */
export function ofFamily(list: readonly Cidr[], family: Family): string[] {
  return list.filter((c) => c.family === family).map((c) => c.text);
}

export const FAMILY_LABEL: Record<Family, string> = { ipv4: 'IPv4', ipv6: 'IPv6' };

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
