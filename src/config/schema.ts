// The YAML config file (`tranproxy run --config FILE`): its schema, and what it becomes.
//
// Key style: kebab-case everywhere. The settings `tranproxy run` also takes as flags, with
// their keys, are declared in settings.ts (a repeatable flag's key is a list, in the plural).
//
// A list key also takes a single value (`ports: 80`). Durations are "10s", "5m", "250ms" or
// a number of milliseconds. `headers` items are "Name: value" strings or `Name: value` maps.
// `set-forwarded-for` / `set-client-hostname`: true (or no value) = the flag without a
// value, false = off, a string = the flag's value ("default", "hostname" or a literal).
//
// Beyond the flags:
//   nodes:    name → URI (socks5://, socks5h://, http://, ss://, vmess://, vless://, trojan://) or { uri, label, connect-timeout, udp, fallback }
//   rules:    list of { domain | domain-suffix | domain-keyword | domain-list | rule-set | cidr | port |
//             source-cidr | network …, outbound }; every matcher given must match (the domain
//             ones count as one: any of them); first matching rule wins
//   rule-sets: name → { url, interval (default 1d, 0: never), format: domain | cidr | clash, user-agent }
//             fetched to rule-sets/NAME.txt next to the file; a rule names them with `rule-set`
//   groups:   name → { type: select | url-test | fallback, members, url, interval, tolerance }
//             a group is an outbound like a node (rules, default, default-udp, other groups)
//   default:  outbound for flows no rule matches (default: direct)
//   dns:      { listen, nameservers, via, cache, fake-ip: { enabled, range } }
//   default-udp:    outbound for UDP flows no rule matches (default: the same as `default`)
//   enabled:        the main switch: false keeps the proxy running with no capture rules (default true)
//   check-targets:  "host:port" list the web console's reachability check tries
//   console:  { listen, password-hash, test-url, subscriptions: [{ url, nodes, kept, interval, user-agent, updated-at, result, error }] }
//             the web console (`--console`); `tranproxy console passwd` writes password-hash
// Outbound names: `direct`, `reject`, or a key of `nodes`. Unknown keys are errors.
import { isIP } from 'node:net';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import {
  DEFAULT_PROBE_INTERVAL_MS,
  DEFAULT_PROBE_URL,
  DEFAULT_TOLERANCE_MS,
  GROUP_TYPES,
  type GroupSpec,
} from '../outbound/group.js';
import { NODE_SCHEMES } from '../outbound/uri.js';
import { groupProblems } from './groups.js';
import {
  BUILTIN_OUTBOUNDS,
  normalizeDomainEntry,
  RULE_SET_FORMATS,
  suggest,
  unknownOutboundMessage,
  type DomainEntryKind,
  type Network,
  type RuleSetFormat,
} from '../route/index.js';
import { fileSettings, fileSettingsShape, settingFromText, type SettingValues } from './settings.js';
import { parseCidr, parseDuration, parseDurationOrOff, parsePort, parsePortRange } from './values.js';
import { bool, many, oneOf, scalar, text } from './zod-parts.js';

export { describe } from './zod-parts.js';

/** Fake-IP range used when `dns.fake-ip.enabled` is set without a range. */
export const DEFAULT_FAKE_IP_RANGE = '198.18.0.0/15';

// ---------------------------------------------------------------------------------------
// Building blocks

