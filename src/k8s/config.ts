// What to inject into one pod: the cluster-wide defaults (flags of `tranproxy inject` /
// `tranproxy webhook`) overridden by the pod's `tranproxy.io/*` annotations. Pure: every
// annotation is validated with the same parsers `tranproxy run` uses, so a bad value is
// reported at injection time (naming the annotation), not as a crash-looping sidecar.
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import { parseHeaderFlag, validateHeader } from '../http/inject-config.js';
import { suggest } from '../route/index.js';
import { parseChoice, parseCidr, parsePort, parsePortRange, parseUidGid } from '../config/values.js';

/** Name of the sidecar container; its presence marks a pod as injected. */
export const SIDECAR_NAME = 'tranproxy';
/** The init container that applies the rules (both modes). */
export const INIT_NAME = 'tranproxy-init';
export const ANNOTATION_PREFIX = 'tranproxy.io/';
/** Written on injected pods: how they were injected (informational only). */
export const STATUS_ANNOTATION = 'tranproxy.io/injected';
export const VERSION = '0.1.0';
export const DEFAULT_IMAGE = `ghcr.io/tranproxy/tranproxy:${VERSION}`;

export type InjectMode = 'native' | 'classic';
export type ProbeKind = 'exec' | 'http';
export type FirewallChoice = 'auto' | 'nft' | 'iptables';

/** Cluster-wide defaults: flags of `inject` / `webhook`. */
export interface InjectDefaults {
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  mode: InjectMode;
  probe: ProbeKind;
  adminPort: number;
  listenPort: number;
  proxyUser: { uid: number; gid: number };
  firewall: FirewallChoice;
  cpuRequest: string;
  memoryRequest: string;
  memoryLimit: string;
}

export const DEFAULT_INJECT: InjectDefaults = {
  image: DEFAULT_IMAGE,
  imagePullPolicy: 'IfNotPresent',
  mode: 'native',
  probe: 'exec',
  adminPort: 15000,
  listenPort: 15001,
  proxyUser: { uid: 1337, gid: 1337 },
  firewall: 'auto',
  cpuRequest: '20m',
  memoryRequest: '64Mi',
  memoryLimit: '256Mi',
};

/** Everything the container builders need for one pod. */
export interface SidecarConfig extends InjectDefaults {
  ports: string[];
  excludePorts: string[];
  includeCidrs: string[];
  excludeCidrs: string[];
  headers: string[];
  /** `--Set-Forwarded-For` value; undefined: off. */
  setForwardedFor: string | undefined;
  xffMode: 'append' | 'replace' | undefined;
  setClientHostname: string | undefined;
  family: 'dual' | 'ipv4' | 'ipv6' | undefined;
  logFormat: 'text' | 'json' | undefined;
  /** `-N`: resolvers for the names tranproxy resolves itself; empty: the pod's resolv.conf. */
  nameservers: string[];
}

/** A pod annotation with a bad value. The message names the annotation and the fix. */
export class AnnotationError extends UsageError {}

/** The annotations tranproxy reads, with what each does (for --help and for typo hints). */
export const ANNOTATIONS: Record<string, string> = {
  'tranproxy.io/inject': '"false": never inject this pod',
  'tranproxy.io/mode': 'native (init container with restartPolicy: Always, k8s >= 1.29) or classic',
  'tranproxy.io/ports': 'capture only these destination ports: "80,8080,9000-9100" (default: all)',
  'tranproxy.io/exclude-ports': 'never capture these destination ports',
  'tranproxy.io/include-cidrs': 'capture only these destinations: "10.0.0.0/8,fd00::/8"',
  'tranproxy.io/exclude-cidrs': 'never capture these destinations',
  'tranproxy.io/headers': 'headers to add: "X-A: 1\\nX-B: 2", a JSON list ["X-A: 1"] or a JSON object {"X-A": "1"}',
  'tranproxy.io/set-forwarded-for': '"default" (the pod IP), "hostname", a literal value, or "false"',
  'tranproxy.io/xff-mode': 'append (default) or replace the X-Forwarded-For a client sent',
  'tranproxy.io/set-client-hostname': '"default" (the pod\'s host name), a literal value, or "false"',
  'tranproxy.io/nameservers':
    'resolvers (IP addresses) for names tranproxy resolves itself, as -N: "10.96.0.10,fd00::a" (default: the pod\'s resolv.conf)',
  'tranproxy.io/image': 'sidecar image',
  'tranproxy.io/firewall': 'auto, nft or iptables (iptables adds NET_RAW, which iptables-legacy needs)',
  'tranproxy.io/family': 'dual, ipv4 or ipv6',
  'tranproxy.io/log-format': 'text or json',
  'tranproxy.io/probe': 'exec (admin API stays on 127.0.0.1) or http (admin API on 0.0.0.0 for kubelet httpGet probes)',
  'tranproxy.io/admin-port': 'admin API port (/readyz)',
  'tranproxy.io/listen-port': "the proxy's own port",
  'tranproxy.io/proxy-user': 'UID:GID the data plane runs as; its traffic is never captured',
  'tranproxy.io/cpu': 'sidecar CPU request',
  'tranproxy.io/memory': 'sidecar memory request',
  'tranproxy.io/memory-limit': 'sidecar memory limit',
  [STATUS_ANNOTATION]: 'set by tranproxy: how the pod was injected',
};

