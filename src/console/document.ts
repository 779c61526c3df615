// The config file as the console edits it: a YAML Document (comments and layout kept),
// changed by small edits, validated by the very parser `--config` uses, written atomically.
import { chownSync, closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { isCollection, isMap, isNode, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError, parseConfigText, type ConfigFile, type ParseOptions } from '../config/file.js';
import { UsageError } from '../errors.js';
import { parseNodeUri, redactUri } from '../outbound/uri.js';
import { labelFromUri, nodeType } from './links.js';
import { DEFAULT_PROBE_URL } from '../outbound/group.js';

/** One problem, named by the console form field it belongs to ('' for none). */
export interface FieldError {
  field: string;
  message: string;
}

/** A change the console refuses: HTTP 400 `{ errors }`. */
export class ValidationError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join('; '));
  }
}

export function invalid(field: string, message: string): ValidationError {
  return new ValidationError([{ field, message }]);
}

/** Config path prefix → console field. The first match wins; rules keep their own path. */
export type FieldMap = readonly (readonly [string, string])[];

export const SETTINGS_FIELDS: FieldMap = [
  ['enabled', 'enabled'],
  ['mode', 'mode'],
  ['in-interfaces', 'lan.interfaces'],
  ['source-cidrs', 'lan.sources'],
  ['capture', 'lan.interfaces'],
  ['default-udp', 'udpNode'],
  ['default', 'tcpNode'],
  ['check-targets', 'checkTargets'],
  ['udp', 'udp'],
  ['console.test-url', 'testUrl'],
];

export const DNS_FIELDS: FieldMap = [
  ['dns.nameservers', 'dns.nameservers'],
  ['dns.cache', 'dns.cache'],
  ['dns.fake-ip', 'dns.fakeIp'],
  ['dns', 'dns.nameservers'],
];

/** Flag names in run-config / routing messages → config paths. */
const FLAG_PATHS: [RegExp, string][] = [
  [/^--in-interface/, 'in-interfaces'],
  [/^--source-cidr/, 'source-cidrs'],
  [/^--udp\b/, 'udp'],
  [/^--(mode|preserve-source)\b/, 'mode'],
  [/^default-udp:/, 'default-udp'],
  [/^default:/, 'default'],
  [/^dns\./, 'dns'],
  [/^node '([^']+)'/, 'nodes'],
  [/^nodes\.([^.]+)\.fallback/, 'nodes'],
  [/^rules\[(\d+)\]/, 'rules'],
];

function matches(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
}

/** The console field for a config path, e.g. `rules[2].cidr[0]` → `rules[2].cidr`. */
export function fieldOf(path: string, map: FieldMap): string {
  const rule = /^(rules\[\d+\](?:\.[a-z-]+)?)/.exec(path);
  if (rule) return rule[1]!;
  if (path === 'rules') return 'rules';
  for (const [prefix, field] of map) if (matches(path, prefix)) return field;
  return '';
}

/** A message for the user: the `FILE:LINE:COL: path:` prefix is noise in a form. */
function issueErrors(e: ConfigError, map: FieldMap): FieldError[] {
  return e.issues.map((i) => ({
    field: fieldOf(i.path, map),
    message: i.path && !fieldOf(i.path, map) ? `${i.path}: ${i.message}` : i.message,
  }));
}

/** A run-config UsageError (names a flag or key) → a field error. */
export function usageErrors(e: UsageError, map: FieldMap): FieldError[] {
  for (const [re, path] of FLAG_PATHS) {
    const m = re.exec(e.message);
    if (m) {
      const p = path === 'rules' ? `rules[${m[1]}]` : path;
      return [{ field: fieldOf(p, map), message: e.message }];
    }
  }
  return [{ field: '', message: e.message }];
}

export function parseDoc(text: string): Document {
  return parseDocument(text, { keepSourceTokens: false });
}

const RENDER = { flowCollectionPadding: false } as const;
/** Above this many line pairs the original lines are not matched up (the edit is written as rendered). */
const MAX_LINE_PAIRS = 4_000_000;

/**
 * The edited document as text in which every line the edit did not touch is byte-identical to
 * `original` (the yaml printer alone would re-space comments and flow lists everywhere). The
 * unedited and the edited document are rendered alike and matched line by line; a line whose
 * rendering did not change is taken from `original`. If that text would not read back as the
 * edited document (e.g. the file's indentation differs from the printer's), the rendering is used.
 */
