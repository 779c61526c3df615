// PublishPlan → nft scripts, and the live table → what to delete. Pure.
//
// One table, `inet tranproxy_publish`, shared by every publishing process of the netns:
// each rule carries its mapping's tag (`tpx-publish tcp *:8080 10.0.0.2:80 pid=N`), so a
// process adds and removes only its own rules, a new run replaces leftovers of the same
// mapping (it holds the port now, so their owner is gone), and the table goes away with
// its last rule. The never-jumped chain `mappings` registers every mapping (even those
// served by the userland proxy alone): `publish --list` reads it back.
import { familyOf, parseTag, type IpFamily, type PortMapping } from './mapping.js';
import { PUBLISH_TABLE, type Dnat, type MappingPlan, type PublishPlan } from './plan.js';

export type ChainName = 'prerouting' | 'output' | 'postrouting' | 'localnet' | 'mappings' | 'state';

const T = `inet ${PUBLISH_TABLE}`;

const CHAINS: [ChainName, string][] = [
  ['prerouting', ' { type nat hook prerouting priority dstnat; policy accept; }'],
  ['output', ' { type nat hook output priority -100; policy accept; }'], // dstnat; nft 1.0.6 names it only for prerouting
  ['postrouting', ' { type nat hook postrouting priority srcnat; policy accept; }'],
  ['localnet', ' { type nat hook postrouting priority srcnat; policy accept; }'],
  ['mappings', ''],
  ['state', ''],
];

/** A rule of the live table, as `nft -j list table` reports it. */
export interface LiveRule {
  chain: string;
  handle: number;
  comment?: string;
}

export interface LiveTable {
  exists: boolean;
  rules: LiveRule[];
}

export const EMPTY_TABLE: LiveTable = { exists: false, rules: [] };

/** Records the route_localnet value to restore once no --userland-proxy=false mapping is left. */
const STATE_RE = /^tpx-publish-state route_localnet=(\d)$/;
export function stateTag(original: string): string {
  return `tpx-publish-state route_localnet=${original}`;
}

/** The value recorded by the first process that changed route_localnet, if any. */
export function recordedLocalnet(live: LiveTable): { value: string; rule: LiveRule } | undefined {
  for (const r of live.rules) {
    const m = r.chain === 'state' && r.comment ? STATE_RE.exec(r.comment) : null;
    if (m) return { value: m[1]!, rule: r };
  }
  return undefined;
}

/** Parse `nft -j list table inet tranproxy_publish` output. */
export function parseLiveTable(json: string): LiveTable {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  const rules: LiveRule[] = [];
  let exists = false;
  for (const item of doc.nftables ?? []) {
    if ('table' in item) exists = true;
    const r = item.rule as { chain?: string; handle?: number; comment?: string } | undefined;
    if (r && typeof r.chain === 'string' && typeof r.handle === 'number') {
      rules.push({
        chain: r.chain,
        handle: r.handle,
        ...(typeof r.comment === 'string' ? { comment: r.comment } : {}),
      });
    }
  }
  return { exists, rules };
}

const ADDR: Record<IpFamily, string> = { 4: 'ip', 6: 'ip6' };
const NFPROTO: Record<IpFamily, string> = { 4: 'ipv4', 6: 'ipv6' };
const LOOPBACK: Record<IpFamily, string> = { 4: '127.0.0.0/8', 6: '::1' };

function set(items: readonly string[]): string {
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}

