// Upstream proxy nodes written as URIs, the way users copy them from their provider:
//   socks5://[user:pass@]host:port   socks5h://… (same: the domain is sent when one is known)
//   http://[user:pass@]host:port     (HTTP CONNECT)
//   ss://BASE64(method:password)@host:port[/][?plugin=NAME;OPTS]#tag  SIP002 (+ SIP003 plugin)
//   ss://method:password@host:port#tag                              SIP002 plain userinfo (AEAD-2022 form)
//   ss://BASE64(method:password@host:port)#tag                      legacy
//   vmess://…  vless://…  trojan://…                                 see uri-v2ray.ts
// Pure: no I/O. Errors are UsageErrors naming the problem, never the password.
import { UsageError } from '../errors.js';
import { decodeBase64, parseHostPort, pctDecode } from './uri-parts.js';
import {
  parseV2rayUri,
  redactV2rayUri,
  type TrojanNodeSpec,
  type V2rayNodeSpec,
  type VlessNodeSpec,
  type VmessNodeSpec,
} from './uri-v2ray.js';

export type { TrojanNodeSpec, VlessNodeSpec, VmessNodeSpec };

/** Shadowsocks AEAD ciphers this build implements. */
export const SS_METHODS = ['aes-128-gcm', 'aes-256-gcm', 'chacha20-ietf-poly1305'] as const;
export type SsMethod = (typeof SS_METHODS)[number];

interface NodeBase {
  /** Name for logs and routing rules: the `name` argument, else the URI's #tag, else kind-host:port. */
  name: string;
  /** Host name or IP address of the node (IPv6 without brackets). */
  host: string;
  port: number;
}

export interface Socks5NodeSpec extends NodeBase {
  kind: 'socks5';
  /** RFC 1929 credentials (1..255 bytes each when present). */
  username?: string;
  password?: string;
}

export interface HttpNodeSpec extends NodeBase {
  kind: 'http';
  username?: string;
  password?: string;
}

/** SIP003 plugins this build runs (link names → the plugin; see sip003.ts). */
export const SS_PLUGINS = {
  'v2ray-plugin': 'v2ray-plugin',
  'ss-v2ray-plugin': 'v2ray-plugin',
  'obfs-local': 'obfs-local',
  'simple-obfs': 'obfs-local',
} as const;
export type SsPluginName = (typeof SS_PLUGINS)[keyof typeof SS_PLUGINS];

export interface ShadowsocksNodeSpec extends NodeBase {
  kind: 'shadowsocks';
  method: SsMethod;
  password: string;
  /** SIP003 plugin run beside the node's stream, with its options (`mode=websocket;tls;host=x`). */
  plugin?: { name: SsPluginName; opts: string };
}

export type NodeSpec = Socks5NodeSpec | HttpNodeSpec | ShadowsocksNodeSpec | V2rayNodeSpec;

const SCHEMES = {
  socks5: 'socks5',
  socks5h: 'socks5',
  http: 'http',
  ss: 'shadowsocks',
  vmess: 'vmess',
  vless: 'vless',
  trojan: 'trojan',
} as const satisfies Record<string, NodeSpec['kind']>;

/** The URI schemes parseNodeUri takes. */
export const NODE_SCHEMES = Object.keys(SCHEMES) as (keyof typeof SCHEMES)[];

/** Parse a node URI. `name` overrides the URI's #tag. Throws UsageError. */
export function parseNodeUri(uri: string, name?: string): NodeSpec {
  const shown = redactUri(uri);
  const fail = (problem: string): never => {
    throw new UsageError(`proxy node ${shown}: ${problem}`);
  };
  const { kind, rest } = schemeOf(uri, fail);
  if (kind === 'vmess' || kind === 'vless' || kind === 'trojan') return parseV2rayUri(kind, rest, name, fail);
  const { tag, authority, plugin } = uriParts(kind, rest, fail);
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  const hostport = at >= 0 ? authority.slice(at + 1) : authority;
  if (kind === 'shadowsocks' && userinfo === undefined)
    return withPlugin(legacySsSpec(authority, name ?? tag, fail), plugin);
  const { host, port } = parseHostPort(hostport, fail);
  if (kind === 'shadowsocks') {
    const creds = ssCredentials(userinfo!, fail);
    return withPlugin(ssSpec(creds.user, creds.pass, host, port, name ?? tag, fail), plugin);
  }
  return userNodeSpec(kind, userinfo, { name: name ?? tag ?? defaultName(kind, host, port), host, port }, fail);
}

type Fail = (problem: string) => never;

/** The node kind of a URI's scheme, and what follows `scheme://`. */
function schemeOf(uri: string, fail: Fail): { kind: NodeSpec['kind']; rest: string } {
  if (typeof uri !== 'string' || uri.trim() === '')
    fail('empty URI; expected e.g. socks5://host:1080, http://host:3128 or ss://…');
  const text = uri.trim();
  if (/[\x00-\x20\x7f]/.test(text)) fail('URI contains spaces or control characters');
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(text);
  if (!m) fail(`not a URI; expected scheme://host:port (${NODE_SCHEMES.join(', ')})`);
  const scheme = m![1]!.toLowerCase();
  if (!Object.hasOwn(SCHEMES, scheme)) {
    fail(
      scheme === 'https'
        ? 'https:// proxies (TLS to the proxy) are not supported; use http://, socks5:// or ss://'
        : `unsupported scheme '${scheme}'; use ${NODE_SCHEMES.join(', ')}`,
    );
  }
  return { kind: SCHEMES[scheme as keyof typeof SCHEMES], rest: m![2]! };
}

