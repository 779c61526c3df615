// The lab file (`tranproxy lab up|down|status FILE`): a YAML description of a virtual network
// — namespaces, bridges, veth links, macvlan, addresses, routes, sysctls, NAT, processes —
// validated with zod plus cross-reference checks, and turned into a LabModel with every
// kernel-side name derived. Problems are reported as `FILE:LINE:COL: path: reason`.
//
// Reference (see also examples/*.yaml):
//
//   name: dock                    lab name, [a-z][a-z0-9]*, at most 8 characters: the prefix of
//                                 every namespace (`dock-<host>`), every interface the lab puts
//                                 in the root namespace (`dock-<name>`, shortened with a hash when
//                                 longer than 15 characters) and its nft table (`inet tpxlab_dock`)
//   root:                         the namespace `lab up` runs in ("the host"); all optional:
//     sysctls: {KEY: VALUE}       restored to their old values by `lab down`
//     routes: [ROUTE]             ROUTE is `ip route` syntax, see below
//     nat: [NAT]
//   hosts:                        network namespaces, by name ([a-z][a-z0-9_]*, ≤ 15, not `root`)
//     c1:
//       sysctls: {net.ipv4.ip_forward: 1, net.ipv4.conf.eth0.proxy_arp: 1}
//       addresses: {lo: [198.51.100.10/32]}   more addresses, by interface (also lo; in root:
//                                 an existing interface — `lab down` removes them again)
//       routes: [default via 172.18.0.1]
//       nat: [NAT]
//       processes:                started detached by `lab up` (output in
//                                 /run/tranproxy/labs/<name>/<host>.<index>.log), stopped by `lab down`
//         - command: python3      a program, or a list [program, arg...]
//           args: [-m, http.server, "80"]
//           env: {KEY: VALUE}     added to the environment
//           cwd: DIR              default: the lab file's directory
//           wait-port: 80         `up` waits until something listens on this TCP port
//   bridges:                      br0: {host: root|HOST (default root), addresses: [CIDR]}
//   dummies:                      lan0: {host: root|HOST, addresses: [CIDR]}  (needs the dummy module)
//   links:                        veth pairs; each end is {host: root|HOST, ifname, addresses}
//     - a: {host: c1, ifname: eth0, addresses: [172.18.0.2/16]}   or {bridge: br0} (a bridge port)
//       b: {bridge: br0}
//       mtu: 1500                 optional
//   macvlan:
//     - {host: gw, ifname: eth0, parent: lan0, parent-host: root, mode: bridge, addresses: [CIDR]}
//
// Interface names: inside a host the name given (default eth0, eth1… in file order); in the
// root namespace the name given is the *declared* name and the real one is `<lab>-<declared>`.
// Everywhere a root interface is referred to (route `dev`, nat `in`/`out`, sysctl keys
// net.ipv4.conf.X.*, macvlan `parent`), the declared name is translated; a name the lab does
// not declare means an existing interface of the root namespace (e.g. a real eth0).
// The root end of a link defaults to the other end's host name; a bridge port to
// `<host>` (or `<host>-<ifname>` when a host has several ports on bridges of one namespace).
//
// ROUTE: `DEST [via GW] [dev IF] [src ADDR] [metric N] [scope link|host|global] [onlink]`,
// DEST `default`, an address or a CIDR; e.g. `169.254.1.1 dev eth0 scope link`,
// `default via 169.254.1.1 dev eth0 onlink`. The family follows DEST (or GW for default).
//
// NAT (in table `inet tpxlab_<name>` of the place that declares it):
//   {type: masquerade, source: CIDR, out: IF}        either key may be left out, not both;
//                                                    IF may be negated: out: "!eth0" (all but eth0)
//   {type: snat, source: CIDR, out: IF, to: ADDR}
//
// FORWARD (root or a host; in the same table): a filter-forward chain, e.g. a Docker-style host
//   forward: {policy: drop, accept: [{in: br0, out: "!br0"}, {out: br0, destination: 172.18.0.2/32, port: 80}]}
//   policy accept|drop (default accept); with drop, replies of accepted flows pass (ct state
//   established,related); rule keys: in, out (IF or !IF), source, destination (CIDR), protocol, port.
//
//   {type: dnat, in: IF, destination: ADDR, protocol: tcp|udp, port: 8080 | 8000-8010,
//    to: ADDR | ADDR:PORT | [V6]:PORT}                `port` required; `in`/`destination` optional
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { loadYamlDocument, pathText } from '../config/file.js';
import { describe } from '../config/schema.js';
import { locateInYaml, placeZodIssues, type YamlPath } from '../config/yaml-issues.js';
import { UsageError } from '../errors.js';
import { suggest } from '../route/index.js';

// ---------------------------------------------------------------------------------------
// The model `lab up` works from

/** 'root' = the namespace `lab up` runs in; anything else is a host name. */
export type PlaceName = string;
export const ROOT = 'root';

export interface Cidr {
  family: 4 | 6;
  /** Normalized address (IPv6 compressed, lower case). */
  addr: string;
  len: number;
  /** `${addr}/${len}` */
  text: string;
}

/** A route of the model: the parsed route (parseRoute) with its text and `ip` arguments. */
export interface RouteSpec extends ParsedRoute {
  /** Real interface name in the route's namespace. */
  dev?: string;
  /** As written in the file. */
  text: string;
  /** Arguments after `ip route add`. */
  args: string[];
}

export interface SysctlSpec {
  /** With declared root interface names translated. */
  key: string;
  value: string;
}

/** `in`/`out` name an interface; `inNot`/`outNot`: every interface but that one (`! -i`, `! -o`). */
export type NatSpec =
  | { type: 'masquerade'; source?: Cidr; out?: string; outNot?: boolean }
  | { type: 'snat'; source?: Cidr; out?: string; outNot?: boolean; to: string; toFamily: 4 | 6 }
  | {
      type: 'dnat';
      in?: string;
      inNot?: boolean;
      destination?: string;
      protocol: 'tcp' | 'udp';
      port: string;
      to: string;
      toPort?: number;
      toFamily: 4 | 6;
    };

export interface ForwardRule {
  in?: string;
  inNot?: boolean;
  out?: string;
  outNot?: boolean;
  source?: Cidr;
  destination?: Cidr;
  protocol?: 'tcp' | 'udp';
  port?: string;
}

export interface ForwardSpec {
  policy: 'accept' | 'drop';
  accept: ForwardRule[];
}

export interface ProcessSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  waitPort?: number;
}

export interface PlaceSpec {
  name: PlaceName;
  /** Named netns; null for the root namespace. */
  netns: string | null;
  sysctls: SysctlSpec[];
  routes: RouteSpec[];
  nat: NatSpec[];
  /** Declared filter-forward policy and accept rules (in the lab's nft table). */
  forward?: ForwardSpec;
  processes: ProcessSpec[];
  /** Addresses for interfaces the lab does not create (lo, an existing root interface). */
  extraAddresses: { dev: string; addresses: Cidr[] }[];
}

export interface IfaceRef {
  place: PlaceName;
  /** Real name in that namespace. */
  name: string;
}

export interface IfaceSpec extends IfaceRef {
  /** The name the file uses (equal to `name` outside the root namespace). */
  declared: string;
  addresses: Cidr[];
  /** Real name of the bridge (same place) this interface is a port of. */
  master?: string;
  /** Link settings applied after creation: `ip link set dev NAME address MAC mtu N promisc on`. */
  settings?: LinkSettings;
}

