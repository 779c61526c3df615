// Every `tranproxy run` setting, once: its flag, its config file key, the parser both go
// through, its default (as a user would type it), its --help text and whether a reload may
// change it. Commander's options and the file schema's keys are generated from this table;
// a flag and a file value end up as the same typed value, parsed once.
import { isIP } from 'node:net';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { DEFAULT_MAX_HEAD_BYTES, parseHeaderFlag, validateHeader, type HeaderSpec } from '../http/inject-config.js';
import { parseAdminAddress } from '../observe/admin.js';
import { bool, check, describe, many, oneOf, parsed, scalar, text } from './zod-parts.js';
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

type Parse<T> = (text: string, name: string) => T;

interface SettingBase<T> {
  /** Commander flags, e.g. '-P, --port <port>'; undefined: config file only. */
  flag?: string;
  /** Hidden flags meaning the same (other spellings). */
  aliases?: readonly string[];
  /** Help of a `--no-…` twin of a switch flag. */
  negate?: string;
  help?: string | ((dflt: string) => string);
  /** How messages name the flag (default: its long name). */
  name?: string;
  /** Config file key; undefined: flag only. */
  file?: string;
  /** File: what a value must be ("expected …"); strings: numbers are refused. */
  what?: string;
  strings?: boolean;
  /** File: the whole schema of the key, when the scalar one does not fit. */
  fileSchema?: z.ZodType;
  /** One value (flag text, or a file scalar as text) → typed; absent for switches. */
  parse?: Parse<T>;
  choices?: readonly [string, ...string[]];
  /** Commander checks and shows the choices (default: when there are choices). */
  cliChoices?: boolean;
  /** As a user would type it; parsed like one. */
  default?: string;
  /** Commander shows the default (default: when there is one). */
  cliDefault?: boolean;
  /** The value of an `[optional]` flag given bare. */
  bare?: T;
  /** false: a reload must keep it (the RunConfig field named by `field`). */
  reload: boolean;
  field?: string;
  /** 'capture': shared by `run` and `rules plan|apply`. */
  scope: 'capture' | 'run';
}
interface One<T> extends SettingBase<T> {
  list: false;
}
interface List<T> extends SettingBase<T> {
  list: true;
}
type Setting<T> = One<T> | List<T>;

const one = <T>(s: SettingBase<T>): One<T> => ({ ...s, list: false });
const list = <T>(s: SettingBase<T>): List<T> => ({ ...s, list: true });
const choice =
  <const C extends readonly [string, ...string[]]>(choices: C): Parse<C[number]> =>
  (t, name) =>
    parseChoice(t, choices, name);

const PORT_RANGE = 'a port or range, e.g. 80 or 8000-8100';
const CIDR = 'a CIDR, e.g. 10.0.0.0/8';
const DURATION = 'a duration, e.g. 10s or 500ms';
const CAPTURE = ['output', 'prerouting', 'inbound'] as const;

export const DEFAULT_ADMIN = '127.0.0.1:15000';
export const DEFAULT_CONSOLE = '127.0.0.1:8080';

function listenAddress(example: string): Parse<{ host: string; port: number }> {
  return (t, name) => {
    const a = parseAdminAddress(t);
    if (!a) throw new UsageError(`${name}: '${t}' is not ADDRESS:PORT (e.g. ${example}; loopback keeps it private)`);
    return a;
  };
}
const parseAdmin = listenAddress(DEFAULT_ADMIN);
const parseConsoleAddress = listenAddress(DEFAULT_CONSOLE);

function parseHeader(t: string, name: string): HeaderSpec {
  try {
    return parseHeaderFlag(t);
  } catch (e) {
    throw new UsageError(`${name} '${t}': ${(e as Error).message}`);
  }
}

