// CIDR parsing and normalisation, so renderers emit canonical, non-overlapping sets
// (nft merges overlapping intervals silently, iptables does not: both must see the same data).
import { isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../errors.js';
import type { Cidr, Family } from './plan.js';

interface ParsedCidr {
  family: Family;
  addr: bigint;
  prefix: number;
}

const BITS: Record<Family, number> = { ipv4: 32, ipv6: 128 };

function v4ToBig(text: string): bigint {
  return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function v6ToBig(text: string): bigint {
  // An embedded IPv4 tail (::ffff:1.2.3.4) is rewritten as its two hex groups first.
  const full = text.replace(/(\d+\.\d+\.\d+\.\d+)$/, (v4) => {
    const v = v4ToBig(v4);
    return `${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  });
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const [left, right] = full.split('::');
  const l = groups(left ?? '');
  const r = right === undefined ? [] : groups(right);
  const all = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function bigToV4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
}

/** RFC 5952 text: lower case, longest run (≥ 2) of zero groups compressed. */
function bigToV6(v: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function parseCidr(text: string): ParsedCidr {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  const addr = m?.[1] ?? '';
  const family: Family | undefined = isIPv4(addr) ? 'ipv4' : isIPv6(addr) && !addr.includes('%') ? 'ipv6' : undefined;
  if (!m || !family) throw new UsageError(`invalid CIDR '${text}': expected ADDRESS[/PREFIX]`);
  const prefix = m[2] === undefined ? BITS[family] : Number(m[2]);
  if (prefix > BITS[family]) throw new UsageError(`invalid CIDR '${text}': prefix longer than ${BITS[family]}`);
  const value = family === 'ipv4' ? v4ToBig(addr) : v6ToBig(addr);
  const mask = ((1n << BigInt(prefix)) - 1n) << BigInt(BITS[family] - prefix);
  return { family, addr: value & mask, prefix }; // host bits cleared, as the kernel would
}

export function formatCidr(c: ParsedCidr): string {
  return `${c.family === 'ipv4' ? bigToV4(c.addr) : bigToV6(c.addr)}/${c.prefix}`;
}

function contains(outer: ParsedCidr, inner: ParsedCidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  const shift = BigInt(BITS[outer.family] - outer.prefix);
  return outer.addr >> shift === inner.addr >> shift;
}

/**
 * Validate (the declared family must match the text), clear host bits, drop duplicates
 * and networks contained in another, sort by family then address: deterministic output.
 */
export function normalizeCidrs(list: readonly Cidr[], what: string): Cidr[] {
  const parsed = list.map((c) => {
    const p = parseCidr(c.text);
    if (p.family !== c.family) throw new UsageError(`${what}: '${c.text}' is not an ${c.family} CIDR`);
    return p;
  });
  const kept = parsed.filter(
    (p, i) => !parsed.some((q, j) => j !== i && contains(q, p) && (q.prefix < p.prefix || j < i)),
  );
  kept.sort((a, b) =>
    a.family !== b.family
      ? a.family < b.family
        ? -1
        : 1
      : a.addr < b.addr
        ? -1
        : a.addr > b.addr
          ? 1
          : a.prefix - b.prefix,
  );
  return kept.map((p) => ({ family: p.family, text: formatCidr(p) }));
}