export interface LinkSettings {
  /** Unicast MAC, lower case. */
  mac?: string;
  mtu?: number;
  promisc?: boolean;
}

export type CreateSpec =
  | { kind: 'bridge'; iface: IfaceSpec }
  | { kind: 'dummy'; iface: IfaceSpec }
  | { kind: 'veth'; a: IfaceSpec; b: IfaceSpec; mtu?: number }
  | { kind: 'macvlan'; iface: IfaceSpec; parent: IfaceRef; mode: string };

export interface LabModel {
  name: string;
  /** The lab file as given, and its directory (for relative `cwd`). */
  file: string;
  /** nft table (family inet) holding the lab's NAT rules in every namespace that has some. */
  table: string;
  root: PlaceSpec;
  hosts: PlaceSpec[];
  /** In creation order: bridges, dummies, links, macvlan. */
  creates: CreateSpec[];
  /** Every interface, in creation order. */
  interfaces: IfaceSpec[];
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export const MAX_LAB_NAME = 8;
export const LAB_NAME_RE = /^[a-z][a-z0-9]*$/;
/** No '-': `<lab>-<host>` must never look like netlab/lab.ts's `<tag>-<pid>-<rand>-<host>`. */
const HOST_RE = /^[a-z][a-z0-9_]{0,14}$/;
const IFNAME_RE = /^[A-Za-z0-9_.+-]{1,15}$/;
const SYSCTL_RE = /^[a-z][a-z0-9_]*(\.[A-Za-z0-9_+@-]+)+$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function netnsName(lab: string, host: string): string {
  return `${lab}-${host}`;
}

export function tableName(lab: string): string {
  return `tpxlab_${lab}`;
}

function hash4(text: string): string {
  return BigInt(`0x${createHash('sha256').update(text).digest('hex').slice(0, 12)}`)
    .toString(36)
    .slice(-4)
    .padStart(4, '0');
}

/** `prefix + token`, cut to an interface name's 15 characters with a hash of the token when too long. */
export function shortIfName(prefix: string, token: string): string {
  const full = `${prefix}${token}`;
  if (full.length <= 15) return full;
  return `${prefix}${token.slice(0, Math.max(0, 15 - prefix.length - 4))}${hash4(token)}`;
}

/** Real name of a lab interface in the root namespace. */
export function rootIfName(lab: string, declared: string): string {
  return shortIfName(`${lab}-`, declared);
}

// ---------------------------------------------------------------------------------------
// Addresses

function ipv6Normal(a: string): string {
  return new URL(`http://[${a}]`).hostname.slice(1, -1);
}

/** Normalized address, or undefined when `a` is not an IP address. */
export function normalizeIp(a: string): { family: 4 | 6; addr: string } | undefined {
  const v = isIP(a);
  if (v === 4) return { family: 4, addr: a };
  if (v === 6) return { family: 6, addr: ipv6Normal(a) };
  return undefined;
}

function ipBits(addr: string, family: 4 | 6): bigint {
  if (family === 4) return addr.split('.').reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n);
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const flat = groups.flatMap((g) =>
    g.includes('.') ? [(ipBits(g, 4) >> 16n).toString(16), (ipBits(g, 4) & 0xffffn).toString(16)] : [g],
  );
  return flat.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}

function bitsToIp(n: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return ipv6Normal(groups.join(':'));
}

/** `a.b.c.d/len`, `addr` alone meaning a host address (/32, /128). Throws a reason. */
export function parseCidrText(text: string): Cidr {
  const [a, len, extra] = text.trim().split('/');
  const ip = a ? normalizeIp(a) : undefined;
  if (!ip || extra !== undefined || (len !== undefined && !/^\d+$/.test(len))) {
    throw new Error(`'${text}' is not an address with a prefix length, e.g. 10.0.0.2/24 or fd00::2/64`);
  }
  const max = ip.family === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (bits > max) throw new Error(`'${text}': prefix length ${bits} is more than ${max}`);
  return { family: ip.family, addr: ip.addr, len: bits, text: `${ip.addr}/${bits}` };
}

/** The network of a CIDR (host bits cleared). */
export function networkOf(c: Cidr): string {
  const max = c.family === 4 ? 32 : 128;
  const mask = ((1n << BigInt(max)) - 1n) ^ ((1n << BigInt(max - c.len)) - 1n);
  return bitsToIp(ipBits(c.addr, c.family) & mask, c.family);
}

// ---------------------------------------------------------------------------------------
// Routes

const SCOPES = ['link', 'host', 'global'] as const;

export interface ParsedRoute {
  family: 4 | 6;
  /** 'default' or a normalized CIDR (`10.0.0.0/24`, `169.254.1.1/32`). */
  dst: string;
  via?: string;
  dev?: string;
  src?: string;
  metric?: number;
  scope?: 'link' | 'host' | 'global';
  onlink: boolean;
}

/** Parse the restricted `ip route` syntax. Throws an Error whose message is the reason. */
export function parseRoute(text: string): ParsedRoute {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const dstWord = words.shift();
  if (!dstWord) throw new Error('empty route: write e.g. "default via 10.0.0.1" or "10.1.0.0/16 dev eth0"');
  let dst: Cidr | 'default';
  if (dstWord === 'default') dst = 'default';
  else {
    try {
      dst = parseCidrText(dstWord);
    } catch {
      throw new Error(`'${dstWord}' is not a route destination: use default, an address or a CIDR`);
    }
    const net = networkOf(dst);
    if (net !== dst.addr) throw new Error(`destination ${dst.text} has host bits set: write ${net}/${dst.len}`);
  }
  const r: Partial<ParsedRoute> & { onlink: boolean } = { onlink: false };
  const seen = new Set<string>();
  while (words.length) {
    const w = words.shift()!;
    if (seen.has(w)) throw new Error(`'${w}' given twice`);
    seen.add(w);
    const arg = () => {
      const v = words.shift();
      if (v === undefined) throw new Error(`'${w}' needs a value`);
      return v;
    };
    switch (w) {
      case 'via':
      case 'src': {
        const v = arg();
        const ip = normalizeIp(v);
        if (!ip) throw new Error(`${w} '${v}' is not an IP address`);
        r[w] = ip.addr;
        break;
      }
      case 'dev': {
        const v = arg();
        if (!IFNAME_RE.test(v)) throw new Error(`dev '${v}' is not an interface name`);
        r.dev = v;
        break;
      }
      case 'metric': {
        const v = arg();
        if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw new Error(`metric '${v}' is not a number`);
        r.metric = Number(v);
        break;
      }
      case 'scope': {
        const v = arg();
        if (!(SCOPES as readonly string[]).includes(v))
          throw new Error(`scope '${v}' is not one of ${SCOPES.join(', ')}`);
        r.scope = v as ParsedRoute['scope'];
        break;
      }
      case 'onlink':
        r.onlink = true;
        break;
      default: {
        const guess = suggest(w, ['via', 'dev', 'src', 'metric', 'scope', 'onlink']);
        throw new Error(
          `unknown route word '${w}'${guess ? `; did you mean '${guess}'?` : ''} (known: via, dev, src, metric, scope, onlink)`,
        );
      }
    }
  }
  const viaFam = r.via ? (isIP(r.via) as 4 | 6) : undefined;
  const family: 4 | 6 = dst === 'default' ? (viaFam ?? (r.src ? (isIP(r.src) as 4 | 6) : 4)) : dst.family;
  if (viaFam && viaFam !== family) throw new Error(`gateway ${r.via} is IPv${viaFam}, the destination is IPv${family}`);
  if (r.src && isIP(r.src) !== family) throw new Error(`src ${r.src} is not IPv${family}`);
  if (!r.via && !r.dev) throw new Error('a route needs "via GATEWAY" or "dev INTERFACE" (or both)');
  if (r.onlink && !r.via) throw new Error('onlink needs "via GATEWAY"');
  return { ...r, family, dst: dst === 'default' ? 'default' : dst.text } as ParsedRoute;
}

