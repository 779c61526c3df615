// `tranproxy run` configuration: raw flag values in, a validated RunConfig out, and the
// capture plan derived from it. No I/O here beyond reading defaults passed in.
import os from 'node:os';
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import {
  compileInjectConfig,
  DEFAULT_MAX_HEAD_BYTES,
  parseHeaderFlag,
  validateHeader,
  type InjectConfig,
  type XffMode,
} from '../http/inject-config.js';
import { podAddress, readResolvConf, type ResolvConf } from './host-identity.js';
import { routingOf, type RoutingConfig } from './routing.js';
import { parseAdminAddress } from '../observe/admin.js';
import { proxyModeOf, type ProxyModeConfig } from './proxy-mode.js';
import type { ConfigFile } from './file.js';
import type { RawRunOptions } from './run-options.js';
import type { CaptureMode, CapturePlan, CapturePoint, Cidr, Family, PortRange } from '../firewall/plan.js';
import {
  parseChoice,
  parseCidr,
  parseDuration,
  parseDurationOrOff,
  parseId,
  parseInterfaceName,
  parseMarkMask,
  parsePort,
  parsePortRange,
  parsePositiveInt,
  parseUidGid,
  splitList,
} from './values.js';

export type { RawRunOptions } from './run-options.js';

export type FirewallChoice = 'auto' | 'nft' | 'iptables' | 'none';
export type FamilyChoice = 'dual' | 'ipv4' | 'ipv6';
export type LogFormat = 'text' | 'json';
export type RelayEngineChoice = 'auto' | 'js' | 'splice';

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
  /** --capture inbound: the local ports captured (empty: all) and never captured (ours added in the plan). */
  inboundPorts: PortRange[];
  excludeInboundPorts: PortRange[];
  /** Data plane runs as this user; undefined: as the invoking user. */
  proxyUser: { uid: number; gid: number } | undefined;
  excludeUids: number[];
  excludeGids: number[];
  firewall: FirewallChoice;
  bypassMark: number;
  /** Bits the bypass mark is compared on (0xffffffff: all). */
  bypassMask: number;
  tproxyMark: number;
  /** Bits of the packet mark the TPROXY mark occupies (0xffffffff: all). */
  tproxyMask: number;
  tproxyTable: number;
  /** Preference of the TPROXY `ip rule`; undefined: the kernel's choice. */
  tproxyRulePref: number | undefined;
  /** TPROXY: connect upstream from the client's own address (server sees the client). */
  preserveSource: boolean;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** HTTP injection: a request head must be complete this long after it began, else 408; 0: no limit. */
  headTimeoutMs: number;
  maxConnections: number;
  logFormat: LogFormat;
  /** Program to run once the proxy and rules are ready (`-- cmd args`). */
  command: string[];
  /** HTTP header injection on captured connections; undefined: plain relay. */
  inject: InjectConfig | undefined;
  /** Resolvers for names we must resolve ourselves (-N; default: resolv.conf). */
  resolver: ResolvConf;
  /** -N given (flag or file): node names and probe targets resolve through those nameservers too. */
  nameserversGiven: boolean;
  /** Find the destination from the Host header when the kernel has none (no NAT). */
  dstFromHost: boolean;
  /** Data-plane worker processes sharing the listeners. */
  workers: number;
  /** Byte pump: splice engine where nothing inspects the bytes ('auto'), never ('js'), or required ('splice'). */
  relay: RelayEngineChoice;
  /** Admin HTTP listener (health, readiness, metrics, connections); undefined: off. */
  admin: { host: string; port: number; tokenFile?: string } | undefined;
  /** On shutdown, how long in-flight connections may take before rules go. */
  drainTimeoutMs: number;
  /** Also capture UDP (TPROXY only); flows expire after udpIdleTimeoutMs. */
  udp: boolean;
  udpIdleTimeoutMs: number;
  /** Upstream nodes and rules; undefined: every flow goes direct, nothing is sniffed. */
  routing: RoutingConfig | undefined;
  /** The main switch (config `enabled`): false = proxy up, no capture rules in the kernel. */
  enabled: boolean;
  /** Web console listener (`--console`, or the file's console.listen); undefined: off. */
  console: { host: string; port: number } | undefined;
  /** Proxy mode (`--listen-proxy`): HTTP proxy + SOCKS5 listeners; undefined: off. */
  proxyMode: ProxyModeConfig | undefined;
}

/** What commander hands over: strings, string arrays, booleans, undefined. */
/** Facts the sidecar defaults depend on; injectable for tests. */
export interface HostFacts {
  podAddress(): string | undefined;
  hostname(): string;
  resolvConf(): ResolvConf;
}

const REAL_HOST: HostFacts = {
  podAddress: () => podAddress(),
  hostname: () => os.hostname(),
  resolvConf: () => readResolvConf(),
};