const portRange = scalar('a port or range, e.g. 80 or 8000-8100', (t) => parsePortRange(t, ''));
const cidr = text('a CIDR, e.g. 10.0.0.0/8', (t) => parseCidr(t, ''));
const duration = scalar('a duration, e.g. 10s or 500ms', (t) => parseDuration(t, ''));
const durationOrOff = scalar('a duration, e.g. 10s or 500ms, or 0 for none', (t) => parseDurationOrOff(t, ''));
/** "53", "127.0.0.1:53", "[::1]:53", "::1" (no port), "1.1.1.1". */
export function parseHostPort(t: string, defaultPort: number | undefined): { host: string | undefined; port: number } {
  const s = t.trim();
  const fail = (): never => {
    throw new UsageError(
      `: '${t}' is not ${defaultPort === undefined ? 'PORT or IP:PORT' : 'IP or IP:PORT'} (IPv6 in brackets: [::1]:53)`,
    );
  };
  if (/^\d+$/.test(s)) {
    if (defaultPort !== undefined) fail();
    return { host: undefined, port: parsePort(s, '') };
  }
  if (isIP(s)) {
    if (defaultPort === undefined) fail();
    return { host: s, port: defaultPort! };
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(s);
  const host = m?.[1] ?? m?.[2];
  if (!m || !host || !isIP(host) || (m[2] !== undefined && isIP(host) !== 4)) return fail();
  return { host, port: parsePort(m[3]!, '') };
}

function domainEntries(kind: DomainEntryKind, what: string) {
  return many(
    text(what, (t) => {
      const r = normalizeDomainEntry(kind, t);
      if ('error' in r) throw new UsageError(`: ${r.error}`);
    }),
  ).optional();
}

// ---------------------------------------------------------------------------------------
// The file

const RuleSchema = z.strictObject({
  domain: domainEntries('full', 'a domain name'),
  'domain-suffix': domainEntries('suffix', 'a domain suffix, e.g. example.com'),
  'domain-keyword': domainEntries('keyword', 'a domain keyword'),
  'domain-list': many(text('a domain list file path')).optional(),
  'rule-set': many(text('a rule-set name (a key of rule-sets)')).optional(),
  cidr: many(cidr).optional(),
  port: many(portRange).optional(),
  'source-cidr': many(cidr).optional(),
  network: many(oneOf(['tcp', 'udp'])).optional(),
  outbound: text('an outbound name (direct, reject or a node)'),
});

const NodeObject = z.strictObject({
  uri: text('a node URI, e.g. socks5://host:1080', (t) => {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/./.exec(t.trim());
    const scheme = m?.[1]?.toLowerCase();
    if (!scheme || !(NODE_SCHEMES as readonly string[]).includes(scheme)) {
      throw new UsageError(
        `: ${m ? `unsupported scheme '${m[1]}'` : 'not a URI'}: use ${NODE_SCHEMES.map((s) => `${s}://`).join(', ')}`,
      );
    }
  }),
  /** The node's name as its link or subscription wrote it (any Unicode); the key is the config-safe name. */
  label: z.string().optional(),
  'connect-timeout': duration.optional(),
  udp: bool.optional(),
  /** Outbound to use when this node cannot be reached: another node, or direct. */
  fallback: z.string().optional(),
});
const NodeName = z.string().superRefine((name, ctx) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) {
    ctx.addIssue({
      code: 'custom',
      message: `node name '${name}': use letters, digits, '.', '_' and '-' (up to 63, starting with a letter or digit)`,
    });
  } else if ((BUILTIN_OUTBOUNDS as readonly string[]).includes(name)) {
    ctx.addIssue({ code: 'custom', message: `'${name}' is a built-in outbound; give the node another name` });
  }
});
const NodeSchema = z.preprocess((v) => (typeof v === 'string' ? { uri: v } : v), NodeObject);

const GroupSchema = z.strictObject({
  type: oneOf(GROUP_TYPES),
  members: many(text('an outbound name (a node, a group, direct or reject)')),
  url: text('an http:// or https:// URL to probe', (t) => {
    if (!/^https?:\/\/[^\s/]+/i.test(t.trim())) throw new UsageError(`: '${t}' is not an http:// or https:// URL`);
  }).optional(),
  interval: duration.optional(),
  tolerance: scalar('a number of milliseconds', (t) => parseDurationOrOff(t, '')).optional(),
});

/** "host:port", host a name or an IP (IPv6 in brackets). */
export function parseCheckTarget(t: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(t.trim());
  const host = m?.[1] ?? m?.[2];
  if (!m || !host || (m[1] !== undefined && isIP(host) !== 6))
    throw new UsageError(`: '${t}' is not HOST:PORT (e.g. example.com:443, [2001:db8::1]:80)`);
  return { host, port: parsePort(m[3]!, '') };
}

