// The rule engine: an ordered list of rules, first match wins, else the default action.
//
// A rule's matchers are grouped; every group the rule uses must match:
//   domain group   domain (exact) | domainSuffix | domainKeyword | domainList  — any entry
//   cidr           destination address in any of the CIDRs (IPv4 and IPv6)
//   port           destination port in any of the ports / ranges
//   sourceCidr     source address in any of the CIDRs
//   network        tcp / udp
// A flow without a domain never matches a rule that has a domain group.
//
// Speed: every inline domain entry of every rule goes into one index (exact names and
// suffixes in Maps, looked up once per label level of the flow's name); a domain list is
// matched by its own packed sets (compiled once when it was parsed, shared by every rule
// and every compile), so routing costs a handful of lookups per list however many entries
// there are; CIDRs and ports are merged numeric ranges searched by bisection.
import { UsageError } from '../errors.js';
import { parsePortRange } from '../firewall/ports.js';
import type { PortRange } from '../firewall/plan.js';
import type { Destination } from '../outbound/types.js';
import {
  normalizeDomainEntry,
  reviveDomainList,
  type DomainEntryKind,
  type DomainList,
  type DomainListRef,
} from './domain-list.js';
import { CidrSet, parseFlowIp, PortSet, type ParsedIp } from './ip-set.js';

export type Network = 'tcp' | 'udp';
type OneOrMany<T> = T | readonly T[];

export interface RuleSpec {
  /** Exact names. */
  domain?: OneOrMany<string>;
  /** `example.com` matches example.com and a.example.com, not badexample.com. */
  domainSuffix?: OneOrMany<string>;
  /** Substrings of the name. */
  domainKeyword?: OneOrMany<string>;
  /** Parsed domain list files (parseDomainList); references into packed bytes on the way to the data plane (packRuleLists). */
  domainList?: OneOrMany<DomainList | DomainListRef>;
  /** The rule-set names its domain lists or CIDRs came from: such a rule may be empty (not fetched yet). */
  ruleSet?: readonly string[];
  /** Destination CIDRs (a bare address is a /32 or /128). */
  cidr?: OneOrMany<string>;
  /** Destination ports: 443, "443", "8000-8100", or { from, to }. */
  port?: OneOrMany<number | string | PortRange>;
  /** Source CIDRs. */
  sourceCidr?: OneOrMany<string>;
  network?: OneOrMany<Network>;
  /** An outbound name, or 'reject'. */
  outbound: string;
  /** How messages name this rule; default `rules[<index>]`. */
  name?: string;
}

export interface RouteQuery {
  dst: Destination;
  /** Source IP address. */
  src: string;
  network: Network;
}

export interface RouteDecision {
  /** Outbound name or 'reject'. */
  action: string;
  /** Index of the rule that matched, or 'default'. */
  rule: number | 'default';
}

export interface Router {
  route(flow: RouteQuery): RouteDecision;
  readonly ruleCount: number;
}

/** Outbound names that always exist. */
export const BUILTIN_OUTBOUNDS = ['direct', 'reject'] as const;

/** How the config file spells each RuleSpec field (for messages). */
export const RULE_FIELD_NAMES: Record<Exclude<keyof RuleSpec, 'name'>, string> = {
  domain: 'domain',
  domainSuffix: 'domain-suffix',
  domainKeyword: 'domain-keyword',
  domainList: 'domain-list',
  ruleSet: 'rule-set',
  cidr: 'cidr',
  port: 'port',
  sourceCidr: 'source-cidr',
  network: 'network',
  outbound: 'outbound',
};

/** A rule that cannot be compiled; `rule` is its index, `field` the RuleSpec key at fault. */
export class RuleError extends UsageError {
  constructor(
    readonly rule: number,
    readonly field: keyof RuleSpec | undefined,
    message: string,
  ) {
    super(message);
  }
}

interface CompiledRule {
  action: string;
  hasDomain: boolean;
  dst: CidrSet | undefined;
  src: CidrSet | undefined;
  ports: PortSet | undefined;
  network: Network | undefined;
}

function list<T>(v: OneOrMany<T> | undefined): readonly T[] {
  return v === undefined ? [] : Array.isArray(v) ? (v as readonly T[]) : [v as T];
}

/** Rule indices per key; a lone index is stored bare (most keys belong to one rule). */
type Index = Map<string, number | number[]>;

function addTo(index: Index, key: string, rule: number): void {
  const cur = index.get(key);
  if (cur === undefined) index.set(key, rule);
  else if (typeof cur === 'number') {
    if (cur !== rule) index.set(key, [cur, rule]);
  } else if (cur[cur.length - 1] !== rule) cur.push(rule);
}