const KNOWN = Object.keys(ANNOTATIONS);

function list(text: string): string[] {
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Wrap a values.ts parser so its error names the annotation. */
function checked<T>(annotation: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UsageError && !(e instanceof AnnotationError)) {
      const msg = e.message.startsWith(`${annotation}: `) ? e.message : `${annotation}: ${e.message}`;
      throw new AnnotationError(msg);
    }
    throw e;
  }
}

/** `tranproxy.io/headers`: newline-separated "Name: value", a JSON list, or a JSON object. */
export function parseHeadersAnnotation(text: string): string[] {
  const key = 'tranproxy.io/headers';
  const t = text.trim();
  if (!t) return [];
  let items: string[];
  if (t.startsWith('[') || t.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(t);
    } catch (e) {
      throw new AnnotationError(
        `${key}: not valid JSON (${(e as Error).message}); use "Name: value" lines, ["Name: value", …] or {"Name": "value"}`,
      );
    }
    if (Array.isArray(parsed)) {
      items = parsed.map((x) => {
        if (typeof x === 'string') return x;
        if (
          x &&
          typeof x === 'object' &&
          typeof (x as { name?: unknown }).name === 'string' &&
          typeof (x as { value?: unknown }).value === 'string'
        ) {
          return `${(x as { name: string }).name}: ${(x as { value: string }).value}`;
        }
        throw new AnnotationError(
          `${key}: list items must be "Name: value" strings or {"name": …, "value": …}, got ${JSON.stringify(x)}`,
        );
      });
    } else if (parsed && typeof parsed === 'object') {
      items = Object.entries(parsed).map(([name, value]) => {
        if (typeof value !== 'string' && typeof value !== 'number') {
          throw new AnnotationError(`${key}: value of '${name}' must be a string, got ${JSON.stringify(value)}`);
        }
        return `${name}: ${value}`;
      });
    } else {
      throw new AnnotationError(`${key}: expected a JSON list or object`);
    }
  } else {
    items = t
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean);
  }
  return items.map((h) =>
    checked(key, () => {
      const spec = parseHeaderFlag(h);
      return `${spec.name}: ${spec.value}`;
    }),
  );
}

/** set-forwarded-for / set-client-hostname: undefined (off) or the flag's value. */
function switchValue(annotation: string, header: string, text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'false' || t === 'off') return undefined;
  if (t === '' || t === 'true' || t === 'default') return 'default';
  if (t.startsWith('-')) throw new AnnotationError(`${annotation}: '${t}' cannot start with '-'`);
  return checked(annotation, () => validateHeader(header, t).value);
}

const QUANTITY = /^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e\d+)?$/;

function quantity(annotation: string, text: string): string {
  const t = text.trim();
  if (!QUANTITY.test(t))
    throw new AnnotationError(`${annotation}: '${text}' is not a Kubernetes quantity (e.g. 100m, 64Mi)`);
  return t;
}

export interface ConfigResult {
  config: SidecarConfig;
  /** Unknown tranproxy.io/* annotations and other non-fatal remarks. */
  warnings: string[];
}

/**
 * The sidecar configuration for a pod with these annotations. Throws AnnotationError on a
 * bad value; unknown `tranproxy.io/` keys (typos) become warnings.
 */