/** `headers:` items: "Name: value" strings or Name: value mappings (several headers each). */
const headerItem = z
  .custom<string | Record<string, unknown>>(
    (v) => typeof v === 'string' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
    { message: "expected 'Name: value' or a mapping Name: value" },
  )
  .transform((v, ctx): HeaderSpec[] => {
    const add = (message: string, key?: string) =>
      ctx.addIssue({ code: 'custom', message, ...(key === undefined ? {} : { path: [key] }) });
    const out: HeaderSpec[] = [];
    const one = (h: string, key?: string) => {
      try {
        out.push(parseHeaderFlag(h));
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        add(e.message, key);
      }
    };
    if (typeof v === 'string') one(v);
    else if (Object.keys(v).length === 0) add('expected at least one Name: value');
    else
      for (const [name, value] of Object.entries(v)) {
        if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
          add(`expected a text value for header '${name}', got ${describe(value)}`, name);
        else one(`${name}:${String(value)}`, name);
      }
    return out;
  });

/** set-forwarded-for / set-client-hostname: true, false, 'default', 'hostname' or the value. */
const identityHeader = (header: string) =>
  z
    .custom<boolean | string | number>(
      (v) => typeof v === 'boolean' || (typeof v === 'string' && v.trim() !== '') || typeof v === 'number',
      { message: "expected true, false, 'default', 'hostname' or a value" },
    )
    .superRefine((v, ctx) => {
      if (typeof v !== 'boolean' && v !== 'default' && v !== 'hostname')
        check((t) => validateHeader(header, t))(String(v), ctx);
    })
    .transform((v) => (typeof v === 'number' ? String(v) : v));

const asIs: Parse<string> = (t) => t;
const proxyUser: Parse<{ uid: number; gid: number } | 'none'> = (t, name) =>
  t === 'none' ? 'none' : parseUidGid(t, name);
const nameserver: Parse<string> = (t, name) => {
  if (!isIP(t.trim())) throw new UsageError(`${name}: '${t}' is not an IP address`);
  return t.trim();
};

