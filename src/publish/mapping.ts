// Port mappings (`docker run -p` syntax): parsing, canonical text, rule tags, compaction.
// Pure: no I/O. Every parse error is a UsageError that quotes the mapping and the fix.
//
//   [HOST_IP:]HOST_PORT:TARGET_IP:TARGET_PORT[/tcp|/udp]
//   ports may be equal-length ranges (8000-8010:10.0.0.2:80-90); IPv6 in brackets.
import { isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../errors.js';
import { formatCidr, parseCidr } from '../firewall/cidr.js';

export type Proto = 'tcp' | 'udp';
export type IpFamily = 4 | 6;

/** One host port published to one target port (ranges are expanded into these). */
export interface PortMapping {
  proto: Proto;
  /**
   * undefined: every local address of both families (like Docker without HOST_IP);
   * '0.0.0.0' / '::' narrow that to one family; anything else is one local address.
   */
  hostIp?: string;
  hostPort: number;
  targetIp: string;
  targetPort: number;
}

export const SYNTAX = '[HOST_IP:]HOST_PORT:TARGET_IP:TARGET_PORT[/tcp|/udp]';
/** Upper bound on expanded mappings: each holds up to two sockets, plus two per connection. */
export const MAX_MAPPINGS = 4096;

function fail(text: string, why: string): never {
  throw new UsageError(
    `publish '${text}': ${why} (syntax: ${SYNTAX}, e.g. 8080:10.0.0.2:80 or 127.0.0.1:5353:10.0.0.2:53/udp)`,
  );
}

export function familyOf(ip: string): IpFamily {
  return ip.includes(':') ? 6 : 4;
}

/** Canonical text of an IP address (lower case, RFC 5952 for IPv6); undefined if not an IP. */
export function canonicalIp(text: string): string | undefined {
  if (!isIPv4(text) && !(isIPv6(text) && !text.includes('%'))) return undefined;
  return formatCidr(parseCidr(text)).replace(/\/\d+$/, '');
}

export function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

export function isLoopback(ip: string): boolean {
  return ip === '::1' || (familyOf(ip) === 4 && ip.startsWith('127.'));
}

/** Split on ':' outside brackets; a bracketed field keeps its brackets. */
function fields(text: string, body: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    if (body[i] === '[') {
      const close = body.indexOf(']', i);
      if (close < 0) fail(text, "'[' without ']'");
      out.push(body.slice(i, close + 1));
      i = close + 1;
      if (i < body.length && body[i] !== ':') fail(text, `unexpected '${body.slice(i)}' after ']'`);
    } else {
      const colon = body.indexOf(':', i);
      out.push(body.slice(i, colon < 0 ? body.length : colon));
      i = colon < 0 ? body.length : colon;
    }
    if (i >= body.length) return out;
    i++; // the ':'
    if (i === body.length) return [...out, ''];
  }
}

function parseIp(text: string, field: string, what: 'HOST_IP' | 'TARGET_IP'): string {
  if (field === '') fail(text, `${what} is empty`);
  const bracketed = field.startsWith('[') && field.endsWith(']');
  const inner = bracketed ? field.slice(1, -1) : field;
  if (inner.includes('%')) fail(text, `${what} '${inner}': zone ids (%dev) are not supported`);
  const ip = canonicalIp(inner);
  if (!ip) fail(text, `${what} '${field}' is not an IP address`);
  if (bracketed && familyOf(ip) === 4) fail(text, `${what} '${field}': brackets are for IPv6 addresses only`);
  if (!bracketed && familyOf(ip) === 6) fail(text, `${what} '${field}': put IPv6 addresses in brackets, e.g. [${ip}]`);
  return ip;
}

interface Range {
  from: number;
  to: number;
}