export function routeArgs(r: ParsedRoute): string[] {
  const out = [r.dst];
  if (r.via) out.push('via', r.via);
  if (r.dev) out.push('dev', r.dev);
  if (r.src) out.push('src', r.src);
  if (r.metric !== undefined) out.push('metric', String(r.metric));
  if (r.scope) out.push('scope', r.scope);
  if (r.onlink) out.push('onlink');
  return out;
}

// ---------------------------------------------------------------------------------------
// Schema (shapes); meaning is checked afterwards, with paths, by `build`.

const text = z.string({ error: (iss) => `expected a string, got ${describe(iss.input)}` });
const scalarText = z.union([z.string(), z.number(), z.boolean()], {
  error: (iss) => `expected a value (string, number or true/false), got ${describe(iss.input)}`,
});
/** A list; a single value stands for a list of one. */
function many<T extends z.ZodType>(item: T) {
  return z.preprocess(
    (v) => (v === undefined || v === null || Array.isArray(v) ? (v ?? undefined) : [v]),
    z.array(item).optional(),
  );
}
/** A mapping that may be written empty (`outside:`). */
function mapping<T extends z.ZodType>(inner: T) {
  return z.preprocess((v) => (v === null ? {} : v), inner);
}

const Sysctls = z.record(text, scalarText).optional();
const Routes = many(text);
const NatRule = z.strictObject({
  type: z.enum(['masquerade', 'snat', 'dnat'], {
    error: (iss) => `${describe(iss.input)} is not one of masquerade, snat, dnat`,
  }),
  source: text.optional(),
  out: text.optional(),
  in: text.optional(),
  destination: text.optional(),
  protocol: z.enum(['tcp', 'udp'], { error: (iss) => `${describe(iss.input)} is not one of tcp, udp` }).optional(),
  port: z.union([z.number(), z.string()]).optional(),
  to: text.optional(),
});
const ForwardAccept = z.strictObject({
  in: text.optional(),
  out: text.optional(),
  source: text.optional(),
  destination: text.optional(),
  protocol: z.enum(['tcp', 'udp'], { error: (iss) => `${describe(iss.input)} is not one of tcp, udp` }).optional(),
  port: z.union([z.number(), z.string()]).optional(),
});
const Forward = mapping(
  z.strictObject({
    policy: z
      .enum(['accept', 'drop'], { error: (iss) => `${describe(iss.input)} is not one of accept, drop` })
      .optional(),
    accept: many(ForwardAccept),
  }),
);
const Process = z.strictObject({
  command: z.union([text, z.array(scalarText)]),
  args: many(scalarText),
  env: z.record(text, scalarText).optional(),
  cwd: text.optional(),
  'wait-port': z.number().int().min(1).max(65535).optional(),
});
const Addresses = z.record(text, many(text)).optional();
const Root = mapping(
  z.strictObject({
    sysctls: Sysctls,
    addresses: Addresses,
    routes: Routes,
    nat: many(NatRule),
    forward: Forward.optional(),
  }),
);
const Host = mapping(
  z.strictObject({
    sysctls: Sysctls,
    addresses: Addresses,
    routes: Routes,
    nat: many(NatRule),
    forward: Forward.optional(),
    processes: many(Process),
  }),
);
const Mtu = z.number().int().min(68).max(65535).optional();
const LinkKeys = {
  mac: text.optional(),
  mtu: Mtu,
  promisc: z.boolean({ error: (iss) => `expected true or false, got ${describe(iss.input)}` }).optional(),
};
const Device = mapping(z.strictObject({ host: text.optional(), addresses: many(text), ...LinkKeys }));
const Endpoint = z.strictObject({
  host: text.optional(),
  bridge: text.optional(),
  ifname: text.optional(),
  addresses: many(text),
  ...LinkKeys,
});
const Link = z.strictObject({ a: Endpoint, b: Endpoint, mtu: Mtu });
const Macvlan = z.strictObject({
  host: text,
  ifname: text.optional(),
  parent: text,
  'parent-host': text.optional(),
  mode: z
    .enum(['bridge', 'private', 'vepa', 'passthru'], {
      error: (iss) => `${describe(iss.input)} is not one of bridge, private, vepa, passthru`,
    })
    .optional(),
  addresses: many(text),
  ...LinkKeys,
});
const LabSchema = z.strictObject({
  name: text,
  root: Root.optional(),
  hosts: z.record(text, Host).optional(),
  bridges: z.record(text, Device).optional(),
  dummies: z.record(text, Device).optional(),
  links: many(Link),
  macvlan: many(Macvlan),
});
type LabInput = z.infer<typeof LabSchema>;

const KNOWN_KEYS: Record<string, readonly string[]> = {
  top: Object.keys(LabSchema.shape),
  root: ['sysctls', 'addresses', 'routes', 'nat', 'forward'],
  host: ['sysctls', 'addresses', 'routes', 'nat', 'forward', 'processes'],
  forward: ['policy', 'accept'],
  forwardAccept: Object.keys(ForwardAccept.shape),
  device: ['host', 'addresses', ...Object.keys(LinkKeys)],
  endpoint: Object.keys(Endpoint.shape),
  link: Object.keys(Link.shape),
  macvlan: Object.keys(Macvlan.shape),
  nat: Object.keys(NatRule.shape),
  process: Object.keys(Process.shape),
};

function keysFor(path: readonly PropertyKey[]): readonly string[] {
  const p = path.map(String);
  if (p.length === 0) return KNOWN_KEYS.top!;
  if (p[0] === 'root' && p.length === 1) return KNOWN_KEYS.root!;
  if (p[0] === 'hosts' && p.length === 2) return KNOWN_KEYS.host!;
  if ((p[0] === 'root' && p[1] === 'nat') || (p[0] === 'hosts' && p[2] === 'nat')) return KNOWN_KEYS.nat!;
  if (p[0] === 'hosts' && p[2] === 'processes') return KNOWN_KEYS.process!;
  const f = p[0] === 'root' ? 1 : p[0] === 'hosts' ? 2 : -1;
  if (f > 0 && p[f] === 'forward') return p.length === f + 1 ? KNOWN_KEYS.forward! : KNOWN_KEYS.forwardAccept!;
  if ((p[0] === 'bridges' || p[0] === 'dummies') && p.length === 2) return KNOWN_KEYS.device!;
  if (p[0] === 'links' && p.length === 2) return KNOWN_KEYS.link!;
  if (p[0] === 'links' && p.length === 3) return KNOWN_KEYS.endpoint!;
  if (p[0] === 'macvlan') return KNOWN_KEYS.macvlan!;
  return [];
}

type Path = YamlPath;

// ---------------------------------------------------------------------------------------
// Parsing

export interface ParseLabOptions {
  /** Use this lab name instead of the file's `name` (run one file twice side by side). */
  name?: string;
}

interface Problem {
  path: Path;
  message: string;
  at?: 'key' | 'value';
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const guess = suggest(key, known);
  return `unknown key '${key}'${guess ? `; did you mean '${guess}'?` : ''}`;
}

