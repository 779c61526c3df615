// Export and import of the config file from the console. Export redacts secrets (node links,
// the console's password hash, subscription URL tokens, the proxy-mode password, credential
// headers) unless asked; import takes a whole
// file, puts back secrets that were exported redacted, and goes through the same
// validate → apply → save path as every other change.
import { isMap, isScalar, isSeq, type Document, type Scalar } from 'yaml';
import type { ConfigFile } from '../config/file.js';
import { redactUri } from '../outbound/uri.js';
import { invalid, keepRedactedSecret, nodeNames, nodeUri, parseDoc, setNodeUri } from './document.js';

export const REDACTED = '***';
/** Larger imports are refused before parsing (a real config is a few KiB; the API body cap is 1 MiB). */
export const MAX_IMPORT_BYTES = 512 << 10;

/** A subscription URL without its credentials: userinfo and query (where providers put tokens). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    const secret = u.username || u.password || u.search;
    if (!secret) return url;
    return `${u.protocol}//${u.username || u.password ? `${REDACTED}@` : ''}${u.host}${u.pathname}${u.search ? `?${REDACTED}` : ''}`;
  } catch {
    return REDACTED;
  }
}

/** Injected headers whose value is a credential (Authorization: Bearer …, X-Api-Key, a cookie). */
const SECRET_HEADER = /^(proxy-)?authorization$|cookie|token|secret|key|auth|pass|session|signature|credential/i;

/** `proxy-auth: user:pass` with the password redacted: `user:***`. */
const redactProxyAuth = (v: string): string => `${v.slice(0, Math.max(0, v.indexOf(':')))}:${REDACTED}`;

/** The `headers:` items that carry a credential: where the value sits, the header name and the value. */
function secretHeaders(doc: Document): { node: Scalar; name: string; value: string; inline: boolean }[] {
  const seq = doc.get('headers', true);
  if (!isSeq(seq)) return [];
  const out: { node: Scalar; name: string; value: string; inline: boolean }[] = [];
  for (const item of seq.items) {
    if (isScalar(item) && typeof item.value === 'string') {
      const at = item.value.indexOf(':');
      const name = item.value.slice(0, Math.max(0, at)).trim();
      if (at > 0 && SECRET_HEADER.test(name))
        out.push({ node: item, name, value: item.value.slice(at + 1).trim(), inline: true });
    } else if (isMap(item))
      for (const pair of item.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : '';
        if (SECRET_HEADER.test(name) && isScalar(pair.value))
          out.push({ node: pair.value, name, value: String(pair.value.value), inline: false });
      }
  }
  return out;
}

const subscriptionCount = (doc: Document): number => {
  const v = doc.getIn(['console', 'subscriptions']) as { items?: unknown[] } | undefined;
  return Array.isArray(v?.items) ? v.items.length : 0;
};

/** The config text to download: as it is, or with every secret replaced by `***` (every other byte kept). */
export function exportText(text: string, includeSecrets: boolean): string {
  if (includeSecrets) return text;
  const doc = parseDoc(text);
  const edits: { at: [number, number]; value: string }[] = [];
  const redact = (path: (string | number)[], how: (v: string) => string) => {
    const node = doc.getIn(path, true);
    if (isScalar(node) && typeof node.value === 'string' && node.range)
      edits.push({ at: [node.range[0], node.range[1]], value: how(node.value) });
  };
  for (const name of nodeNames(doc)) {
    redact(['nodes', name], redactUri);
    redact(['nodes', name, 'uri'], redactUri);
  }
  redact(['console', 'password-hash'], () => REDACTED);
  redact(['proxy-auth'], redactProxyAuth);
  for (const h of secretHeaders(doc))
    if (h.node.range)
      edits.push({ at: [h.node.range[0], h.node.range[1]], value: h.inline ? `${h.name}: ${REDACTED}` : REDACTED });
  for (let i = 0; i < subscriptionCount(doc); i++) redact(['console', 'subscriptions', i, 'url'], redactUrl);
  // Back to front, so earlier offsets stay valid; a JSON string is a valid YAML scalar anywhere.
  let out = text;
  for (const e of edits.sort((a, b) => b.at[0] - a.at[0]))
    out = out.slice(0, e.at[0]) + JSON.stringify(e.value) + out.slice(e.at[1]);
  return out;
}

/**
 * The imported text as a document, its redacted secrets taken from `current`: a node link
 * exported redacted (same node name), the password hash, a subscription URL (same position).
 * A `***` with nothing to take it from is refused; so is YAML that does not parse.
 */
