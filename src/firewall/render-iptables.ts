// CapturePlan → iptables-restore --noflush text for one family. Every rule lives in our own
// TRANPROXY_* chains; built-in chains only get jump rules, added at apply time when missing.
// In --noflush mode `:CHAIN - [0:0]` flushes an existing user chain (checked with
// iptables-nft and iptables-legacy 1.8.9), which is what makes re-apply idempotent.
import { IPT_CHAIN_PREFIX, type CapturePlan, type CapturePoint, type Family, type PortRange } from './plan.js';
import { FAMILY_LABEL, FULL_MASK, hex, markText, ofFamily, validatePlan } from './validate.js';

export type IptTable = 'nat' | 'mangle';

export interface IptRule {
  /** Rule spec after `-A CHAIN`. */
  spec: string;
  why: string;
}

export interface IptChain {
  table: IptTable;
  name: string;
  rules: IptRule[];
}

/** A jump from a built-in chain into ours: the only thing we put in built-in chains. */
export interface IptJump {
  table: IptTable;
  chain: 'OUTPUT' | 'PREROUTING';
  target: string;
}

export interface IptablesRender {
  family: Family;
  chains: IptChain[];
  jumps: IptJump[];
  /** Chains and rules as iptables-restore text (without jumps); '' when the family is not captured. */
  restore: string;
}