export function renderKeepingLines(original: string, edited: Document): string {
  const rendered = edited.toString(RENDER);
  const before = parseDoc(original);
  if (before.errors.length > 0) return rendered;
  const origLines = original.split('\n');
  const normLines = before.toString(RENDER).split('\n');
  const newLines = rendered.split('\n');
  if (normLines.length !== origLines.length || normLines.length * newLines.length > MAX_LINE_PAIRS) return rendered;
  const kept = matchLines(normLines, newLines);
  const merged = newLines.map((line, j) => (kept[j] === undefined ? line : origLines[kept[j]]!)).join('\n');
  return JSON.stringify(parseDoc(merged).toJS()) === JSON.stringify(edited.toJS()) ? merged : rendered;
}

/** For each line of `b`, the index of the same line of `a` in a longest common subsequence (or undefined). */
function matchLines(a: string[], b: string[]): (number | undefined)[] {
  const n = a.length;
  const m = b.length;
  const len = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      len[i * (m + 1) + j] =
        a[i] === b[j]
          ? len[(i + 1) * (m + 1) + j + 1]! + 1
          : Math.max(len[(i + 1) * (m + 1) + j]!, len[i * (m + 1) + j + 1]!);
    }
  }
  const out: (number | undefined)[] = new Array(m).fill(undefined);
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) out[j++] = i++;
    else if (len[(i + 1) * (m + 1) + j]! >= len[i * (m + 1) + j + 1]!) i++;
    else j++;
  }
  return out;
}

/**
 * Validate edited document text exactly as `--config` would. Throws ValidationError with
 * the problems mapped to console fields.
 */
export function validateText(text: string, path: string, map: FieldMap, opts: ParseOptions = {}): ConfigFile {
  try {
    return parseConfigText(text, path, opts);
  } catch (e) {
    if (e instanceof ConfigError) throw new ValidationError(issueErrors(e, map));
    if (e instanceof UsageError) throw new ValidationError(usageErrors(e, map));
    throw e;
  }
}

/** Write `text` to `path` via a temporary file and rename: readers see the old or the new file. */
export function writeFileAtomic(path: string, text: string): void {
  stageFile(path, text).commit();
}

/** A written, synced temporary file next to its target: `commit` renames it over, `discard` removes it. */
export interface StagedFile {
  commit(): void;
  discard(): void;
}

/**
 * Writes `text` beside `path` without replacing it yet, so a change can learn that the file
 * cannot be saved (read-only directory, EROFS/EACCES) before it is applied.
 */
export function stageFile(path: string, text: string): StagedFile {
  let mode = 0o600;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = statSync(path);
    mode = st.mode & 0o7777;
    owner = { uid: st.uid, gid: st.gid };
  } catch {
    // a new file: private by default (it holds node passwords and the console's hash)
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
    if (owner && process.getuid?.() === 0) chownSync(tmp, owner.uid, owner.gid);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  } finally {
    try {
      closeSync(fd);
    } catch {
      // closed above
    }
  }
  const discard = (): void => {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  };
  return {
    commit: () => {
      try {
        renameSync(tmp, path);
      } catch (e) {
        discard();
        throw e;
      }
    },
    discard,
  };
}

// ---------------------------------------------------------------------------------------
// Edits

/** Set a key (creating the mappings on the way); undefined deletes it. */
export function setIn(doc: Document, path: (string | number)[], value: unknown): void {
  if (value === undefined) return void doc.deleteIn(path);
  const old = doc.getIn(path, true);
  if (isNode(old) && reconcile(doc, old, value)) return;
  doc.setIn(path, replacement(doc, old, value));
}

/** A new node for `value`; a list written inline (`[a, b]`) stays inline, and a comment on the value stays. */
function replacement(doc: Document, old: unknown, value: unknown): unknown {
  const node = doc.createNode(value);
  if (isCollection(old) && isCollection(node) && old.flow) node.flow = true;
  if (isNode(old) && old.comment) node.comment = old.comment;
  return node;
}

/**
 * Edits `old` in place into `value` where their shapes agree (a list item by item, a mapping
 * key by key), so untouched items keep their style and comments. False: replace the node.
 */
