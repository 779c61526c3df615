// The publish plan: which NAT rules each mapping gets, as plain data. Pure: the facts it
// depends on (routes to the targets, forwarding sysctls) are passed in by the caller.
//
// Per mapping (target family F):
//   prerouting  DNAT for remote clients and containers (fib daddr type local, or HOST_IP).
//   output      DNAT for the host's own clients of non-loopback local addresses; with
//               --userland-proxy=false also 127.0.0.1 (needs route_localnet + localnet).
//   postrouting MASQUERADE for hairpin: a client on the target's own segment (a sibling
//               container) would get the reply straight from the target, not through our NAT.
//               The target itself is left to the userland proxy (see planOne).
//   localnet    --userland-proxy=false: MASQUERADE 127.0.0.0/8 sources after OUTPUT DNAT.
// Whatever no rule covers (127.0.0.1 and ::1 with the userland proxy, ::1 always, a client
// family that differs from the target's, loopback targets) reaches tranproxy's own
// listener on HOST_PORT and is relayed in user space.
import { normalizeCidrs } from '../firewall/cidr.js';
import { describeDrop, dnatAcceptFix, dropsFamily, type ForwardDrop } from '../firewall/forward-drop.js';
import type { Cidr } from '../firewall/plan.js';
import { UsageError } from '../errors.js';
import {
  familyOf,
  formatEndpoint,
  isLoopback,
  isWildcard,
  mappingKey,
  mappingTag,
  type IpFamily,
  type PortMapping,
} from './mapping.js';

export const PUBLISH_TABLE = 'tranproxy_publish';

/** What routing says about a target, probed by the caller (`ip route get`). */
export interface TargetRoute {
  /** The target is an address of this host. */
  local: boolean;
  /** Directly connected prefixes of the target's outgoing interface (its segment). */
  onLink: string[];
}

export interface PlanInputs {
  mappings: readonly PortMapping[];
  /** pid of the publishing process: part of every rule tag. */
  owner: number;
  userlandProxy: boolean;
  /** net.ipv4.ip_forward / net.ipv6.conf.all.forwarding: remote DNAT needs them. */
  forwarding: Record<IpFamily, boolean>;
  route: (targetIp: string) => TargetRoute;
  /** Filter-forward chains that drop by policy (probed by the caller); none when omitted. */
  forwardDrops?: readonly ForwardDrop[];
}

/** An iptables FORWARD chain that gets a jump to our accept chain (the Docker way). */
export type IptablesBackend = 'iptables-nft' | 'iptables-legacy';

export interface Dnat {
  /** Only this local address; undefined: any local address (fib daddr type local). */
  daddr?: string;
  /** Skip loopback destinations (left to the userland proxy). */
  skipLoopback?: boolean;
  /** Skip packets from this source (the target itself: left to the userland proxy). */
  notFrom?: string;
}

export interface MappingPlan {
  mapping: PortMapping;
  key: string;
  tag: string;
  family: IpFamily;
  prerouting?: Dnat;
  output?: Dnat;
  /** Sources to masquerade after a prerouting DNAT (hairpin); empty: none. */
  hairpinSources: string[];
  /** --userland-proxy=false: masquerade 127.0.0.0/8 sources (route_localnet). */
  localnet: boolean;
  /** Why a path is left to the userland proxy, for the log and the dry run. */
  notes: string[];
  /** iptables FORWARD chains that drop: our accept rule for this DNATed flow goes there. */
  forwardAccept: IptablesBackend[];
}

export interface PublishPlan {
  owner: number;
  userlandProxy: boolean;
  mappings: MappingPlan[];
  /** Some mapping DNATs 127.0.0.1 to another host: route_localnet must be 1. */
  needsRouteLocalnet: boolean;
  /** iptables FORWARD chains (backend, family) that need our accept chain. */
  forwardAccept: { backend: IptablesBackend; family: IpFamily }[];
  warnings: string[];
}

const FORWARD_SYSCTL: Record<IpFamily, string> = { 4: 'net.ipv4.ip_forward', 6: 'net.ipv6.conf.all.forwarding' };

/** A native nft forward chain that drops DNATed flows of `family`: no rule of ours can pass it. */
function blockingDrop(inp: PlanInputs, family: IpFamily): ForwardDrop | undefined {
  return (inp.forwardDrops ?? []).find((d) => d.backend === 'nft' && !d.acceptsDnat && dropsFamily(d, family));
}

function iptablesDrops(inp: PlanInputs, family: IpFamily): IptablesBackend[] {
  const found = (inp.forwardDrops ?? []).flatMap((d) =>
    d.backend !== 'nft' && dropsFamily(d, family) ? [d.backend] : [],
  );
  return [...new Set(found)].sort();
}