export const IPT_TOOLS: Record<Family, { save: string; restore: string }> = {
  ipv4: { save: 'iptables-save', restore: 'iptables-restore' },
  ipv6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

const C = {
  natOut: `${IPT_CHAIN_PREFIX}OUTPUT`,
  natPre: `${IPT_CHAIN_PREFIX}PREROUTING`,
  manglePre: `${IPT_CHAIN_PREFIX}MANGLE_PRE`,
  mangleOut: `${IPT_CHAIN_PREFIX}MANGLE_OUT`,
  divert: `${IPT_CHAIN_PREFIX}DIVERT`,
  natIn: `${IPT_CHAIN_PREFIX}INBOUND`,
  mangleIn: `${IPT_CHAIN_PREFIX}MANGLE_IN`,
};

/** `--dport` for one range, else multiport in chunks of at most 15 ports (a range counts 2). */
function portMatches(ranges: readonly PortRange[]): string[] {
  const text = (r: PortRange) => (r.from === r.to ? `${r.from}` : `${r.from}:${r.to}`);
  if (ranges.length === 1) return [`--dport ${text(ranges[0]!)}`];
  const out: string[][] = [];
  let weight = 15;
  for (const r of ranges) {
    const w = r.from === r.to ? 1 : 2;
    if (weight + w > 15) {
      out.push([]);
      weight = 0;
    }
    out[out.length - 1]!.push(text(r));
    weight += w;
  }
  return out.map((chunk) => `-m multiport --dports ${chunk.join(',')}`);
}

/** One rule per captured protocol (and port chunk), each ending in `action`. */
function perPort(p: CapturePlan, ranges: readonly PortRange[], action: string, why: string): IptRule[] {
  const matches = ranges.length ? portMatches(ranges) : [''];
  return p.protocols.flatMap((proto) =>
    matches.map((m) => ({ spec: `-p ${proto} ${m ? `${m} ` : ''}${action}`, why })),
  );
}

function scope(p: CapturePlan): IptRule[] {
  return p.protocols.length === 1 ? [{ spec: `! -p ${p.protocols[0]} -j RETURN`, why: 'protocol not captured' }] : [];
}

function ownTraffic(p: CapturePlan): IptRule[] {
  return [
    { spec: '-o lo -j RETURN', why: 'loopback is never captured' },
    ...p.excludeUids.map((u) => ({ spec: `-m owner --uid-owner ${u} -j RETURN`, why: 'excluded uid (the proxy)' })),
    ...p.excludeGids.map((g) => ({ spec: `-m owner --gid-owner ${g} -j RETURN`, why: 'excluded gid (the proxy)' })),
    {
      spec: `-m mark --mark ${markText(p.bypassMark, p.bypassMask)} -j RETURN`,
      why: 'bypass mark (SO_MARK of the proxy)',
    },
  ];
}

/** IPv6 has no broadcast: addrtype rejects BROADCAST in ip6tables. */
function local(f: Family): IptRule[] {
  return (f === 'ipv4' ? ['LOCAL', 'BROADCAST', 'MULTICAST'] : ['LOCAL', 'MULTICAST']).map((t) => ({
    spec: `-m addrtype --dst-type ${t} -j RETURN`,
    why: 'to this host itself, broadcast or multicast',
  }));
}

function excludes(p: CapturePlan, f: Family): IptRule[] {
  return [
    ...ofFamily(p.excludeDestinations, f).map((d) => ({ spec: `-d ${d} -j RETURN`, why: 'excluded destinations' })),
    // perPort treats no ranges as "all ports": only call it when there are exclusions.
    ...(p.excludePorts.length ? perPort(p, p.excludePorts, '-j RETURN', 'excluded ports') : []),
  ];
}

/** An "only these" list: each matching item jumps to the next stage chain (OR within, AND across). */
interface Stage {
  suffix: string;
  /** Match per item; undefined: the plan has no such filter (stage skipped). */
  items: string[] | undefined;
  why: string;
  /** Why the family is skipped when the list has no entry of it. */
  none?: string;
}

function pipeline(table: IptTable, base: string, head: IptRule[], stages: Stage[], capture: IptRule[]): IptChain[] {
  const chains: IptChain[] = [{ table, name: base, rules: [...head] }];
  const empty = stages.find((st) => st.items?.length === 0);
  if (empty) {
    // A filter list with no entry of this family: the family is not captured here at all.
    chains[0]!.rules.push({ spec: '-j RETURN', why: empty.none ?? 'nothing to capture' });
    return chains;
  }
  let cur = chains[0]!;
  for (const st of stages) {
    if (!st.items) continue;
    const next: IptChain = { table, name: `${base}_${st.suffix}`, rules: [] };
    for (const m of st.items) cur.rules.push({ spec: `${m} -j ${next.name}`, why: st.why });
    chains.push(next);
    cur = next;
  }
  cur.rules.push(...capture);
  return chains;
}

function destinationStage(p: CapturePlan, f: Family): Stage {
  return {
    suffix: 'DST',
    items: p.includeDestinations.length ? ofFamily(p.includeDestinations, f).map((d) => `-d ${d}`) : undefined,
    why: 'only included destinations',
    none: `no included ${FAMILY_LABEL[f]} destinations`,
  };
}

function sourceStages(p: CapturePlan, f: Family): Stage[] {
  return [
    {
      suffix: 'IIF',
      items: p.inInterfaces.length ? p.inInterfaces.map((i) => `-i ${i}`) : undefined,
      why: 'only listed input interfaces',
    },
    {
      suffix: 'SRC',
      items: p.sourceCidrs.length ? ofFamily(p.sourceCidrs, f).map((s) => `-s ${s}`) : undefined,
      why: 'only included sources',
      none: `no included ${FAMILY_LABEL[f]} sources`,
    },
    destinationStage(p, f),
  ];
}

/** inbound: only connections from outside to this host's own addresses and ports. */
function inboundHead(p: CapturePlan): IptRule[] {
  const excluded = p.excludeInboundPorts ?? [];
  return [
    ...scope(p),
    { spec: '-i lo -j RETURN', why: "loopback (also the proxy's own connections to the app)" },
    { spec: '-m addrtype ! --dst-type LOCAL -j RETURN', why: 'inbound: only connections to this host' },
    ...(excluded.length
      ? perPort(p, excluded, '-j RETURN', "excluded inbound ports (tranproxy's own among them)")
      : []),
  ];
}

/** TPROXY inbound keeping the client's address: the app's replies go back to the proxy (see render-nft). */
function inboundReplies(p: CapturePlan, mark: string, setMark: string): IptRule[] {
  if (!p.inboundPreserveSource) return [];
  return [
    { spec: `-m connmark --mark ${mark} ${setMark}`, why: "inbound: the app's replies go back to the proxy via lo" },
    {
      spec: `-m mark --mark ${mark} -m addrtype --dst-type LOCAL -j CONNMARK --set-xmark ${hex(p.tproxyMark)}/${hex(p.tproxyMask ?? FULL_MASK)}`,
      why: "inbound: remember the proxy's connection to the app",
    },
  ];
}

interface BuiltRules {
  chains: IptChain[];
  jumps: IptJump[];
}

function build(p: CapturePlan, f: Family): BuiltRules {
  return p.mode === 'redirect' ? buildRedirect(p, f) : buildTproxy(p, f);
}

function buildRedirect(p: CapturePlan, f: Family): BuiltRules {
  const chains: IptChain[] = [];
  const jumps: IptJump[] = [];
  const has = (point: CapturePoint) => p.capture.includes(point);
  const redirect = perPort(
    p,
    p.includePorts,
    `-j REDIRECT --to-ports ${p.proxyPort}`,
    'capture: redirect to the proxy',
  );
  if (has('output')) {
    const head = [...scope(p), ...ownTraffic(p), ...excludes(p, f)];
    chains.push(...pipeline('nat', C.natOut, head, [destinationStage(p, f)], redirect));
    jumps.push({ table: 'nat', chain: 'OUTPUT', target: C.natOut });
  }
  if (has('prerouting')) {
    const head = [...scope(p), ...local(f), ...excludes(p, f)];
    chains.push(...pipeline('nat', C.natPre, head, sourceStages(p, f), redirect));
    jumps.push({ table: 'nat', chain: 'PREROUTING', target: C.natPre });
  }
  if (has('inbound')) {
    const rules = [
      ...inboundHead(p),
      ...perPort(p, p.inboundPorts ?? [], `-j REDIRECT --to-ports ${p.proxyPort}`, 'inbound: redirect to the proxy'),
    ];
    chains.push({ table: 'nat', name: C.natIn, rules });
    jumps.push({ table: 'nat', chain: 'PREROUTING', target: C.natIn });
  }
  return { chains, jumps };
}

/** The TPROXY plan's mark (`V` or `V/M`), its TPROXY target, and the MARK target that sets the mark. */
interface TproxyTargets {
  mark: string;
  tproxy: string;
  setMark: string;
}

function buildTproxy(p: CapturePlan, f: Family): BuiltRules {
  const chains: IptChain[] = [];
  const jumps: IptJump[] = [];
  const has = (point: CapturePoint) => p.capture.includes(point);
  const mark = markText(p.tproxyMark, p.tproxyMask);
  const t: TproxyTargets = {
    mark,
    tproxy: `-j TPROXY --on-port ${p.proxyPort} --tproxy-mark ${hex(p.tproxyMark)}/${hex(p.tproxyMask ?? FULL_MASK)}`,
    // --set-mark replaces the whole mark; --set-xmark V/M changes only the mask's bits.
    setMark: mark.includes('/') ? `-j MARK --set-xmark ${mark}` : `-j MARK --set-mark ${mark}`,
  };
  chains.push({
    table: 'mangle',
    name: C.divert,
    rules: [
      { spec: t.setMark, why: 'deliver locally through the tproxy route table' },
      { spec: '-j ACCEPT', why: 'no further mangling' },
    ],
  });
  const head = transparentHead(p, t);
  if (has('prerouting')) {
    head.push(...scope(p), ...local(f), ...excludes(p, f));
    const capture = perPort(p, p.includePorts, t.tproxy, 'capture: tproxy to the proxy');
    chains.push(...pipeline('mangle', C.manglePre, head, sourceStages(p, f), capture));
  } else {
    chains.push({ table: 'mangle', name: C.manglePre, rules: head });
  }
  jumps.push({ table: 'mangle', chain: 'PREROUTING', target: C.manglePre });
  if (has('inbound')) {
    chains.push({
      table: 'mangle',
      name: C.mangleIn,
      rules: [...inboundHead(p), ...perPort(p, p.inboundPorts ?? [], t.tproxy, 'inbound: tproxy to the proxy')],
    });
    jumps.push({ table: 'mangle', chain: 'PREROUTING', target: C.mangleIn });
  }
  const out = tproxyOutput(p, f, t);
  return { chains: [...chains, ...out.chains], jumps: [...jumps, ...out.jumps] };
}

/** First rules of TRANPROXY_MANGLE_PRE: existing transparent sockets, and host traffic back through lo. */
function transparentHead(p: CapturePlan, t: TproxyTargets): IptRule[] {
  const head: IptRule[] = [
    {
      spec: `-p tcp -m socket --transparent -j ${C.divert}`,
      why: 'packet of an existing transparent socket (also replies to spoofed-source connections)',
    },
  ];
  if (!p.capture.includes('output')) return head;
  if (p.inboundPreserveSource) {
    head.push({
      spec: '-i lo -m addrtype --dst-type LOCAL -j RETURN',
      why: "the proxy's own connections to a local app",
    });
  }
  // Host traffic marked in TRANPROXY_MANGLE_OUT comes back through lo: tproxy it before any filter.
  head.push(
    ...perPort(p, p.includePorts, t.tproxy, 'host traffic rerouted via lo by TRANPROXY_MANGLE_OUT').map((r) => ({
      ...r,
      spec: `-i lo -m mark --mark ${t.mark} ${r.spec}`,
    })),
  );
  return head;
}

/** mangle OUTPUT: host traffic marked to be rerouted via lo, and (inbound) the app's replies. */
function tproxyOutput(p: CapturePlan, f: Family, t: TproxyTargets): BuiltRules {
  const replies = inboundReplies(p, t.mark, t.setMark);
  if (!p.capture.includes('output')) {
    if (!replies.length) return { chains: [], jumps: [] };
    return {
      chains: [{ table: 'mangle', name: C.mangleOut, rules: replies }],
      jumps: [{ table: 'mangle', chain: 'OUTPUT', target: C.mangleOut }],
    };
  }
  const outHead = [...replies, ...scope(p), ...ownTraffic(p), ...local(f), ...excludes(p, f)];
  const reroute = perPort(
    p,
    p.includePorts,
    t.setMark,
    `capture: mark so ip rule fwmark ${t.mark} reroutes it via lo to TRANPROXY_MANGLE_PRE`,
  );
  return {
    chains: pipeline('mangle', C.mangleOut, outHead, [destinationStage(p, f)], reroute),
    jumps: [{ table: 'mangle', chain: 'OUTPUT', target: C.mangleOut }],
  };
}

function tablesOf(chains: readonly IptChain[]): IptTable[] {
  return [...new Set(chains.map((c) => c.table))];
}

function chainRules(c: IptChain): string[] {
  const lines: string[] = [];
  let why = '';
  for (const r of c.rules) {
    if (r.why !== why) lines.push(`# ${(why = r.why)}`);
    lines.push(`-A ${c.name} ${r.spec}`);
  }
  return lines;
}

/** Restore text (no jumps) for one family; throws UsageError on an invalid plan. */
export function renderIptables(plan: CapturePlan, family: Family): IptablesRender {
  const p = validatePlan(plan);
  if (!p.families.includes(family)) return { family, chains: [], jumps: [], restore: '' };
  const { chains, jumps } = build(p, family);
  const lines = [
    `# tranproxy ${FAMILY_LABEL[family]} ${p.mode} capture (${p.capture.join(', ')}): ${IPT_TOOLS[family].restore} --noflush`,
  ];
  for (const t of tablesOf(chains)) {
    const mine = chains.filter((c) => c.table === t);
    lines.push(`*${t}`, ...mine.map((c) => `:${c.name} - [0:0]`), ...mine.flatMap(chainRules), 'COMMIT');
  }
  return { family, chains, jumps, restore: `${lines.join('\n')}\n` };
}

/** `iptables -t nat -I OUTPUT 1 -j TRANPROXY_OUTPUT`-style commands, for display. */
export function jumpCommands(r: IptablesRender): string[] {
  const tool = r.family === 'ipv4' ? 'iptables' : 'ip6tables';
  return r.jumps.map((j) => `${tool} -t ${j.table} -I ${j.chain} 1 -j ${j.target}`);
}

// ---- reconcile against the live state (iptables-save) ----

export interface SavedTable {
  chains: string[];
  /** `-A CHAIN ...` lines, as printed. */
  rules: string[];
}

export function parseSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) tables.set(line.slice(1).trim(), (cur = { chains: [], rules: [] }));
    else if (cur && line.startsWith(':')) cur.chains.push(line.slice(1).split(' ')[0]!);
    else if (cur && line.startsWith('-A ')) cur.rules.push(line.trim());
  }
  return tables;
}