const SubscriptionSchema = z.strictObject({
  url: text('an http(s) URL', (t) => {
    if (!/^https?:\/\/[^\s]+$/i.test(t.trim())) throw new UsageError(`: '${t}' is not an http:// or https:// URL`);
  }),
  nodes: many(z.string()).optional(),
  /** Nodes the provider dropped that were kept because something uses them (last good copy). */
  kept: many(z.string()).optional(),
  interval: durationOrOff.optional(),
  'user-agent': text('a User-Agent header value').optional(),
  'updated-at': z.string().optional(),
  /** What the last import took and skipped ("3 imported, 2 skipped: tuic not supported"). */
  result: z.string().optional(),
  error: z.string().optional(),
});

const RuleSetSchema = z.strictObject({
  url: text('an http(s) URL', (t) => {
    if (!/^https?:\/\/[^\s]+$/i.test(t.trim())) throw new UsageError(`: '${t}' is not an http:// or https:// URL`);
  }),
  interval: durationOrOff.optional(),
  format: oneOf(RULE_SET_FORMATS).optional(),
  'user-agent': text('a User-Agent header value').optional(),
});

const ConsoleSchema = z.strictObject({
  listen: scalar('ADDRESS:PORT, e.g. 127.0.0.1:8080', (t) => {
    const m = /^(?:(?:\[[0-9a-fA-F:.]+\]|[^:[\]]*):)?(\d{1,5})$/.exec(t.trim());
    if (!m)
      throw new UsageError(`: '${t}' is not ADDRESS:PORT or PORT (e.g. 127.0.0.1:8080; loopback keeps it private)`);
    parsePort(m[1]!, '');
  }).optional(),
  'password-hash': text("a hash from 'tranproxy console passwd'", (t) => {
    if (!/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/.test(t.trim()))
      throw new UsageError(
        ": not a scrypt$N$r$p$salt$hash string: set it with 'tranproxy console passwd --config FILE'",
      );
  }).optional(),
  subscriptions: many(SubscriptionSchema).optional(),
  'test-url': text('an http:// or https:// URL the node test requests through each node', (t) => {
    if (!/^https?:\/\/[^\s/]+\S*$/i.test(t.trim())) throw new UsageError(`: '${t}' is not an http:// or https:// URL`);
  }).optional(),
});

const FakeIpSchema = z.strictObject({
  enabled: bool.optional(),
  range: cidr.optional(),
});

const DnsSchema = z.strictObject({
  listen: scalar('a port or IP:PORT, e.g. 127.0.0.1:5353', (t) => parseHostPort(t, undefined)).optional(),
  nameservers: many(text('a nameserver IP or IP:PORT', (t) => parseHostPort(t, 53))).optional(),
  via: text('an outbound name').optional(),
  cache: bool.optional(),
  'fake-ip': FakeIpSchema.optional(),
});