export const RUN_SETTINGS = {
  // ---- what to capture and how (`run` and `rules plan|apply`)
  mode: one({
    flag: '--mode <mode>',
    help: 'how connections are handed over',
    file: 'mode',
    choices: ['redirect', 'tproxy'],
    parse: choice(['redirect', 'tproxy']),
    default: 'redirect',
    reload: false,
    field: 'mode',
    scope: 'capture',
  }),
  capture: list({
    flag: '--capture <point>',
    help: "where to capture: 'output' (this host's or pod's own traffic), 'prerouting' (traffic routed through it), 'inbound' (connections to this host's own ports, as Istio's inbound; -H applies to them too); repeatable",
    file: 'capture',
    choices: CAPTURE,
    cliChoices: false,
    parse: choice(CAPTURE),
    default: 'output',
    cliDefault: false,
    reload: true,
    scope: 'capture',
  }),
  inboundPort: list({
    flag: '--inbound-port <port>',
    help: 'inbound: capture only connections to these local ports (8080, 9000-9100); repeatable; default: all',
    file: 'inbound-ports',
    what: PORT_RANGE,
    parse: parsePortRange,
    reload: true,
    scope: 'capture',
  }),
  excludeInboundPort: list({
    flag: '--exclude-inbound-port <port>',
    help: "inbound: never capture these local ports (tranproxy's own are always left alone); repeatable",
    file: 'exclude-inbound-ports',
    what: PORT_RANGE,
    parse: parsePortRange,
    reload: true,
    scope: 'capture',
  }),
  family: one({
    flag: '--family <family>',
    help: 'IP families to capture',
    file: 'family',
    choices: ['dual', 'ipv4', 'ipv6'],
    parse: choice(['dual', 'ipv4', 'ipv6']),
    default: 'dual',
    reload: false,
    field: 'families',
    scope: 'capture',
  }),
  listenPort: one({
    flag: '--listen-port <port>',
    help: 'port the proxy listens on',
    file: 'listen-port',
    what: 'a port',
    parse: parsePort,
    default: '15001',
    reload: false,
    field: 'listenPort',
    scope: 'capture',
  }),
  port: list({
    flag: '-P, --port <port>',
    help: 'capture only these destination ports (80, 8000-8100); repeatable; default: all',
    file: 'ports',
    what: PORT_RANGE,
    parse: parsePortRange,
    reload: true,
    scope: 'capture',
  }),
  excludePort: list({
    flag: '--exclude-port <port>',
    help: 'never capture these destination ports; repeatable',
    file: 'exclude-ports',
    what: PORT_RANGE,
    parse: parsePortRange,
    reload: true,
    scope: 'capture',
  }),
  includeCidr: list({
    flag: '--include-cidr <cidr>',
    help: 'capture only these destinations; repeatable',
    file: 'include-cidrs',
    what: CIDR,
    strings: true,
    parse: parseCidr,
    reload: true,
    scope: 'capture',
  }),
  excludeCidr: list({
    flag: '--exclude-cidr <cidr>',
    help: 'never capture these destinations; repeatable',
    file: 'exclude-cidrs',
    what: CIDR,
    strings: true,
    parse: parseCidr,
    reload: true,
    scope: 'capture',
  }),
  sourceCidr: list({
    flag: '--source-cidr <cidr>',
    help: 'prerouting: capture only from these sources; repeatable',
    file: 'source-cidrs',
    what: CIDR,
    strings: true,
    parse: parseCidr,
    reload: true,
    scope: 'capture',
  }),
  inInterface: list({
    flag: '-i, --in-interface <name>',
    help: 'prerouting: capture only from these interfaces; repeatable',
    file: 'in-interfaces',
    what: 'an interface name',
    strings: true,
    parse: parseInterfaceName,
    reload: true,
    scope: 'capture',
  }),
  udp: one<boolean>({
    flag: '--udp',
    help: 'also capture UDP (TPROXY only)',
    file: 'udp',
    default: 'false',
    cliDefault: false,
    reload: true,
    scope: 'capture',
  }),
  bypassPrivate: one<boolean>({
    flag: '--no-bypass-private',
    help: 'prerouting: capture private and reserved destinations too (by default a gateway leaves 10/8, 192.168/16, fc00::/7, … alone)',
    file: 'bypass-private',
    default: 'true',
    cliDefault: false,
    reload: true,
    scope: 'capture',
  }),
  proxyUser: one({
    flag: '--proxy-user <uid:gid|none>',
    help: (d) => `the proxy runs as this user, whose traffic is never captured (default with --capture output: ${d})`,
    file: 'proxy-user',
    what: 'UID:GID or none',
    parse: proxyUser,
    // Only with --capture output; otherwise none.
    default: '1337:1337',
    cliDefault: false,
    reload: false,
    field: 'proxyUser',
    scope: 'capture',
  }),
  excludeUid: list({
    flag: '--exclude-uid <uid>',
    help: 'never capture traffic of this uid; repeatable',
    file: 'exclude-uids',
    what: 'a uid',
    parse: parseId,
    reload: true,
    scope: 'capture',
  }),
  excludeGid: list({
    flag: '--exclude-gid <gid>',
    help: 'never capture traffic of this gid; repeatable',
    file: 'exclude-gids',
    what: 'a gid',
    parse: parseId,
    reload: true,
    scope: 'capture',
  }),
  firewall: one({
    flag: '--firewall <backend>',
    help: 'firewall backend; none leaves the rules to you',
    file: 'firewall',
    choices: ['auto', 'nft', 'iptables', 'none'],
    parse: choice(['auto', 'nft', 'iptables', 'none']),
    default: 'auto',
    reload: false,
    field: 'firewall',
    scope: 'capture',
  }),
  bypassMark: one({
    flag: '--bypass-mark <mark[/mask]>',
    help: (d) =>
      `packets with this mark (in the mask bits) are never captured (the proxy sets it on its own sockets) (default: ${d})`,
    file: 'bypass-mark',
    what: 'a mark or MARK/MASK, e.g. 0x539 or 0x2/0x2',
    parse: parseMarkMask,
    // Not commander's: an untyped bypass mark may move off a masked --tproxy-mark's bits.
    default: '0x539',
    cliDefault: false,
    reload: true,
    scope: 'capture',
  }),
  tproxyMark: one({
    flag: '--tproxy-mark <mark[/mask]>',
    help: 'TPROXY: mark of diverted packets; with /mask only those bits are set and matched (e.g. 0x1/0x1)',
    file: 'tproxy-mark',
    what: 'a mark or MARK/MASK, e.g. 0x1e7 or 0x1/0x1',
    parse: parseMarkMask,
    default: '0x1e7',
    reload: true,
    scope: 'capture',
  }),
  tproxyTable: one({
    flag: '--tproxy-table <n>',
    help: 'TPROXY: route table that delivers marked packets locally',
    file: 'tproxy-table',
    what: 'a route table number',
    parse: (t, name) => parsePositiveInt(t, name, 0xfffffffe),
    default: '233',
    reload: true,
    scope: 'capture',
  }),
  tproxyRulePref: one({
    flag: '--tproxy-rule-pref <n>',
    help: "TPROXY: preference of the 'ip rule fwmark … lookup TABLE' (1-32765; default: the kernel's choice)",
    file: 'tproxy-rule-pref',
    what: 'an ip rule preference, 1-32765',
    parse: (t, name) => parsePositiveInt(t, name, 32765),
    reload: true,
    scope: 'capture',
  }),

  // ---- the proxy itself (`run`)
  preserveSource: one<boolean>({
    flag: '--preserve-source',
    help: "TPROXY: connect upstream from the client's own address (default in tproxy prerouting mode)",
    negate: "TPROXY: connect upstream from this host's address",
    file: 'preserve-source',
    reload: true,
    scope: 'run',
  }),
  connectTimeout: one({
    flag: '--connect-timeout <duration>',
    help: 'upstream connect timeout',
    file: 'connect-timeout',
    what: DURATION,
    parse: parseDuration,
    default: '10s',
    reload: true,
    scope: 'run',
  }),
  idleTimeout: one({
    flag: '--idle-timeout <duration>',
    help: 'close connections idle in both directions this long',
    file: 'idle-timeout',
    what: DURATION,
    parse: parseDuration,
    default: '10m',
    reload: true,
    scope: 'run',
  }),
  udpIdleTimeout: one({
    flag: '--udp-idle-timeout <duration>',
    help: 'UDP: forget a flow after this long without datagrams',
    parse: parseDuration,
    default: '60s',
    reload: true,
    scope: 'run',
  }),
  maxConnections: one({
    flag: '--max-connections <n>',
    help: 'refuse connections beyond this many at once',
    file: 'max-connections',
    what: 'a number',
    parse: (t, name) => parsePositiveInt(t, name),
    default: '8000',
    reload: true,
    scope: 'run',
  }),
  logFormat: one({
    flag: '--log-format <format>',
    help: 'text or json',
    file: 'log-format',
    choices: ['text', 'json'],
    cliChoices: false,
    parse: choice(['text', 'json']),
    default: 'text',
    reload: true,
    scope: 'run',
  }),
  workers: one({
    flag: '--workers <n>',
    help: 'data-plane workers sharing the listeners (like nginx worker_processes): engine threads in one process when the engine serves every flow, else processes',
    parse: (t, name) => parsePositiveInt(t, name, 64),
    default: '1',
    reload: false,
    field: 'workers',
    scope: 'run',
  }),
  oneProcess: one<boolean>({
    flag: '--one-process',
    help: 'serve in this one process: no supervisor and no rules (with --firewall none: an init container ran `tranproxy rules apply`); SIGHUP reloads, SIGTERM drains',
    file: 'one-process',
    default: 'false',
    cliDefault: false,
    reload: false,
    field: 'oneProcess',
    scope: 'run',
  }),
  admin: one({
    flag: '--admin [address:port]',
    help: `admin HTTP listener: /healthz /readyz /metrics /connections /groups, DELETE /connections/WORKER-ID, POST /quitquitquit (default ${DEFAULT_ADMIN})`,
    parse: parseAdmin,
    bare: parseAdmin(DEFAULT_ADMIN, '--admin'),
    reload: false,
    field: 'admin',
    scope: 'run',
  }),
  adminTokenFile: one({
    flag: '--admin-token-file <file>',
    help: 'admin API: /connections and POST /quitquitquit need Authorization: Bearer <the token in FILE>; probes and /metrics stay open',
    parse: asIs,
    reload: false,
    field: 'admin',
    scope: 'run',
  }),
  // File: console.listen (see schema.ts).
  console: one({
    flag: '--console [address:port]',
    help: `web console (needs --config and a password from \`tranproxy console passwd\`; default ${DEFAULT_CONSOLE})`,
    parse: (t, name) => parseConsoleAddress(/^\d+$/.test(t.trim()) ? `:${t.trim()}` : t, name),
    bare: parseConsoleAddress(DEFAULT_CONSOLE, '--console'),
    reload: true,
    scope: 'run',
  }),
  // Proxy mode (config/proxy-mode.ts reads these three together; the supervisor keeps the listeners on reload).
  listenProxy: list({
    flag: '--listen-proxy <address:port>',
    help: 'proxy mode: an HTTP proxy (CONNECT and http:// URLs) and SOCKS5 (CONNECT, UDP ASSOCIATE) on this address, routed by the same rules and nodes; repeatable. WARNING: without --proxy-auth, anyone who can reach this address can use the gateway as a proxy',
    file: 'listen-proxy',
    what: 'ADDRESS:PORT, e.g. 192.168.1.1:7890',
    strings: true,
    parse: (t) => t.trim(),
    reload: true,
    scope: 'run',
  }),
  proxyAuth: one({
    flag: '--proxy-auth <user:pass>',
    help: 'proxy mode: require this user and password (HTTP Basic, SOCKS5 username/password)',
    file: 'proxy-auth',
    what: 'USER:PASS',
    strings: true,
    parse: asIs,
    reload: true,
    scope: 'run',
  }),
  proxyAuthFile: one({
    flag: '--proxy-auth-file <file>',
    help: 'proxy mode: like --proxy-auth, USER:PASS read from FILE (mode 600)',
    file: 'proxy-auth-file',
    what: 'a file holding USER:PASS',
    strings: true,
    parse: asIs,
    reload: true,
    scope: 'run',
  }),
  drainTimeout: one({
    flag: '--drain-timeout <duration>',
    help: 'on SIGTERM, how long in-flight connections may finish before the rules go',
    parse: parseDuration,
    default: '5s',
    reload: true,
    scope: 'run',
  }),
  header: list({
    flag: '-H, --header <name:value>',
    name: '-H/--header',
    help: "HTTP: add this header to every request (replaces a same-named one; the value may contain ':'); repeatable",
    file: 'headers',
    fileSchema: many(headerItem).transform((items) => items.flat()),
    parse: parseHeader,
    reload: true,
    scope: 'run',
  }),
  setForwardedFor: one<string | boolean>({
    flag: '--Set-Forwarded-For [value]',
    aliases: ['--set-forwarded-for [value]'],
    help: 'HTTP: add X-Forwarded-For (default or no value: $PODIP, else the primary interface address)',
    file: 'set-forwarded-for',
    fileSchema: identityHeader('X-Forwarded-For'),
    parse: asIs,
    bare: true,
    reload: true,
    scope: 'run',
  }),
  setClientHostname: one<string | boolean>({
    flag: '--Set-Client-Hostname [value]',
    aliases: ['--set-client-hostname [value]'],
    help: 'HTTP: add X-Client-Hostname (default or no value: this host name)',
    file: 'set-client-hostname',
    fileSchema: identityHeader('X-Client-Hostname'),
    parse: asIs,
    bare: true,
    reload: true,
    scope: 'run',
  }),
  xffMode: one({
    flag: '--xff-mode <mode>',
    help: 'X-Forwarded-For: append to what the client sent, or replace it',
    file: 'xff-mode',
    choices: ['append', 'replace'],
    parse: choice(['append', 'replace']),
    default: 'append',
    cliDefault: false,
    reload: true,
    scope: 'run',
  }),
  maxHeadSize: one({
    flag: '--max-head-size <bytes>',
    help: 'HTTP: largest request head accepted (larger gets 431)',
    file: 'max-head-size',
    what: 'a number of bytes',
    parse: (t, name) => parsePositiveInt(t, name, 1 << 24),
    default: String(DEFAULT_MAX_HEAD_BYTES),
    reload: true,
    scope: 'run',
  }),
  headTimeout: one({
    flag: '--head-timeout <duration>',
    help: 'HTTP: a request head must be complete this long after its first byte, else 408 (0: no limit)',
    file: 'head-timeout',
    what: `${DURATION}, or 0 for none`,
    parse: parseDurationOrOff,
    default: '30s',
    reload: true,
    scope: 'run',
  }),
  allowH2c: one<boolean>({
    flag: '--allow-h2c',
    help: 'HTTP: let cleartext HTTP/2 (prior knowledge or Upgrade: h2c) through unstamped instead of refusing it with 400',
    file: 'allow-h2c',
    reload: true,
    scope: 'run',
  }),
  httpOnly: one<boolean>({
    flag: '--http-only',
    help: 'HTTP: close connections that do not start like HTTP/1.x (e.g. TLS) instead of passing them through untouched',
    file: 'http-only',
    reload: true,
    scope: 'run',
  }),
  nameserver: list({
    flag: '-N, --nameserver <ip>',
    name: '-N/--nameserver',
    help: 'resolver for every name tranproxy resolves itself (--dst-from-host, upstream node names, console checks); repeatable (default: /etc/resolv.conf, or the system resolver for node names)',
    file: 'nameservers',
    what: 'an IP address',
    strings: true,
    parse: nameserver,
    reload: true,
    scope: 'run',
  }),
  upstream: one({
    flag: '--upstream <uri>',
    help: 'send every flow through this node: socks5://[user:pass@]host:port, http://…, ss://…, vmess://…, vless://…, trojan://…',
    parse: asIs,
    reload: true,
    scope: 'run',
  }),
  sniffTimeout: one({
    flag: '--sniff-timeout <duration>',
    help: "gateway: how long to wait for a client's first bytes to find its domain",
    parse: parseDuration,
    default: '300ms',
    reload: true,
    scope: 'run',
  }),
  relay: one({
    flag: '--relay <engine>',
    help: 'byte pump: splice(2) for flows nobody inspects, else JS (auto); js only; splice required',
    file: 'relay',
    choices: ['auto', 'js', 'splice'],
    parse: choice(['auto', 'js', 'splice']),
    default: 'auto',
    cliDefault: false,
    reload: true,
    scope: 'run',
  }),
  dstFromHost: one<boolean>({
    flag: '--dst-from-host',
    help: "HTTP: when the kernel has no original destination (no NAT), connect to the Host header's name instead",
    file: 'dst-from-host',
    reload: true,
    scope: 'run',
  }),
  enabled: one<boolean>({
    file: 'enabled',
    default: 'true',
    reload: true,
    scope: 'run',
  }),
} as const satisfies Record<string, Setting<unknown>>;