/** Parse and check lab file text. Throws ConfigError listing every problem with its position. */
export function parseLabText(textIn: string, file: string, opts: ParseLabOptions = {}): LabModel {
  const { doc, raw, issueAt, fail } = loadYamlDocument(textIn, file);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    fail([issueAt(0, [], `expected a lab description (name:, hosts:, links: …), got ${describe(raw)}`)]);
  }
  const parsed = LabSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const unknownKey = (key: string, parent: readonly PropertyKey[]) => unknownKeyMessage(key, keysFor(parent));
    fail(placeZodIssues(doc, parsed.error.issues, { unknownKey, pathShown: 'schema' }, issueAt));
  }
  const problems: Problem[] = [];
  const model = build(parsed.data!, file, opts, problems);
  if (problems.length) {
    fail(
      problems.map((p) => {
        const loc = locateInYaml(doc, p.path, p.at ?? 'value');
        return issueAt(loc.offset, p.path, p.message);
      }),
    );
  }
  return model;
}

/** Read and check a lab file. Throws ConfigError, or UsageError when it cannot be read. */
export function loadLabFile(file: string, opts: ParseLabOptions = {}): LabModel {
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(
      `${file}: cannot read the lab file: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`,
    );
  }
  return parseLabText(content, file, opts);
}

// ---------------------------------------------------------------------------------------
// Meaning: names, references, values

function str(v: string | number | boolean): string {
  return typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
}

type PlaceInput = {
  sysctls?: Record<string, string | number | boolean>;
  addresses?: Record<string, string[] | undefined>;
  routes?: string[];
  nat?: NonNullable<LabInput['root']>['nat'];
  forward?: NonNullable<LabInput['root']>['forward'];
  processes?: NonNullable<NonNullable<LabInput['hosts']>[string]['processes']>;
};
type NatInput = NonNullable<NonNullable<LabInput['root']>['nat']>[number];
type ForwardInput = NonNullable<NonNullable<NonNullable<LabInput['root']>['forward']>['accept']>[number];
type ProcessInput = NonNullable<PlaceInput['processes']>[number];
type LinkKeysInput = { mac?: string | undefined; mtu?: number | undefined; promisc?: boolean | undefined };

/** One end of a link while interface names are handed out. */
interface EndPlan {
  place: PlaceName;
  bridge?: IfaceSpec;
  explicit?: string;
  path: Path;
  addrs: string[] | undefined;
  other?: EndPlan;
  iface?: IfaceSpec;
  input?: LinkKeysInput;
}

interface LinkPlan {
  a: EndPlan;
  b: EndPlan;
  mtu?: number;
}

interface MacvlanPlan {
  place: PlaceName;
  explicit?: string;
  path: Path;
  input: NonNullable<LabInput['macvlan']>[number];
  iface?: IfaceSpec;
  parentPlace?: PlaceName;
}

/** Whether every field of one NAT or forward rule is valid: a rule is dropped after all its problems are told. */
interface RuleCheck {
  ok: boolean;
}

function emptyPlace(name: PlaceName, netns: string | null): PlaceSpec {
  return { name, netns, sysctls: [], routes: [], nat: [], processes: [], extraAddresses: [] };
}

/** `8080` or `8000-8010` within 1–65535 (`text`: as matched), or undefined. */
function portRange(v: string | number): { first: number; last: number; text: string } | undefined {
  const pm = String(v)
    .trim()
    .match(/^(\d+)(?:-(\d+))?$/);
  if (!pm) return undefined;
  const first = Number(pm[1]);
  const last = pm[2] !== undefined ? Number(pm[2]) : first;
  return first < 1 || last > 65535 || last < first ? undefined : { first, last, text: pm[0] };
}

function placeText(place: PlaceName): string {
  return place === ROOT ? 'the root namespace' : `host '${place}'`;
}

function build(input: LabInput, file: string, opts: ParseLabOptions, problems: Problem[]): LabModel {
  return new LabBuilder(input, file, opts, problems).build();
}

/**
 * Turns a schema-checked lab file into a LabModel, collecting every problem on the way.
 * The stages of `build` run in file order and share the state below; problems keep that order.
 */
class LabBuilder {
  private readonly input: LabInput;
  private readonly file: string;
  private readonly opts: ParseLabOptions;
  private readonly problems: Problem[];
  private readonly name: string;
  private readonly hostNames: string[];
  private readonly root = emptyPlace(ROOT, null);
  private readonly hosts: PlaceSpec[] = [];
  private readonly places = new Map<PlaceName, PlaceSpec>();
  /** Interface names per place: declared → real, and real → where it was declared (for duplicates). */
  private readonly declaredIn = new Map<PlaceName, Map<string, string>>();
  private readonly realIn = new Map<PlaceName, Map<string, Path>>();
  private readonly bridges = new Map<string, IfaceSpec>();
  private readonly creates: CreateSpec[] = [];
  private readonly interfaces: IfaceSpec[] = [];

  constructor(input: LabInput, file: string, opts: ParseLabOptions, problems: Problem[]) {
    this.input = input;
    this.file = file;
    this.opts = opts;
    this.problems = problems;
    this.name = this.labName();
    this.hostNames = Object.keys(input.hosts ?? {});
  }

  build(): LabModel {
    this.declarePlaces();
    this.createDevices();
    const links = this.planLinks();
    const macvlans = this.planMacvlans();
    this.claimExplicitNames(links, macvlans);
    this.claimHostNames(links, macvlans);
    this.claimTowardNames(links, macvlans);
    this.createLinks(links);
    this.createMacvlans(macvlans);
    for (const [place, base, settings] of this.placeInputs()) if (settings) this.applySettings(place, base, settings);
    this.checkAddressesUnique();
    const { name, file, root, hosts, creates, interfaces } = this;
    return { name, file, table: tableName(name), root, hosts, creates, interfaces };
  }

  private problem(path: Path, message: string, at?: 'key' | 'value'): void {
    this.problems.push({ path, message, ...(at ? { at } : {}) });
  }

  // -- Names and places

  /** The lab name (--name wins); a wrong one is reported and replaced so the other checks still run. */
  private labName(): string {
    const { opts } = this;
    const name = opts.name ?? this.input.name;
    const given = opts.name ? ' (given with --name)' : '';
    if (!LAB_NAME_RE.test(name)) {
      this.problem(['name'], `lab name '${name}' must be a lower-case letter followed by letters and digits${given}`);
      return 'x';
    }
    if (name.length > MAX_LAB_NAME) {
      this.problem(
        ['name'],
        `lab name '${name}' is too long (${name.length} characters, at most ${MAX_LAB_NAME}): it prefixes interface names, which have at most 15${given}`,
      );
      return name.slice(0, MAX_LAB_NAME);
    }
    return name;
  }

  private declarePlaces(): void {
    this.places.set(ROOT, this.root);
    for (const h of this.hostNames) {
      if (h === ROOT)
        this.problem(['hosts', h], `'root' names the namespace lab up runs in: choose another host name`, 'key');
      else if (!HOST_RE.test(h)) {
        this.problem(
          ['hosts', h],
          h.length > 15
            ? `host name '${h}' is too long (${h.length} characters, at most 15)`
            : `host name '${h}' must be a lower-case letter followed by lower-case letters, digits or '_'`,
          'key',
        );
      }
      const p = emptyPlace(h, netnsName(this.name, h));
      this.places.set(h, p);
      this.hosts.push(p);
    }
    for (const p of this.places.keys()) {
      this.declaredIn.set(p, new Map());
      this.realIn.set(p, new Map([['lo', []]]));
    }
  }