function reconcile(doc: Document, old: Node, value: unknown): boolean {
  if (JSON.stringify(old.toJS(doc)) === JSON.stringify(value)) return true;
  if (isSeq(old) && Array.isArray(value)) {
    value.forEach((v, i) => {
      const item = old.items[i];
      if (!isNode(item) || !reconcile(doc, item, v)) old.items[i] = replacement(doc, item, v);
    });
    old.items.length = value.length;
    return true;
  }
  if (isMap(old) && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const pair of [...old.items]) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (!(key in obj) || obj[key] === undefined) old.delete(pair.key);
    }
    for (const [k, v] of Object.entries(obj)) {
      if (v === undefined) continue;
      const cur = old.get(k, true);
      if (!isNode(cur) || !reconcile(doc, cur, v)) old.set(k, replacement(doc, cur, v));
    }
    return true;
  }
  return false;
}

/** Node names in file order. */
export function nodeNames(doc: Document): string[] {
  const nodes = doc.get('nodes', true);
  if (!isMap(nodes)) return [];
  return nodes.items.map((p) => String(isScalar(p.key) ? p.key.value : p.key));
}

/** The URI of node `name` as written (a string node or a mapping's uri). */
export function nodeUri(doc: Document, name: string): string | undefined {
  const v = doc.getIn(['nodes', name]);
  if (typeof v === 'string') return v;
  const uri = doc.getIn(['nodes', name, 'uri']);
  return typeof uri === 'string' ? uri : undefined;
}

/**
 * A link edited from its redacted form: `***` where the password was keeps the stored
 * password, whatever else changed (host, port, user, tag). Other links are returned as given.
 */
export function keepRedactedSecret(uri: string, old: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(uri);
  if (!m) return uri;
  const [, scheme, rest] = m as unknown as [string, string, string];
  const at = rest.lastIndexOf('@');
  if (at < 0) return uri;
  const ss = scheme.toLowerCase() === 'ss';
  let userinfo = rest.slice(0, at);
  if (ss && !userinfo.includes(':')) userinfo = Buffer.from(userinfo, 'base64url').toString('utf8');
  const c = userinfo.indexOf(':');
  if (c < 0 || userinfo.slice(c + 1) !== '***') return uri;
  let password: string | undefined;
  try {
    const spec = parseNodeUri(old);
    password = 'password' in spec && typeof spec.password === 'string' ? spec.password : undefined;
  } catch {
    return uri; // nothing to keep: the stored link does not parse
  }
  if (!password) return uri;
  const user = userinfo.slice(0, c);
  let method = user;
  try {
    method = decodeURIComponent(user);
  } catch {
    // kept as typed: the parser names the problem
  }
  const kept = ss
    ? Buffer.from(`${method}:${password}`).toString('base64url')
    : `${user}:${encodeURIComponent(password)}`;
  return `${scheme}://${kept}${rest.slice(at)}`;
}

export function setNodeUri(doc: Document, name: string, uri: string): void {
  if (isMap(doc.getIn(['nodes', name], true))) doc.setIn(['nodes', name, 'uri'], uri);
  else doc.setIn(['nodes', name], uri);
}

/** The node's label as written in the file, if any. */
export function nodeLabel(doc: Document, name: string): string | undefined {
  const v = doc.getIn(['nodes', name, 'label']);
  return typeof v === 'string' && v.trim() ? v : undefined;
}

/**
 * Write a node's link and label: a plain `name: uri` when there is no label worth keeping
 * (none, or the key itself), else `{ uri, label }`; a mapping keeps its other settings.
 */
export function writeNode(doc: Document, name: string, uri: string, label: string | undefined): void {
  const keep = label !== undefined && label !== name ? label : undefined;
  if (isMap(doc.getIn(['nodes', name], true))) {
    doc.setIn(['nodes', name, 'uri'], uri);
    if (keep === undefined) doc.deleteIn(['nodes', name, 'label']);
    else doc.setIn(['nodes', name, 'label'], keep);
  } else {
    doc.setIn(['nodes', name], keep === undefined ? uri : doc.createNode({ uri, label: keep }));
  }
}

