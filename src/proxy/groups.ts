// The data plane's node groups: built over the node outbounds, probed on their interval,
// their choices logged and exported as gauges.
import type { Gauge } from 'prom-client';
import { directOutbound, rejectOutbound } from '../outbound/builtin.js';
import { GroupOutbound, httpProbe, type GroupSpec, type GroupState } from '../outbound/group.js';
import type { TcpOutbound } from '../outbound/types.js';
import type { Logger } from '../observe/log.js';
import type { DataPlaneMetrics } from '../observe/metrics.js';
import { UdpRefusedError } from '../flow/udp-routed.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../udp/index.js';

/** Probes give up after this long (or the interval, when shorter). */
const PROBE_TIMEOUT_MS = 5000;

/** `direct` and `reject` as outbounds, for groups that list them as members. */
function builtinOutbounds(mark: number, connectTimeoutMs: number): Map<string, TcpOutbound> {
  const direct = directOutbound(() => ({ connectTimeoutMs, ...(mark ? { mark } : {}) }));
  return new Map([
    ['direct', direct],
    ['reject', rejectOutbound],
  ]);
}

export interface Groups {
  byName: Map<string, GroupOutbound>;
  states(): GroupState[];
  stop(): void;
}

/** Adds every group to `outbounds` (members first, so groups of groups work) and starts probing. */
export function buildGroups(
  specs: Record<string, GroupSpec>,
  outbounds: Map<string, TcpOutbound>,
  opts: { mark: number; connectTimeoutMs: number; log: Logger; metrics: DataPlaneMetrics | undefined },
): Groups {
  const byName = new Map<string, GroupOutbound>();
  const all = new Map([...builtinOutbounds(opts.mark, opts.connectTimeoutMs), ...outbounds]);
  const onChange = (g: GroupOutbound, from: string, reason: string) =>
    opts.log.info('group:', { group: g.name, now: g.now, from, reason });
  const build = (name: string): TcpOutbound => {
    const done = all.get(name);
    if (done) return done;
    const spec = specs[name]!; // the schema refused unknown members and cycles
    const members = new Map(spec.members.map((m) => [m, build(m)] as const));
    const probe = (m: TcpOutbound, url: string) => httpProbe(m, url, Math.min(PROBE_TIMEOUT_MS, spec.intervalMs));
    const g = new GroupOutbound(name, spec, members, probe, onChange);
    all.set(name, g);
    byName.set(name, g);
    outbounds.set(name, g);
    return g;
  };
  for (const name of Object.keys(specs)) build(name);
  for (const g of byName.values()) g.start();
  // Gauges only for an admin API's /metrics (prom-client loads with it).
  if (opts.metrics) exportGauges([...byName.values()], opts.metrics);
  return {
    byName,
    states: () => [...byName.values()].map((g) => g.state()),
    stop: () => {
      for (const g of byName.values()) g.stop();
    },
  };
}

function exportGauges(groups: GroupOutbound[], metrics: DataPlaneMetrics): void {
  if (!groups.length) return;
  const each = (fn: (g: GroupOutbound, member: string) => number | undefined) => (gauge: Gauge) => {
    gauge.reset();
    for (const g of groups)
      for (const m of g.spec.members) {
        const v = fn(g, m);
        if (v !== undefined) gauge.set({ group: g.name, member: m }, v);
      }
  };
  const up = each((g, m) => (g.memberHealth(m)?.alive === false ? 0 : 1));
  const selected = each((g, m) => (g.now === m ? 1 : 0));
  const delay = each((g, m) => {
    const d = g.memberHealth(m)?.delayMs;
    return d === undefined ? undefined : d / 1000;
  });
  const labelNames = ['group', 'member'];
  metrics.gauge({
    name: 'tranproxy_group_member_up',
    help: 'Whether the last probe of a group member succeeded (1 before the first probe)',
    labelNames,
    aggregator: 'min',
    collect() {
      up(this);
    },
  });
  metrics.gauge({
    name: 'tranproxy_group_member_selected',
    help: 'The member a group uses now (1) and the others (0)',
    labelNames,
    aggregator: 'max',
    collect() {
      selected(this);
    },
  });
  metrics.gauge({
    name: 'tranproxy_group_member_delay_seconds',
    help: "Time to the response headers of a group member's last good probe",
    labelNames,
    aggregator: 'average',
    collect() {
      delay(this);
    },
  });
}

/**
 * UDP side of the groups: each flow goes to the UDP outbound of the group's current member
 * (through nested groups), refused with the reason when that member cannot carry UDP.
 */
export function udpGroupOutbounds(
  groups: ReadonlyMap<string, GroupOutbound>,
  nodes: ReadonlyMap<string, UdpOutbound>,
  direct: UdpOutbound,
  unsupported: ReadonlyMap<string, string>,
): Map<string, UdpOutbound> {
  const memberOf = (name: string): UdpOutbound => {
    // The member in use, through nested groups (no cycles: refused at load); its kind says what it is.
    let key = name;
    let at: TcpOutbound | undefined = groups.get(name);
    while (at instanceof GroupOutbound) {
      key = at.now;
      at = at.nowOutbound;
    }
    if (at?.kind === 'direct') return direct;
    if (at?.kind === 'reject') throw new UdpRefusedError('rejected-by-rule', `group '${name}' uses ${key}`);
    const ob = nodes.get(key);
    if (ob) return ob;
    throw new UdpRefusedError(
      'udp-unsupported',
      `group '${name}' uses ${unsupported.get(key) ?? `'${key}', which cannot carry UDP`}`,
    );
  };
  return new Map(
    [...groups.keys()].map((name) => [
      name,
      {
        name,
        kind: 'group',
        open: (flow: UdpFlowInfo): Promise<UdpSession> => {
          try {
            return memberOf(name).open(flow);
          } catch (e) {
            return Promise.reject(e);
          }
        },
      },
    ]),
  );
}