function collect(index: Index, key: string, out: number[]): void {
  const hit = index.get(key);
  if (hit === undefined) return;
  if (typeof hit === 'number') out.push(hit);
  else for (const r of hit) out.push(r);
}

/** The candidate closest to `word` by edit distance, if close enough to be a typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1; // a typo or two, not a different word
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** "unknown outbound 'x' (known: …)[; did you mean 'y'?]" */
export function unknownOutboundMessage(name: string, known: readonly string[]): string {
  const guess = suggest(name, known);
  return `unknown outbound '${name}' (known: ${known.join(', ')})${guess ? `; did you mean '${guess}'?` : ''}`;
}

/** The domain matchers of every rule, indexed for one lookup per flow. */
interface DomainIndex {
  exact: Index;
  suffix: Index;
  keywords: { kw: string; rule: number }[];
  /** Each distinct list once, with the rules that use it (ascending). */
  lists: Map<DomainList, number[]>;
}

type FailRule = (field: keyof RuleSpec | undefined, msg: string) => never;

/** Adds rule `i`'s domain matchers to the index; how many entries they hold. */
function indexDomains(spec: RuleSpec, i: number, index: DomainIndex, fail: FailRule): number {
  let entries = 0;
  const add = (field: keyof RuleSpec, kind: DomainEntryKind, values: readonly string[]) => {
    for (const raw of values) {
      const r = normalizeDomainEntry(kind, String(raw));
      if ('error' in r) fail(field, r.error);
      const v = 'error' in r ? raw : r.value;
      entries++;
      if (kind === 'full') addTo(index.exact, v, i);
      else if (kind === 'suffix') addTo(index.suffix, v, i);
      else index.keywords.push({ kw: v, rule: i });
    }
  };
  add('domain', 'full', list(spec.domain));
  add('domainSuffix', 'suffix', list(spec.domainSuffix));
  add('domainKeyword', 'keyword', list(spec.domainKeyword));
  for (const packed of list(spec.domainList)) {
    const dl = reviveDomainList(packed);
    entries += dl.size;
    const users = index.lists.get(dl);
    if (!users) index.lists.set(dl, [i]);
    else if (users[users.length - 1] !== i) users.push(i);
  }
  return entries;
}

function ruleCidrs(spec: RuleSpec, field: 'cidr' | 'sourceCidr', fail: FailRule): CidrSet | undefined {
  const v = spec[field];
  if (v === undefined) return undefined;
  const texts = list(v);
  if (!texts.length) fail(field, 'empty list');
  try {
    return new CidrSet(texts.map(String));
  } catch (e) {
    return fail(field, (e as Error).message);
  }
}

function rulePorts(spec: RuleSpec, fail: FailRule): PortSet | undefined {
  if (spec.port === undefined) return undefined;
  const items = list(spec.port);
  if (!items.length) fail('port', 'empty list');
  try {
    return new PortSet(
      items.map((p) =>
        typeof p === 'object' ? parsePortRange(`${p.from}-${p.to}`, '') : parsePortRange(String(p), ''),
      ),
    );
  } catch (e) {
    return fail('port', (e as Error).message.replace(/^: /, ''));
  }
}

/** One of tcp/udp, or undefined for both (or no network matcher). */
function ruleNetwork(spec: RuleSpec, fail: FailRule): Network | undefined {
  if (spec.network === undefined) return undefined;
  const nets = new Set(list(spec.network));
  for (const n of nets) if (n !== 'tcp' && n !== 'udp') fail('network', `'${String(n)}' is not tcp or udp`);
  if (nets.size === 0) fail('network', 'empty list');
  return nets.size === 1 ? [...nets][0] : undefined;
}

/** Rule `i` checked and compiled; its domain matchers go into `index`. */
function compileRule(
  spec: RuleSpec,
  i: number,
  known: readonly string[],
  knownSet: ReadonlySet<string>,
  index: DomainIndex,
): CompiledRule {
  const label = spec.name ?? `rules[${i}]`;
  const fail: FailRule = (field, msg) => {
    throw new RuleError(i, field, `${label}${field && field !== 'name' ? `.${RULE_FIELD_NAMES[field]}` : ''}: ${msg}`);
  };
  if (typeof spec.outbound !== 'string' || !knownSet.has(spec.outbound))
    fail('outbound', unknownOutboundMessage(String(spec.outbound), known));
  const domainEntries = indexDomains(spec, i, index, fail);
  const hasDomain =
    spec.domain !== undefined ||
    spec.domainSuffix !== undefined ||
    spec.domainKeyword !== undefined ||
    spec.domainList !== undefined;
  const rule: CompiledRule = {
    action: spec.outbound,
    hasDomain,
    dst: ruleCidrs(spec, 'cidr', fail),
    src: ruleCidrs(spec, 'sourceCidr', fail),
    ports: rulePorts(spec, fail),
    network: ruleNetwork(spec, fail),
  };
  if (hasDomain && domainEntries === 0 && spec.ruleSet === undefined)
    fail(
      spec.domainList !== undefined ? 'domainList' : undefined,
      'the domain matchers have no entries: the rule could never match',
    );
  if (!hasDomain && !rule.dst && !rule.src && !rule.ports && spec.network === undefined)
    fail(
      undefined,
      'no matcher (domain, domain-suffix, domain-keyword, domain-list, cidr, port, source-cidr, network); use `default` for a catch-all',
    );
  return rule;
}