export function importedDoc(yamlText: string, current: Document): Document {
  if (Buffer.byteLength(yamlText) > MAX_IMPORT_BYTES)
    throw invalid('yaml', `the file is larger than ${MAX_IMPORT_BYTES >> 10} KiB: not a tranproxy config`);
  const doc = parseDoc(yamlText);
  if (doc.errors.length) throw invalid('yaml', `YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  if (!isMap(doc.contents)) throw invalid('yaml', 'expected a YAML mapping (key: value lines) at the top');
  for (const name of nodeNames(doc)) {
    const uri = nodeUri(doc, name);
    if (uri === undefined || !uri.includes(REDACTED)) continue;
    const old = nodeUri(current, name);
    const restored = old === undefined ? uri : uri === redactUri(old) ? old : keepRedactedSecret(uri, old);
    if (restored.includes(REDACTED))
      throw invalid('yaml', `node '${name}': its secret is redacted (***) and no stored node of that name has it`);
    setNodeUri(doc, name, restored);
  }
  const hash = doc.getIn(['console', 'password-hash']);
  const currentHash = current.getIn(['console', 'password-hash']);
  // The console's password cannot be dropped or redacted away by an import: the stored one stays.
  if ((hash === undefined || hash === REDACTED) && typeof currentHash === 'string' && isMap(doc.get('console', true)))
    doc.setIn(['console', 'password-hash'], currentHash);
  else if (hash === undefined && typeof currentHash === 'string') doc.set('console', { 'password-hash': currentHash });
  else if (hash === REDACTED) throw invalid('yaml', 'console.password-hash is redacted (***) and none is stored');
  restoreProxyAuth(doc, current);
  restoreHeaders(doc, current);
  for (let i = 0; i < subscriptionCount(doc); i++) {
    const url = doc.getIn(['console', 'subscriptions', i, 'url']);
    if (typeof url !== 'string' || !url.includes(REDACTED)) continue;
    const old = current.getIn(['console', 'subscriptions', i, 'url']);
    if (typeof old !== 'string' || redactUrl(old) !== url)
      throw invalid('yaml', `subscription ${i + 1}: its URL is redacted (***) and the stored one differs`);
    doc.setIn(['console', 'subscriptions', i, 'url'], old);
  }
  return doc;
}

function restoreProxyAuth(doc: Document, current: Document): void {
  const auth = doc.get('proxy-auth');
  if (typeof auth !== 'string' || !auth.includes(REDACTED)) return;
  const old = current.get('proxy-auth');
  if (typeof old !== 'string' || redactProxyAuth(old) !== auth)
    throw invalid('yaml', 'proxy-auth: its password is redacted (***) and the stored user differs or has none');
  doc.set('proxy-auth', old);
}

/** A redacted credential header takes the stored value of the same-named header back. */
function restoreHeaders(doc: Document, current: Document): void {
  const stored = new Map(secretHeaders(current).map((h) => [h.name.toLowerCase(), h.value]));
  for (const h of secretHeaders(doc)) {
    if (h.value !== REDACTED) continue;
    const old = stored.get(h.name.toLowerCase());
    if (old === undefined)
      throw invalid('yaml', `header '${h.name}': its value is redacted (***) and no stored header of that name has it`);
    h.node.value = h.inline ? `${h.name}: ${old}` : old;
  }
}

/** Replace the document's contents with the imported one's (comments included). */
export function replaceContents(target: Document, incoming: Document): void {
  target.contents = incoming.contents;
  target.commentBefore = incoming.commentBefore;
  target.comment = incoming.comment;
}

export interface ImportDiff {
  nodes: { added: string[]; removed: string[]; changed: string[] };
  groups: { added: string[]; removed: string[]; changed: string[] };
  rules: { before: number; after: number };
  /** Other settings whose value differs (config keys). */
  settings: string[];
  unchanged: boolean;
}

function keyDiff(a: Record<string, unknown>, b: Record<string, unknown>) {
  const same = (k: string) => JSON.stringify(a[k]) === JSON.stringify(b[k]);
  return {
    added: Object.keys(b).filter((k) => !Object.hasOwn(a, k)),
    removed: Object.keys(a).filter((k) => !Object.hasOwn(b, k)),
    changed: Object.keys(b).filter((k) => Object.hasOwn(a, k) && !same(k)),
  };
}

/** What an import changes, in the terms the console shows. */
export function importDiff(before: ConfigFile, after: ConfigFile): ImportDiff {
  const nodes = keyDiff(before.nodes, after.nodes);
  const groups = keyDiff(before.groups, after.groups);
  const rules = { before: before.rules.length, after: after.rules.length };
  const settings: string[] = [];
  const rawBefore = before.run as Record<string, unknown>;
  const rawAfter = after.run as Record<string, unknown>;
  for (const k of new Set([...Object.keys(rawBefore), ...Object.keys(rawAfter)]))
    if (JSON.stringify(rawBefore[k]) !== JSON.stringify(rawAfter[k])) settings.push(k);
  for (const k of ['default', 'defaultUdp', 'dns', 'checkTargets'] as const)
    if (JSON.stringify(before[k]) !== JSON.stringify(after[k])) settings.push(k);
  if (JSON.stringify(before.rules) !== JSON.stringify(after.rules) && rules.before === rules.after)
    settings.push('rules');
  const unchanged =
    ![nodes, groups].some((d) => d.added.length || d.removed.length || d.changed.length) &&
    rules.before === rules.after &&
    settings.length === 0;
  return { nodes, groups, rules, settings: settings.sort(), unchanged };
}
