// `tranproxy run` configuration: raw flag values in, a validated RunConfig out, and the
// capture plan derived from it. No I/O here beyond reading defaults passed in.
import { UsageError } from '../errors.js';
import type { CaptureMode, CapturePlan, CapturePoint, Cidr, Family, PortRange } from '../firewall/plan.js';
import {
  parseChoice,
  parseCidr,
  parseDuration,
  parseId,
  parseInterfaceName,
  parseMark,
  parsePort,
  parsePortRange,
  parsePositiveInt,
  parseUidGid,
  splitList,
} from './values.js';

export type FirewallChoice = 'auto' | 'nft' | 'iptables' | 'none';
export type FamilyChoice = 'dual' | 'ipv4' | 'ipv6';
export type LogFormat = 'text' | 'json';

export interface RunConfig {
  mode: CaptureMode;
  capture: CapturePoint[];
  families: Family[];
  listenPort: number;
  ports: PortRange[];
  excludePorts: PortRange[];
  includeCidrs: Cidr[];
  excludeCidrs: Cidr[];
  sourceCidrs: Cidr[];
  inInterfaces: string[];
  /** Data plane runs as this user; undefined: as the invoking user. */
  proxyUser: { uid: number; gid: number } | undefined;
  excludeUids: number[];
  excludeGids: number[];
  firewall: FirewallChoice;
  bypassMark: number;
  tproxyMark: number;
  tproxyTable: number;
  /** TPROXY: connect upstream from the client's own address (server sees the client). */
  preserveSource: boolean;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  logFormat: LogFormat;
  /** Program to run once the proxy and rules are ready (`-- cmd args`). */
  command: string[];
}

/** What commander hands over: strings, string arrays, booleans, undefined. */
export interface RawRunOptions {
  mode?: string;
  capture?: string[];
  family?: string;
  listenPort?: string;
  port?: string[];
  excludePort?: string[];
  includeCidr?: string[];
  excludeCidr?: string[];
  sourceCidr?: string[];
  inInterface?: string[];
  proxyUser?: string;
  excludeUid?: string[];
  excludeGid?: string[];
  firewall?: string;
  bypassMark?: string;
  tproxyMark?: string;
  tproxyTable?: string;
  preserveSource?: boolean;
  connectTimeout?: string;
  idleTimeout?: string;
  maxConnections?: string;
  logFormat?: string;
}

export const DEFAULTS = {
  listenPort: 15001,
  proxyUser: '1337:1337',
  bypassMark: 0x539, // 1337
  tproxyMark: 0x1e7,
  tproxyTable: 233,
  connectTimeout: '10s',
  idleTimeout: '10m',
  maxConnections: 8000,
} as const;

function families(choice: FamilyChoice): Family[] {
  return choice === 'dual' ? ['ipv4', 'ipv6'] : [choice];
}