/** Rename a node in place (its position in the file kept) and everywhere it is named. */
export function renameNode(doc: Document, from: string, to: string): void {
  const nodes = doc.get('nodes', true);
  if (!isMap(nodes)) return;
  const pair = nodes.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === from);
  if (!pair) return;
  pair.key = doc.createNode(to);
  for (const key of ['default', 'default-udp']) if (doc.get(key) === from) doc.set(key, to);
  if (doc.getIn(['dns', 'via']) === from) doc.setIn(['dns', 'via'], to);
  const rules = doc.toJS().rules as unknown;
  if (Array.isArray(rules))
    rules.forEach((r: { outbound?: unknown }, i) => {
      if (r?.outbound === from) doc.setIn(['rules', i, 'outbound'], to);
    });
  for (const n of nodeNames(doc))
    if (doc.getIn(['nodes', n, 'fallback']) === from) doc.setIn(['nodes', n, 'fallback'], to);
  const subs = subscriptionsOf(doc);
  subs.forEach((s, i) => {
    const j = s.nodes.indexOf(from);
    if (j >= 0) doc.setIn(['console', 'subscriptions', i, 'nodes', j], to);
    const k = s.kept?.indexOf(from) ?? -1;
    if (k >= 0) doc.setIn(['console', 'subscriptions', i, 'kept', k], to);
  });
}

/** What refers to a node: ["tcpNode", "rules[2]", …]; empty when it can go. */
export function nodeUsers(doc: Document, name: string): string[] {
  const out: string[] = [];
  if (doc.get('default') === name) out.push('tcpNode (default)');
  if (doc.get('default-udp') === name) out.push('udpNode (default-udp)');
  if (doc.getIn(['dns', 'via']) === name) out.push('dns.via');
  const rules = doc.toJS().rules as unknown;
  if (Array.isArray(rules))
    rules.forEach((r: { outbound?: unknown }, i) => {
      if (r?.outbound === name) out.push(`rules[${i}]`);
    });
  for (const n of nodeNames(doc))
    if (n !== name && doc.getIn(['nodes', n, 'fallback']) === name) out.push(`nodes.${n}.fallback`);
  return out;
}

export function deleteNode(doc: Document, name: string): void {
  doc.deleteIn(['nodes', name]);
  subscriptionsOf(doc).forEach((s, i) => {
    const j = s.nodes.indexOf(name);
    if (j >= 0) doc.deleteIn(['console', 'subscriptions', i, 'nodes', j]);
    const k = s.kept?.indexOf(name) ?? -1;
    if (k >= 0) doc.deleteIn(['console', 'subscriptions', i, 'kept', k]);
  });
}

export interface DocSubscription {
  url: string;
  nodes: string[];
  /** Nodes the provider dropped but kept because they are in use. */
  kept?: string[];
  /** As written (e.g. "12h", "off"). */
  interval?: string;
  userAgent?: string;
  updatedAt: string | null;
  result?: string;
  error?: string;
}

export function subscriptionsOf(doc: Document): DocSubscription[] {
  const raw = doc.getIn(['console', 'subscriptions']) as unknown;
  const list =
    raw === undefined || raw === null
      ? []
      : (doc.toJS() as { console?: { subscriptions?: unknown } }).console?.subscriptions;
  const items = Array.isArray(list) ? list : list ? [list] : [];
  return items.map((s: Record<string, unknown>) => ({
    url: String(s?.url ?? ''),
    nodes: Array.isArray(s?.nodes) ? s.nodes.map(String) : s?.nodes ? [String(s.nodes)] : [],
    ...(Array.isArray(s?.kept) && s.kept.length
      ? { kept: s.kept.map(String) }
      : typeof s?.kept === 'string'
        ? { kept: [s.kept] }
        : {}),
    ...(s?.interval !== undefined && s.interval !== null ? { interval: String(s.interval) } : {}),
    ...(typeof s?.['user-agent'] === 'string' ? { userAgent: s['user-agent'] } : {}),
    updatedAt: typeof s?.['updated-at'] === 'string' ? s['updated-at'] : null,
    ...(typeof s?.result === 'string' ? { result: s.result } : {}),
    ...(typeof s?.error === 'string' ? { error: s.error } : {}),
  }));
}

