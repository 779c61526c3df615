// Which filter-forward chains of a network namespace drop routed traffic by policy (Docker's
// `iptables -P FORWARD DROP`, a hardened host's `policy drop`). Pure: the callers pass the
// output of `nft -j list ruleset` and `ip(6)tables-legacy-save -t filter`.
//
// Who can let a flow through such a chain: an iptables FORWARD chain (iptables-nft or legacy)
// takes a jump to a chain of ours, as Docker's DOCKER-USER/DOCKER-FORWARD jumps do. A native
// nft chain cannot be overridden from another table: an accept ends only its own base chain,
// the packet still meets the drop; only a rule in that chain (e.g. `ct status dnat accept`)
// lets DNATed flows through.

export type ForwardBackend = 'nft' | 'iptables-nft' | 'iptables-legacy';
export type IpFamily = 4 | 6;

export interface ForwardDrop {
  backend: ForwardBackend;
  /** nft family of the table: ip, ip6 or inet (iptables: ip / ip6). */
  family: 'ip' | 'ip6' | 'inet';
  table: string;
  chain: string;
  /** The chain accepts every DNATed flow (`ct status dnat accept`): published ports pass. */
  acceptsDnat: boolean;
}

interface NftChain {
  family?: string;
  table?: string;
  name?: string;
  hook?: string;
  type?: string;
  policy?: string;
}

interface NftRule {
  family?: string;
  table?: string;
  chain?: string;
  expr?: Record<string, unknown>[];
}

/** `ct status dnat accept` (any spelling nft -j gives it): the only match is on ct status dnat. */
function isDnatAccept(rule: NftRule): boolean {
  const expr = (rule.expr ?? []).filter((e) => !('counter' in e));
  if (expr.length !== 2 || !('accept' in expr[1]!)) return false;
  const m = expr[0]!.match as
    | { left?: { ct?: { key?: string; dir?: string } }; right?: unknown; op?: string }
    | undefined;
  if (m?.left?.ct?.key !== 'status' || m.left.ct.dir !== undefined || (m.op !== '==' && m.op !== 'in')) return false;
  return m.right === 'dnat' || (Array.isArray(m.right) && m.right.includes('dnat'));
}

const IPTABLES_NFT_TABLE = 'filter';
const IPTABLES_FORWARD = 'FORWARD';

/** Forward-hook chains with policy drop in `nft -j list ruleset` (native nft and iptables-nft). */
export function forwardDropsFromNft(json: string, ignoreTables: readonly string[] = []): ForwardDrop[] {
  let items: Record<string, unknown>[];
  try {
    items = (JSON.parse(json) as { nftables?: Record<string, unknown>[] }).nftables ?? [];
  } catch {
    return [];
  }
  const chains = items.flatMap((i) => (i.chain ? [i.chain as NftChain] : []));
  const rules = items.flatMap((i) => (i.rule ? [i.rule as NftRule] : []));
  const out: ForwardDrop[] = [];
  for (const c of chains) {
    if (c.hook !== 'forward' || c.type !== 'filter' || c.policy !== 'drop') continue;
    if (c.family !== 'ip' && c.family !== 'ip6' && c.family !== 'inet') continue;
    if (!c.table || !c.name || ignoreTables.includes(c.table)) continue;
    const iptables = c.family !== 'inet' && c.table === IPTABLES_NFT_TABLE && c.name === IPTABLES_FORWARD;
    const own = rules.filter((r) => r.family === c.family && r.table === c.table && r.chain === c.name);
    out.push({
      backend: iptables ? 'iptables-nft' : 'nft',
      family: c.family,
      table: c.table,
      chain: c.name,
      acceptsDnat: own.some(isDnatAccept),
    });
  }
  return out;
}

/** `:FORWARD DROP [..]` in `ip(6)tables-legacy-save -t filter` output. */
export function forwardDropFromLegacySave(save: string, family: IpFamily): ForwardDrop[] {
  const filter = /^\*filter\n([\s\S]*?)^COMMIT$/m.exec(save)?.[1] ?? '';
  if (!/^:FORWARD DROP\b/m.test(filter)) return [];
  return [
    {
      backend: 'iptables-legacy',
      family: family === 4 ? 'ip' : 'ip6',
      table: 'filter',
      chain: 'FORWARD',
      acceptsDnat: false,
    },
  ];
}

/** The drop applies to packets of this IP family. */
export function dropsFamily(d: ForwardDrop, family: IpFamily): boolean {
  return d.family === 'inet' || d.family === (family === 4 ? 'ip' : 'ip6');
}

/** `iptables (nft) FORWARD policy DROP`, `nft chain inet filter forward policy drop`. */
export function describeDrop(d: ForwardDrop): string {
  if (d.backend === 'nft') return `nft chain ${d.family} ${d.table} ${d.chain} (policy drop)`;
  const tool = d.family === 'ip6' ? 'ip6tables' : 'iptables';
  return `${tool}${d.backend === 'iptables-legacy' ? '-legacy' : ''} FORWARD policy DROP`;
}

/** The one rule that lets DNATed flows through a native nft drop chain (the operator's choice). */
export function dnatAcceptFix(d: ForwardDrop): string {
  return `nft insert rule ${d.family} ${d.table} ${d.chain} ct status dnat accept`;
}
