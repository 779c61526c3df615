// The pure half of `tranproxy doctor`: reading tool output and /proc files into facts.
// No I/O here; unit tests feed canned text.

/** `iptables --version` → which backend that iptables binary drives. */
export function iptablesVariant(versionOutput: string): 'nf_tables' | 'legacy' | undefined {
  if (/\(nf_tables\)/.test(versionOutput)) return 'nf_tables';
  if (/\(legacy\)/.test(versionOutput)) return 'legacy';
  // iptables before 1.8 has no suffix and is always legacy.
  const m = /iptables v(\d+)\.(\d+)/.exec(versionOutput);
  if (m && (Number(m[1]) < 1 || (Number(m[1]) === 1 && Number(m[2]) < 8))) return 'legacy';
  return undefined;
}

export interface SaveSummary {
  /** Tables present in the dump (`*nat`). */
  tables: string[];
  /** Rules (`-A` lines). */
  rules: number;
  /** Rules that are not tranproxy's (neither in nor jumping to a TRANPROXY_* chain). */
  foreignRules: number;
  /** TRANPROXY_* chains declared, as `table/CHAIN`. */
  tranproxyChains: string[];
  /** Rules in built-in chains that jump to TRANPROXY_* chains, as `table/CHAIN`. */
  tranproxyJumps: string[];
}

/** Summary of an `iptables-save` / `ip6tables-save` dump (any variant). */
export function summarizeSave(text: string): SaveSummary {
  const s: SaveSummary = { tables: [], rules: 0, foreignRules: 0, tranproxyChains: [], tranproxyJumps: [] };
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      table = line.slice(1);
      s.tables.push(table);
    } else if (line.startsWith(':')) {
      const chain = line.slice(1).split(/\s+/)[0] ?? '';
      if (chain.startsWith('TRANPROXY')) s.tranproxyChains.push(`${table}/${chain}`);
    } else if (line.startsWith('-A ')) {
      s.rules++;
      const chain = line.split(/\s+/)[1] ?? '';
      const jump = /\s-[jg]\s+(TRANPROXY\S*)/.exec(line);
      if (jump && !chain.startsWith('TRANPROXY')) s.tranproxyJumps.push(`${table}/${chain}`);
      if (!chain.startsWith('TRANPROXY') && !jump) s.foreignRules++;
    }
  }
  return s;
}

/** Table names of `/proc/net/ip_tables_names` (legacy x_tables tables instantiated here). */
export function legacyTableNames(text: string | undefined): string[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

export interface NftTable {
  family: string;
  name: string;
}

/** `nft list tables` → tables. */
export function parseNftTables(text: string): NftTable[] {
  const out: NftTable[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*table\s+(\S+)\s+(\S+)\s*$/.exec(line);
    if (m) out.push({ family: m[1]!, name: m[2]! });
  }
  return out;
}

export interface NftRuleset {
  tables: NftTable[];
  /** Rules per `family name`. */
  rules: Map<string, number>;
}

/** `nft -j list ruleset` → tables and rule counts; undefined when it is not that JSON. */
export function parseNftJsonRuleset(text: string): NftRuleset | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const items = (doc as { nftables?: unknown })?.nftables;
  if (!Array.isArray(items)) return undefined;
  const tables: NftTable[] = [];
  const rules = new Map<string, number>();
  for (const it of items) {
    if (typeof it !== 'object' || it === null) continue;
    const t = (it as { table?: { family?: unknown; name?: unknown } }).table;
    if (t && typeof t.family === 'string' && typeof t.name === 'string') {
      tables.push({ family: t.family, name: t.name });
      continue;
    }
    const r = (it as { rule?: { family?: unknown; table?: unknown } }).rule;
    if (r && typeof r.family === 'string' && typeof r.table === 'string') {
      const key = `${r.family} ${r.table}`;
      rules.set(key, (rules.get(key) ?? 0) + 1);
    }
  }
  return { tables, rules };
}

export interface FdLimit {
  soft: number;
  hard: number;
}

/** "Max open files" of a `/proc/<pid>/limits` text; Infinity for unlimited. */
export function parseOpenFilesLimit(text: string): FdLimit | undefined {
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  if (!line) return undefined;
  const m = /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
  if (!m) return undefined;
  const num = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
  const soft = num(m[1]!);
  const hard = num(m[2]!);
  if (Number.isNaN(soft) || Number.isNaN(hard)) return undefined;
  return { soft, hard };
}

/** A sysctl file's integer value; undefined when missing or not a number. */
export function sysctlInt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  return /^-?\d+$/.test(t) ? Number(t) : undefined;
}

export interface RpFilterFinding {
  /** Interfaces whose effective mode is strict (1): max(all, iface). */
  strict: string[];
  /** conf/default is strict: interfaces created later (veth of new pods) start strict. */
  defaultStrict: boolean;
  allValue: number | undefined;
}

/**
 * The kernel applies max(conf/all/rp_filter, conf/IFACE/rp_filter). `values` maps
 * `all`, `default` and each interface to its value.
 */
export function strictRpFilter(values: ReadonlyMap<string, number>): RpFilterFinding {
  const all = values.get('all');
  const strict: string[] = [];
  for (const [name, v] of values) {
    if (name === 'all' || name === 'default') continue;
    if (Math.max(all ?? 0, v) === 1) strict.push(name);
  }
  strict.sort();
  return { strict, defaultStrict: Math.max(all ?? 0, values.get('default') ?? 0) === 1, allValue: all };
}

export interface IpRuleEntry {
  priority?: number;
  protocol?: string;
  fwmark?: string;
  table?: string;
}

/** `ip -j -N rule show` → entries; [] for anything else. */
export function parseIpJson<T>(text: string): T[] {
  try {
    const v = JSON.parse(text || '[]') as unknown;
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

/** How a failed `nft` call failed. */
export type NftFailure = 'permission' | 'unsupported' | 'other';

export function classifyNftError(stderr: string): NftFailure {
  if (/Operation not permitted|Permission denied/i.test(stderr)) return 'permission';
  if (/No such file or directory|Protocol not supported|not supported|Could not process rule|unknown/i.test(stderr))
    return 'unsupported';
  return 'other';
}

/** First meaningful lines of a tool's error output, on one line. */
export function firstLines(text: string, n = 2): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^\^+$/.test(l.replace(/~/g, '')))
    .slice(0, n)
    .join(' | ');
}