type Table = typeof RUN_SETTINGS;
export type SettingKey = keyof Table;
type ValueOf<S> = S extends List<infer T> ? T[] : S extends One<infer T> ? T : never;
/** Typed values of every setting (a file or the flags give some of them: Partial). */
export type Settings = { -readonly [K in SettingKey]: ValueOf<Table[K]> };
export type SettingValues = Partial<Settings>;

/** What commander hands over: strings, string arrays, booleans, undefined (by attribute name). */
export type RawRunOptions = Record<string, string | string[] | boolean | undefined>;

const ENTRIES = Object.entries(RUN_SETTINGS) as [SettingKey, Setting<unknown>][];

function longName(flag: string): string {
  return /--[A-Za-z0-9-]+/.exec(flag)![0];
}

/** How messages name a setting's flag. */
export function flagName(key: SettingKey): string {
  const s: Setting<unknown> = RUN_SETTINGS[key];
  return s.name ?? (s.flag ? longName(s.flag) : (s.file ?? key));
}

function typedValue(s: Setting<unknown>, v: string | string[] | boolean, name: string): unknown {
  if (!s.parse) return Boolean(v);
  if (s.list) return splitList(Array.isArray(v) ? v : [String(v)]).map((t) => s.parse!(t, name));
  if (v === true && s.bare !== undefined) return s.bare;
  return s.parse(String(v), name);
}

