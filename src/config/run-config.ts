// `tranproxy run` configuration: raw flag values in, a validated RunConfig out, and the
// capture plan derived from it. No I/O here beyond reading defaults passed in.
import os from 'node:os';
import { UsageError } from '../errors.js';
import { compileInjectConfig, validateHeader, type InjectConfig } from '../http/inject-config.js';
import { podAddress, readResolvConf, type ResolvConf } from './host-identity.js';
import { proxyModeOf, type ProxyModeConfig } from './proxy-mode.js';
import { routingOf, type RoutingConfig } from './routing.js';
import type { ConfigFile } from './file.js';
import type { CaptureMode, CapturePoint, Cidr, Family, PortRange } from '../firewall/plan.js';
import {
  defaultOf,
  fixedOnReload,
  flagSettings,
  type RawRunOptions,
  type SettingKey,
  type Settings,
  type SettingValues,
} from './settings.js';

export type { RawRunOptions, SettingValues };

export type FirewallChoice = Settings['firewall'];
export type FamilyChoice = Settings['family'];
export type LogFormat = Settings['logFormat'];
export type RelayEngineChoice = Settings['relay'];

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
  /** `--one-process`: this process serves (no supervisor, no rules; firewall 'none'). */
  oneProcess: boolean;
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

function injectOf(v: SettingValues, facts: HostFacts): InjectConfig | undefined {
  const headers = [...(v.header ?? [])];
  const xffFlag = v.setForwardedFor;
  const hostFlag = v.setClientHostname;
  let forwardedFor: InjectConfig['forwardedFor'];
  if (xffFlag !== undefined && xffFlag !== false) {
    let value: string | undefined;
    if (xffFlag === true || xffFlag === 'default') {
      value = facts.podAddress();
      if (!value)
        throw new UsageError(
          '--Set-Forwarded-For: no pod address found: set PODIP or give a value, e.g. --Set-Forwarded-For 10.0.0.5',
        );
    } else value = xffFlag === 'hostname' ? facts.hostname() : xffFlag;
    forwardedFor = { value: validateHeader('X-Forwarded-For', value).value, mode: setting(v, 'xffMode') };
  } else if (v.xffMode !== undefined) {
    throw new UsageError('--xff-mode needs --Set-Forwarded-For');
  }
  if (hostFlag !== undefined && hostFlag !== false) {
    const value = hostFlag === true || hostFlag === 'default' || hostFlag === 'hostname' ? facts.hostname() : hostFlag;
    headers.push(validateHeader('X-Client-Hostname', value));
  }
  if (!headers.length && !forwardedFor) return undefined;
  const cfg: InjectConfig = {
    headers,
    maxHeadBytes: setting(v, 'maxHeadSize'),
    ...(forwardedFor ? { forwardedFor } : {}),
    ...(v.allowH2c ? { allowH2c: true } : {}),
    ...(v.httpOnly ? { httpOnly: true } : {}),
  };
  compileInjectConfig(cfg); // validates combinations (e.g. XFF given twice)
  return cfg;
}

/** --one-process serves only: the rules, a wrapped command and the console need the supervisor. */
function oneProcessOf(v: SettingValues, command: string[]): boolean {
  if (!setting(v, 'oneProcess')) return false;
  if (setting(v, 'firewall') !== 'none')
    throw new UsageError(
      '--one-process applies no rules: add --firewall none and apply them first with `tranproxy rules apply` (an init container)',
    );
  if (command.length) throw new UsageError('--one-process cannot run a command after --: drop one of them');
  if (v.console) throw new UsageError('--one-process has no web console: drop one of them');
  return true;
}

function adminOf(v: SettingValues): RunConfig['admin'] {
  if (v.admin === undefined) {
    if (v.adminTokenFile !== undefined) throw new UsageError('--admin-token-file needs --admin');
    return undefined;
  }
  return v.adminTokenFile !== undefined ? { ...v.admin, tokenFile: v.adminTokenFile } : v.admin;
}

