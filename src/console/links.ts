// Node links pasted into the console or served by a subscription: split, parse, label, name.
// Every source (pasted text, a subscription in any format) becomes a list of LinkEntry
// {label, uri}; parseEntries is the one place links are parsed and skipped with a reason.
import { parseNodeUri, redactUri, type NodeSpec } from '../outbound/uri.js';
import { BUILTIN_OUTBOUNDS } from '../route/index.js';
import { PROTOTYPE_KEYS } from '../config/file.js';

/** A link and the node's name as its source wrote it (Unicode, emoji kept). */
export interface LinkEntry {
  uri: string;
  label?: string;
  /** Set when the source already knows the entry cannot be used (e.g. a Clash `type: tuic`). */
  skip?: string;
}

export interface ParsedLink {
  /** The link to store in the config file (a raw #fragment percent-encoded). */
  uri: string;
  spec: NodeSpec;
  /** The node's name exactly as written, if the source gave one. */
  label?: string;
  /** 1-based position among the entries, for messages. */
  line: number;
}

export interface SkippedLink {
  line: number;
  label?: string;
  /** Why, short: "hysteria2 not supported", or the parser's message (secrets redacted). */
  reason: string;
}

/** Schemes seen in subscriptions that no outbound here speaks (skipped with that reason). */
const UNSUPPORTED_SCHEMES = new Set([
  'hysteria',
  'hysteria2',
  'hy2',
  'tuic',
  'wireguard',
  'wg',
  'ssr',
  'snell',
  'juicity',
  'anytls',
  'mieru',
  'naive+https',
  'naive+quic',
  'ssh',
]);

/** Node types as the console shows them ('ss' for shadowsocks, else the kind). */
export function nodeType(spec: NodeSpec): 'ss' | Exclude<NodeSpec['kind'], 'shadowsocks'> {
  return spec.kind === 'shadowsocks' ? 'ss' : spec.kind;
}

/**
 * Links one per line; several on a line when separated by whitespace before a `scheme://`
 * (a label written with raw spaces, `#HK 01`, stays in one piece).
 */
export function splitLinks(text: string): string[] {
  return text
    .split(/\r?\n|\r/)
    .flatMap((line) => line.trim().split(/\s+(?=[A-Za-z][A-Za-z0-9+.-]*:\/\/)/))
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** The link's #fragment, decoded (tolerant of raw spaces and bad escapes), and the link with it encoded. */
export function fragmentOf(link: string): { uri: string; label?: string } {
  const hash = link.indexOf('#', link.lastIndexOf('@') + 1);
  if (hash < 0) return { uri: link };
  const raw = link.slice(hash + 1);
  let label: string;
  try {
    label = decodeURIComponent(raw);
  } catch {
    label = raw;
  }
  label = cleanLabel(label);
  if (!label) return { uri: link.slice(0, hash) };
  const clean = /^[^\s%]*$/.test(raw) || raw === encodeURIComponent(label);
  return { uri: clean ? link : `${link.slice(0, hash)}#${encodeURIComponent(label)}`, label };
}

/** The `ps` name inside a v2rayN `vmess://BASE64(JSON)` link. */
function vmessLabel(uri: string): string | undefined {
  const m = /^vmess:\/\/([A-Za-z0-9+/_=-]+)$/i.exec(uri);
  if (!m) return undefined;
  try {
    const json = JSON.parse(Buffer.from(m[1]!.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')) as {
      ps?: unknown;
    };
    return typeof json.ps === 'string' ? cleanLabel(json.ps) || undefined : undefined;
  } catch {
    return undefined;
  }
}

/** A label as written, minus control characters, at most 200 characters; '' when empty. */
export function cleanLabel(label: string | undefined): string {
  return [...(label ?? '').replace(/[\x00-\x1f\x7f]/g, ' ').trim()].slice(0, 200).join('');
}

/** The name a link itself carries: its #fragment, or a vmess link's `ps`. */
export function labelFromUri(uri: string): string | undefined {
  const frag = fragmentOf(uri.trim());
  return frag.label ?? vmessLabel(frag.uri);
}

function schemeOf(uri: string): string | undefined {
  return /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(uri)?.[1]?.toLowerCase();
}

/** Parse entries; the unusable ones are skipped with a reason, never failing the rest. */
export function parseEntries(entries: readonly LinkEntry[]): { links: ParsedLink[]; skipped: SkippedLink[] } {
  const links: ParsedLink[] = [];
  const skipped: SkippedLink[] = [];
  entries.forEach((entry, i) => {
    const line = i + 1;
    const frag = fragmentOf(entry.uri.trim());
    const label = cleanLabel(entry.label) || frag.label || vmessLabel(frag.uri);
    const scheme = schemeOf(frag.uri);
    const skip = (reason: string) => skipped.push({ line, ...(label ? { label } : {}), reason });
    if (entry.skip) {
      skip(entry.skip);
      return;
    }
    if (scheme && UNSUPPORTED_SCHEMES.has(scheme)) {
      skip(`${scheme} not supported`);
      return;
    }
    try {
      links.push({ uri: frag.uri, spec: parseNodeUri(frag.uri), ...(label ? { label } : {}), line });
    } catch (e) {
      // The line and label name the entry; the link itself (even redacted) stays out of the reason.
      const prefix = `proxy node ${redactUri(frag.uri)}: `;
      const full = (e as Error).message;
      const message = full.startsWith(prefix) ? full.slice(prefix.length) : full;
      const unsupported = /unsupported scheme '([^']+)'/.exec(message);
      skip(unsupported ? `${unsupported[1]!.toLowerCase()} not supported` : message);
    }
  });
  return { links, skipped };
}

