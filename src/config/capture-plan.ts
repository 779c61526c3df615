// The firewall plan a RunConfig asks for: pure, and free of the option parsers (zod, commander)
// so that the supervisor can derive it without loading them.
import type { CapturePlan } from '../firewall/plan.js';
import { ownPortsOf } from './own-traffic.js';
import type { RunConfig } from './run-config.js';

/** The firewall plan a RunConfig asks for. */
export function capturePlanOf(cfg: RunConfig): CapturePlan {
  return {
    mode: cfg.mode,
    capture: cfg.capture,
    families: cfg.families,
    protocols: cfg.udp ? ['tcp', 'udp'] : ['tcp'],
    proxyPort: cfg.listenPort,
    includePorts: cfg.ports,
    excludePorts: cfg.excludePorts,
    includeDestinations: cfg.includeCidrs,
    excludeDestinations: cfg.excludeCidrs,
    sourceCidrs: cfg.sourceCidrs,
    inInterfaces: cfg.inInterfaces,
    excludeUids: [...new Set([...(cfg.proxyUser ? [cfg.proxyUser.uid] : []), ...cfg.excludeUids])],
    excludeGids: [...new Set([...(cfg.proxyUser ? [cfg.proxyUser.gid] : []), ...cfg.excludeGids])],
    bypassMark: cfg.bypassMark,
    tproxyMark: cfg.tproxyMark,
    tproxyTable: cfg.tproxyTable,
    // Only when not the default, so plans (and their JSON) stay as before for plain marks.
    ...(cfg.bypassMask !== 0xffffffff ? { bypassMask: cfg.bypassMask } : {}),
    ...(cfg.tproxyMask !== 0xffffffff ? { tproxyMask: cfg.tproxyMask } : {}),
    ...(cfg.tproxyRulePref !== undefined ? { rulePref: cfg.tproxyRulePref } : {}),
    ...(cfg.capture.includes('inbound') ? inboundPlan(cfg) : {}),
  };
}

/** Inbound capture never takes tranproxy's own ports (listener, admin API, console). */
function inboundPlan(
  cfg: RunConfig,
): Pick<CapturePlan, 'inboundPorts' | 'excludeInboundPorts' | 'inboundPreserveSource'> {
  const own = ownPortsOf(cfg);
  return {
    inboundPorts: cfg.inboundPorts,
    excludeInboundPorts: [...cfg.excludeInboundPorts, ...own.map((port) => ({ from: port, to: port }))],
    inboundPreserveSource: cfg.mode === 'tproxy' && cfg.preserveSource,
  };
}