  /** A `host:` value (default root) that names a place, or undefined after reporting it. */
  private placeRef(v: string | undefined, path: Path): PlaceName | undefined {
    const p = v ?? ROOT;
    if (this.places.has(p)) return p;
    const guess = suggest(p, [...this.places.keys()]);
    this.problem(
      path,
      `unknown host '${p}'${guess ? `; did you mean '${guess}'?` : ''} (hosts: ${this.hostNames.join(', ') || 'none'}; 'root' is the namespace lab up runs in)`,
    );
    return undefined;
  }

  /** Takes an interface name in a place for a new interface; undefined (reported) when invalid or taken. */
  private claim(place: PlaceName, declared: string, path: Path, at?: 'key'): IfaceSpec | undefined {
    if (!IFNAME_RE.test(declared) || declared === '.' || declared === '..') {
      this.problem(
        path,
        declared.length > 15
          ? `interface name '${declared}' is too long (${declared.length} characters, at most 15)`
          : `'${declared}' is not an interface name (1–15 letters, digits, . _ - +)`,
        at,
      );
      return undefined;
    }
    const real = place === ROOT ? rootIfName(this.name, declared) : declared;
    const decl = this.declaredIn.get(place)!;
    const reals = this.realIn.get(place)!;
    if (decl.has(declared) || reals.has(real)) {
      const first = reals.get(real);
      this.problem(
        path,
        `duplicate interface name '${declared}' in ${placeText(place)}${first?.length ? ` (first at ${pathText(first)})` : declared === 'lo' ? ' (the loopback interface)' : ''}`,
        at,
      );
      return undefined;
    }
    decl.set(declared, real);
    reals.set(real, path);
    return { place, name: real, declared, addresses: [] };
  }

  /** Real name for an interface reference in `place`; undeclared names are existing interfaces in root only. */
  private ifRef(place: PlaceName, ref: string, path: Path, at?: 'key'): string | undefined {
    const declared = this.declaredIn.get(place)!;
    const real = declared.get(ref);
    if (real) return real;
    if (ref === 'lo') return 'lo';
    if (place === ROOT) {
      if (!IFNAME_RE.test(ref)) {
        this.problem(path, `'${ref}' is not an interface name (1–15 letters, digits, . _ - +)`, at);
        return undefined;
      }
      return ref; // an interface of the root namespace the lab does not create
    }
    const names = [...declared.keys()];
    const guess = suggest(ref, names);
    this.problem(
      path,
      `unknown interface '${ref}' in host '${place}'${guess ? `; did you mean '${guess}'?` : ''} (interfaces: ${['lo', ...names].join(', ')})`,
      at,
    );
    return undefined;
  }

  private addresses(list: string[] | undefined, path: Path): Cidr[] {
    const out: Cidr[] = [];
    (list ?? []).forEach((a, i) => {
      try {
        const c = parseCidrText(String(a));
        if (out.some((o) => o.addr === c.addr)) this.problem([...path, i], `address ${c.addr} given twice`);
        else out.push(c);
      } catch (e) {
        this.problem([...path, i], (e as Error).message);
      }
    });
    return out;
  }

  /** mac/mtu/promisc of a declared interface (`linkMtu`: the link's own mtu, for both ends). */
  private linkSettings(i: IfaceSpec, v: LinkKeysInput, path: Path, linkMtu?: number): void {
    const out: LinkSettings = {};
    if (v.mac !== undefined) {
      const mac = v.mac.trim().toLowerCase();
      if (!MAC_RE.test(mac))
        this.problem([...path, 'mac'], `'${v.mac}' is not a MAC address (six hex pairs, e.g. 02:42:ac:12:00:02)`);
      else if (parseInt(mac.slice(0, 2), 16) & 1)
        this.problem(
          [...path, 'mac'],
          `${mac} is a multicast address: an interface needs a unicast one (even first octet, e.g. 02:…)`,
        );
      else out.mac = mac;
    }
    const mtu = v.mtu ?? linkMtu;
    if (mtu !== undefined) out.mtu = mtu;
    if (v.promisc !== undefined) out.promisc = v.promisc;
    if (Object.keys(out).length) i.settings = out;
  }

  // -- Interfaces: bridges and dummies, then links and macvlan

  private createDevices(): void {
    for (const kind of ['bridge', 'dummy'] as const) {
      const section = kind === 'bridge' ? 'bridges' : 'dummies';
      for (const [key, dev] of Object.entries(this.input[section] ?? {})) {
        const place = this.placeRef(dev.host, [section, key, 'host']);
        if (place === undefined) continue;
        if (kind === 'bridge' && this.bridges.has(key)) continue; // YAML already refuses duplicate keys
        const iface = this.claim(place, key, [section, key], 'key');
        if (!iface) continue;
        iface.addresses = this.addresses(dev.addresses, [section, key, 'addresses']);
        this.linkSettings(iface, dev, [section, key]);
        if (kind === 'bridge') this.bridges.set(key, iface);
        this.creates.push({ kind, iface });
        this.interfaces.push(iface);
      }
    }
  }

  /** Links with both ends' places resolved; names are claimed afterwards, explicit ones first. */
  private planLinks(): LinkPlan[] {
    const plans: LinkPlan[] = [];
    (this.input.links ?? []).forEach((l, i) => {
      const ends = (['a', 'b'] as const).flatMap((side) => this.planLinkEnd(l[side], ['links', i, side]) ?? []);
      if (ends.length !== 2) return;
      const [a, b] = ends as [EndPlan, EndPlan];
      if (a.bridge && b.bridge) {
        this.problem(['links', i], 'both ends are bridge ports: link a host to a bridge, or two hosts');
        return;
      }
      if (a.place === b.place && !a.bridge && !b.bridge) {
        this.problem(['links', i, 'b', 'host'], `both ends are in ${placeText(a.place)}: a link joins two namespaces`);
        return;
      }
      a.other = b;
      b.other = a;
      plans.push({ a, b, ...(l.mtu !== undefined ? { mtu: l.mtu } : {}) });
    });
    return plans;
  }

  private planLinkEnd(e: NonNullable<LabInput['links']>[number]['a'], path: Path): EndPlan | undefined {
    if (e.ifname !== undefined && !IFNAME_RE.test(e.ifname)) {
      this.problem(
        [...path, 'ifname'],
        e.ifname.length > 15
          ? `interface name '${e.ifname}' is too long (${e.ifname.length} characters, at most 15)`
          : `'${e.ifname}' is not an interface name (1–15 letters, digits, . _ - +)`,
      );
      return undefined;
    }
    if ((e.host === undefined) === (e.bridge === undefined)) {
      this.problem(
        path,
        e.host === undefined
          ? 'an end needs host: (root or a host name) or bridge: (a bridge name)'
          : 'an end is either on a host or on a bridge, not both',
      );
      return undefined;
    }
    if (e.bridge !== undefined) {
      const br = this.bridges.get(e.bridge);
      if (!br) {
        const guess = suggest(e.bridge, [...this.bridges.keys()]);
        this.problem(
          [...path, 'bridge'],
          `unknown bridge '${e.bridge}'${guess ? `; did you mean '${guess}'?` : ''} (bridges: ${[...this.bridges.keys()].join(', ') || 'none'})`,
        );
        return undefined;
      }
      if (e.addresses?.length)
        this.problem([...path, 'addresses'], 'a bridge port takes no addresses: give them to the bridge');
      return { place: br.place, bridge: br, explicit: e.ifname, path, addrs: undefined, input: e };
    }
    const place = this.placeRef(e.host, [...path, 'host']);
    if (place === undefined) return undefined;
    return { place, explicit: e.ifname, path, addrs: e.addresses, input: e };
  }

