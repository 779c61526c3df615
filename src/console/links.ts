// Node links pasted into the console or served by a subscription: split, parse, name.
import { parseNodeUri, type NodeSpec } from '../outbound/uri.js';
import { BUILTIN_OUTBOUNDS } from '../route/index.js';

export interface ParsedLink {
  /** The link as given (it is what the config file stores). */
  uri: string;
  spec: NodeSpec;
  /** 1-based position among the non-empty lines/words, for messages. */
  line: number;
}

export interface LinkProblem {
  line: number;
  message: string;
}

/** Node types as the console shows them. */
export function nodeType(spec: NodeSpec): 'ss' | Exclude<NodeSpec['kind'], 'shadowsocks'> {
  return spec.kind === 'shadowsocks' ? 'ss' : spec.kind;
}

/** Links separated by newlines or other whitespace (a link itself has none). */
export function splitLinks(text: string): string[] {
  return text.split(/\s+/).filter((l) => l.length > 0);
}

export function parseLinks(text: string): { links: ParsedLink[]; problems: LinkProblem[] } {
  const links: ParsedLink[] = [];
  const problems: LinkProblem[] = [];
  splitLinks(text).forEach((uri, i) => {
    try {
      links.push({ uri, spec: parseNodeUri(uri), line: i + 1 });
    } catch (e) {
      problems.push({ line: i + 1, message: (e as Error).message }); // parseNodeUri redacts secrets
    }
  });
  return { links, problems };
}

const NAME_OK = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** A valid node name (see schema.ts NodeName) from a link's #tag or its type and server. */
export function baseName(spec: NodeSpec): string {
  const clean = (s: string) =>
    s
      .normalize('NFKD')
      .replace(/[^A-Za-z0-9_.-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .replace(/-+$/, '')
      .slice(0, 56);
  let name = clean(spec.name);
  if (!name || (BUILTIN_OUTBOUNDS as readonly string[]).includes(name)) name = clean(`${nodeType(spec)}-${spec.host}-${spec.port}`);
  return NAME_OK.test(name) ? name : 'node';
}

/** `name`, or `name-2`, `name-3`… — the first not in `taken` (which gains it). */
export function uniqueName(name: string, taken: Set<string>): string {
  let out = name;
  for (let i = 2; taken.has(out) || (BUILTIN_OUTBOUNDS as readonly string[]).includes(out); i++) out = `${name}-${i}`;
  taken.add(out);
  return out;
}

/**
 * A subscription body: a base64 (standard or url-safe, maybe wrapped) list of links, or a
 * plain list. Returns the link text to hand to parseLinks.
 */
export function decodeSubscription(body: string): string {
  const text = body.trim();
  if (text.includes('://')) return text;
  const compact = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]+=*$/.test(compact)) return text;
  const decoded = Buffer.from(compact.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
  return decoded.includes('://') ? decoded : text;
}