export function parseRunOptions(raw: RawRunOptions, command: string[] = []): RunConfig {
  const mode = parseChoice(raw.mode ?? 'redirect', ['redirect', 'tproxy'] as const, '--mode');
  const capture = [...new Set(splitList(raw.capture ?? ['output']).map((c) => parseChoice(c, ['output', 'prerouting'] as const, '--capture')))];
  const fam = parseChoice(raw.family ?? 'dual', ['dual', 'ipv4', 'ipv6'] as const, '--family');
  const inInterfaces = splitList(raw.inInterface).map((i) => parseInterfaceName(i, '--in-interface'));
  const sourceCidrs = splitList(raw.sourceCidr).map((c) => parseCidr(c, '--source-cidr'));
  if (!capture.includes('prerouting') && (inInterfaces.length || sourceCidrs.length)) {
    throw new UsageError('--in-interface and --source-cidr apply to routed traffic: add --capture prerouting');
  }
  const firewall = parseChoice(raw.firewall ?? 'auto', ['auto', 'nft', 'iptables', 'none'] as const, '--firewall');
  const proxyUserText = raw.proxyUser ?? (capture.includes('output') ? DEFAULTS.proxyUser : 'none');
  const proxyUser = proxyUserText === 'none' ? undefined : parseUidGid(proxyUserText, '--proxy-user');
  if (capture.includes('output') && !proxyUser && firewall !== 'none') {
    // Without a dedicated user the proxy's own connections would be captured again.
    throw new UsageError('--capture output needs --proxy-user UID:GID so the proxy\'s own traffic is not captured (default 1337:1337)');
  }
  const preserveSource = raw.preserveSource ?? (mode === 'tproxy' && !capture.includes('output'));
  if (preserveSource && mode !== 'tproxy') {
    throw new UsageError('--preserve-source needs --mode tproxy (REDIRECT rewrites the destination, not the source)');
  }
  const listenPort = parsePort(raw.listenPort ?? String(DEFAULTS.listenPort), '--listen-port');
  const ports = splitList(raw.port).map((p) => parsePortRange(p, '--port'));
  if (ports.some((p) => p.from <= listenPort && listenPort <= p.to)) {
    throw new UsageError(`--port includes the proxy's own --listen-port ${listenPort}: that would loop; choose another --listen-port`);
  }
  return {
    mode,
    capture,
    families: families(fam),
    listenPort,
    ports,
    excludePorts: splitList(raw.excludePort).map((p) => parsePortRange(p, '--exclude-port')),
    includeCidrs: splitList(raw.includeCidr).map((c) => parseCidr(c, '--include-cidr')),
    excludeCidrs: splitList(raw.excludeCidr).map((c) => parseCidr(c, '--exclude-cidr')),
    sourceCidrs,
    inInterfaces,
    proxyUser,
    excludeUids: splitList(raw.excludeUid).map((u) => parseId(u, '--exclude-uid')),
    excludeGids: splitList(raw.excludeGid).map((g) => parseId(g, '--exclude-gid')),
    firewall,
    bypassMark: parseMark(raw.bypassMark ?? String(DEFAULTS.bypassMark), '--bypass-mark'),
    tproxyMark: parseMark(raw.tproxyMark ?? String(DEFAULTS.tproxyMark), '--tproxy-mark'),
    tproxyTable: parsePositiveInt(raw.tproxyTable ?? String(DEFAULTS.tproxyTable), '--tproxy-table', 0xfffffffe),
    preserveSource,
    connectTimeoutMs: parseDuration(raw.connectTimeout ?? DEFAULTS.connectTimeout, '--connect-timeout'),
    idleTimeoutMs: parseDuration(raw.idleTimeout ?? DEFAULTS.idleTimeout, '--idle-timeout'),
    maxConnections: parsePositiveInt(raw.maxConnections ?? String(DEFAULTS.maxConnections), '--max-connections'),
    logFormat: parseChoice(raw.logFormat ?? 'text', ['text', 'json'] as const, '--log-format'),
    command,
  };
}

/** The firewall plan a RunConfig asks for. */
export function capturePlanOf(cfg: RunConfig): CapturePlan {
  return {
    mode: cfg.mode,
    capture: cfg.capture,
    families: cfg.families,
    protocols: ['tcp'],
    proxyPort: cfg.listenPort,
    includePorts: cfg.ports,
    excludePorts: cfg.excludePorts,
    includeDestinations: cfg.includeCidrs,
    excludeDestinations: cfg.excludeCidrs,
    sourceCidrs: cfg.sourceCidrs,
    inInterfaces: cfg.inInterfaces,
    excludeUids: [...new Set([...(cfg.proxyUser ? [cfg.proxyUser.uid] : []), ...cfg.excludeUids])],
    excludeGids: [...new Set([...(cfg.proxyUser ? [cfg.proxyUser.gid] : []), ...cfg.excludeGids])],
    bypassMark: cfg.bypassMark,
    tproxyMark: cfg.tproxyMark,
    tproxyTable: cfg.tproxyTable,
  };
}
