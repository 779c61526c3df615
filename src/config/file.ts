// Loading the YAML config file: YAML syntax, the schema (schema.ts), the domain list files
// rules refer to, and a trial compile of the rules. Every problem is reported as
// `FILE:LINE:COL: path: reason`, the position taken from the YAML source.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { UsageError } from '../errors.js';
import {
  compileRules,
  parseDomainList,
  RULE_FIELD_NAMES,
  RuleError,
  suggest,
  parseRuleSet,
  type DomainList,
  type ParsedRuleSet,
  type RuleSpec,
} from '../route/index.js';
import {
  ConfigSchema,
  describe,
  KNOWN_KEYS,
  settingsOf,
  type ConfigRule,
  type ConfigSettings,
  type RuleSetConfig,
} from './schema.js';
import { locateInYaml as locate, placeZodIssues } from './yaml-issues.js';
import { MAX_NAMED_FILE_BYTES, readNamedFileBytesSync, readNamedFileSync } from './safe-read.js';

export interface ConfigFile extends ConfigSettings {
  /** The file as named by the user. */
  path: string;
  /** Rules ready for compileRules: domain list files read and parsed. */
  routeRules: RuleSpec[];
}

export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** e.g. `rules[2].outbound`; '' for the file as a whole. */
  path: string;
  message: string;
}