export const ConfigSchema = z
  .strictObject({
    ...fileSettingsShape(),
    nodes: z.record(NodeName, NodeSchema).optional(),
    groups: z.record(NodeName, GroupSchema).optional(),
    rules: many(RuleSchema).optional(),
    'rule-sets': z.record(NodeName, RuleSetSchema).optional(),
    default: text('an outbound name (direct, reject or a node)').optional(),
    'default-udp': text('an outbound name (direct, reject or a node)').optional(),
    dns: DnsSchema.optional(),
    'check-targets': many(text('HOST:PORT', parseCheckTarget)).optional(),
    console: ConsoleSchema.optional(),
  })
  .superRefine((cfg, ctx) => {
    const nodes = Object.keys(cfg.nodes ?? {});
    const known = [...BUILTIN_OUTBOUNDS, ...nodes, ...Object.keys(cfg.groups ?? {})];
    for (const [path, message] of groupProblems(cfg.groups ?? {}, known, nodes))
      ctx.addIssue({ code: 'custom', path, message });
    const outbound = (name: string | undefined, path: (string | number)[], allowReject = true) => {
      if (name === undefined) return;
      if (!known.includes(name)) ctx.addIssue({ code: 'custom', path, message: unknownOutboundMessage(name, known) });
      else if (!allowReject && name === 'reject')
        ctx.addIssue({ code: 'custom', path, message: "'reject' cannot carry DNS queries: use direct or a node" });
    };
    const ruleSets = Object.keys(cfg['rule-sets'] ?? {});
    cfg.rules?.forEach((rule, i) => {
      outbound(rule.outbound, ['rules', i, 'outbound']);
      (rule['rule-set'] ?? []).forEach((name, j) => {
        if (!ruleSets.includes(name)) {
          const guess = suggest(name, ruleSets);
          const message = `unknown rule set '${name}' (${ruleSets.length ? `defined: ${ruleSets.join(', ')}` : 'rule-sets defines none'})${guess ? `; did you mean '${guess}'?` : ''}`;
          ctx.addIssue({ code: 'custom', path: ['rules', i, 'rule-set', j], message });
        }
      });
      for (const key of [
        'domain',
        'domain-suffix',
        'domain-keyword',
        'domain-list',
        'rule-set',
        'cidr',
        'port',
        'source-cidr',
        'network',
      ] as const) {
        if (rule[key]?.length === 0)
          ctx.addIssue({ code: 'custom', path: ['rules', i, key], message: 'empty list: the rule could never match' });
      }
    });
    outbound(cfg.default, ['default']);
    outbound(cfg['default-udp'], ['default-udp']);
    (cfg.console?.subscriptions ?? []).forEach((sub, i) => {
      for (const n of sub.nodes ?? [])
        if (!nodes.includes(n))
          ctx.addIssue({
            code: 'custom',
            path: ['console', 'subscriptions', i, 'nodes'],
            message: `unknown node '${n}'`,
          });
    });
    outbound(cfg.dns?.via, ['dns', 'via'], false);
    const identity = (cfg as Record<string, unknown>)['set-forwarded-for'];
    if ((cfg as Record<string, unknown>)['xff-mode'] !== undefined && (identity === undefined || identity === false)) {
      ctx.addIssue({ code: 'custom', path: ['xff-mode'], message: 'xff-mode needs set-forwarded-for' });
    }
  });

export type ConfigFileInput = z.output<typeof ConfigSchema>;

/** Keys allowed in each kind of mapping, for "did you mean" hints. */
export const KNOWN_KEYS = {
  top: Object.keys(ConfigSchema.shape),
  rule: Object.keys(RuleSchema.shape),
  node: Object.keys(NodeObject.shape),
  group: Object.keys(GroupSchema.shape),
  dns: Object.keys(DnsSchema.shape),
  console: Object.keys(ConsoleSchema.shape),
  fakeIp: Object.keys(FakeIpSchema.shape),
  ruleSet: Object.keys(RuleSetSchema.shape),
} as const;

// ---------------------------------------------------------------------------------------
// What the file becomes

export interface ConfigNode {
  /** The node URI, unparsed (see src/outbound/uri.ts parseNodeUri). */
  uri: string;
  /** Name as written by the link or subscription (Unicode, emoji), when it differs from the key. */
  label?: string;
  connectTimeoutMs?: number;
  /** Relay UDP through this node too. */
  udp?: boolean;
  /** Outbound tried when this node is unreachable. */
  fallback?: string;
}

/** A rule as written, before its domain list files are read. */
export interface ConfigRule {
  domain?: string[];
  domainSuffix?: string[];
  domainKeyword?: string[];
  /** Paths as written (relative to the config file's directory). */
  domainList?: string[];
  /** Names of `rule-sets` entries. */
  ruleSet?: string[];
  cidr?: string[];
  port?: string[];
  sourceCidr?: string[];
  network?: Network[];
  outbound: string;
}

export interface DnsConfig {
  /** undefined host: all addresses. */
  listen?: { host: string | undefined; port: number };
  nameservers: { host: string; port: number }[];
  /** Outbound used to reach the nameservers (default: direct). */
  via: string;
  cache: boolean;
  fakeIp?: { enabled: boolean; range: string };
}