export function sidecarConfig(
  annotations: Record<string, unknown> | undefined,
  defaults: InjectDefaults = DEFAULT_INJECT,
): ConfigResult {
  const { a, warnings } = ourAnnotations(annotations);
  const cfg: SidecarConfig = {
    ...defaults,
    ports: [],
    excludePorts: [],
    includeCidrs: [],
    excludeCidrs: [],
    headers: [],
    setForwardedFor: undefined,
    xffMode: undefined,
    setClientHostname: undefined,
    family: undefined,
    logFormat: undefined,
    nameservers: [],
  };
  applyScalars(cfg, a);
  applyLists(cfg, a);
  applyHeaders(cfg, a);
  return { config: cfg, warnings };
}

/** The full annotation name. */
function key(name: string): string {
  return `${ANNOTATION_PREFIX}${name}`;
}

/** The tranproxy.io/* annotations we know (string values only); unknown ones become warnings. */
function ourAnnotations(annotations: Record<string, unknown> | undefined): {
  a: Record<string, string>;
  warnings: string[];
} {
  const a: Record<string, string> = {};
  const warnings: string[] = [];
  for (const [k, v] of Object.entries(annotations ?? {})) {
    if (!k.startsWith(ANNOTATION_PREFIX)) continue;
    if (typeof v !== 'string')
      throw new AnnotationError(`${k}: annotation values are strings, got ${JSON.stringify(v)}`);
    if (!KNOWN.includes(k)) {
      const hint = suggest(k, KNOWN);
      warnings.push(`unknown annotation ${k} ignored${hint ? `; did you mean ${hint}?` : ''}`);
      continue;
    }
    a[k] = v;
  }
  return { a, warnings };
}

/** Choices, image, ports, proxy user and resources. */
function applyScalars(cfg: SidecarConfig, a: Record<string, string>): void {
  const v = (name: string): string | undefined => a[key(name)]?.trim();
  if (v('mode') !== undefined)
    cfg.mode = checked(key('mode'), () => parseChoice(v('mode')!, ['native', 'classic'] as const, key('mode')));
  if (v('probe') !== undefined)
    cfg.probe = checked(key('probe'), () => parseChoice(v('probe')!, ['exec', 'http'] as const, key('probe')));
  if (v('firewall') !== undefined)
    cfg.firewall = checked(key('firewall'), () =>
      parseChoice(v('firewall')!, ['auto', 'nft', 'iptables'] as const, key('firewall')),
    );
  if (v('family') !== undefined)
    cfg.family = checked(key('family'), () =>
      parseChoice(v('family')!, ['dual', 'ipv4', 'ipv6'] as const, key('family')),
    );
  if (v('log-format') !== undefined)
    cfg.logFormat = checked(key('log-format'), () =>
      parseChoice(v('log-format')!, ['text', 'json'] as const, key('log-format')),
    );
  if (v('xff-mode') !== undefined)
    cfg.xffMode = checked(key('xff-mode'), () =>
      parseChoice(v('xff-mode')!, ['append', 'replace'] as const, key('xff-mode')),
    );
  if (v('image') !== undefined) {
    const image = v('image')!;
    if (!/^[^\s]+$/.test(image)) throw new AnnotationError(`${key('image')}: '${image}' is not an image reference`);
    cfg.image = image;
  }
  if (v('admin-port') !== undefined)
    cfg.adminPort = checked(key('admin-port'), () => parsePort(v('admin-port')!, key('admin-port')));
  if (v('listen-port') !== undefined)
    cfg.listenPort = checked(key('listen-port'), () => parsePort(v('listen-port')!, key('listen-port')));
  if (v('proxy-user') !== undefined)
    cfg.proxyUser = checked(key('proxy-user'), () => parseUidGid(v('proxy-user')!, key('proxy-user')));
  if (cfg.proxyUser.uid === 0)
    throw new AnnotationError(
      `${key('proxy-user')}: the data plane must not run as root (uid 0): its traffic would never be captured`,
    );
  if (v('cpu') !== undefined) cfg.cpuRequest = quantity(key('cpu'), v('cpu')!);
  if (v('memory') !== undefined) cfg.memoryRequest = quantity(key('memory'), v('memory')!);
  if (v('memory-limit') !== undefined) cfg.memoryLimit = quantity(key('memory-limit'), v('memory-limit')!);
}