/** One or more problems in a config file; the message lists them all, one per line. */
export class ConfigError extends UsageError {
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
  }
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ''}${i.message}`;
}

export interface ParseOptions {
  /** Reads a domain list file (absolute path). Default: readNamedFileBytesSync (regular files only, capped, owner checked). */
  readFile?: (path: string) => string | Uint8Array;
  /** Directory relative domain list paths start from. Default: the config file's directory. */
  baseDir?: string;
  /** Reads a rule set's copy on disk; undefined when there is none yet. Default: readRuleSetCopy. */
  readRuleSet?: (path: string) => string | undefined;
}

/** Largest rule-set copy read or fetched: the cap of every file a config names. */
export const MAX_RULE_SET_BYTES = MAX_NAMED_FILE_BYTES;

/** Where the last good copy of rule set `name` is kept: rule-sets/NAME.txt next to the config file. */
export function ruleSetPath(baseDir: string, name: string): string {
  return join(baseDir, 'rule-sets', `${name}.txt`);
}

/** A rule set's copy on disk (a regular file, owner checked), or undefined when none was fetched yet. */
export function readRuleSetCopy(path: string): string | undefined {
  try {
    return readNamedFileSync('rule set', path, MAX_RULE_SET_BYTES);
  } catch (e) {
    if (e instanceof UsageError && /no such file$/.test(e.message)) return undefined;
    throw e;
  }
}

type Path = (string | number)[];

/** `rules[2].outbound`, `nodes["a b"]`. */
export function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z0-9_-]+$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

function keysFor(path: readonly PropertyKey[]): readonly string[] {
  if (path.length === 0) return KNOWN_KEYS.top;
  if (path[0] === 'rules' && path.length === 2) return KNOWN_KEYS.rule;
  if (path[0] === 'nodes' && path.length === 2) return KNOWN_KEYS.node;
  if (path[0] === 'groups' && path.length === 2) return KNOWN_KEYS.group;
  if (path[0] === 'dns' && path.length === 1) return KNOWN_KEYS.dns;
  if (path[0] === 'dns' && path[1] === 'fake-ip' && path.length === 2) return KNOWN_KEYS.fakeIp;
  if (path[0] === 'console' && path.length === 1) return KNOWN_KEYS.console;
  if (path[0] === 'rule-sets' && path.length === 2) return KNOWN_KEYS.ruleSet;
  return [];
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const kebab = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace(/_/g, '-');
  const guess = known.includes(kebab) ? kebab : (suggest(key, known) ?? suggest(kebab, known));
  const plural = known.includes(`${kebab}s`) ? `${kebab}s` : undefined;
  const hint = plural ?? guess;
  return `unknown key '${key}'${hint ? `; did you mean '${hint}'?${hint !== key && kebab !== key && hint === kebab ? ' (keys are kebab-case)' : ''}` : ''}`;
}

/** Keys that would reach an object's prototype, not become one of its entries. */
export const PROTOTYPE_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];

/** Offset of the first mapping key that is a prototype key (any depth), or undefined. */
function prototypeKeyAt(doc: Document): { offset: number; key: string } | undefined {
  let found: { offset: number; key: string } | undefined;
  visit(doc, {
    Pair(_, pair) {
      const k = isScalar(pair.key) ? pair.key.value : pair.key;
      if (typeof k === 'string' && PROTOTYPE_KEYS.includes(k)) {
        found = { offset: (isScalar(pair.key) && pair.key.range?.[0]) || 0, key: k };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/** Drop `key:` entries left empty (null), so they read as absent; flag-like switches given bare mean true. */
function dropNulls(v: unknown, top = true): unknown {
  if (Array.isArray(v)) return v.map((x) => dropNulls(x, false));
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, x] of Object.entries(v)) {
    if (x === null) {
      if (top && (k === 'set-forwarded-for' || k === 'set-client-hostname')) out[k] = true;
      continue;
    }
    out[k] = dropNulls(x, false);
  }
  return out;
}

/** A YAML document read for validation: the plain value and how to report issues at offsets in it. */
export interface LoadedYaml {
  doc: Document;
  raw: unknown;
  issueAt: (offset: number, p: readonly PropertyKey[], message: string) => ConfigIssue;
  fail: (issues: ConfigIssue[]) => never;
}

/**
 * Parses YAML text of a config or lab file into a plain value. Refuses, with the position:
 * syntax errors, duplicate keys, an alias inside the node it names (a cyclic value),
 * prototype keys, and more than 1000 alias expansions.
 */
export function loadYamlDocument(text: string, file: string): LoadedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const issueAt = (offset: number, p: readonly PropertyKey[], message: string): ConfigIssue => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col, path: pathText(p), message };
  };
  const fail = (issues: ConfigIssue[]): never => {
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(issues);
  };
  if (doc.errors.length) {
    fail(
      doc.errors.map((e) =>
        issueAt(e.pos[0], [], `YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`),
      ),
    );
  }
  // An alias inside the node it names (`a: &a {b: *a}`) would make a cyclic value: refuse it.
  let cycleAt: number | undefined;
  visit(doc, {
    Alias(_, node) {
      const target = node.resolve(doc);
      if (target?.range && node.range && target.range[0] <= node.range[0] && node.range[1] <= target.range[1]) {
        cycleAt = node.range[0];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (cycleAt !== undefined) fail([issueAt(cycleAt, [], 'YAML: an alias refers to a node that contains it (a cycle)')]);
  // Such a key silently vanishes into the prototype when the YAML becomes objects.
  const proto = prototypeKeyAt(doc);
  if (proto)
    fail([
      issueAt(
        proto.offset,
        [],
        `'${proto.key}' cannot be a key or a name (nodes, groups, hosts…): choose another name`,
      ),
    ]);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    fail([issueAt(0, [], `YAML: ${(e as Error).message}`)]);
  }
  return { doc, raw, issueAt, fail };
}

/**
 * Parse and validate config text. `path` names the file in messages and anchors relative
 * domain list paths. Throws ConfigError (a UsageError) listing every problem with its line.
 */
export function parseConfigText(text: string, path: string, opts: ParseOptions = {}): ConfigFile {
  const { doc, raw: loaded, issueAt, fail } = loadYamlDocument(text, path);
  let raw = loaded;
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    fail([issueAt(0, [], `expected a mapping of settings (key: value), got ${describe(raw)}`)]);
  }
  const data = dropNulls(raw);

  const parsed = ConfigSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    const unknownKey = (key: string, parent: readonly PropertyKey[]) => unknownKeyMessage(key, keysFor(parent));
    fail(placeZodIssues(doc, parsed.error.issues, { unknownKey, pathShown: 'found' }, issueAt));
  }
  const settings = settingsOf(parsed.data!);

  // Domain list files, relative to the config file.
  const baseDir = opts.baseDir ?? dirname(path);
  const read = opts.readFile ?? ((p: string) => readNamedFileBytesSync('domain list', p));
  const cache = new Map<string, DomainList>();
  const issues: ConfigIssue[] = [];
  const sets = readRuleSets(settings.ruleSets, baseDir, opts.readRuleSet ?? readRuleSetCopy, (name, why) => {
    const loc = locate(doc, ['rule-sets', name]);
    issues.push(issueAt(loc.offset, loc.path, why));
  });
  const routeRules: RuleSpec[] = settings.rules.map((r: ConfigRule, i) => {
    const { domainList, ruleSet, ...rest } = r;
    const spec: RuleSpec = { ...rest, name: `rules[${i}]` };
    if (domainList) {
      const lists: DomainList[] = [];
      domainList.forEach((file, j) => {
        const full = isAbsolute(file) ? file : join(baseDir, file);
        try {
          let list = cache.get(full);
          if (!list) {
            list = parseDomainList(read(full), file);
            cache.set(full, list);
          }
          lists.push(list);
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          const why =
            err instanceof UsageError
              ? err.message
              : `cannot read '${file}' (${full}): ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`;
          const loc = locate(doc, ['rules', i, 'domain-list', j]);
          issues.push(issueAt(loc.offset, loc.path, why));
        }
      });
      spec.domainList = lists;
    }
    if (ruleSet) {
      const problem = addRuleSets(spec, ruleSet, (name) => sets.get(name));
      if (problem) {
        const loc = locate(doc, ['rules', i, 'rule-set']);
        issues.push(issueAt(loc.offset, loc.path, problem));
      }
    }
    return spec;
  });
  if (issues.length) fail(issues);

  // Everything the router checks, checked now, with a line to show.
  try {
    compileRules(routeRules, settings.default, [...Object.keys(settings.nodes), ...Object.keys(settings.groups)]);
  } catch (e) {
    if (e instanceof RuleError) {
      const p: Path = ['rules', e.rule, ...(e.field && e.field !== 'name' ? [RULE_FIELD_NAMES[e.field]] : [])];
      const loc = locate(doc, p);
      fail([issueAt(loc.offset, loc.path, e.message.replace(/^rules\[\d+\](\.[a-z-]+)?: /, ''))]);
    }
    if (e instanceof UsageError)
      fail([issueAt(locate(doc, ['default']).offset, ['default'], e.message.replace(/^default: /, ''))]);
    throw e;
  }
  return { path, ...settings, routeRules };
}

/** Each rule set's copy on disk, parsed; an empty set for one not fetched yet. */
function readRuleSets(
  defs: Record<string, RuleSetConfig>,
  baseDir: string,
  read: (path: string) => string | undefined,
  problem: (name: string, why: string) => void,
): Map<string, ParsedRuleSet> {
  const out = new Map<string, ParsedRuleSet>();
  for (const [name, def] of Object.entries(defs)) {
    const path = ruleSetPath(baseDir, name);
    try {
      const text = read(path);
      out.set(name, text === undefined ? EMPTY_RULE_SET : parseRuleSet(text, def.format, `rule set ${name}`));
    } catch (e) {
      problem(name, (e as Error).message);
    }
  }
  return out;
}

const EMPTY_RULE_SET: ParsedRuleSet = { domains: undefined, cidrs: [], skipped: {} };

/**
 * A rule's rule sets added to its matchers (domain entries as lists, CIDRs as its cidr);
 * a reason when they cannot be: domain and IP entries together would have to match both.
 */
function addRuleSets(
  spec: RuleSpec,
  names: readonly string[],
  get: (name: string) => ParsedRuleSet | undefined,
): string | undefined {
  const lists: DomainList[] = [];
  const cidrs: string[] = [];
  for (const name of names) {
    const set = get(name);
    if (!set) return undefined; // its own problem is reported already
    if (set.domains) lists.push(set.domains);
    cidrs.push(...set.cidrs);
  }
  const hasDomains = lists.length > 0 || spec.domain || spec.domainSuffix || spec.domainKeyword || spec.domainList;
  if (cidrs.length && (hasDomains || spec.cidr))
    return 'these rule sets hold IP entries, and the rule also has domain or cidr matchers (a rule needs all of its matchers): put the IP rule set in a rule of its own';
  spec.ruleSet = names;
  if (cidrs.length) spec.cidr = cidrs;
  // A set with nothing yet (not fetched) matches no flow until it has entries.
  else spec.domainList = [...((spec.domainList as DomainList[] | undefined) ?? []), ...lists];
  return undefined;
}

/** Absolute paths of the domain list files `text` names (none when it does not parse). */
export function domainListPaths(text: string, path: string, baseDir = dirname(path)): string[] {
  let raw: unknown;
  try {
    raw = parseDocument(text).toJS({ maxAliasCount: 1000 });
  } catch {
    return [];
  }
  const rules = (raw as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) return [];
  const out: string[] = [];
  for (const r of rules) {
    const v = (r as Record<string, unknown> | null)?.['domain-list'];
    for (const f of Array.isArray(v) ? v : [v])
      if (typeof f === 'string') out.push(isAbsolute(f) ? f : join(baseDir, f));
  }
  return out;
}

/** Read and parse a config file. Throws ConfigError, or UsageError when it cannot be read. */
export function loadConfigFile(path: string, opts: ParseOptions = {}): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(
      `--config ${path}: cannot read the file: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`,
    );
  }
  return parseConfigText(text, path, opts);
}