/** A setting's default, typed (undefined: it has none, or it depends on other settings). */
export function defaultOf<K extends SettingKey>(key: K): Settings[K] {
  const s: Setting<unknown> = RUN_SETTINGS[key];
  if (s.default === undefined) return undefined as Settings[K];
  return (s.parse ? typedValue(s, s.default, flagName(key)) : s.default === 'true') as Settings[K];
}

/** One setting from text, as if its flag had been given it. */
export function settingFromText<K extends SettingKey>(key: K, text: string): Settings[K] {
  return typedValue(RUN_SETTINGS[key], text, flagName(key)) as Settings[K];
}

/** Commander attribute names a setting's flags land under (the main one first). */
function attributes(s: Setting<unknown>): string[] {
  return [s.flag, ...(s.aliases ?? [])].flatMap((f) => (f ? [new Option(f).attributeName()] : []));
}

/**
 * Flag values → typed settings. `typed(attr)` says whether the user gave that option (not a
 * commander default); without it every value present counts.
 */
export function flagSettings(raw: RawRunOptions, typed: (attr: string) => boolean = () => true): SettingValues {
  const out: Record<string, unknown> = {};
  for (const [key, s] of ENTRIES) {
    for (const attr of attributes(s)) {
      const v = raw[attr];
      if (v === undefined || !typed(attr)) continue;
      out[key] = typedValue(s, v, flagName(key));
      break;
    }
  }
  return out as SettingValues;
}