function injectOf(raw: RawRunOptions, facts: HostFacts): InjectConfig | undefined {
  const headers = (raw.header ?? []).map((h) => {
    try {
      return parseHeaderFlag(h);
    } catch (e) {
      throw new UsageError(`-H/--header '${h}': ${(e as Error).message}`);
    }
  });
  const xffFlag = raw.SetForwardedFor ?? raw.setForwardedFor;
  const hostFlag = raw.SetClientHostname ?? raw.setClientHostname;
  let forwardedFor: InjectConfig['forwardedFor'];
  if (xffFlag !== undefined && xffFlag !== false) {
    const mode = parseChoice(raw.xffMode ?? 'append', ['append', 'replace'] as const, '--xff-mode') as XffMode;
    let value: string | undefined;
    if (xffFlag === true || xffFlag === 'default') {
      value = facts.podAddress();
      if (!value)
        throw new UsageError(
          '--Set-Forwarded-For: no pod address found: set PODIP or give a value, e.g. --Set-Forwarded-For 10.0.0.5',
        );
    } else value = xffFlag === 'hostname' ? facts.hostname() : xffFlag;
    forwardedFor = { value: validateHeader('X-Forwarded-For', value).value, mode };
  } else if (raw.xffMode !== undefined) {
    throw new UsageError('--xff-mode needs --Set-Forwarded-For');
  }
  if (hostFlag !== undefined && hostFlag !== false) {
    const value = hostFlag === true || hostFlag === 'default' || hostFlag === 'hostname' ? facts.hostname() : hostFlag;
    headers.push(validateHeader('X-Client-Hostname', value));
  }
  if (!headers.length && !forwardedFor) return undefined;
  const maxHeadBytes =
    raw.maxHeadSize === undefined
      ? DEFAULT_MAX_HEAD_BYTES
      : parsePositiveInt(raw.maxHeadSize, '--max-head-size', 1 << 24);
  const cfg: InjectConfig = {
    headers,
    maxHeadBytes,
    ...(forwardedFor ? { forwardedFor } : {}),
    ...(raw.allowH2c ? { allowH2c: true } : {}),
    ...(raw.httpOnly ? { httpOnly: true } : {}),
  };
  compileInjectConfig(cfg); // validates combinations (e.g. XFF given twice)
  return cfg;
}

export const DEFAULT_ADMIN = '127.0.0.1:15000';

function adminOf(flag: string | boolean | undefined, tokenFile: string | undefined): RunConfig['admin'] {
  if (flag === undefined || flag === false) {
    if (tokenFile !== undefined) throw new UsageError('--admin-token-file needs --admin');
    return undefined;
  }
  const text = flag === true ? DEFAULT_ADMIN : flag;
  const a = parseAdminAddress(text);
  if (!a)
    throw new UsageError(`--admin: '${text}' is not ADDRESS:PORT (e.g. ${DEFAULT_ADMIN}; loopback keeps it private)`);
  return tokenFile !== undefined ? { ...a, tokenFile } : a;
}

export const DEFAULT_CONSOLE = '127.0.0.1:8080';

function consoleOf(flag: string | boolean | undefined): RunConfig['console'] {
  if (flag === undefined || flag === false) return undefined;
  const text = flag === true ? DEFAULT_CONSOLE : /^\d+$/.test(flag.trim()) ? `:${flag.trim()}` : flag;
  const a = parseAdminAddress(text);
  if (!a)
    throw new UsageError(
      `--console: '${text}' is not ADDRESS:PORT (e.g. ${DEFAULT_CONSOLE}; loopback keeps it private)`,
    );
  return a;
}

function resolverOf(raw: RawRunOptions, facts: HostFacts): ResolvConf {
  const conf = facts.resolvConf();
  const given = splitList(raw.nameserver);
  for (const ns of given) if (!isIP(ns)) throw new UsageError(`-N/--nameserver: '${ns}' is not an IP address`);
  return { ...conf, nameservers: given.length ? given : conf.nameservers };
}

/** Private, loopback, link-local, multicast and reserved ranges (RFC 6890). */
export const RESERVED_CIDRS: Cidr[] = [
  ...[
    '0.0.0.0/8',
    '10.0.0.0/8',
    '100.64.0.0/10',
    '127.0.0.0/8',
    '169.254.0.0/16',
    '172.16.0.0/12',
    '192.168.0.0/16',
    '224.0.0.0/4',
    '240.0.0.0/4',
  ].map((text) => ({ family: 'ipv4' as const, text })),
  ...['::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8'].map((text) => ({ family: 'ipv6' as const, text })),
];