function parsePorts(text: string, field: string, what: 'HOST_PORT' | 'TARGET_PORT'): Range {
  if (field === '')
    fail(text, `${what} is missing${what === 'HOST_PORT' ? ' (random host ports are not supported)' : ''}`);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(field);
  if (!m) fail(text, `${what} '${field}' is not a port or a range such as 8000-8010`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  for (const p of [from, to])
    if (p < 1 || p > 65535) fail(text, `${what} ${p} is out of range: ports go from 1 to 65535`);
  if (to < from) fail(text, `${what} range '${field}' ends before it starts`);
  return { from, to };
}

/** One command-line mapping, expanded to one PortMapping per port. */
export function parseMapping(arg: string): PortMapping[] {
  const text = arg.trim();
  if (text === '') fail(arg, 'empty mapping');
  let body = text;
  let proto: Proto = 'tcp';
  const slash = text.lastIndexOf('/');
  if (slash >= 0) {
    const p = text.slice(slash + 1).toLowerCase();
    if (p !== 'tcp' && p !== 'udp')
      fail(text, `protocol '${text.slice(slash + 1)}' is not supported: use /tcp or /udp`);
    proto = p;
    body = text.slice(0, slash);
  }
  const f = fields(text, body);
  // Unbracketed IPv6 addresses split into many fields: say what to do instead.
  if (f.length > 4) fail(text, 'too many fields: put IPv6 addresses in brackets, e.g. [::1]:8080:[fd00::2]:80');
  if (f.length < 3) {
    fail(
      text,
      f.length === 2
        ? 'TARGET_IP is missing: give the address to forward to'
        : 'expected HOST_PORT:TARGET_IP:TARGET_PORT',
    );
  }
  const [hostField, hostPortField, targetField, targetPortField] = f.length === 4 ? f : [undefined, ...f];
  const hostIp = hostField === undefined ? undefined : parseIp(text, hostField, 'HOST_IP');
  const hostPorts = parsePorts(text, hostPortField!, 'HOST_PORT');
  const targetIp = parseIp(text, targetField!, 'TARGET_IP');
  const targetPorts = parsePorts(text, targetPortField!, 'TARGET_PORT');
  if (isWildcard(targetIp)) fail(text, `TARGET_IP ${targetIp} is not an address packets can be sent to`);
  const n = hostPorts.to - hostPorts.from + 1;
  const tn = targetPorts.to - targetPorts.from + 1;
  if (n !== tn) {
    fail(
      text,
      `host ports ${hostPortField} (${n}) and target ports ${targetPortField} (${tn}) differ in length: ranges map one to one`,
    );
  }
  const out: PortMapping[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      proto,
      ...(hostIp === undefined ? {} : { hostIp }),
      hostPort: hostPorts.from + i,
      targetIp,
      targetPort: targetPorts.from + i,
    });
  }
  return out;
}

/** The local addresses a mapping listens on (and holds): both wildcards without HOST_IP. */
export function listenAddresses(m: PortMapping): string[] {
  return m.hostIp === undefined ? ['0.0.0.0', '::'] : [m.hostIp];
}

function overlaps(a: string, b: string): boolean {
  return familyOf(a) === familyOf(b) && (a === b || isWildcard(a) || isWildcard(b));
}

/** Parse every mapping argument; rejects a host port published twice and too many ports. */
export function parseMappings(args: readonly string[]): PortMapping[] {
  const all: { m: PortMapping; arg: string }[] = [];
  for (const arg of args) for (const m of parseMapping(arg)) all.push({ m, arg });
  if (all.length > MAX_MAPPINGS) {
    throw new UsageError(`publish: ${all.length} ports requested; at most ${MAX_MAPPINGS} per process`);
  }
  const seen = new Map<string, { m: PortMapping; arg: string }[]>();
  for (const e of all) {
    const k = `${e.m.proto}/${e.m.hostPort}`;
    const same = seen.get(k) ?? [];
    for (const o of same) {
      const clash = listenAddresses(e.m).find((a) => listenAddresses(o.m).some((b) => overlaps(a, b)));
      if (clash !== undefined) {
        throw new UsageError(
          `publish: host port ${e.m.hostPort}/${e.m.proto} on ${familyOf(clash) === 6 ? `[${clash}]` : clash} is published twice ('${o.arg}' and '${e.arg}'); ` +
            'without HOST_IP a mapping takes both 0.0.0.0 and [::]: give each a HOST_IP such as 0.0.0.0 or [::]',
        );
      }
    }
    same.push(e);
    seen.set(k, same);
  }
  return all.map((e) => e.m);
}