/** Port ranges, CIDRs and nameservers; tranproxy's own ports must stay out of the captured ones. */
function applyLists(cfg: SidecarConfig, a: Record<string, string>): void {
  const get = (name: string): string | undefined => a[key(name)];
  const ranges = (name: string): string[] =>
    list(get(name) ?? '').map((p) =>
      checked(key(name), () => {
        const r = parsePortRange(p, key(name));
        return r.from === r.to ? String(r.from) : `${r.from}-${r.to}`;
      }),
    );
  const cidrs = (name: string): string[] =>
    list(get(name) ?? '').map((c) => checked(key(name), () => parseCidr(c, key(name)).text));
  cfg.ports = ranges('ports');
  cfg.excludePorts = ranges('exclude-ports');
  cfg.includeCidrs = cidrs('include-cidrs');
  cfg.nameservers = list(get('nameservers') ?? '').map((ip) => {
    if (!isIP(ip)) throw new AnnotationError(`${key('nameservers')}: '${ip}' is not an IP address (e.g. 10.96.0.10)`);
    return ip;
  });
  cfg.excludeCidrs = cidrs('exclude-cidrs');
  for (const port of [cfg.adminPort, cfg.listenPort]) {
    if (cfg.ports.some((r) => inRange(port, r))) {
      throw new AnnotationError(
        `${key('ports')}: includes tranproxy's own port ${port}: that would loop; choose another ${port === cfg.adminPort ? 'admin-port' : 'listen-port'}`,
      );
    }
  }
  if (cfg.adminPort === cfg.listenPort)
    throw new AnnotationError(`${key('admin-port')}: the admin port and the listen port are both ${cfg.adminPort}`);
}

/** Extra headers and the X-Forwarded-For / X-Client-Hostname switches, each header once. */
function applyHeaders(cfg: SidecarConfig, a: Record<string, string>): void {
  const get = (name: string): string | undefined => a[key(name)];
  cfg.headers = parseHeadersAnnotation(get('headers') ?? '');
  cfg.setForwardedFor = switchValue(key('set-forwarded-for'), 'X-Forwarded-For', get('set-forwarded-for'));
  cfg.setClientHostname = switchValue(key('set-client-hostname'), 'X-Client-Hostname', get('set-client-hostname'));
  if (cfg.xffMode && !cfg.setForwardedFor)
    throw new AnnotationError(`${key('xff-mode')}: needs ${key('set-forwarded-for')}`);
  const names = new Set<string>();
  for (const h of cfg.headers) {
    const name = h.slice(0, h.indexOf(':')).toLowerCase();
    if (names.has(name))
      throw new AnnotationError(`${key('headers')}: header '${h.slice(0, h.indexOf(':'))}' given twice`);
    names.add(name);
  }
  if (cfg.setForwardedFor && names.has('x-forwarded-for')) {
    throw new AnnotationError(`${key('headers')}: X-Forwarded-For is set by ${key('set-forwarded-for')}; give it once`);
  }
}

function inRange(port: number, range: string): boolean {
  const [from, to] = range.split('-').map(Number);
  return port >= from! && port <= (to ?? from!);
}

/** `-P`, `--exclude-cidr`, … : what `tranproxy rules` and `tranproxy run` both take. */
export function captureArgs(c: SidecarConfig): string[] {
  const out: string[] = [];
  for (const p of c.ports) out.push('-P', p);
  for (const p of c.excludePorts) out.push('--exclude-port', p);
  for (const x of c.includeCidrs) out.push('--include-cidr', x);
  for (const x of c.excludeCidrs) out.push('--exclude-cidr', x);
  if (c.family) out.push('--family', c.family);
  if (c.listenPort !== DEFAULT_INJECT.listenPort) out.push('--listen-port', String(c.listenPort));
  out.push('--proxy-user', `${c.proxyUser.uid}:${c.proxyUser.gid}`);
  return out;
}

/** Flags only `tranproxy run` takes: HTTP header injection, logs. */
export function httpArgs(c: SidecarConfig): string[] {
  const out: string[] = [];
  if (c.setForwardedFor) out.push('--Set-Forwarded-For', c.setForwardedFor);
  if (c.xffMode) out.push('--xff-mode', c.xffMode);
  if (c.setClientHostname) out.push('--Set-Client-Hostname', c.setClientHostname);
  for (const h of c.headers) out.push('-H', h);
  if (c.logFormat) out.push('--log-format', c.logFormat);
  for (const ns of c.nameservers) out.push('-N', ns);
  return out;
}