export const DEFAULTS = {
  listenPort: 15001,
  proxyUser: '1337:1337',
  bypassMark: 0x539, // 1337
  tproxyMark: 0x1e7,
  tproxyTable: 233,
  connectTimeout: '10s',
  idleTimeout: '10m',
  headTimeout: '30s',
  maxConnections: 8000,
} as const;

function marksOf(raw: RawRunOptions): Pick<RunConfig, 'bypassMark' | 'bypassMask' | 'tproxyMark' | 'tproxyMask'> {
  const tproxy = parseMarkMask(raw.tproxyMark ?? String(DEFAULTS.tproxyMark), '--tproxy-mark');
  let bypass = { mark: DEFAULTS.bypassMark as number, mask: 0xffffffff };
  if (raw.bypassMark !== undefined) bypass = parseMarkMask(raw.bypassMark, '--bypass-mark');
  // The default bypass mark must not carry a masked TPROXY mark's bits (0x539 has bit 0x1).
  else if ((bypass.mark & tproxy.mask) >>> 0 === tproxy.mark)
    bypass.mark = (bypass.mark & ~tproxy.mask) >>> 0 || 0x80000000;
  return { bypassMark: bypass.mark, bypassMask: bypass.mask, tproxyMark: tproxy.mark, tproxyMask: tproxy.mask };
}

function families(choice: FamilyChoice): Family[] {
  return choice === 'dual' ? ['ipv4', 'ipv6'] : [choice];
}

export function parseRunOptions(
  raw: RawRunOptions,
  command: string[] = [],
  facts: HostFacts = REAL_HOST,
  file?: ConfigFile,
): RunConfig {
  const mode = parseChoice(raw.mode ?? 'redirect', ['redirect', 'tproxy'] as const, '--mode');
  const capture = [
    ...new Set(
      splitList(raw.capture ?? ['output']).map((c) =>
        parseChoice(c, ['output', 'prerouting', 'inbound'] as const, '--capture'),
      ),
    ),
  ];
  const inboundPorts = splitList(raw.inboundPort).map((p) => parsePortRange(p, '--inbound-port'));
  const excludeInboundPorts = splitList(raw.excludeInboundPort).map((p) => parsePortRange(p, '--exclude-inbound-port'));
  if (!capture.includes('inbound') && (inboundPorts.length || excludeInboundPorts.length)) {
    throw new UsageError(
      '--inbound-port and --exclude-inbound-port apply to connections to this host: add --capture inbound',
    );
  }
  const fam = parseChoice(raw.family ?? 'dual', ['dual', 'ipv4', 'ipv6'] as const, '--family');
  const inInterfaces = splitList(raw.inInterface).map((i) => parseInterfaceName(i, '--in-interface'));
  const sourceCidrs = splitList(raw.sourceCidr).map((c) => parseCidr(c, '--source-cidr'));
  if (!capture.includes('prerouting') && (inInterfaces.length || sourceCidrs.length)) {
    throw new UsageError('--in-interface and --source-cidr apply to routed traffic: add --capture prerouting');
  }
  const firewall = parseChoice(raw.firewall ?? 'auto', ['auto', 'nft', 'iptables', 'none'] as const, '--firewall');
  const proxyUserText = raw.proxyUser ?? (capture.includes('output') ? DEFAULTS.proxyUser : 'none');
  const proxyUser = proxyUserText === 'none' ? undefined : parseUidGid(proxyUserText, '--proxy-user');
  // Without a dedicated user (--proxy-user none) the proxy marks its own sockets with the
  // bypass mark instead, which needs CAP_NET_ADMIN in the data plane.
  const preserveSource = raw.preserveSource ?? (mode === 'tproxy' && !capture.includes('output'));
  if (preserveSource && mode !== 'tproxy') {
    throw new UsageError('--preserve-source needs --mode tproxy (REDIRECT rewrites the destination, not the source)');
  }
  const udp = raw.udp ?? false;
  if (udp && mode !== 'tproxy')
    throw new UsageError('--udp needs --mode tproxy: REDIRECT cannot recover a UDP destination');
  if (udp && proxyUser) {
    throw new UsageError('--udp needs a privileged data plane (transparent UDP sockets): add --proxy-user none');
  }
  const listenPort = parsePort(raw.listenPort ?? String(DEFAULTS.listenPort), '--listen-port');
  const ports = splitList(raw.port).map((p) => parsePortRange(p, '--port'));
  if (ports.some((p) => p.from <= listenPort && listenPort <= p.to)) {
    throw new UsageError(
      `--port includes the proxy's own --listen-port ${listenPort}: that would loop; choose another --listen-port`,
    );
  }
  return {
    mode,
    capture,
    families: families(fam),
    listenPort,
    ports,
    excludePorts: splitList(raw.excludePort).map((p) => parsePortRange(p, '--exclude-port')),
    includeCidrs: splitList(raw.includeCidr).map((c) => parseCidr(c, '--include-cidr')),
    excludeCidrs: [
      ...splitList(raw.excludeCidr).map((c) => parseCidr(c, '--exclude-cidr')),
      // A gateway leaves LAN-internal and reserved destinations alone unless told otherwise.
      ...(capture.includes('prerouting') && (raw.bypassPrivate ?? true) ? RESERVED_CIDRS : []),
    ],
    sourceCidrs,
    inInterfaces,
    inboundPorts,
    excludeInboundPorts,
    proxyUser,
    excludeUids: splitList(raw.excludeUid).map((u) => parseId(u, '--exclude-uid')),
    excludeGids: splitList(raw.excludeGid).map((g) => parseId(g, '--exclude-gid')),
    firewall,
    ...marksOf(raw),
    tproxyTable: parsePositiveInt(raw.tproxyTable ?? String(DEFAULTS.tproxyTable), '--tproxy-table', 0xfffffffe),
    tproxyRulePref:
      raw.tproxyRulePref === undefined ? undefined : parsePositiveInt(raw.tproxyRulePref, '--tproxy-rule-pref', 32765),
    preserveSource,
    connectTimeoutMs: parseDuration(raw.connectTimeout ?? DEFAULTS.connectTimeout, '--connect-timeout'),
    idleTimeoutMs: parseDuration(raw.idleTimeout ?? DEFAULTS.idleTimeout, '--idle-timeout'),
    headTimeoutMs: parseDurationOrOff(raw.headTimeout ?? DEFAULTS.headTimeout, '--head-timeout'),
    maxConnections: parsePositiveInt(raw.maxConnections ?? String(DEFAULTS.maxConnections), '--max-connections'),
    logFormat: parseChoice(raw.logFormat ?? 'text', ['text', 'json'] as const, '--log-format'),
    command,
    inject: injectOf(raw, facts),
    resolver: resolverOf(raw, facts),
    nameserversGiven: splitList(raw.nameserver).length > 0,
    dstFromHost: raw.dstFromHost ?? false,
    workers: parsePositiveInt(raw.workers ?? '1', '--workers', 64),
    relay: parseChoice(raw.relay ?? 'auto', ['auto', 'js', 'splice'] as const, '--relay'),
    admin: adminOf(raw.admin, raw.adminTokenFile),
    drainTimeoutMs: parseDuration(raw.drainTimeout ?? '5s', '--drain-timeout'),
    udp,
    udpIdleTimeoutMs: parseDuration(raw.udpIdleTimeout ?? '60s', '--udp-idle-timeout'),
    routing: routingOf(file, raw.upstream, parseDuration(raw.sniffTimeout ?? '300ms', '--sniff-timeout')),
    enabled: raw.enabled ?? true,
    console: consoleOf(raw.console),
    proxyMode: proxyModeOf(raw.listenProxy, raw.proxyAuth, raw.proxyAuthFile),
  };
}