  private planMacvlans(): MacvlanPlan[] {
    const plans: MacvlanPlan[] = [];
    (this.input.macvlan ?? []).forEach((m, i) => {
      const place = this.placeRef(m.host, ['macvlan', i, 'host']);
      const parentPlace = this.placeRef(m['parent-host'], ['macvlan', i, 'parent-host']);
      if (place === undefined || parentPlace === undefined) return;
      plans.push({ place, explicit: m.ifname, path: ['macvlan', i], input: m, parentPlace });
    });
    return plans;
  }

  /** Explicit names first, so an explicit eth1 further down is never taken by a generated one. */
  private claimExplicitNames(links: LinkPlan[], macvlans: MacvlanPlan[]): void {
    for (const lp of links) {
      for (const e of [lp.a, lp.b]) {
        if (e.explicit !== undefined) e.iface = this.claim(e.place, e.explicit, [...e.path, 'ifname']);
      }
    }
    for (const mp of macvlans)
      if (mp.explicit !== undefined) mp.iface = this.claim(mp.place, mp.explicit, [...mp.path, 'ifname']);
  }

  /** ethN for unnamed ends in hosts, before bridge ports are named (ports are named after them). */
  private claimHostNames(links: LinkPlan[], macvlans: MacvlanPlan[]): void {
    const nextEth = new Map<PlaceName, number>();
    const genEth = (place: PlaceName, path: Path) => {
      let n = nextEth.get(place) ?? 0;
      while (this.declaredIn.get(place)!.has(`eth${n}`)) n++;
      nextEth.set(place, n + 1);
      return this.claim(place, `eth${n}`, path);
    };
    for (const lp of links) {
      for (const e of [lp.a, lp.b]) {
        if (e.explicit === undefined && !e.bridge && e.place !== ROOT) e.iface = genEth(e.place, e.path);
      }
    }
    for (const mp of macvlans) if (mp.explicit === undefined && mp.place !== ROOT) mp.iface = genEth(mp.place, mp.path);
  }

  /** Unnamed root ends and bridge ports: named after the host at the other end; root macvlan mvN. */
  private claimTowardNames(links: LinkPlan[], macvlans: MacvlanPlan[]): void {
    const towardCount = new Map<string, number>();
    const towardKey = (e: EndPlan) => `${e.place}\u0000${e.other!.place}`;
    const unnamedToward = (e: EndPlan) => e.explicit === undefined && (e.bridge || e.place === ROOT);
    for (const lp of links) {
      for (const e of [lp.a, lp.b]) {
        if (unnamedToward(e)) towardCount.set(towardKey(e), (towardCount.get(towardKey(e)) ?? 0) + 1);
      }
    }
    for (const lp of links) {
      for (const e of [lp.a, lp.b]) {
        if (!unnamedToward(e)) continue;
        const other = e.other!;
        const otherIf = other.iface?.declared ?? 'x';
        const token = (towardCount.get(towardKey(e)) ?? 0) > 1 ? `${other.place}-${otherIf}` : other.place;
        e.iface = this.claim(e.place, e.place === ROOT ? token : shortIfName('', token), [
          ...e.path,
          e.bridge ? 'bridge' : 'host',
        ]);
      }
    }
    macvlans.forEach((mp, n) => {
      if (mp.explicit === undefined && mp.place === ROOT) mp.iface = this.claim(ROOT, `mv${n}`, [...mp.path, 'host']);
    });
  }

  /** Addresses, bridge ports and the veth creations of links whose both ends got a name. */
  private createLinks(links: LinkPlan[]): void {
    for (const lp of links) {
      for (const e of [lp.a, lp.b]) {
        if (!e.iface) continue;
        e.iface.addresses = this.addresses(e.addrs, [...e.path, 'addresses']);
        this.linkSettings(e.iface, e.input ?? {}, e.path, lp.mtu);
        if (e.bridge) e.iface.master = e.bridge.name;
      }
      if (lp.a.iface && lp.b.iface) {
        this.creates.push({
          kind: 'veth',
          a: lp.a.iface,
          b: lp.b.iface,
          ...(lp.mtu !== undefined ? { mtu: lp.mtu } : {}),
        });
        this.interfaces.push(lp.a.iface, lp.b.iface);
      }
    }
  }

  private createMacvlans(macvlans: MacvlanPlan[]): void {
    for (const mp of macvlans) {
      if (!mp.iface) continue;
      mp.iface.addresses = this.addresses(mp.input.addresses, [...mp.path, 'addresses']);
      this.linkSettings(mp.iface, mp.input, mp.path);
      const parentName = this.ifRef(mp.parentPlace!, mp.input.parent, [...mp.path, 'parent']);
      if (parentName === undefined) continue;
      if (mp.parentPlace === mp.place && parentName === mp.iface.name) {
        this.problem([...mp.path, 'parent'], 'a macvlan interface cannot be its own parent');
        continue;
      }
      this.creates.push({
        kind: 'macvlan',
        iface: mp.iface,
        parent: { place: mp.parentPlace!, name: parentName },
        mode: mp.input.mode ?? 'bridge',
      });
      this.interfaces.push(mp.iface);
    }
  }

  // -- Per-place settings

  private placeInputs(): [PlaceSpec, Path, PlaceInput | undefined][] {
    return [
      [this.root, ['root'], this.input.root],
      ...this.hosts.map((h) => [h, ['hosts', h.name], this.input.hosts?.[h.name]] as [PlaceSpec, Path, PlaceInput]),
    ];
  }

  /** Processes run inside hosts only (root has no `processes` key in the schema). */
  private applySettings(place: PlaceSpec, base: Path, s: PlaceInput): void {
    for (const [key, value] of Object.entries(s.sysctls ?? {}))
      this.addSysctl(place, [...base, 'sysctls', key], key, value);
    for (const [dev, list] of Object.entries(s.addresses ?? {}))
      this.addExtraAddresses(place, [...base, 'addresses', dev], dev, list);
    (s.routes ?? []).forEach((t, i) => {
      this.addRoute(place, [...base, 'routes', i], t);
    });
    (s.nat ?? []).forEach((n, i) => {
      const nat = this.natRule(place.name, n, [...base, 'nat', i]);
      if (nat) place.nat.push(nat);
    });
    if (s.forward) {
      const accept = (s.forward.accept ?? []).flatMap(
        (r, i) => this.forwardRule(place.name, r, [...base, 'forward', 'accept', i]) ?? [],
      );
      place.forward = { policy: s.forward.policy ?? 'accept', accept };
    }
    (s.processes ?? []).forEach((p, i) => {
      this.addProcess(place, [...base, 'processes', i], p);
    });
  }

  /** A sysctl, with a declared root interface name in net.ipv4/6.conf|neigh.IF.* translated. */
  private addSysctl(place: PlaceSpec, path: Path, key: string, value: string | number | boolean): void {
    if (!SYSCTL_RE.test(key)) {
      this.problem(path, `'${key}' is not a sysctl name (e.g. net.ipv4.ip_forward)`, 'key');
      return;
    }
    const parts = key.split('.');
    if (
      parts[0] === 'net' &&
      (parts[1] === 'ipv4' || parts[1] === 'ipv6') &&
      (parts[2] === 'conf' || parts[2] === 'neigh') &&
      parts.length >= 5
    ) {
      const dev = parts[3]!;
      if (!['all', 'default'].includes(dev)) {
        const real = this.ifRef(place.name, dev, path, 'key');
        if (real === undefined) return;
        parts[3] = real;
      }
    }
    place.sysctls.push({ key: parts.join('.'), value: str(value) });
  }