/** The rule's matchers other than its domain group (parsed IPs cached in `ips` across rules). */
function otherMatch(r: CompiledRule, flow: RouteQuery, ips: { dst?: ParsedIp; src?: ParsedIp }): boolean {
  if (r.network !== undefined && r.network !== flow.network) return false;
  if (r.ports !== undefined && !r.ports.has(flow.dst.port)) return false;
  if (r.dst !== undefined && !r.dst.has(ips.dst === undefined ? (ips.dst = parseFlowIp(flow.dst.ip)) : ips.dst))
    return false;
  if (r.src !== undefined && !r.src.has(ips.src === undefined ? (ips.src = parseFlowIp(flow.src)) : ips.src))
    return false;
  return true;
}

/** Rules whose domain group matches `name` (lower case, no trailing dot), ascending, into `hits`. */
function domainHits(index: DomainIndex, listUsers: [DomainList, number[]][], name: string, hits: number[]): void {
  collect(index.exact, name, hits);
  for (let at = 0; at >= 0; at = name.indexOf('.', at) + 1 || -1)
    collect(index.suffix, at === 0 ? name : name.slice(at), hits);
  for (const k of index.keywords) if (name.includes(k.kw)) hits.push(k.rule);
  for (const [dl, users] of listUsers) if (dl.matches(name)) for (const r of users) hits.push(r);
  if (hits.length > 1) hits.sort((a, b) => a - b);
}

/** How many times compileRules ran in this process (tests check that a generation compiles once). */
export const compileCount = { calls: 0 };

/**
 * Compile rules. Throws RuleError naming the rule and field for an unknown outbound, a
 * bad CIDR, port, network or domain entry, or a rule without matchers; UsageError for an
 * unknown default action.
 */
export function compileRules(
  rules: readonly RuleSpec[],
  defaultAction: string,
  knownOutbounds: readonly string[],
): Router {
  compileCount.calls++;
  const known = [...new Set<string>([...BUILTIN_OUTBOUNDS, ...knownOutbounds])];
  const knownSet = new Set(known);
  if (!knownSet.has(defaultAction)) throw new UsageError(`default: ${unknownOutboundMessage(defaultAction, known)}`);
  const index: DomainIndex = { exact: new Map(), suffix: new Map(), keywords: [], lists: new Map() };
  const compiled = rules.map((spec, i) => compileRule(spec, i, known, knownSet, index));
  const withoutDomain = compiled.flatMap((r, i) => (r.hasDomain ? [] : [i]));
  const hasDomainRules = withoutDomain.length !== compiled.length;
  const scratch: number[] = [];
  const listUsers = [...index.lists];

  return {
    ruleCount: compiled.length,
    route(flow: RouteQuery): RouteDecision {
      const ips: { dst?: ParsedIp; src?: ParsedIp } = {};
      const hits = scratch;
      hits.length = 0;
      let name = flow.dst.domain;
      if (hasDomainRules && name) {
        name = name.toLowerCase();
        if (name.endsWith('.')) name = name.slice(0, -1);
        domainHits(index, listUsers, name, hits);
      }
      // Walk both ascending lists in rule order: domain hits and rules without a domain group.
      let h = 0;
      let w = 0;
      while (h < hits.length || w < withoutDomain.length) {
        const nextHit = h < hits.length ? hits[h]! : Infinity;
        const nextW = w < withoutDomain.length ? withoutDomain[w]! : Infinity;
        let idx: number;
        if (nextHit <= nextW) {
          idx = nextHit;
          while (h < hits.length && hits[h] === idx) h++; // skip duplicates
        } else {
          idx = nextW;
          w++;
        }
        const r = compiled[idx]!;
        if (otherMatch(r, flow, ips)) return { action: r.action, rule: idx };
      }
      return { action: defaultAction, rule: 'default' };
    },
  };
}
