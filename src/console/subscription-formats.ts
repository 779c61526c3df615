// What providers serve as a subscription, each turned into LinkEntry {label, uri} for the
// common link parser (links.ts): a plain or base64 link list, Clash YAML `proxies:`, SIP008
// JSON. Pure; a body is at most a few MiB (the fetch caps it).
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../errors.js';
import type { LinkEntry } from './links.js';
import { splitLinks } from './links.js';

export type SubscriptionFormat = 'links' | 'base64' | 'clash' | 'sip008';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;

/** Standard or URL-safe base64, padding optional, wrapped with CRLF or LF; undefined if not. */
function fromBase64(text: string): string | undefined {
  const compact = text.replace(/\s+/g, '');
  if (!compact || !/^[A-Za-z0-9+/_-]+=*$/.test(compact) || compact.replace(/=+$/, '').length % 4 === 1)
    return undefined;
  return Buffer.from(compact.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
}

/** A subscription body → its format and entries. Throws UsageError when it is none of them. */
export function decodeSubscription(body: string): { format: SubscriptionFormat; entries: LinkEntry[] } {
  const text = body.replace(/^\uFEFF/, '').trim();
  if (text.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new UsageError('the subscription looks like JSON but does not parse');
    }
    if (isObj(json) && Array.isArray(json.servers)) return { format: 'sip008', entries: json.servers.map(sip008Entry) };
    throw new UsageError('a JSON subscription must be SIP008: {"version": 1, "servers": [...]}');
  }
  if (/^proxies\s*:/m.test(text)) return { format: 'clash', entries: clashEntries(text) };
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//m.test(text))
    return { format: 'links', entries: splitLinks(text).map((uri) => ({ uri })) };
  const decoded = fromBase64(text);
  if (decoded !== undefined && /^[A-Za-z][A-Za-z0-9+.-]*:\/\//m.test(decoded))
    return { format: 'base64', entries: splitLinks(decoded).map((uri) => ({ uri })) };
  throw new UsageError('the subscription is not a link list (plain or base64), Clash YAML (proxies:) or SIP008 JSON');
}

function hostPort(host: string, port: string): string {
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

function ssUri(e: {
  method: string;
  password: string;
  server: string;
  port: string;
  plugin?: string;
  pluginOpts?: string;
  label?: string;
}): string {
  // SIP002: base64url userinfo, except AEAD-2022 which must be percent-encoded plain text.
  const userinfo = e.method.startsWith('2022-')
    ? `${encodeURIComponent(e.method)}:${encodeURIComponent(e.password)}`
    : Buffer.from(`${e.method}:${e.password}`).toString('base64url');
  const plugin = e.plugin
    ? `/?plugin=${encodeURIComponent(e.pluginOpts ? `${e.plugin};${e.pluginOpts}` : e.plugin)}`
    : '';
  return `ss://${userinfo}@${hostPort(e.server, e.port)}${plugin}${e.label ? `#${encodeURIComponent(e.label)}` : ''}`;
}

function sip008Entry(s: unknown, i: number): LinkEntry {
  if (!isObj(s)) return { uri: '', skip: `servers[${i}] is not an object` };
  const label = str(s.remarks)?.trim() || undefined;
  const [server, port, method, password] = [str(s.server), str(s.server_port), str(s.method), str(s.password)];
  if (!server || !port || !method || password === undefined)
    return { uri: '', ...(label ? { label } : {}), skip: 'missing server, server_port, method or password' };
  const plugin = str(s.plugin) || undefined;
  const pluginOpts = str(s.plugin_opts) || undefined;
  return {
    uri: ssUri({
      method,
      password,
      server,
      port,
      ...(plugin ? { plugin } : {}),
      ...(pluginOpts ? { pluginOpts } : {}),
      ...(label ? { label } : {}),
    }),
    ...(label ? { label } : {}),
  };
}

function clashEntries(text: string): LinkEntry[] {
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (e) {
    throw new UsageError(`the Clash YAML subscription does not parse: ${(e as Error).message.split('\n')[0]}`);
  }
  const proxies = isObj(doc) ? doc.proxies : undefined;
  if (!Array.isArray(proxies)) throw new UsageError('the Clash YAML subscription has no proxies: list');
  return proxies.map(clashEntry);
}

/** One Clash `proxies:` item → its standard link (the label travels beside it). */
export function clashEntry(p: unknown, i: number): LinkEntry {
  if (!isObj(p)) return { uri: '', skip: `proxies[${i}] is not a mapping` };
  const label = str(p.name)?.trim() || undefined;
  const withLabel = (e: LinkEntry): LinkEntry => (label ? { ...e, label } : e);
  const type = str(p.type)?.toLowerCase() ?? '';
  const [server, port] = [str(p.server), str(p.port)];
  if (!server || !port) return withLabel({ uri: '', skip: `${type || 'proxy'}: missing server or port` });
  const build = CLASH_TYPES[type];
  if (!build) return withLabel({ uri: '', skip: `${type || 'untyped proxy'} not supported` });
  try {
    return withLabel({ uri: build(p, hostPort(server, port), label) });
  } catch (e) {
    return withLabel({ uri: '', skip: `${type}: ${(e as Error).message}` });
  }
}

const fragment = (label: string | undefined) => (label ? `#${encodeURIComponent(label)}` : '');
const query = (params: Record<string, string | undefined>) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString().replace(/\+/g, '%20');
  return s ? `?${s}` : '';
};
const userinfo = (p: Obj) => {
  const [u, pw] = [str(p.username), str(p.password)];
  return u ? `${encodeURIComponent(u)}${pw !== undefined ? `:${encodeURIComponent(pw)}` : ''}@` : '';
};

/** Transport fields shared by vmess/vless/trojan items: network, ws-opts, tls/sni, alpn. */
function transport(p: Obj): {
  net: string;
  host?: string;
  path?: string;
  sni?: string;
  alpn?: string;
  insecure: boolean;
} {
  const ws = isObj(p['ws-opts']) ? p['ws-opts'] : {};
  const headers = isObj(ws.headers) ? ws.headers : {};
  const grpc = isObj(p['grpc-opts']) ? p['grpc-opts'] : {};
  const net = str(p.network) ?? 'tcp';
  const path = net === 'grpc' ? str(grpc['grpc-service-name']) : str(ws.path);
  const alpn = Array.isArray(p.alpn) ? p.alpn.map(String).join(',') : str(p.alpn);
  return {
    net,
    ...(str(headers.Host ?? headers.host) ? { host: str(headers.Host ?? headers.host)! } : {}),
    ...(path ? { path } : {}),
    ...(str(p.servername ?? p.sni) ? { sni: str(p.servername ?? p.sni)! } : {}),
    ...(alpn ? { alpn } : {}),
    insecure: p['skip-cert-verify'] === true,
  };
}

const CLASH_TYPES: Record<string, (p: Obj, hp: string, label: string | undefined) => string> = {
  ss(p, hp, label) {
    const [method, password] = [str(p.cipher), str(p.password)];
    if (!method || password === undefined) throw new Error('missing cipher or password');
    const [host, port] = splitHp(hp);
    const plugin = clashPlugin(p);
    return ssUri({ method, password, server: host, port, ...plugin, ...(label ? { label } : {}) });
  },
  vmess(p, hp, label) {
    const t = transport(p);
    const [host, port] = splitHp(hp);
    const json = {
      v: '2',
      ps: label ?? '',
      add: host.replace(/^\[|\]$/g, ''),
      port,
      id: str(p.uuid) ?? '',
      aid: str(p.alterId) ?? '0',
      scy: str(p.cipher) ?? 'auto',
      net: t.net,
      type: 'none',
      host: t.host ?? '',
      path: t.path ?? '',
      tls: p.tls === true ? 'tls' : '',
      sni: t.sni ?? '',
      alpn: t.alpn ?? '',
      ...(t.insecure ? { allowInsecure: true } : {}),
    };
    return `vmess://${Buffer.from(JSON.stringify(json)).toString('base64')}`;
  },
  vless(p, hp, label) {
    const t = transport(p);
    const reality = isObj(p['reality-opts']) ? p['reality-opts'] : undefined;
    const security = reality ? 'reality' : p.tls === true ? 'tls' : 'none';
    const q = query({
      encryption: 'none',
      security,
      sni: t.sni,
      alpn: t.alpn,
      fp: str(p['client-fingerprint']),
      pbk: reality ? str(reality['public-key']) : undefined,
      sid: reality ? str(reality['short-id']) : undefined,
      flow: str(p.flow),
      type: t.net,
      host: t.host,
      path: t.net === 'grpc' ? undefined : t.path,
      serviceName: t.net === 'grpc' ? t.path : undefined,
      allowInsecure: t.insecure ? '1' : undefined,
    });
    return `vless://${encodeURIComponent(str(p.uuid) ?? '')}@${hp}${q}${fragment(label)}`;
  },
  trojan(p, hp, label) {
    const t = transport(p);
    const q = query({
      security: 'tls',
      sni: t.sni,
      alpn: t.alpn,
      type: t.net,
      host: t.host,
      path: t.net === 'grpc' ? undefined : t.path,
      serviceName: t.net === 'grpc' ? t.path : undefined,
      allowInsecure: t.insecure ? '1' : undefined,
    });
    return `trojan://${encodeURIComponent(str(p.password) ?? '')}@${hp}${q}${fragment(label)}`;
  },
  socks5(p, hp, label) {
    if (p.tls === true) throw new Error('SOCKS5 over TLS not supported');
    return `socks5://${userinfo(p)}${hp}${fragment(label)}`;
  },
  http(p, hp, label) {
    return `${p.tls === true ? 'https' : 'http'}://${userinfo(p)}${hp}${fragment(label)}`;
  },
};

function splitHp(hp: string): [string, string] {
  const c = hp.lastIndexOf(':');
  return [hp.slice(0, c).replace(/^\[|\]$/g, ''), hp.slice(c + 1)];
}

/** Clash `plugin: obfs | v2ray-plugin` + `plugin-opts` → the SIP003 plugin and its options. */
function clashPlugin(p: Obj): { plugin?: string; pluginOpts?: string } {
  const name = str(p.plugin);
  if (!name) return {};
  const o = isObj(p['plugin-opts']) ? p['plugin-opts'] : {};
  if (name === 'obfs') {
    const opts = [`obfs=${str(o.mode) ?? 'http'}`, ...(str(o.host) ? [`obfs-host=${str(o.host)}`] : [])];
    return { plugin: 'obfs-local', pluginOpts: opts.join(';') };
  }
  if (name === 'v2ray-plugin') {
    const opts = [`mode=${str(o.mode) ?? 'websocket'}`];
    if (o.tls === true) opts.push('tls');
    if (str(o.host)) opts.push(`host=${str(o.host)}`);
    if (str(o.path)) opts.push(`path=${str(o.path)}`);
    if (o.mux === false) opts.push('mux=0');
    return { plugin: 'v2ray-plugin', pluginOpts: opts.join(';') };
  }
  throw new Error(`plugin '${name}' not supported`);
}