function endpoint(ip: string, port: number): string {
  return familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function dnatRule(p: MappingPlan, d: Dnat): string {
  const m = p.mapping;
  const a = ADDR[p.family];
  const parts = d.daddr ? [`${a} daddr ${d.daddr}`] : ['fib daddr type local'];
  if (d.skipLoopback) parts.push(`${a} daddr != ${LOOPBACK[p.family]}`);
  if (d.notFrom) parts.push(`${a} saddr != ${d.notFrom}`);
  if (parts.length === 1 && !d.daddr) parts.push(`meta nfproto ${NFPROTO[p.family]}`); // the family of the dnat
  return `${parts.join(' ')} ${m.proto} dport ${m.hostPort} dnat ${a} to ${endpoint(m.targetIp, m.targetPort)}`;
}

function masqueradeRule(p: MappingPlan, sources: readonly string[]): string {
  const m = p.mapping;
  const a = ADDR[p.family];
  return `${a} saddr ${set(sources)} ${a} daddr ${m.targetIp} ${m.proto} dport ${m.targetPort} ct status dnat ct original proto-dst ${m.hostPort} masquerade`;
}

/** The rules of one mapping, chain by chain, in order (registry first). */
export function mappingRules(p: MappingPlan): [ChainName, string][] {
  const out: [ChainName, string][] = [['mappings', 'continue']];
  if (p.prerouting) out.push(['prerouting', dnatRule(p, p.prerouting)]);
  if (p.output) out.push(['output', dnatRule(p, p.output)]);
  if (p.hairpinSources.length) out.push(['postrouting', masqueradeRule(p, p.hairpinSources)]);
  if (p.localnet) out.push(['localnet', masqueradeRule(p, [LOOPBACK[4]])]);
  return out;
}

/** Leftover rules of the plan's mappings (any owner): replaced by the new ones. */
export function staleRules(plan: PublishPlan, live: LiveTable): LiveRule[] {
  const keys = new Set(plan.mappings.map((m) => m.key));
  return live.rules.filter((r) => {
    const t = parseTag(r.comment);
    return t !== undefined && keys.has(t.key);
  });
}

function deleteRule(r: LiveRule): string {
  return `delete rule ${T} ${r.chain} handle ${r.handle}`;
}

export interface ApplyOptions {
  /** route_localnet before we change it; recorded only when no earlier value is recorded. */
  localnetOriginal?: string;
}

/**
 * One atomic `nft -f -` transaction: create the table and chains if missing, drop leftovers
 * of the same mappings, add every rule of the plan, record route_localnet's original value.
 */
export function renderApply(plan: PublishPlan, live: LiveTable = EMPTY_TABLE, opts: ApplyOptions = {}): string {
  const n = plan.mappings.length;
  const lines = [
    `# tranproxy publish (pid ${plan.owner}): ${n} mapping${n === 1 ? '' : 's'}, userland proxy ${plan.userlandProxy ? 'on' : 'off'}; one atomic transaction: nft -f -`,
    `add table ${T}`,
    ...CHAINS.map(([name, spec]) => `add chain ${T} ${name}${spec}`),
  ];
  const stale = staleRules(plan, live);
  if (stale.length)
    lines.push(
      '# leftovers of the same mappings (their owner is gone: we hold the ports now)',
      ...stale.map(deleteRule),
    );
  if (plan.needsRouteLocalnet && opts.localnetOriginal === '0' && !recordedLocalnet(live)) {
    lines.push(`add rule ${T} state continue comment "${stateTag(opts.localnetOriginal)}"`);
  }
  for (const p of plan.mappings) {
    lines.push(`# ${p.key}${p.notes.length ? ` (${p.notes.join('; ')})` : ''}`);
    for (const [chain, rule] of mappingRules(p)) lines.push(`add rule ${T} ${chain} ${rule} comment "${p.tag}"`);
  }
  return `${lines.join('\n')}\n`;
}

export interface Removal {
  /** nft script; '' when there is nothing to remove. */
  script: string;
  /** route_localnet value to restore afterwards (no --userland-proxy=false mapping is left). */
  restoreLocalnet?: string;
  /** Rules removed. */
  removed: number;
}

/** Remove the rules owned by `owner` (all owners when undefined); the table goes with its last rule. */
export function planRemoval(live: LiveTable, owner?: number): Removal {
  if (!live.exists) return { script: '', removed: 0 };
  const mine = (r: LiveRule) => {
    const t = parseTag(r.comment);
    return owner === undefined || (t !== undefined && t.owner === owner);
  };
  const removed = live.rules.filter(mine);
  const left = live.rules.filter((r) => !mine(r));
  const state = recordedLocalnet(live);
  const leftMappings = left.filter((r) => parseTag(r.comment) !== undefined);
  const localnetLeft = left.some((r) => r.chain === 'localnet');
  const restoreLocalnet = state && !localnetLeft ? state.value : undefined;
  const extra = restoreLocalnet !== undefined ? { restoreLocalnet } : {};
  if (leftMappings.length === 0) {
    // Nothing of anybody's is left: the whole table goes (idempotent: add first).
    return { script: `add table ${T}\ndelete table ${T}\n`, removed: removed.length, ...extra };
  }
  const deletes = [...removed, ...(restoreLocalnet !== undefined && state ? [state.rule] : [])];
  return { script: deletes.length ? `${deletes.map(deleteRule).join('\n')}\n` : '', removed: removed.length, ...extra };
}

export interface ListedMapping {
  key: string;
  owner: number;
  mapping: PortMapping;
}

/** The registered mappings of the live table, in rule order. */
export function listedMappings(live: LiveTable): ListedMapping[] {
  const out: ListedMapping[] = [];
  for (const r of live.rules) {
    if (r.chain !== 'mappings') continue;
    const t = parseTag(r.comment);
    if (t) out.push({ key: t.key, owner: t.owner, mapping: t.mapping });
  }
  return out;
}
