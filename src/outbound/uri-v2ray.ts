// V2Ray-family node links, the forms providers hand out:
//   vmess://BASE64({"v":"2","ps":name,"add":host,"port":443,"id":uuid,"aid":0,"scy":"auto",
//                   "net":"tcp|ws","type":"none","host":wsHost,"path":"/ws","tls":"tls","sni":..,"alpn":..})   (v2rayN)
//   vless://uuid@host:port?type=ws&security=tls&sni=..&path=..&host=..&alpn=..#name
//   trojan://password@host:port?sni=..&type=ws&path=..&host=..&allowInsecure=1#name
// Extra query keys on all three (JSON keys on vmess): allowInsecure=1, ca=FILE (a PEM CA).
// Pure: no I/O. Errors name the problem, never the id or password.
import { decodeBase64, parseHostPort, pctDecode } from './uri-parts.js';

export interface TransportSpec {
  network: 'tcp' | 'ws';
  security: 'none' | 'tls';
  /** TLS server name (SNI, and the name the certificate must carry); default: the WebSocket Host, else the node's host name. */
  sni?: string;
  /** TLS ALPN protocols; default none for tcp, http/1.1 for ws. */
  alpn?: string[];
  /** Accept any certificate (only when the node's link says so). */
  allowInsecure?: boolean;
  /** PEM file with the CA certificate(s) to trust instead of the system's. */
  caFile?: string;
  /** WebSocket request path (default '/'). */
  path?: string;
  /** WebSocket Host header (default: the node's host). */
  host?: string;
}

export const VMESS_SECURITIES = ['aes-128-gcm', 'chacha20-poly1305', 'none'] as const;
export type VmessSecurity = (typeof VMESS_SECURITIES)[number];

interface V2rayNodeBase {
  name: string;
  host: string;
  port: number;
  transport: TransportSpec;
}

export interface VmessNodeSpec extends V2rayNodeBase {
  kind: 'vmess';
  /** User id (UUID, lower case). Secret. */
  id: string;
  security: VmessSecurity;
}

export interface VlessNodeSpec extends V2rayNodeBase {
  kind: 'vless';
  id: string;
}

export interface TrojanNodeSpec extends V2rayNodeBase {
  kind: 'trojan';
  password: string;
}

export type V2rayNodeSpec = VmessNodeSpec | VlessNodeSpec | TrojanNodeSpec;

type Fail = (problem: string) => never;

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