function planOne(
  m: PortMapping,
  inp: PlanInputs,
  forwardingOff: Set<IpFamily>,
  blocked: Map<string, ForwardDrop>,
): MappingPlan {
  const family = familyOf(m.targetIp);
  const base: MappingPlan = {
    mapping: m,
    key: mappingKey(m),
    tag: mappingTag(m, inp.owner),
    family,
    hairpinSources: [],
    localnet: false,
    notes: [],
    forwardAccept: [],
  };
  if (isLoopback(m.targetIp)) {
    base.notes.push('loopback target: relayed by the userland proxy only');
    return base;
  }
  if (m.hostIp !== undefined && familyOf(m.hostIp) !== family) {
    base.notes.push(
      `IPv${familyOf(m.hostIp)} host address to an IPv${family} target: relayed by the userland proxy only`,
    );
    return base;
  }
  const daddr = m.hostIp === undefined || isWildcard(m.hostIp) ? undefined : m.hostIp;
  const loopbackHost = daddr !== undefined && isLoopback(daddr);
  const route = inp.route(m.targetIp);

  if (!loopbackHost) {
    if (route.local) {
      base.prerouting = daddr ? { daddr } : {};
    } else if (inp.forwarding[family] && blockingDrop(inp, family)) {
      const d = blockingDrop(inp, family)!;
      blocked.set(describeDrop(d), d);
      base.notes.push(`${describeDrop(d)}: remote clients are relayed by the userland proxy`);
    } else if (inp.forwarding[family]) {
      base.forwardAccept = iptablesDrops(inp, family);
      // The target reaching itself through HOST_IP:HOST_PORT goes to the userland proxy: a
      // DNATed packet sent back out of the bridge port it came in by needs that port in
      // hairpin mode when br_netfilter is loaded — a bridge setting that is not ours.
      base.prerouting = { ...(daddr ? { daddr } : {}), notFrom: m.targetIp };
      const cidrs = normalizeCidrs(
        route.onLink.map((c): Cidr => ({ family: family === 4 ? 'ipv4' : 'ipv6', text: c })),
        'hairpin sources',
      );
      base.hairpinSources = cidrs.map((c) => c.text);
    } else {
      forwardingOff.add(family);
      base.notes.push(`${FORWARD_SYSCTL[family]}=0: remote clients are relayed by the userland proxy`);
    }
  }
  // 127.0.0.1 → another host needs route_localnet; ::1 cannot be DNATed to another host at all.
  const dnatLoopback = !inp.userlandProxy && family === 4 && !route.local;
  if (loopbackHost) {
    if (dnatLoopback || route.local) base.output = { daddr };
  } else {
    base.output = daddr ? { daddr } : dnatLoopback || route.local ? {} : { skipLoopback: true };
  }
  base.localnet = dnatLoopback && (daddr === undefined || loopbackHost);
  if (!inp.userlandProxy && family === 6 && (daddr === undefined || loopbackHost)) {
    base.notes.push('::1 cannot be NATed to another host: relayed by the userland proxy');
  }
  return base;
}

/**
 * A mapping whose target is this very host port would relay (and NAT) into itself forever:
 * refuse it. `isLocal` says whether an address belongs to this host.
 */
export function checkLoops(mappings: readonly PortMapping[], isLocal: (ip: string) => boolean): void {
  for (const m of mappings) {
    if (m.targetPort !== m.hostPort) continue;
    const covered = m.hostIp === undefined || isWildcard(m.hostIp) || m.hostIp === m.targetIp;
    if (covered && (isLoopback(m.targetIp) || isLocal(m.targetIp))) {
      throw new UsageError(
        `publish '${mappingKey(m)}': the target ${formatEndpoint(m.targetIp, m.targetPort)} is this host's own published port: it would loop; choose another port`,
      );
    }
  }
}

function forwardAcceptChains(mappings: readonly MappingPlan[]): { backend: IptablesBackend; family: IpFamily }[] {
  const seen = new Map<string, { backend: IptablesBackend; family: IpFamily }>();
  for (const m of mappings)
    for (const backend of m.forwardAccept) seen.set(`${backend} ${m.family}`, { backend, family: m.family });
  return [...seen.keys()].sort().map((k) => seen.get(k)!);
}

export function buildPlan(inp: PlanInputs): PublishPlan {
  const forwardingOff = new Set<IpFamily>();
  const blocked = new Map<string, ForwardDrop>();
  const mappings = inp.mappings.map((m) => planOne(m, inp, forwardingOff, blocked));
  const warnings = [...forwardingOff]
    .sort()
    .map(
      (f) =>
        `${FORWARD_SYSCTL[f]} is 0: remote clients of IPv${f} targets go through the userland proxy, so targets see this host's address ` +
        `instead of the client's; for NAT enable forwarding (sysctl -w ${FORWARD_SYSCTL[f]}=1) and restart`,
    );
  for (const [what, d] of blocked) {
    warnings.push(
      `${what} drops forwarded traffic and an accept in another nft table cannot override it: remote clients go through the userland proxy, ` +
        `so targets see this host's address; for NAT let DNATed flows through (${dnatAcceptFix(d)}) and restart`,
    );
  }
  return {
    owner: inp.owner,
    userlandProxy: inp.userlandProxy,
    mappings,
    needsRouteLocalnet: mappings.some((m) => m.localnet),
    forwardAccept: forwardAcceptChains(mappings),
    warnings,
  };
}