export interface ConfigSettings {
  /** The settings flags can give too (see settings.ts), typed. */
  run: SettingValues;
  nodes: Record<string, ConfigNode>;
  groups: Record<string, GroupSpec>;
  rules: ConfigRule[];
  /** Outbound for flows no rule matches ('direct' unless the file says otherwise). */
  default: string;
  /** Whether the file itself named a default outbound. */
  defaultGiven: boolean;
  dns: DnsConfig | undefined;
  /** Outbound for UDP flows no rule matches; undefined: the same as `default`. */
  defaultUdp: string | undefined;
  /** `check-targets`, as written. */
  checkTargets: string[];
  console: ConsoleConfig | undefined;
  /** `rule-sets`, by name. */
  ruleSets: Record<string, RuleSetConfig>;
}

export interface RuleSetConfig {
  url: string;
  /** Refresh interval in ms (0: never). */
  intervalMs: number;
  format: RuleSetFormat;
  userAgent: string;
}

/** Rule sets refresh once a day unless the file says otherwise. */
export const RULE_SET_INTERVAL_MS = 24 * 3600_000;

export interface ConsoleSubscription {
  url: string;
  /** Names of the nodes this subscription added (replaced together on refresh). */
  nodes: string[];
  /** Of those, the ones the provider dropped but something still uses (kept as last seen). */
  kept: string[];
  /** Refresh interval in ms (0: never; default SUBSCRIPTION_INTERVAL_MS). */
  intervalMs: number;
  userAgent: string;
  updatedAt: string | null;
  result?: string;
  error?: string;
}

/** Subscriptions refresh twice a day unless the file says otherwise. */
export const SUBSCRIPTION_INTERVAL_MS = 12 * 3600_000;
/** Providers pick the format by User-Agent; a Clash-like one gets the full node list. */
export const SUBSCRIPTION_USER_AGENT = 'clash.meta/1.18 (tranproxy)';

export interface ConsoleConfig {
  /** As written; parsed by the run configuration. */
  listen?: string;
  passwordHash?: string;
  subscriptions: ConsoleSubscription[];
  /** What the console's node test requests through a node (`test-url`); default DEFAULT_PROBE_URL. */
  testUrl?: string;
}

const strs = (v: readonly (string | number)[] | undefined): string[] | undefined => v?.map((x) => String(x).trim());

/** A validated file → settings. */
export function settingsOf(f: ConfigFileInput): ConfigSettings {
  const run = fileSettings(f as Record<string, unknown>);
  if (f.console?.listen !== undefined) run.console = settingFromText('console', String(f.console.listen).trim());
  const nodes = nodesOf(f.nodes);
  const groups = groupsOf(f.groups);
  const rules = (f.rules ?? []).map(ruleOf);
  const dns = f.dns ? dnsOf(f.dns) : undefined;
  const consoleCfg = f.console ? consoleOf(f.console) : undefined;
  return {
    run,
    nodes,
    groups,
    rules,
    default: f.default ?? 'direct',
    defaultGiven: f.default !== undefined,
    dns,
    defaultUdp: f['default-udp'],
    checkTargets: strs(f['check-targets']) ?? [],
    console: consoleCfg,
    ruleSets: ruleSetsOf(f['rule-sets']),
  };
}

function nodesOf(input: ConfigFileInput['nodes']): Record<string, ConfigNode> {
  const nodes: Record<string, ConfigNode> = Object.create(null); // a name never reaches a prototype
  for (const [name, n] of Object.entries(input ?? {})) {
    nodes[name] = {
      uri: n.uri.trim(),
      ...(n.label !== undefined && n.label.trim() !== '' ? { label: n.label } : {}),
      ...(n['connect-timeout'] !== undefined
        ? { connectTimeoutMs: parseDuration(String(n['connect-timeout']), `nodes.${name}.connect-timeout`) }
        : {}),
      ...(n.udp !== undefined ? { udp: n.udp } : {}),
      ...(n.fallback !== undefined ? { fallback: n.fallback } : {}),
    };
  }
  return nodes;
}