/** `AUTHORITY[/][?QUERY][#TAG]`: the tag, the authority, and the SIP003 plugin of the query (ss only). */
function uriParts(
  kind: NodeSpec['kind'],
  text: string,
  fail: Fail,
): { tag: string | undefined; authority: string; plugin: ShadowsocksNodeSpec['plugin'] } {
  let rest = text;
  let tag: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    tag = pctDecode(rest.slice(hash + 1), 'the #tag', fail).trim() || undefined;
    rest = rest.slice(0, hash);
  }
  let query: string | undefined;
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  // Path: only an empty one or '/' makes sense for a proxy node.
  // (The legacy ss form has no '@' and its base64 may hold '/': no path there.)
  let authority = rest;
  const legacySs = kind === 'shadowsocks' && !rest.includes('@');
  const slash = legacySs ? -1 : rest.indexOf('/', rest.lastIndexOf('@') + 1);
  if (slash >= 0) {
    if (rest.slice(slash) !== '/') fail('a proxy node URI has no path');
    authority = rest.slice(0, slash);
  }
  let plugin: ShadowsocksNodeSpec['plugin'];
  if (query !== undefined && query !== '') {
    if (kind !== 'shadowsocks') fail('a proxy node URI has no query string');
    for (const part of query.split('&')) {
      const eq = part.indexOf('=');
      const key = pctDecode(eq >= 0 ? part.slice(0, eq) : part, 'the query', fail);
      if (key === 'plugin')
        plugin = parsePlugin(pctDecode(eq >= 0 ? part.slice(eq + 1) : '', 'the plugin', fail), fail);
      else if (key !== '') fail(`unknown query parameter '${key}'`);
    }
  }
  return { tag, authority, plugin };
}

/** Legacy ss: the whole authority is BASE64(method:password@host:port). */
function legacySsSpec(authority: string, name: string | undefined, fail: Fail): ShadowsocksNodeSpec {
  const b64 = pctDecode(authority, 'the base64 part', fail);
  const decoded = decodeBase64(b64) ?? (b64.endsWith('/') ? decodeBase64(b64.slice(0, -1)) : undefined);
  if (decoded === undefined)
    fail('expected ss://BASE64(method:password)@host:port or ss://BASE64(method:password@host:port)');
  const legacyAt = decoded!.lastIndexOf('@');
  if (legacyAt < 0) fail('the base64 part does not decode to method:password@host:port');
  const creds = splitCredentials(decoded!.slice(0, legacyAt), fail);
  const { host, port } = parseHostPort(decoded!.slice(legacyAt + 1), fail);
  return ssSpec(creds.user, creds.pass, host, port, name, fail);
}

/** SIP002 userinfo: method:password (percent-encoded; required for AEAD-2022) or base64 of it. */
function ssCredentials(raw: string, fail: Fail): { user: string; pass: string } {
  if (raw.includes(':') || /%3a/i.test(raw)) {
    const c = raw.indexOf(':');
    if (c < 0) fail('userinfo must be method:password');
    return {
      user: pctDecode(raw.slice(0, c), 'the method', fail),
      pass: pctDecode(raw.slice(c + 1), 'the password', fail),
    };
  }
  const decoded = decodeBase64(pctDecode(raw, 'the userinfo', fail));
  if (decoded === undefined) fail('userinfo is neither method:password nor base64 of it');
  return splitCredentials(decoded!, fail);
}

/** A SOCKS5 or HTTP node, with `user[:password]` credentials when the URI has them. */
function userNodeSpec(
  kind: 'socks5' | 'http',
  userinfo: string | undefined,
  base: NodeBase,
  fail: Fail,
): Socks5NodeSpec | HttpNodeSpec {
  const spec = { kind, ...base } as Socks5NodeSpec | HttpNodeSpec;
  if (userinfo !== undefined) {
    const c = userinfo.indexOf(':');
    const username = pctDecode(c >= 0 ? userinfo.slice(0, c) : userinfo, 'the user name', fail);
    const password = c >= 0 ? pctDecode(userinfo.slice(c + 1), 'the password', fail) : '';
    if (username === '') fail('empty user name');
    if (kind === 'socks5') {
      if (Buffer.byteLength(username) > 255) fail('SOCKS5 user name longer than 255 bytes');
      if (Buffer.byteLength(password) > 255) fail('SOCKS5 password longer than 255 bytes');
    } else if (username.includes(':')) {
      fail("the user name of HTTP Basic authentication cannot contain ':'");
    }
    spec.username = username;
    spec.password = password;
  }
  return spec;
}