const isOurs = (chain: string) => chain.startsWith(IPT_CHAIN_PREFIX);
const JUMPS_TO_OURS = new RegExp(`\\s-[jg] ${IPT_CHAIN_PREFIX}\\S*(\\s|$)`);

/**
 * One --noflush restore text taking the live state to `desired` (undefined: remove all):
 * declares (= flushes) our chains, deletes stale or duplicate jumps and stale chains, adds the
 * rules, inserts missing jumps. Each table commits atomically. '' when there is nothing to do.
 */
export function reconcileRestore(desired: IptablesRender | undefined, live: Map<string, SavedTable>): string {
  const chains = desired?.chains ?? [];
  const jumps = desired?.jumps ?? [];
  const tables = new Set<string>(tablesOf(chains));
  for (const [t, s] of live) {
    if (s.chains.some(isOurs) || s.rules.some((r) => !isOurs(r.split(' ')[1]!) && JUMPS_TO_OURS.test(r))) tables.add(t);
  }
  const out: string[] = [];
  for (const t of tables) {
    const s = live.get(t) ?? { chains: [], rules: [] };
    const want = chains.filter((c) => c.table === t);
    const wantNames = want.map((c) => c.name);
    const stale = s.chains.filter((c) => isOurs(c) && !wantNames.includes(c));
    const wantJumps = new Set(jumps.filter((j) => j.table === t).map((j) => `-A ${j.chain} -j ${j.target}`));
    const kept = new Set<string>();
    const del: string[] = [];
    for (const r of s.rules) {
      if (isOurs(r.split(' ')[1]!) || !JUMPS_TO_OURS.test(r)) continue;
      if (wantJumps.has(r) && !kept.has(r)) kept.add(r);
      else del.push(`-D ${r.slice(3)}`);
    }
    out.push(
      `*${t}`,
      ...[...wantNames, ...stale].map((c) => `:${c} - [0:0]`),
      ...del,
      ...stale.map((c) => `-X ${c}`),
      ...want.flatMap((c) => c.rules.map((r) => `-A ${c.name} ${r.spec}`)),
      ...[...wantJumps].filter((j) => !kept.has(j)).map((j) => `-I ${j.slice(3).replace(' -j ', ' 1 -j ')}`),
      'COMMIT',
    );
  }
  return out.length ? `${out.join('\n')}\n` : '';
}