/** The settings of a command the user typed on the command line (or in the environment). */
export function commandSettings(cmd: Command): SettingValues {
  return flagSettings(cmd.opts(), (attr) => {
    const source = cmd.getOptionValueSource(attr);
    return source === 'cli' || source === 'env';
  });
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Commander options for the settings of `scope`, in table order. */
export function addSettingOptions(cmd: Command, scope: 'capture' | 'run'): Command {
  for (const [, s] of ENTRIES) {
    if (s.scope !== scope || !s.flag) continue;
    const help = typeof s.help === 'function' ? s.help(s.default ?? '') : (s.help ?? '');
    const o = new Option(s.flag, help);
    if (s.list) o.argParser(collect);
    if (s.choices && (s.cliChoices ?? !s.list)) o.choices(s.choices);
    if (s.default !== undefined && (s.cliDefault ?? true)) o.default(s.default);
    cmd.addOption(o);
    if (s.negate) cmd.addOption(new Option(`--no-${longName(s.flag).slice(2)}`, s.negate));
    for (const alias of s.aliases ?? []) cmd.addOption(new Option(alias).hideHelp());
  }
  return cmd;
}

// ---- the config file

function fileSchemaOf(s: Setting<unknown>): z.ZodType {
  if (s.fileSchema) return s.fileSchema;
  const parse = s.parse;
  if (!parse) return bool;
  const item = s.choices
    ? oneOf(s.choices)
    : (s.strings ? text(s.what ?? 'a value') : scalar(s.what ?? 'a value')).transform(parsed((t) => parse(t, '')));
  return s.list ? many(item) : item;
}

/** File key → schema (optional), for every setting the file may hold. */
export function fileSettingsShape(): Record<string, z.ZodOptional<z.ZodType>> {
  const shape: Record<string, z.ZodOptional<z.ZodType>> = {};
  for (const [, s] of ENTRIES) if (s.file) shape[s.file] = fileSchemaOf(s).optional();
  return shape;
}

/** Validated file data (file keys, typed values) → settings. */
export function fileSettings(data: Record<string, unknown>): SettingValues {
  const out: Record<string, unknown> = {};
  for (const [key, s] of ENTRIES) if (s.file && data[s.file] !== undefined) out[key] = data[s.file];
  return out as SettingValues;
}

/** RunConfig fields a reload must keep (restart to change them), in table order. */
export function fixedOnReload(): string[] {
  return [...new Set(ENTRIES.flatMap(([, s]) => (!s.reload && s.field ? [s.field] : [])))];
}