function withPlugin(spec: ShadowsocksNodeSpec, plugin: ShadowsocksNodeSpec['plugin']): ShadowsocksNodeSpec {
  return plugin ? { ...spec, plugin } : spec;
}

/** SIP002 `plugin=NAME;OPTS` (percent-decoded already). Only known plugins: a link never names a program to run. */
function parsePlugin(value: string, fail: (p: string) => never): ShadowsocksNodeSpec['plugin'] {
  const semi = value.indexOf(';');
  const given = (semi >= 0 ? value.slice(0, semi) : value).trim();
  const opts = semi >= 0 ? value.slice(semi + 1) : '';
  if (given === '') return undefined;
  const name = (SS_PLUGINS as Record<string, SsPluginName>)[given];
  if (!name) fail(`SIP003 plugin '${given.slice(0, 40)}' is not supported; supported: v2ray-plugin, obfs-local`);
  if (/[\x00-\x1f\x7f]/.test(opts) || opts.length > 1024)
    fail('the plugin options hold control characters or are longer than 1024 characters');
  return { name: name!, opts };
}

function ssSpec(
  method: string,
  password: string,
  host: string,
  port: number,
  name: string | undefined,
  fail: (p: string) => never,
): ShadowsocksNodeSpec {
  const lower = method.toLowerCase();
  if (!(SS_METHODS as readonly string[]).includes(lower)) {
    if (lower.startsWith('2022-blake3-'))
      fail(`method '${method}' (Shadowsocks 2022, SIP022) is not supported yet; use ${SS_METHODS.join(', ')}`);
    if (lower === 'chacha20-poly1305') fail(`unknown method '${method}'; did you mean chacha20-ietf-poly1305?`);
    if (/-(cfb|ctr|ofb)$|^rc4|^chacha20(-ietf)?$|^salsa20|^bf-|^camellia|^none$|^plain$|^table$/.test(lower)) {
      fail(
        `method '${method}' is a stream cipher (insecure, deprecated); use an AEAD method: ${SS_METHODS.join(', ')}`,
      );
    }
    fail(`unknown method '${method}'; supported: ${SS_METHODS.join(', ')}`);
  }
  if (password === '') fail('empty password');
  return {
    kind: 'shadowsocks',
    name: name ?? defaultName('shadowsocks', host, port),
    host,
    port,
    method: lower as SsMethod,
    password,
  };
}

function splitCredentials(text: string, fail: (p: string) => never): { user: string; pass: string } {
  const c = text.indexOf(':');
  if (c <= 0) fail('credentials must be method:password');
  return { user: text.slice(0, c), pass: text.slice(c + 1) };
}

function defaultName(kind: 'socks5' | 'http' | 'shadowsocks', host: string, port: number): string {
  return `${kind}-${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The URI with its secrets replaced, for logs and error messages: `socks5://user:***@host:1080`,
 * `ss://aes-256-gcm:***@host:8388#tag`. Never throws, whatever the input.
 */
export function redactUri(uri: string): string {
  if (typeof uri !== 'string') return '<not a string>';
  const text = uri.trim();
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(text);
  if (!m) return '<not a URI>';
  const scheme = m[1]!;
  let rest = m[2]!;
  if (/^(vmess|vless|trojan)$/i.test(scheme)) return clip(redactV2rayUri(scheme, rest));
  let fragment = '';
  // A '#' before the last '@' is part of the userinfo (an unencoded '#' in a password), not
  // the start of the tag: showing it as the tag would show the password.
  const hash = rest.indexOf('#', rest.lastIndexOf('@') + 1);
  if (hash >= 0) {
    fragment = rest.slice(hash);
    rest = rest.slice(0, hash);
  }
  const at = rest.lastIndexOf('@');
  if (at < 0) {
    if (scheme.toLowerCase() === 'ss') {
      // Legacy whole-base64 form: show where it goes, not what it holds.
      const decoded = decodeBase64(safeDecode(rest));
      const dAt = decoded?.lastIndexOf('@') ?? -1;
      if (decoded && dAt >= 0) {
        const method = decoded.slice(0, Math.max(0, decoded.indexOf(':')));
        return clip(`${scheme}://${method ? `${method}:` : ''}***@${decoded.slice(dAt + 1)}${fragment}`);
      }
      return clip(`${scheme}://***${fragment}`);
    }
    return clip(text);
  }
  const userinfo = rest.slice(0, at);
  const after = rest.slice(at + 1);
  let shown: string;
  if (scheme.toLowerCase() === 'ss') {
    const plain = userinfo.includes(':') ? userinfo : decodeBase64(safeDecode(userinfo));
    const c = plain?.indexOf(':') ?? -1;
    shown = plain && c > 0 ? `${plain.slice(0, c)}:***` : '***';
  } else {
    const c = userinfo.indexOf(':');
    shown = c >= 0 ? `${userinfo.slice(0, c)}:***` : userinfo;
  }
  return clip(`${scheme}://${shown}@${after}${fragment}`);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function clip(text: string): string {
  const printable = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return printable.length > 200 ? `${printable.slice(0, 200)}…` : printable;
}
