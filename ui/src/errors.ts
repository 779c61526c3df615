// The gateway's error texts (errno codes, config keys, `rules[N]` counted from 0) turned into
// plain sentences in the page's language; the raw text stays available as `detail`.
import { lang, t, type Key, type Params } from './i18n.js';

export interface Explained {
  /** A plain sentence in the current language. */
  text: string;
  /** The gateway's own words (rules renumbered as the page numbers them), '' when nothing to add. */
  detail: string;
}

/** `rules[0]` → `rule 1`: the page numbers rules from 1. */
export const renumberRules = (s: string): string =>
  s.replace(/\brules\[(\d+)\]/g, (_m, n: string) => `rule ${Number(n) + 1}`);

const Q = `'([^']*)'`;

// First match wins. Each entry: a pattern over the raw text and the message it becomes.
const PATTERNS: [RegExp, Key | ((m: RegExpExecArray) => [Key, Params?])][] = [
  [/^network error|Failed to fetch|NetworkError|Load failed/i, 'err.unreachable'],
  [/^cannot use the subscription: the subscription is not a link list/, 'err.notSubscription'],
  [/^expected a JSON array/, 'rules.notArray'],
  [/\bJSON\b|Unexpected token|Unexpected end/i, 'rules.notJson'],
  [/^not logged in$/i, 'err.session'],
  [/^wrong password$/i, 'err.wrongPassword'],
  [/too many failed logins: try again in (\d+)/i, (m) => ['err.tooManyLogins', { s: m[1]! }]],
  [/X-CSRF-Token/i, 'err.csrf'],
  [/cross-origin request refused/i, 'err.crossOrigin'],
  [/^Host is not this console/, 'err.hostRefused'],
  [/^request body larger than/, 'err.tooLarge'],
  [/^no active connection/i, 'err.connGone'],
  [/\bEROFS\b|read-only file system/i, 'err.readOnly'],
  [/\bENOSPC\b/, 'err.diskFull'],
  [/\b(EACCES|EPERM)\b|permission denied/i, 'err.permission'],
  [/node (\S+) refused the connection/, (m) => ['err.nodeRefused', { addr: m[1]! }]],
  [/\bHTTP status (\d+)/, (m) => ['err.testStatus', { code: m[1]! }]],
  [/the target refused it or is unreachable/, 'err.targetRefused'],
  [
    /\b(ENETUNREACH|EHOSTUNREACH)\b(?: ([\d.:a-f[\]]+))?/i,
    (m) => (m[2] ? ['err.noRoute', { addr: m[2] }] : ['err.noRouteAny']),
  ],
  [
    /\bECONNREFUSED\b(?: ([\d.:a-f[\]]+))?/i,
    (m) => (m[1] ? ['err.refusedConn', { addr: m[1] }] : ['err.refusedConnAny']),
  ],
  [/\b(ETIMEDOUT|ESOCKETTIMEDOUT)\b|timed? ?out|timeout/i, 'err.timeout'],
  [/\b(ECONNRESET|EPIPE)\b|socket hang up|closed the connection/i, 'err.reset'],
  [
    /\b(ENOTFOUND|EAI_AGAIN|ENODATA)\b(?: (\S+))?/,
    (m) => (m[2] ? ['err.dnsFail', { name: m[2] }] : ['err.dnsFailAny']),
  ],
  [/^nothing imported/, 'err.nothingImported'],
  [/^line (\d+): /, (m) => ['err.linkLine', { line: m[1]! }]],
  [/^paste one or more links/i, 'err.pasteLinks'],
  [/unsupported scheme|not a URI|not a valid .*link|cannot parse .*link/i, 'err.badLink'],
  [new RegExp(`unknown outbound ${Q}`), (m) => ['err.unknownOutbound', { name: m[1]! }]],
  [new RegExp(`${Q} is not a CIDR`), (m) => ['err.notCidr', { v: m[1]! }]],
  [new RegExp(`${Q} is not (?:IP or IP:PORT|an IP address)`), (m) => ['err.notIp', { v: m[1]! }]],
  [
    new RegExp(`(?:range )?${Q} (?:is not a port|ends before it starts|is not a port or range)`),
    (m) => ['err.notPort', { v: m[1]! }],
  ],
  [new RegExp(`${Q} is not HOST:PORT`), (m) => ['err.notHostPort', { v: m[1]! }]],
  [new RegExp(`${Q} is not an http:// or https:// URL`), (m) => ['err.notUrl', { v: m[1]! }]],
  [/^expected an http:\/\/ or https:\/\/ URL/, (m) => ['err.notUrl', { v: m.input.split(': ')[1] ?? '' }]],
  [new RegExp(`${Q} is not an interface name`), (m) => ['err.notInterface', { v: m[1]! }]],
  [new RegExp(`${Q} is not a domain name`), (m) => ['err.badDomain', { v: m[1]! }]],
  [new RegExp(`${Q} is not one of`), (m) => ['err.notChoice', { v: m[1]! }]],
  [/empty list: the rule could never match/, 'err.emptyList'],
  [/^no matcher/, 'err.noMatcher'],
  [
    new RegExp(`node ${Q} is in use by (.*?)(?:: change those first)?$`),
    (m) => ['err.nodeInUse', { name: m[1]!, users: plainUsers(m[2]!) }],
  ],
  [new RegExp(`a node named ${Q} exists already`), (m) => ['err.nodeExists', { name: m[1]! }]],
  [new RegExp(`no node named ${Q}`), (m) => ['err.nodeMissing', { name: m[1]! }]],
  [/node name '.*': use letters/, 'err.nodeName'],
  [/cannot fetch the subscription/, 'err.subFetch'],
  [/no usable links|lists no links/, 'err.subEmpty'],
  [/subscription exists already/, 'err.subExists'],
  [/no such subscription|^no subscription '/, 'err.subMissing'],
  [/^its nodes are in use: (.*)$/, (m) => ['err.subInUse', { users: plainUsers(m[1]!) }]],
  [/^no check targets/, 'err.noTargets'],
  [/the TCP node is reject/, 'err.tcpReject'],
  [/handshake|authentication failed|auth failed|decrypt|unsupported method/i, 'err.handshake'],
  [/^expected true or false/, 'err.expectedBool'],
  [/^expected a list/, 'err.expectedList'],
];

/** `tcpNode (default), rules[2]` → `TCP node, rule 3` in the page's words. */
function plainUsers(list: string): string {
  return list
    .split(/,\s*/)
    .map((u) => {
      const r = /^rules\[(\d+)\]/.exec(u);
      if (r) return t('rule.n', { i: Number(r[1]) + 1 });
      if (u.startsWith('tcpNode')) return t('settings.tcpNode');
      if (u.startsWith('udpNode')) return t('settings.udpNode');
      return u.replace(/ \(.*\)$/, '');
    })
    .join(lang() === 'zh' ? '、' : ', ');
}

/** A plain sentence for a raw error text from the gateway (or the browser's fetch). */
export function explain(raw: string, status?: number): Explained {
  const detail = renumberRules(raw.trim());
  for (const [re, out] of PATTERNS) {
    const m = re.exec(raw);
    if (!m) continue;
    const [key, params] = typeof out === 'string' ? [out] : out(m);
    return { text: t(key, params), detail };
  }
  return { text: t(status !== undefined && status >= 500 ? 'err.server' : 'err.refused'), detail };
}

/** The form field's name in the page's words (for errors not shown next to a field). */
export function fieldLabel(field: string): string {
  const r = /^rules\[(\d+)\](?:\.(.+))?$/.exec(field);
  if (r) return t('rule.n', { i: Number(r[1]) + 1 });
  const labels: Record<string, Key> = {
    enabled: 'settings.switch',
    mode: 'settings.mode',
    'lan.interfaces': 'settings.interfaces',
    'lan.sources': 'settings.sources',
    tcpNode: 'settings.tcpNode',
    udpNode: 'settings.udpNode',
    checkTargets: 'settings.checkTargets',
    'dns.nameservers': 'dns.nameservers',
    'dns.cache': 'dns.cache',
    'dns.fakeIp': 'dns.fakeIp',
    links: 'nodes.links',
    name: 'nodes.name',
    uri: 'nodes.link',
    url: 'subs.url',
    targets: 'check.targets',
    rules: 'rules.title',
  };
  return labels[field] ? t(labels[field]!) : field;
}