export function setSubscriptions(doc: Document, subs: DocSubscription[]): void {
  const value = subs.map((s) => ({
    url: s.url,
    nodes: s.nodes,
    ...(s.kept?.length ? { kept: s.kept } : {}),
    ...(s.interval !== undefined ? { interval: s.interval } : {}),
    ...(s.userAgent !== undefined ? { 'user-agent': s.userAgent } : {}),
    ...(s.updatedAt ? { 'updated-at': s.updatedAt } : {}),
    ...(s.result ? { result: s.result } : {}),
    ...(s.error ? { error: s.error } : {}),
  }));
  if (value.length) setIn(doc, ['console', 'subscriptions'], value);
  else doc.deleteIn(['console', 'subscriptions']);
}

// ---------------------------------------------------------------------------------------
// State

export interface ConsoleNode {
  name: string;
  /** The name as the link or subscription wrote it (Unicode, emoji); the key otherwise. */
  label: string;
  type: ReturnType<typeof nodeType>;
  /** SIP003 plugin of an ss node. */
  plugin?: string;
  server: string;
  port: number;
  uri: string;
}

/** The running DNS forwarder as LAN hosts meet it. */
export interface DnsServerState {
  /** null: no `dns:` section, no forwarder; host null: every address. */
  listen: { host: string | null; port: number } | null;
  /** The fake-IP range while fake IP is on, else null. */
  fakeIpRange: string | null;
  /** Addresses of the LAN interfaces (in-interfaces): what LAN hosts use as their DNS server. */
  lanAddresses: string[];
}

export interface ConsoleState {
  enabled: boolean;
  mode: 'redirect' | 'tproxy';
  lan: { interfaces: string[]; sources: string[] };
  tcpNode: string;
  udpNode: string;
  nodes: ConsoleNode[];
  subscriptions: DocSubscription[];
  dns: { nameservers: string[]; cache: boolean; fakeIp: boolean };
  rules: Record<string, unknown>[];
  checkTargets: string[];
  applied: boolean;
  dnsServer: DnsServerState;
  /** Whether UDP is captured now (the running configuration). */
  udp: boolean;
  /** What the node test requests through a node. */
  testUrl: string;
}

const asList = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

/** The rules as the file writes them, every matcher a list (what the rules editor edits). */
export function rulesOf(doc: Document): Record<string, unknown>[] {
  return asList((doc.toJS() as { rules?: unknown }).rules).map((r) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries((r ?? {}) as Record<string, unknown>))
      out[k] = k === 'outbound' ? v : asList(v);
    return out;
  });
}

/** The console's view: the file's settings, and what the running proxy does (mode, switch, LAN). */
export function stateOf(
  file: ConfigFile,
  doc: Document,
  running: { enabled: boolean; mode: 'redirect' | 'tproxy'; interfaces: string[]; sources: string[]; udp: boolean },
  applied: boolean,
  dnsServer: DnsServerState,
): ConsoleState {
  const nodes: ConsoleNode[] = Object.entries(file.nodes).map(([name, n]) => {
    const label = n.label ?? labelFromUri(n.uri) ?? name;
    try {
      const spec = parseNodeUri(n.uri, name);
      const plugin = spec.kind === 'shadowsocks' && spec.plugin ? { plugin: spec.plugin.name } : {};
      return {
        name,
        label,
        type: nodeType(spec),
        ...plugin,
        server: spec.host,
        port: spec.port,
        uri: redactUri(n.uri),
      };
    } catch {
      return { name, label, type: 'socks5', server: '?', port: 0, uri: redactUri(n.uri) }; // validated already; cannot happen
    }
  });
  const hostPort = (h: string, p: number) => (p === 53 ? h : h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`);
  return {
    enabled: running.enabled,
    mode: running.mode,
    lan: { interfaces: running.interfaces, sources: running.sources },
    tcpNode: file.default,
    udpNode: file.defaultUdp ?? 'same',
    nodes,
    subscriptions: file.console?.subscriptions ?? [],
    dns: {
      nameservers: (file.dns?.nameservers ?? []).map((n) => hostPort(n.host, n.port)),
      cache: file.dns?.cache ?? true,
      fakeIp: file.dns?.fakeIp?.enabled ?? false,
    },
    rules: rulesOf(doc),
    checkTargets: file.checkTargets,
    applied,
    dnsServer,
    udp: running.udp,
    testUrl: file.console?.testUrl ?? DEFAULT_PROBE_URL,
  };
}
