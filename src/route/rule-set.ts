// Rule-set files (fetched from a URL, kept on disk): three formats, each turned into what a
// rule already matches on, a domain list and/or destination CIDRs.
//
//   domain   a domain list file (domain-list.ts): bare names, domain:, full:, keyword:
//   cidr     one CIDR (or bare address) a line, '#' comments
//   clash    a Clash/mihomo rule provider: YAML `payload:` (or one entry a line), with
//            domain entries ('+.x' and '.x' suffix, '*.x' suffix, 'x' exact), ipcidr
//            entries, or classical ones (DOMAIN, DOMAIN-SUFFIX, DOMAIN-KEYWORD, IP-CIDR,
//            IP-CIDR6; other types are skipped and counted)
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';
import { parseDomainList, type DomainList } from './domain-list.js';
import { CidrSet } from './ip-set.js';

export const RULE_SET_FORMATS = ['domain', 'cidr', 'clash'] as const;
export type RuleSetFormat = (typeof RULE_SET_FORMATS)[number];

export interface ParsedRuleSet {
  /** Domain entries, if the set has any. */
  domains: DomainList | undefined;
  /** Destination CIDRs as written. */
  cidrs: string[];
  /** Clash entries of types a rule cannot match on (e.g. PROCESS-NAME), by type. */
  skipped: Record<string, number>;
}

/** Entries in a set (for logs). */
export function ruleSetSize(s: ParsedRuleSet): number {
  return (s.domains?.size ?? 0) + s.cidrs.length;
}

/** Parse a rule-set file's text; throws UsageError naming `source` and the line. */
export function parseRuleSet(text: string, format: RuleSetFormat, source: string): ParsedRuleSet {
  if (format === 'domain') return { domains: parseDomainList(text, source), cidrs: [], skipped: {} };
  if (format === 'cidr') return { domains: undefined, cidrs: cidrLines(text, source), skipped: {} };
  return parseClash(text, source);
}

function cidrLines(text: string, source: string): string[] {
  const out: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    checkCidr(line, source, i + 1);
    out.push(line);
  });
  return out;
}

function checkCidr(cidr: string, source: string, lineNo: number): void {
  try {
    new CidrSet([cidr]);
  } catch {
    // Never quote the line: a path pointed at a secret file must not echo it.
    throw new UsageError(`${source}:${lineNo}: not a CIDR or IP address`);
  }
}

/** The YAML parser, loaded on first use: the data plane imports this file but never parses a provider. */
function parseYaml(text: string, options: { maxAliasCount: number }): unknown {
  return (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text, options);
}

/** The provider's entries: YAML `payload:` or, failing that, one entry a line. */
function clashEntries(text: string): string[] {
  try {
    const doc = parseYaml(text, { maxAliasCount: 100 }) as { payload?: unknown } | null;
    if (doc && typeof doc === 'object' && Array.isArray(doc.payload)) return doc.payload.map((e) => String(e));
  } catch {
    // not YAML: the text format
  }
  return text.split('\n').map((l) => l.replace(/#.*$/, ''));
}

function parseClash(text: string, source: string): ParsedRuleSet {
  const lines: string[] = [];
  const cidrs: string[] = [];
  const skipped: Record<string, number> = {};
  clashEntries(text).forEach((raw, i) => {
    const e = raw.trim();
    if (!e) return;
    const comma = e.indexOf(',');
    if (comma < 0) {
      if (/^[0-9a-f:.]+\/\d+$/i.test(e)) {
        checkCidr(e, source, i + 1);
        cidrs.push(e);
      } else lines.push(/^(?:\+|\*)?\./.test(e) ? `domain:${e.replace(/^[+*]?\./, '')}` : `full:${e}`);
      return;
    }
    const type = e.slice(0, comma).trim().toUpperCase();
    const value = e
      .slice(comma + 1)
      .split(',')[0]!
      .trim();
    if (type === 'DOMAIN') lines.push(`full:${value}`);
    else if (type === 'DOMAIN-SUFFIX') lines.push(`domain:${value}`);
    else if (type === 'DOMAIN-KEYWORD') lines.push(`keyword:${value}`);
    else if (type === 'IP-CIDR' || type === 'IP-CIDR6') {
      checkCidr(value, source, i + 1);
      cidrs.push(value);
    } else skipped[type] = (skipped[type] ?? 0) + 1;
  });
  const domains = lines.length ? parseDomainList(lines.join('\n'), source) : undefined;
  return { domains, cidrs, skipped };
}