  /** `addresses:` by interface name: added to a lab interface, or kept for an existing one (lo, root's). */
  private addExtraAddresses(place: PlaceSpec, path: Path, dev: string, list: string[] | undefined): void {
    const real = this.ifRef(place.name, dev, path, 'key');
    if (real === undefined) return;
    const own = this.interfaces.find((i) => i.place === place.name && i.name === real);
    const add = this.addresses(list, path).filter((a) => {
      const dup = (own?.addresses ?? place.extraAddresses.find((x) => x.dev === real)?.addresses ?? []).some(
        (o) => o.addr === a.addr,
      );
      if (dup) this.problem(path, `address ${a.addr} given twice for ${dev}`);
      return !dup;
    });
    if (own) own.addresses.push(...add);
    else place.extraAddresses.push({ dev: real, addresses: add });
  }

  private addRoute(place: PlaceSpec, path: Path, t: string): void {
    let r: ParsedRoute;
    try {
      r = parseRoute(t);
    } catch (e) {
      this.problem(path, (e as Error).message);
      return;
    }
    if (r.dev !== undefined) {
      const real = this.ifRef(place.name, r.dev, path);
      if (real === undefined) return;
      r.dev = real;
    }
    const spec: RouteSpec = { ...r, text: t, args: routeArgs(r) };
    if (
      place.routes.some((o) => o.family === spec.family && o.dst === spec.dst && (o.metric ?? 0) === (spec.metric ?? 0))
    ) {
      this.problem(
        path,
        `a second route to ${spec.dst}${spec.metric !== undefined ? ` metric ${spec.metric}` : ''}: the kernel keeps one per destination and metric`,
      );
      return;
    }
    place.routes.push(spec);
  }

  private addProcess(place: PlaceSpec, path: Path, p: ProcessInput): void {
    const cmd = Array.isArray(p.command) ? p.command.map(str) : [p.command];
    if (cmd.length === 0 || !cmd[0]) {
      this.problem([...path, 'command'], 'empty command');
      return;
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(p.env ?? {})) {
      if (!ENV_RE.test(k)) this.problem([...path, 'env', k], `'${k}' is not an environment variable name`, 'key');
      env[k] = str(v);
    }
    const baseDir = dirname(resolvePath(this.file));
    place.processes.push({
      argv: [...cmd, ...(p.args ?? []).map(str)],
      env,
      cwd: p.cwd === undefined ? baseDir : isAbsolute(p.cwd) ? p.cwd : resolvePath(baseDir, p.cwd),
      ...(p['wait-port'] !== undefined ? { waitPort: p['wait-port'] } : {}),
    });
  }

  // -- NAT and forward rules

  /** A CIDR field of a rule; a wrong one is reported and fails the rule. */
  private ruleCidr(check: RuleCheck, v: string | undefined, path: Path): Cidr | undefined {
    if (v === undefined) return undefined;
    try {
      return parseCidrText(v);
    } catch (e) {
      this.problem(path, (e as Error).message);
      check.ok = false;
      return undefined;
    }
  }

  /** An interface field of a rule, or `!IF` (any but IF, as iptables' `! -i IF`). */
  private ruleIface(
    check: RuleCheck,
    place: PlaceName,
    v: string | undefined,
    path: Path,
  ): { name: string; not: boolean } | undefined {
    if (v === undefined) return undefined;
    const neg = /^!\s*(.*)$/.exec(v.trim());
    const real = this.ifRef(place, neg ? neg[1]! : v.trim(), path);
    if (real === undefined) check.ok = false;
    return real === undefined ? undefined : { name: real, not: !!neg };
  }

  private forwardRule(place: PlaceName, r: ForwardInput, path: Path): ForwardRule | undefined {
    const check: RuleCheck = { ok: true };
    const out: ForwardRule = {};
    const inIf = this.ruleIface(check, place, r.in, [...path, 'in']);
    if (inIf) Object.assign(out, { in: inIf.name, ...(inIf.not ? { inNot: true } : {}) });
    const outIf = this.ruleIface(check, place, r.out, [...path, 'out']);
    if (outIf) Object.assign(out, { out: outIf.name, ...(outIf.not ? { outNot: true } : {}) });
    for (const key of ['source', 'destination'] as const) {
      const c = this.ruleCidr(check, r[key], [...path, key]);
      if (c) out[key] = c;
    }
    if (out.source && out.destination && out.source.family !== out.destination.family) {
      this.problem(
        [...path, 'destination'],
        `source is IPv${out.source.family}, destination IPv${out.destination.family}`,
      );
      check.ok = false;
    }
    if (r.port !== undefined) {
      const range = portRange(r.port);
      if (!range) {
        this.problem([...path, 'port'], `'${r.port}' is not a port or range (1–65535, e.g. 8080 or 8000-8010)`);
        check.ok = false;
      } else out.port = range.text;
      if (r.protocol === undefined) out.protocol = 'tcp';
    }
    if (r.protocol !== undefined) out.protocol = r.protocol;
    return check.ok ? out : undefined;
  }

  private natRule(place: PlaceName, n: NatInput, path: Path): NatSpec | undefined {
    const check: RuleCheck = { ok: this.natKeysApply(n, path) };
    return n.type === 'dnat' ? this.dnatRule(check, place, n, path) : this.sourceNatRule(check, place, n, path);
  }

  /** Reports every key that does not belong to the rule's type. */
  private natKeysApply(n: NatInput, path: Path): boolean {
    const allowed: Record<NatSpec['type'], string[]> = {
      masquerade: ['type', 'source', 'out'],
      snat: ['type', 'source', 'out', 'to'],
      dnat: ['type', 'in', 'destination', 'protocol', 'port', 'to'],
    };
    let ok = true;
    for (const k of Object.keys(n)) {
      if (!allowed[n.type].includes(k)) {
        this.problem([...path, k], `'${k}' does not apply to ${n.type} (keys: ${allowed[n.type].join(', ')})`, 'key');
        ok = false;
      }
    }
    return ok;
  }

  /** masquerade or snat. */
  private sourceNatRule(check: RuleCheck, place: PlaceName, n: NatInput, path: Path): NatSpec | undefined {
    const source = this.ruleCidr(check, n.source, [...path, 'source']);
    const out = this.ruleIface(check, place, n.out, [...path, 'out']);
    if (n.source === undefined && n.out === undefined) {
      this.problem(path, `${n.type} needs source: (a CIDR) or out: (an interface), or both`);
      return undefined;
    }
    const outKeys = out ? { out: out.name, ...(out.not ? { outNot: true } : {}) } : {};
    if (n.type === 'masquerade')
      return check.ok ? { type: 'masquerade', ...(source ? { source } : {}), ...outKeys } : undefined;
    if (n.to === undefined) {
      this.problem([...path, 'to'], 'required: the address to rewrite the source to');
      return undefined;
    }
    const to = normalizeIp(n.to);
    if (!to) {
      this.problem([...path, 'to'], `'${n.to}' is not an IP address`);
      return undefined;
    }
    if (source && source.family !== to.family) {
      this.problem([...path, 'to'], `${to.addr} is IPv${to.family}, source ${source.text} is IPv${source.family}`);
      return undefined;
    }
    return check.ok
      ? { type: 'snat', ...(source ? { source } : {}), ...outKeys, to: to.addr, toFamily: to.family }
      : undefined;
  }