export function formatEndpoint(ip: string | undefined, port: number | string): string {
  if (ip === undefined) return `*:${port}`;
  return familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Identity of a mapping inside a rule tag: `tcp *:8080 10.0.0.2:80`. */
export function mappingKey(m: PortMapping): string {
  return `${m.proto} ${formatEndpoint(m.hostIp, m.hostPort)} ${formatEndpoint(m.targetIp, m.targetPort)}`;
}

export const TAG_PREFIX = 'tpx-publish';

/** The nft comment on every rule of a mapping (≤ 123 bytes, under nft's 128). */
export function mappingTag(m: PortMapping, owner: number): string {
  return `${TAG_PREFIX} ${mappingKey(m)} pid=${owner}`;
}

const ENDPOINT = String.raw`(\*|\[[0-9a-f:.]+\]|[0-9.]+):(\d+)`;
const TAG_RE = new RegExp(`^${TAG_PREFIX} (tcp|udp) ${ENDPOINT} ${ENDPOINT} pid=(\\d+)$`);

export interface ParsedTag {
  mapping: PortMapping;
  key: string;
  owner: number;
}

function unbracket(s: string): string {
  return s.startsWith('[') ? s.slice(1, -1) : s;
}

/** The mapping and owner pid behind a rule comment; undefined for anything else. */
export function parseTag(comment: string | undefined): ParsedTag | undefined {
  const m = comment === undefined ? null : TAG_RE.exec(comment);
  if (!m) return undefined;
  const hostIp = m[2] === '*' ? undefined : canonicalIp(unbracket(m[2]!));
  const targetIp = canonicalIp(unbracket(m[4]!));
  if ((m[2] !== '*' && hostIp === undefined) || targetIp === undefined) return undefined;
  const mapping: PortMapping = {
    proto: m[1] as Proto,
    ...(hostIp === undefined ? {} : { hostIp }),
    hostPort: Number(m[3]),
    targetIp,
    targetPort: Number(m[5]),
  };
  return { mapping, key: mappingKey(mapping), owner: Number(m[6]) };
}

/** Consecutive mappings that differ only by +1 on both ports, shown as one range. */
export interface MappingGroup {
  proto: Proto;
  hostIp?: string;
  targetIp: string;
  hostFrom: number;
  targetFrom: number;
  count: number;
}

export function compact(mappings: readonly PortMapping[]): MappingGroup[] {
  const out: MappingGroup[] = [];
  for (const m of mappings) {
    const last = out[out.length - 1];
    if (
      last &&
      last.proto === m.proto &&
      last.hostIp === m.hostIp &&
      last.targetIp === m.targetIp &&
      last.hostFrom + last.count === m.hostPort &&
      last.targetFrom + last.count === m.targetPort
    ) {
      last.count++;
    } else {
      out.push({
        proto: m.proto,
        ...(m.hostIp === undefined ? {} : { hostIp: m.hostIp }),
        targetIp: m.targetIp,
        hostFrom: m.hostPort,
        targetFrom: m.targetPort,
        count: 1,
      });
    }
  }
  return out;
}

function portText(from: number, count: number): string {
  return count === 1 ? String(from) : `${from}-${from + count - 1}`;
}

/** `tcp *:8000-8010->10.0.0.2:80-90` */
export function formatGroup(g: MappingGroup): string {
  return `${g.proto} ${formatEndpoint(g.hostIp, portText(g.hostFrom, g.count))}->${formatEndpoint(g.targetIp, portText(g.targetFrom, g.count))}`;
}

export function formatMappings(mappings: readonly PortMapping[]): string {
  return compact(mappings).map(formatGroup).join(', ');
}