/** Pasted text: one link per line (see splitLinks). */
export function parseLinks(text: string): { links: ParsedLink[]; skipped: SkippedLink[] } {
  return parseEntries(splitLinks(text).map((uri) => ({ uri })));
}

/** "3 imported, 2 skipped: hysteria2 not supported; tuic not supported" */
export function importSummary(imported: number, skipped: readonly SkippedLink[]): string {
  if (!skipped.length) return `${imported} imported`;
  const reasons = [...new Set(skipped.map((s) => s.reason))];
  return `${imported} imported, ${skipped.length} skipped: ${reasons.join('; ')}`;
}

const NAME_OK = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Flag emoji (regional indicator pairs) as their two letters: 🇭🇰 → HK. */
function flagsToLetters(s: string): string {
  return s.replace(
    /[\u{1F1E6}-\u{1F1FF}]{2}/gu,
    (pair) => `${[...pair].map((c) => String.fromCharCode(c.codePointAt(0)! - 0x1f1e6 + 65)).join('')} `,
  );
}

/**
 * A valid config key (see schema.ts NodeName) for a node: the ASCII of its label when that
 * says something (two letters at least: "🇭🇰 香港 IPLC 01" → "HK-IPLC-01"), else type-host-port.
 * The label itself is kept beside the key, exactly as written.
 */
export function baseName(spec: NodeSpec, label: string | undefined = spec.name): string {
  const clean = (s: string) =>
    flagsToLetters(s)
      .normalize('NFKD')
      .replace(/[^A-Za-z0-9_.-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .replace(/-+$/, '')
      .split('-')
      .filter((w, i, all) => i === 0 || w.toLowerCase() !== all[i - 1]!.toLowerCase()) // "🇺🇸 US" → US, not US-US
      .join('-')
      .slice(0, 56);
  let name = clean(label ?? '');
  const meaningful =
    (/[A-Za-z].*[A-Za-z]/.test(name) || /^[A-Za-z]$/.test(name)) &&
    !(BUILTIN_OUTBOUNDS as readonly string[]).includes(name);
  if (!meaningful) name = clean(`${nodeType(spec)}-${spec.host}-${spec.port}`);
  return NAME_OK.test(name) ? name : 'node';
}

/** `name`, or `name-2`, `name-3`… — the first not in `taken` (which gains it). */
export function uniqueName(name: string, taken: Set<string>): string {
  let out = name;
  const reserved = (n: string) => (BUILTIN_OUTBOUNDS as readonly string[]).includes(n) || PROTOTYPE_KEYS.includes(n);
  for (let i = 2; taken.has(out) || reserved(out); i++) out = `${name}-${i}`;
  taken.add(out);
  return out;
}