function resolverOf(v: SettingValues, facts: HostFacts): ResolvConf {
  const conf = facts.resolvConf();
  const given = v.nameserver ?? [];
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

/** RunConfig fields a reload must keep (the settings the table marks reload: false). */
export const FIXED_ON_RELOAD = fixedOnReload() as (keyof RunConfig)[];

/** The user the proxy runs as with --capture output, unless --proxy-user says otherwise. */
export const DEFAULT_PROXY_USER = defaultOf('proxyUser') as { uid: number; gid: number };

/** A setting's value: given, or its default from the table. */
function setting<K extends SettingKey>(v: SettingValues, key: K): Settings[K] {
  const given = v[key];
  return given !== undefined ? (given as Settings[K]) : defaultOf(key);
}

function marksOf(v: SettingValues): Pick<RunConfig, 'bypassMark' | 'bypassMask' | 'tproxyMark' | 'tproxyMask'> {
  const tproxy = setting(v, 'tproxyMark');
  const bypass = { ...setting(v, 'bypassMark') };
  // The default bypass mark must not carry a masked TPROXY mark's bits (0x539 has bit 0x1).
  if (v.bypassMark === undefined && (bypass.mark & tproxy.mask) >>> 0 === tproxy.mark)
    bypass.mark = (bypass.mark & ~tproxy.mask) >>> 0 || 0x80000000;
  return { bypassMark: bypass.mark, bypassMask: bypass.mask, tproxyMark: tproxy.mark, tproxyMask: tproxy.mask };
}

function families(choice: FamilyChoice): Family[] {
  return choice === 'dual' ? ['ipv4', 'ipv6'] : [choice];
}

/** Flag values (as commander hands them over) → RunConfig; `file` gives nodes and rules. */
export function parseRunOptions(
  raw: RawRunOptions,
  command: string[] = [],
  facts: HostFacts = REAL_HOST,
  file?: ConfigFile,
): RunConfig {
  return runConfigOf(flagSettings(raw), command, facts, file);
}

/** Typed settings (the file's, the flags' over them) → RunConfig, with the checks across settings. */
export function runConfigOf(
  v: SettingValues,
  command: string[] = [],
  facts: HostFacts = REAL_HOST,
  file?: ConfigFile,
): RunConfig {
  const mode = setting(v, 'mode');
  const capture = [...new Set(setting(v, 'capture'))];
  const inboundPorts = v.inboundPort ?? [];
  const excludeInboundPorts = v.excludeInboundPort ?? [];
  if (!capture.includes('inbound') && (inboundPorts.length || excludeInboundPorts.length)) {
    throw new UsageError(
      '--inbound-port and --exclude-inbound-port apply to connections to this host: add --capture inbound',
    );
  }
  const inInterfaces = v.inInterface ?? [];
  const sourceCidrs = v.sourceCidr ?? [];
  if (!capture.includes('prerouting') && (inInterfaces.length || sourceCidrs.length)) {
    throw new UsageError('--in-interface and --source-cidr apply to routed traffic: add --capture prerouting');
  }
  const user = v.proxyUser ?? (capture.includes('output') ? DEFAULT_PROXY_USER : 'none');
  const proxyUser = user === 'none' ? undefined : user;
  // Without a dedicated user (--proxy-user none) the proxy marks its own sockets with the
  // bypass mark instead, which needs CAP_NET_ADMIN in the data plane.
  const preserveSource = v.preserveSource ?? (mode === 'tproxy' && !capture.includes('output'));
  if (preserveSource && mode !== 'tproxy') {
    throw new UsageError('--preserve-source needs --mode tproxy (REDIRECT rewrites the destination, not the source)');
  }
  const udp = setting(v, 'udp');
  if (udp && mode !== 'tproxy')
    throw new UsageError('--udp needs --mode tproxy: REDIRECT cannot recover a UDP destination');
  if (udp && proxyUser) {
    throw new UsageError('--udp needs a privileged data plane (transparent UDP sockets): add --proxy-user none');
  }
  const listenPort = setting(v, 'listenPort');
  const ports = v.port ?? [];
  if (ports.some((p) => p.from <= listenPort && listenPort <= p.to)) {
    throw new UsageError(
      `--port includes the proxy's own --listen-port ${listenPort}: that would loop; choose another --listen-port`,
    );
  }
  return {
    mode,
    capture,
    families: families(setting(v, 'family')),
    listenPort,
    ports,
    excludePorts: v.excludePort ?? [],
    includeCidrs: v.includeCidr ?? [],
    excludeCidrs: [
      ...(v.excludeCidr ?? []),
      // A gateway leaves LAN-internal and reserved destinations alone unless told otherwise.
      ...(capture.includes('prerouting') && setting(v, 'bypassPrivate') ? RESERVED_CIDRS : []),
    ],
    sourceCidrs,
    inInterfaces,
    inboundPorts,
    excludeInboundPorts,
    proxyUser,
    excludeUids: v.excludeUid ?? [],
    excludeGids: v.excludeGid ?? [],
    firewall: setting(v, 'firewall'),
    ...marksOf(v),
    tproxyTable: setting(v, 'tproxyTable'),
    tproxyRulePref: v.tproxyRulePref,
    preserveSource,
    connectTimeoutMs: setting(v, 'connectTimeout'),
    idleTimeoutMs: setting(v, 'idleTimeout'),
    headTimeoutMs: setting(v, 'headTimeout'),
    maxConnections: setting(v, 'maxConnections'),
    logFormat: setting(v, 'logFormat'),
    command,
    inject: injectOf(v, facts),
    resolver: resolverOf(v, facts),
    nameserversGiven: (v.nameserver ?? []).length > 0,
    dstFromHost: v.dstFromHost ?? false,
    workers: setting(v, 'workers'),
    oneProcess: oneProcessOf(v, command),
    relay: setting(v, 'relay'),
    admin: adminOf(v),
    drainTimeoutMs: setting(v, 'drainTimeout'),
    udp,
    udpIdleTimeoutMs: setting(v, 'udpIdleTimeout'),
    routing: routingOf(file, v.upstream, setting(v, 'sniffTimeout')),
    enabled: setting(v, 'enabled'),
    console: v.console,
    proxyMode: proxyModeOf(v.listenProxy, v.proxyAuth, v.proxyAuthFile),
  };
}