function uuid(text: string, fail: Fail): string {
  if (!UUID.test(text)) fail('the id is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)');
  const hex = text.replace(/-/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Transport settings from link parameters (query keys or v2rayN JSON keys, already strings). */
function transportOf(p: Map<string, string>, defaultSecurity: 'none' | 'tls', fail: Fail): TransportSpec {
  const net = (p.get('type') ?? p.get('net') ?? 'tcp').toLowerCase() || 'tcp';
  if (net !== 'tcp' && net !== 'ws') fail(`transport '${net}' is not supported; use tcp or ws`);
  const sec = (p.get('security') ?? p.get('tls') ?? defaultSecurity).toLowerCase() || 'none';
  if (sec !== 'tls' && sec !== 'none') fail(`security '${sec}' is not supported; use tls or none`);
  const header = p.get('headertype') ?? (net === 'tcp' ? p.get('vmess-type') : undefined);
  if (header && header !== 'none') fail(`tcp header type '${header}' (HTTP obfuscation) is not supported`);
  const flow = p.get('flow');
  if (flow) fail(`flow '${flow}' (XTLS) is not supported`);
  const t: TransportSpec = { network: net, security: sec };
  const sni = p.get('sni') || p.get('peer');
  if (sni) t.sni = sni;
  const alpn = p.get('alpn');
  if (alpn)
    t.alpn = alpn
      .split(',')
      .map((a) => a.trim())
      .filter((a) => a !== '');
  const insecure = p.get('allowinsecure') ?? p.get('insecure') ?? p.get('skip-cert-verify');
  if (insecure !== undefined && !['0', '1', 'true', 'false', ''].includes(insecure.toLowerCase()))
    fail(`allowInsecure must be 0 or 1, not '${insecure}'`);
  if (insecure === '1' || insecure?.toLowerCase() === 'true') t.allowInsecure = true;
  const ca = p.get('ca');
  if (ca) t.caFile = ca;
  if (net === 'ws') {
    const path = p.get('path');
    if (path) {
      if (!path.startsWith('/') || /[\x00-\x20\x7f]/.test(path))
        fail(`WebSocket path '${path.slice(0, 40)}' must start with '/' and have no spaces`);
      t.path = path;
    }
    const host = p.get('host');
    if (host) {
      if (/[\x00-\x20\x7f,]/.test(host)) fail('WebSocket host has spaces or commas');
      t.host = host;
    }
  }
  return t;
}

/** Splits `rest#tag` and `authority?query`; the query's keys are lower-cased. */
function splitLink(rest: string, fail: Fail): { authority: string; params: Map<string, string>; tag?: string } {
  let tag: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    tag = pctDecode(rest.slice(hash + 1), 'the #tag', fail).trim() || undefined;
    rest = rest.slice(0, hash);
  }
  const params = new Map<string, string>();
  const q = rest.indexOf('?');
  if (q >= 0) {
    for (const part of rest.slice(q + 1).split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const key = pctDecode(eq >= 0 ? part.slice(0, eq) : part, 'the query', fail).toLowerCase();
      params.set(
        key,
        pctDecode((eq >= 0 ? part.slice(eq + 1) : '').replace(/\+/g, '%20'), `the query parameter '${key}'`, fail),
      );
    }
    rest = rest.slice(0, q);
  }
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  if (rest.includes('/')) fail('a proxy node URI has no path (use the path= parameter for WebSocket)');
  return { authority: rest, params, ...(tag ? { tag } : {}) };
}

function defaultName(kind: string, host: string, port: number): string {
  return `${kind}-${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** vless://uuid@host:port?… and trojan://password@host:port?… */
function parseUserLink(
  kind: 'vless' | 'trojan',
  rest: string,
  name: string | undefined,
  fail: Fail,
): VlessNodeSpec | TrojanNodeSpec {
  const { authority, params, tag } = splitLink(rest, fail);
  const at = authority.lastIndexOf('@');
  if (at < 0)
    fail(
      kind === 'vless' ? 'missing the id: vless://UUID@host:port' : 'missing the password: trojan://PASSWORD@host:port',
    );
  const user = pctDecode(authority.slice(0, at), kind === 'vless' ? 'the id' : 'the password', fail);
  const { host, port } = parseHostPort(authority.slice(at + 1), fail);
  const transport = transportOf(params, kind === 'trojan' ? 'tls' : 'none', fail);
  if (kind === 'vless') {
    const enc = params.get('encryption');
    if (enc && enc !== 'none') fail(`VLESS encryption '${enc}' is not supported (only none)`);
  }
  const base = { name: name ?? tag ?? defaultName(kind, host, port), host, port, transport };
  if (kind === 'vless') return { kind, ...base, id: uuid(user, fail) };
  if (user === '') fail('empty password');
  return { kind, ...base, password: user };
}

/** v2rayN's vmess://BASE64(JSON). */
function parseVmessLink(rest: string, name: string | undefined, fail: Fail): VmessNodeSpec {
  const hash = rest.indexOf('#');
  const body = pctDecode(hash >= 0 ? rest.slice(0, hash) : rest, 'the base64 part', fail).replace(/\/$/, '');
  const text = decodeBase64(body);
  if (text === undefined) fail('expected vmess://BASE64(JSON) (the v2rayN form)');
  let json: unknown;
  try {
    json = JSON.parse(text!);
  } catch {
    fail('the base64 part is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('the base64 part is not a JSON object');
  const params = new Map<string, string>();
  for (const [k, v] of Object.entries(json as Record<string, unknown>)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      params.set(k.toLowerCase(), String(v));
  }
  // In v2rayN JSON, "type" is the tcp header type (or the kcp/quic header): not the network.
  const net = params.get('net');
  const tcpHeader = params.get('type');
  params.delete('type');
  if (net !== undefined) params.set('net', net);
  if (tcpHeader !== undefined) params.set('vmess-type', tcpHeader);
  const add = params.get('add') ?? fail('missing "add" (the server address)');
  const portText = params.get('port') ?? fail('missing "port"');
  const { host, port } = parseHostPort(
    `${add.includes(':') && !add.startsWith('[') ? `[${add}]` : add}:${portText}`,
    fail,
  );
  const id = uuid(params.get('id') ?? fail('missing "id"'), fail);
  const aid = params.get('aid') ?? '0';
  if (!/^\d+$/.test(aid)) fail(`"aid" must be a number, not '${aid.slice(0, 20)}'`);
  const scy = (params.get('scy') || 'auto').toLowerCase();
  // "auto" means AES-128-GCM on x86-64 and ARM64 with AES instructions (v2ray's own choice).
  const security = scy === 'auto' ? 'aes-128-gcm' : scy;
  if (!(VMESS_SECURITIES as readonly string[]).includes(security)) {
    fail(
      scy === 'zero'
        ? 'security "zero" (no chunk framing) is not supported'
        : `unknown security '${scy}'; use auto, aes-128-gcm, chacha20-poly1305 or none`,
    );
  }
  const tag = hash >= 0 ? pctDecode(rest.slice(hash + 1), 'the #tag', fail).trim() : '';
  const ps = params.get('ps')?.trim();
  const transport = transportOf(params, 'none', fail);
  return {
    kind: 'vmess',
    name: name ?? (tag || ps || defaultName('vmess', host, port)),
    host,
    port,
    id,
    security: security as VmessSecurity,
    transport,
  };
}

/** Parses vmess://, vless:// and trojan:// links (`rest` is what follows '://'). */
export function parseV2rayUri(
  scheme: 'vmess' | 'vless' | 'trojan',
  rest: string,
  name: string | undefined,
  fail: Fail,
): V2rayNodeSpec {
  if (scheme === 'vmess') return parseVmessLink(rest, name, fail);
  return parseUserLink(scheme, rest, name, fail);
}

/** The link with its id/password replaced, for logs: never throws. */
export function redactV2rayUri(scheme: string, rest: string): string {
  if (scheme.toLowerCase() === 'vmess') {
    const hash = rest.indexOf('#');
    const text = decodeBase64(safeDecode(hash >= 0 ? rest.slice(0, hash) : rest).replace(/\/$/, ''));
    let where = '';
    try {
      const j = JSON.parse(text ?? '') as Record<string, unknown>;
      if (typeof j.add === 'string' && (typeof j.port === 'string' || typeof j.port === 'number'))
        where = `@${j.add}:${j.port}`;
    } catch {
      // not JSON: show nothing of it
    }
    return `${scheme}://***${where}${hash >= 0 ? rest.slice(hash) : ''}`;
  }
  // The last '@' anywhere: a '#' or '@' in an unencoded password must not show it.
  const at = rest.lastIndexOf('@');
  return at < 0 ? `${scheme}://***` : `${scheme}://***${rest.slice(at)}`;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