  private dnatRule(check: RuleCheck, place: PlaceName, n: NatInput, path: Path): NatSpec | undefined {
    const inIf = this.ruleIface(check, place, n.in, [...path, 'in']);
    let destination: { family: 4 | 6; addr: string } | undefined;
    if (n.destination !== undefined) {
      destination = normalizeIp(n.destination);
      if (!destination) {
        this.problem([...path, 'destination'], `'${n.destination}' is not an IP address`);
        check.ok = false;
      }
    }
    if (n.port === undefined) {
      this.problem([...path, 'port'], 'required: the port (or range) to forward, e.g. 8080');
      return undefined;
    }
    const ports = portRange(n.port);
    if (!ports) {
      this.problem([...path, 'port'], `'${n.port}' is not a port or range (1–65535, e.g. 8080 or 8000-8010)`);
      return undefined;
    }
    const target = this.dnatTarget(n.to, ports.first !== ports.last, [...path, 'to']);
    if (!target) return undefined;
    const { to, toPort } = target;
    if (destination && destination.family !== to.family) {
      this.problem(
        [...path, 'to'],
        `${to.addr} is IPv${to.family}, destination ${destination.addr} is IPv${destination.family}`,
      );
      return undefined;
    }
    if (!check.ok) return undefined;
    return {
      type: 'dnat',
      ...(inIf ? { in: inIf.name, ...(inIf.not ? { inNot: true } : {}) } : {}),
      ...(destination ? { destination: destination.addr } : {}),
      protocol: n.protocol ?? 'tcp',
      port: ports.first === ports.last ? String(ports.first) : `${ports.first}-${ports.last}`,
      to: to.addr,
      ...(toPort !== undefined ? { toPort } : {}),
      toFamily: to.family,
    };
  }

  /** A dnat `to:` (ADDR, ADDR:PORT or [V6]:PORT); a port range keeps its ports, so takes no PORT. */
  private dnatTarget(
    v: string | undefined,
    isRange: boolean,
    path: Path,
  ): { to: { family: 4 | 6; addr: string }; toPort: number | undefined } | undefined {
    if (v === undefined) {
      this.problem(path, 'required: where to send it, e.g. 172.18.0.2:80');
      return undefined;
    }
    const tm = v.match(/^\[([^\]]+)\](?::(\d+))?$/) ?? v.match(/^([^:]+)(?::(\d+))?$/) ?? [v, v, undefined];
    const to = normalizeIp(tm[1]!);
    const toPort = tm[2] !== undefined ? Number(tm[2]) : undefined;
    if (!to || (toPort !== undefined && (toPort < 1 || toPort > 65535))) {
      this.problem(path, `'${v}' is not ADDRESS or ADDRESS:PORT (IPv6 in brackets: [fd00::2]:80)`);
      return undefined;
    }
    if (toPort !== undefined && isRange) {
      this.problem(path, 'a port range keeps its ports: leave the port out of to:');
      return undefined;
    }
    return { to, toPort };
  }

  /** Addresses must not repeat across the lab's interfaces of one namespace. */
  private checkAddressesUnique(): void {
    for (const p of this.places.keys()) {
      const seen = new Map<string, string>();
      for (const i of this.interfaces.filter((x) => x.place === p)) {
        for (const a of i.addresses) {
          const prev = seen.get(a.addr);
          if (prev)
            this.problems.push({
              path: [],
              message: `address ${a.addr} is on both ${prev} and ${i.declared} in ${placeText(p)}`,
            });
          seen.set(a.addr, i.declared);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// NAT rendering

function natLine(n: NatSpec): string {
  const parts: string[] = [];
  if (n.type === 'dnat') {
    if (n.in) parts.push(`iifname ${n.inNot ? '!= ' : ''}"${n.in}"`);
    if (n.destination) parts.push(`${n.toFamily === 4 ? 'ip' : 'ip6'} daddr ${n.destination}`);
    parts.push(`${n.protocol} dport ${n.port}`);
    const target =
      n.toFamily === 6
        ? n.toPort !== undefined
          ? `[${n.to}]:${n.toPort}`
          : n.to
        : n.toPort !== undefined
          ? `${n.to}:${n.toPort}`
          : n.to;
    parts.push(`dnat ${n.toFamily === 4 ? 'ip' : 'ip6'} to ${target}`);
    return parts.join(' ');
  }
  if (n.source) parts.push(`${n.source.family === 4 ? 'ip' : 'ip6'} saddr ${networkOf(n.source)}/${n.source.len}`);
  if (n.out) parts.push(`oifname ${n.outNot ? '!= ' : ''}"${n.out}"`);
  parts.push(n.type === 'masquerade' ? 'masquerade' : `snat ${n.toFamily === 4 ? 'ip' : 'ip6'} to ${n.to}`);
  return parts.join(' ');
}

/** The comment that identifies a lab's table and the exact rules in it. */
export function natComment(lab: string, body: string): string {
  return `tranproxy lab ${lab} ${createHash('sha256').update(body).digest('hex').slice(0, 12)}`;
}

function forwardLine(r: ForwardRule): string {
  const parts: string[] = [];
  if (r.in) parts.push(`iifname ${r.inNot ? '!= ' : ''}"${r.in}"`);
  if (r.out) parts.push(`oifname ${r.outNot ? '!= ' : ''}"${r.out}"`);
  for (const [key, c] of [
    ['saddr', r.source],
    ['daddr', r.destination],
  ] as const) {
    if (c) parts.push(`${c.family === 4 ? 'ip' : 'ip6'} ${key} ${networkOf(c)}/${c.len}`);
  }
  if (r.port) parts.push(`${r.protocol} dport ${r.port}`);
  else if (r.protocol) parts.push(`meta l4proto ${r.protocol}`);
  parts.push('accept');
  return parts.join(' ');
}

/** The declared forward chain: replies of accepted flows pass, then the accept rules, then the policy. */
function forwardChain(f: ForwardSpec): string {
  const lines = [`\t\ttype filter hook forward priority filter; policy ${f.policy};`];
  if (f.policy === 'drop') lines.push('\t\tct state established,related accept');
  lines.push(...f.accept.map((r) => `\t\t${forwardLine(r)}`));
  return ['\tchain forward {', ...lines, '\t}'].join('\n');
}

/** The lab's nft table for one namespace, or undefined when it has no NAT or forward rules. */
export function renderNat(lab: string, nat: readonly NatSpec[], forward?: ForwardSpec): string | undefined {
  if (nat.length === 0 && !forward) return undefined;
  const pre = nat.filter((n) => n.type === 'dnat').map(natLine);
  const post = nat.filter((n) => n.type !== 'dnat').map(natLine);
  const chains: string[] = [];
  if (pre.length) {
    chains.push(
      [
        '\tchain prerouting {',
        '\t\ttype nat hook prerouting priority dstnat; policy accept;',
        ...pre.map((l) => `\t\t${l}`),
        '\t}',
      ].join('\n'),
    );
  }
  if (post.length)
    chains.push(
      [
        '\tchain postrouting {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        ...post.map((l) => `\t\t${l}`),
        '\t}',
      ].join('\n'),
    );
  if (forward) chains.push(forwardChain(forward));
  const body = chains.join('\n');
  return `table inet ${tableName(lab)} {\n\tcomment "${natComment(lab, body)}"\n${body}\n}\n`;
}