function groupsOf(input: ConfigFileInput['groups']): Record<string, GroupSpec> {
  const groups: Record<string, GroupSpec> = {};
  for (const [name, g] of Object.entries(input ?? {})) {
    groups[name] = {
      type: g.type,
      members: g.members.map((m) => m.trim()),
      url: g.url?.trim() ?? DEFAULT_PROBE_URL,
      intervalMs:
        g.interval === undefined
          ? DEFAULT_PROBE_INTERVAL_MS
          : parseDuration(String(g.interval), `groups.${name}.interval`),
      toleranceMs:
        g.tolerance === undefined
          ? DEFAULT_TOLERANCE_MS
          : parseDurationOrOff(String(g.tolerance), `groups.${name}.tolerance`),
    };
  }
  return groups;
}

function ruleOf(r: NonNullable<ConfigFileInput['rules']>[number]): ConfigRule {
  const out: ConfigRule = { outbound: r.outbound };
  if (r.domain) out.domain = r.domain;
  if (r['domain-suffix']) out.domainSuffix = r['domain-suffix'];
  if (r['domain-keyword']) out.domainKeyword = r['domain-keyword'];
  if (r['domain-list']) out.domainList = r['domain-list'];
  if (r['rule-set']) out.ruleSet = r['rule-set'].map((n) => n.trim());
  if (r.cidr) out.cidr = strs(r.cidr);
  if (r.port) out.port = strs(r.port);
  if (r['source-cidr']) out.sourceCidr = strs(r['source-cidr']);
  if (r.network) out.network = r.network;
  return out;
}

function dnsOf(d: NonNullable<ConfigFileInput['dns']>): DnsConfig {
  const fake = d['fake-ip'];
  return {
    ...(d.listen !== undefined ? { listen: parseHostPort(String(d.listen), undefined) } : {}),
    nameservers: (d.nameservers ?? []).map((n) => {
      const hp = parseHostPort(n, 53);
      return { host: hp.host!, port: hp.port };
    }),
    via: d.via ?? 'direct',
    cache: d.cache ?? true,
    ...(fake
      ? {
          fakeIp: {
            enabled: fake.enabled ?? true,
            range: parseCidr(fake.range ?? DEFAULT_FAKE_IP_RANGE, 'dns.fake-ip.range').text,
          },
        }
      : {}),
  };
}

function consoleOf(c: NonNullable<ConfigFileInput['console']>): ConsoleConfig {
  return {
    ...(c.listen !== undefined ? { listen: String(c.listen).trim() } : {}),
    ...(c['password-hash'] !== undefined ? { passwordHash: c['password-hash'].trim() } : {}),
    subscriptions: (c.subscriptions ?? []).map((s) => ({
      url: s.url.trim(),
      nodes: s.nodes ?? [],
      kept: s.kept ?? [],
      intervalMs:
        s.interval === undefined
          ? SUBSCRIPTION_INTERVAL_MS
          : parseDurationOrOff(String(s.interval), 'console.subscriptions.interval'),
      userAgent: s['user-agent']?.trim() ?? SUBSCRIPTION_USER_AGENT,
      updatedAt: s['updated-at'] ?? null,
      ...(s.result !== undefined ? { result: s.result } : {}),
      ...(s.error !== undefined ? { error: s.error } : {}),
    })),
    ...(c['test-url'] !== undefined ? { testUrl: c['test-url'].trim() } : {}),
  };
}

function ruleSetsOf(sets: ConfigFileInput['rule-sets']): Record<string, RuleSetConfig> {
  const out: Record<string, RuleSetConfig> = Object.create(null);
  for (const [name, s] of Object.entries(sets ?? {})) {
    out[name] = {
      url: s.url.trim(),
      intervalMs:
        s.interval === undefined
          ? RULE_SET_INTERVAL_MS
          : parseDurationOrOff(String(s.interval), `rule-sets.${name}.interval`),
      format: s.format ?? 'domain',
      userAgent: s['user-agent']?.trim() ?? SUBSCRIPTION_USER_AGENT,
    };
  }
  return out;
}
