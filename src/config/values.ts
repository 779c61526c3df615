// Parsers for the small value types flags and config files share: ports, ranges, CIDRs,
// durations, marks, uid:gid. Each throws a UsageError that names the flag and the fix.
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import type { Cidr } from '../firewall/plan.js';

export { parsePort, parsePortRange } from '../firewall/ports.js';

/** Accepts "a,b,c" as well as repeated flags. */
export function splitList(values: readonly string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

export function parseCidr(text: string, flag: string): Cidr {
  const [addr, len, extra] = text.trim().split('/');
  const version = addr ? isIP(addr) : 0;
  const max = version === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (
    !version ||
    extra !== undefined ||
    !Number.isInteger(bits) ||
    bits < 0 ||
    bits > max ||
    (len !== undefined && !/^\d+$/.test(len))
  ) {
    throw new UsageError(`${flag}: '${text}' is not a CIDR: use e.g. 10.0.0.0/8 or fd00::/8`);
  }
  return { family: version === 4 ? 'ipv4' : 'ipv6', text: `${addr!.toLowerCase()}/${bits}` };
}

/** "250ms", "10s", "5m", "1h", or plain milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = text.trim().match(/^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/);
  if (!m) throw new UsageError(`${flag}: '${text}' is not a duration: use e.g. 500ms, 10s, 5m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms'] ?? 1;
  const ms = Math.round(Number(m[1]) * unit);
  if (ms <= 0) throw new UsageError(`${flag}: duration must be positive`);
  return ms;
}

/** A duration, or 0 (also "0s", "0ms", …) for a limit that is switched off. */
export function parseDurationOrOff(text: string, flag: string): number {
  if (/^0+(?:\.0+)?(ms|s|m|h|d)?$/.test(text.trim())) return 0;
  return parseDuration(text, flag);
}

function u32(text: string): number {
  const t = text.trim().toLowerCase();
  const n = /^0x[0-9a-f]{1,8}$/.test(t) ? parseInt(t, 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  return Number.isInteger(n) && n > 0 && n <= 0xffffffff ? n : NaN;
}

/** "0x1e7" (all bits count) or "0x1/0x1" (only the mask's bits): as iptables and ip rule write it. */
export function parseMarkMask(text: string, flag: string): { mark: number; mask: number } {
  const [v, m, extra] = text.split('/');
  const mark = u32(v ?? '');
  const mask = m === undefined ? 0xffffffff : u32(m);
  if (extra !== undefined || Number.isNaN(mark) || Number.isNaN(mask)) {
    throw new UsageError(
      `${flag}: '${text}' is not a mark: use a non-zero number such as 0x100, or MARK/MASK such as 0x1/0x1`,
    );
  }
  if ((mark & ~mask) >>> 0 !== 0) {
    throw new UsageError(
      `${flag}: '${text}' sets bits outside its mask: the mark must be within the mask (e.g. 0x1/0x1)`,
    );
  }
  return { mark, mask };
}

export function parseId(text: string, flag: string): number {
  const t = text.trim();
  const n = Number(t);
  if (!/^\d+$/.test(t) || n > 0xfffffffe) throw new UsageError(`${flag}: '${text}' is not a numeric id`);
  return n;
}

/** "1337:1337" or "1337" (gid = uid). */
export function parseUidGid(text: string, flag: string): { uid: number; gid: number } {
  const [u, g, extra] = text.split(':');
  if (u === undefined || extra !== undefined) throw new UsageError(`${flag}: '${text}' is not UID:GID`);
  const uid = parseId(u, flag);
  return { uid, gid: g === undefined ? uid : parseId(g, flag) };
}

export function parseInterfaceName(text: string, flag: string): string {
  if (!/^[A-Za-z0-9_.@+-]{1,15}$/.test(text)) {
    throw new UsageError(`${flag}: '${text}' is not an interface name (1–15 letters, digits, . _ - @ +)`);
  }
  return text;
}

export function parseChoice<T extends string>(text: string, choices: readonly T[], flag: string): T {
  if ((choices as readonly string[]).includes(text)) return text as T;
  throw new UsageError(`${flag}: '${text}' is not one of ${choices.join(', ')}`);
}

export function parsePositiveInt(text: string, flag: string, max = 1_000_000): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > max)
    throw new UsageError(`${flag}: '${text}' must be a whole number from 1 to ${max}`);
  return n;
}