/** The firewall plan a RunConfig asks for. */
export function capturePlanOf(cfg: RunConfig): CapturePlan {
  return {
    mode: cfg.mode,
    capture: cfg.capture,
    families: cfg.families,
    protocols: cfg.udp ? ['tcp', 'udp'] : ['tcp'],
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
    // Only when not the default, so plans (and their JSON) stay as before for plain marks.
    ...(cfg.bypassMask !== 0xffffffff ? { bypassMask: cfg.bypassMask } : {}),
    ...(cfg.tproxyMask !== 0xffffffff ? { tproxyMask: cfg.tproxyMask } : {}),
    ...(cfg.tproxyRulePref !== undefined ? { rulePref: cfg.tproxyRulePref } : {}),
    ...(cfg.capture.includes('inbound') ? inboundPlan(cfg) : {}),
  };
}

/** Inbound capture never takes tranproxy's own ports (listener, admin API, console). */
function inboundPlan(
  cfg: RunConfig,
): Pick<CapturePlan, 'inboundPorts' | 'excludeInboundPorts' | 'inboundPreserveSource'> {
  const own = ownPortsOf(cfg);
  return {
    inboundPorts: cfg.inboundPorts,
    excludeInboundPorts: [...cfg.excludeInboundPorts, ...own.map((port) => ({ from: port, to: port }))],
    inboundPreserveSource: cfg.mode === 'tproxy' && cfg.preserveSource,
  };
}

/** Ports tranproxy serves itself on (listener, admin API, console, proxy mode). */
export function ownPortsOf(cfg: RunConfig): number[] {
  return [
    cfg.listenPort,
    ...(cfg.admin ? [cfg.admin.port] : []),
    ...(cfg.console ? [cfg.console.port] : []),
    ...(cfg.proxyMode?.listen.map((l) => l.port) ?? []),
  ];
}
