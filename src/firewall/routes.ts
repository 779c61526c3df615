// TPROXY policy routing as data: `ip rule fwmark M lookup T` + `ip route local default dev lo
// table T`, per family. Everything we add carries routing protocol ROUTE_PROTO, so removal
// finds it without knowing the mark or table (the kernel matches `protocol` on delete).
import { ToolFailedError } from '../errors.js';
import type { CapturePlan, Family } from './plan.js';
import { runAt, type Target } from './target.js';
import { FULL_MASK, markText, validatePlan } from './validate.js';

/** rtnetlink protocol tag of our rules and routes (unassigned in /etc/iproute2/rt_protos). */
export const ROUTE_PROTO = 116;

export interface PolicyRule {
  family: Family;
  fwmark: number;
  /** Bits of the mark that count (FULL_MASK: all). */
  fwmask: number;
  table: number;
  /** Rule preference; undefined: the kernel's choice. */
  pref?: number;
}

export interface LocalRoute {
  family: Family;
  table: number;
}

export interface Routing {
  rules: PolicyRule[];
  routes: LocalRoute[];
}

const FLAG: Record<Family, string> = { ipv4: '-4', ipv6: '-6' };
const ANY: Record<Family, string> = { ipv4: '0.0.0.0/0', ipv6: '::/0' };

/** What a plan needs: nothing for REDIRECT; one rule and one route per family for TPROXY. */
export function routingFor(plan: CapturePlan): Routing {
  const p = validatePlan(plan);
  if (p.mode !== 'tproxy') return { rules: [], routes: [] };
  return {
    rules: p.families.map((family) => ({
      family,
      fwmark: p.tproxyMark,
      fwmask: p.tproxyMask ?? FULL_MASK,
      table: p.tproxyTable,
      ...(p.rulePref !== undefined ? { pref: p.rulePref } : {}),
    })),
    routes: p.families.map((family) => ({ family, table: p.tproxyTable })),
  };
}

function ruleArgs(r: PolicyRule): string[] {
  const pref = r.pref !== undefined ? ['pref', String(r.pref)] : [];
  return [
    FLAG[r.family],
    'rule',
    'add',
    ...pref,
    'fwmark',
    markText(r.fwmark, r.fwmask),
    'lookup',
    String(r.table),
    'protocol',
    String(ROUTE_PROTO),
  ];
}

function routeArgs(r: LocalRoute): string[] {
  return [
    FLAG[r.family],
    'route',
    'replace',
    'local',
    ANY[r.family],
    'dev',
    'lo',
    'table',
    String(r.table),
    'proto',
    String(ROUTE_PROTO),
  ];
}

/** `ip …` command lines, for display (`rules plan`). */
export function routingCommands(r: Routing): string[] {
  return [...r.rules.map(ruleArgs), ...r.routes.map(routeArgs)].map((a) => `ip ${a.join(' ')}`);
}

interface LiveRule {
  priority: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  protocol?: string;
}

/** Our tagged rules of one family; [] when the family is unavailable (IPv6 disabled). */
function liveRules(family: Family, o: Target): LiveRule[] {
  const r = runAt(o, 'ip', ['-N', '-j', FLAG[family], 'rule', 'show'], { allowFailure: family === 'ipv6' });
  if (r.status !== 0) return [];
  const all = JSON.parse(r.stdout || '[]') as LiveRule[];
  return all.filter((x) => x.protocol === String(ROUTE_PROTO));
}

function liveRouteTables(family: Family, o: Target): string[] {
  const args = ['-N', '-j', FLAG[family], 'route', 'show', 'table', 'all', 'proto', String(ROUTE_PROTO)];
  const r = runAt(o, 'ip', args, { allowFailure: family === 'ipv6' });
  if (r.status !== 0) return [];
  return (JSON.parse(r.stdout || '[]') as { table?: string }[]).map((x) => x.table ?? 'main');
}

function sameRule(live: LiveRule, r: PolicyRule): boolean {
  const mask = live.fwmask === undefined ? FULL_MASK : Number(live.fwmask);
  return (
    Number(live.fwmark) === r.fwmark &&
    mask === r.fwmask &&
    live.table === String(r.table) &&
    (r.pref === undefined || live.priority === r.pref)
  );
}

function delRule(family: Family, r: LiveRule, o: Target): void {
  runAt(o, 'ip', [FLAG[family], 'rule', 'del', 'pref', String(r.priority), 'protocol', String(ROUTE_PROTO)]);
}

function delRoutes(family: Family, table: string, o: Target): void {
  runAt(o, 'ip', [FLAG[family], 'route', 'flush', 'table', table, 'proto', String(ROUTE_PROTO)]);
}

/**
 * The local routes go through `lo`; in a fresh network namespace it is down and the kernel
 * refuses IPv6 routes on it ("Nexthop device is not up"). Up is harmless, so it stays up.
 */
function ensureLoopbackUp(o: Target): void {
  const r = runAt(o, 'ip', ['-j', 'link', 'show', 'dev', 'lo']);
  const flags = (JSON.parse(r.stdout || '[]') as { flags?: string[] }[])[0]?.flags ?? [];
  if (flags.includes('UP')) return;
  try {
    runAt(o, 'ip', ['link', 'set', 'dev', 'lo', 'up']);
  } catch (e) {
    if (!(e instanceof ToolFailedError)) throw e;
    throw new ToolFailedError(
      e.tool,
      e.args,
      e.status,
      `${e.stderr.trim()} (TPROXY delivers through the loopback interface 'lo', which is down: bring it up)`,
    );
  }
}

/** Idempotent: keeps matching tagged entries, deletes other tagged ones, adds what is missing. */
export function applyRouting(want: Routing, o: Target = {}): void {
  if (want.routes.length) ensureLoopbackUp(o);
  for (const family of ['ipv4', 'ipv6'] as const) {
    const rules = want.rules.filter((r) => r.family === family);
    const kept = new Set<PolicyRule>();
    for (const live of liveRules(family, o)) {
      const match = rules.find((r) => !kept.has(r) && sameRule(live, r));
      if (match) kept.add(match);
      else delRule(family, live, o);
    }
    for (const r of rules) if (!kept.has(r)) runAt(o, 'ip', ruleArgs(r));
    const tables = want.routes.filter((r) => r.family === family).map((r) => String(r.table));
    for (const t of new Set(liveRouteTables(family, o))) if (!tables.includes(t)) delRoutes(family, t, o);
    for (const r of want.routes.filter((x) => x.family === family)) runAt(o, 'ip', routeArgs(r));
  }
}

/** Idempotent removal of every tagged rule and route, both families. */
export function removeRouting(o: Target = {}): void {
  applyRouting({ rules: [], routes: [] }, o);
}

/** Tagged rules and routes as `ip` prints them; '' when none. */
export function showRouting(o: Target = {}): string {
  const lines: string[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const rules = runAt(o, 'ip', ['-N', FLAG[family], 'rule', 'show'], { allowFailure: true });
    const tag = new RegExp(`\\bproto ${ROUTE_PROTO}\\b`);
    for (const l of rules.stdout.split('\n')) if (tag.test(l)) lines.push(`ip ${FLAG[family]} rule: ${l.trim()}`);
    const args = [FLAG[family], 'route', 'show', 'table', 'all', 'proto', String(ROUTE_PROTO)];
    const routes = runAt(o, 'ip', args, { allowFailure: true });
    for (const l of routes.stdout.split('\n')) if (l.trim()) lines.push(`ip ${FLAG[family]} route: ${l.trim()}`);
  }
  return lines.join('\n');
}
