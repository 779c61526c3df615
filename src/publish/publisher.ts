// `tranproxy publish` from start to end, in docker-proxy's order:
//   1. hold every host port (bind + listen / bind): nothing else can take one;
//   2. plan the NAT rules from the routes and sysctls, apply them in one nft transaction;
//      --userland-proxy=false: then route_localnet=1 (its old value recorded in the table);
//   3. serve; log one `ready:` line listing the mappings;
//   4. on SIGINT/SIGTERM/SIGHUP: remove our rules (restoring route_localnet when we were
//      its last user), release the ports. A crash leaves rules behind: the next run of the
//      same mappings replaces them; `publish --remove-all` removes them all.
import { systemRunner, type ToolRunner } from '../kernel/exec.js';
import type { Logger } from '../observe/log.js';
import { formatMappings, type PortMapping } from './mapping.js';
import { buildPlan, checkLoops, type PublishPlan, type TargetRoute } from './plan.js';
import { renderApply } from './render-nft.js';
import { acceptRule, ACCEPT_CHAIN } from './render-iptables.js';
import {
  applyPublish,
  forwardingEnabled,
  LOCALNET_SYSCTL,
  probeForwardDrops,
  probeRoute,
  readLiveTable,
  readSysctl,
  removePublish,
  writeSysctl,
} from './system.js';
import { UserlandProxy } from './userland.js';

export type FirewallBackend = 'nft' | 'none';

export interface PublishConfig {
  mappings: PortMapping[];
  userlandProxy: boolean;
  firewall: FirewallBackend;
  connectTimeoutMs: number;
  tcpIdleTimeoutMs: number;
  udpIdleTimeoutMs: number;
  maxConnections: number;
  maxUdpFlowsPerPort: number;
}

/** Routes to the targets, probed once each. */
function routeCache(runner: ToolRunner = systemRunner): (ip: string) => TargetRoute {
  const routes = new Map<string, TargetRoute>();
  return (ip) => {
    let r = routes.get(ip);
    if (!r) routes.set(ip, (r = probeRoute(ip, runner)));
    return r;
  };
}

/** The plan for this host as it is now (routes, forwarding sysctls). */
export function planFor(
  cfg: PublishConfig,
  owner: number,
  runner: ToolRunner = systemRunner,
  route = routeCache(runner),
): PublishPlan {
  checkLoops(cfg.mappings, (ip) => route(ip).local);
  return buildPlan({
    mappings: cfg.mappings,
    owner,
    userlandProxy: cfg.userlandProxy,
    forwarding: forwardingEnabled(runner),
    route,
    forwardDrops: probeForwardDrops(runner),
  });
}

/** The nft transaction `publish` would run now (dry run; needs nft only to read the live table). */
export function dryRun(cfg: PublishConfig, owner: number, runner: ToolRunner = systemRunner): string {
  const plan = planFor(cfg, owner, runner);
  let live: ReturnType<typeof readLiveTable> | undefined;
  try {
    live = readLiveTable(runner);
  } catch {
    live = undefined; // not root: render as if the table were empty
  }
  const original = plan.needsRouteLocalnet ? readSysctl(LOCALNET_SYSCTL, runner) : undefined;
  const warnings = plan.warnings.map((w) => `# warning: ${w}\n`).join('');
  return (
    warnings +
    renderApply(plan, live, original === undefined ? {} : { localnetOriginal: original }) +
    renderAcceptDryRun(plan)
  );
}

/** The iptables side of the dry run: where FORWARD drops, our chain and its accept rules. */
function renderAcceptDryRun(plan: PublishPlan): string {
  const lines: string[] = [];
  for (const { backend, family } of plan.forwardAccept) {
    const tool = `${family === 4 ? 'iptables' : 'ip6tables'}-${backend === 'iptables-nft' ? 'nft' : 'legacy'}`;
    lines.push(
      `# ${tool} FORWARD drops: DNATed flows of these mappings are accepted in our own chain (removed with them)`,
    );
    lines.push(`# ${tool} -N ${ACCEPT_CHAIN}; ${tool} -I FORWARD 1 -j ${ACCEPT_CHAIN}`);
    for (const p of plan.mappings)
      if (p.family === family && p.forwardAccept.includes(backend))
        lines.push(`# ${tool} -A ${ACCEPT_CHAIN} ${acceptRule(p)}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Publish until a signal arrives; resolves with the exit status. */
export async function runPublisher(
  cfg: PublishConfig,
  log: Logger,
  runner: ToolRunner = systemRunner,
): Promise<number> {
  const owner = process.pid;
  let stop!: (sig: string) => void;
  const stopped = new Promise<string>((r) => (stop = r));
  const onSignal = (sig: NodeJS.Signals) => stop(sig);
  const route = routeCache(runner);
  checkLoops(cfg.mappings, (ip) => route(ip).local); // before anything is bound
  for (const s of SIGNALS) process.on(s, onSignal);

  // 1. Hold every port before any rule exists.
  const proxy = await UserlandProxy.hold(cfg.mappings, {
    connectTimeoutMs: cfg.connectTimeoutMs,
    tcpIdleTimeoutMs: cfg.tcpIdleTimeoutMs,
    udpIdleTimeoutMs: cfg.udpIdleTimeoutMs,
    maxConnections: cfg.maxConnections,
    maxUdpFlowsPerPort: cfg.maxUdpFlowsPerPort,
    log,
  });

  let rulesMayExist = false;
  const removeRules = (): void => {
    if (!rulesMayExist) return;
    rulesMayExist = false;
    try {
      const r = removePublish(owner, runner);
      if (r.restoredLocalnet !== undefined) log.info('restored sysctl', { [LOCALNET_SYSCTL]: r.restoredLocalnet });
    } catch (e) {
      log.error(
        `could not remove the published-port rules: ${(e as Error).message}; run tranproxy publish --remove-all`,
      );
    }
  };
  // Last resort (an exception escaping everything below): never leave rules behind.
  process.once('exit', removeRules);

  try {
    // 2. Rules.
    if (cfg.firewall === 'nft') {
      const plan = planFor(cfg, owner, runner, route);
      for (const w of plan.warnings) log.warn(w);
      const original = plan.needsRouteLocalnet ? readSysctl(LOCALNET_SYSCTL, runner) : undefined;
      rulesMayExist = true;
      applyPublish(plan, original, runner);
      if (plan.needsRouteLocalnet && original !== '1') {
        writeSysctl(LOCALNET_SYSCTL, '1', runner);
        log.info('set sysctl (restored on exit)', { [LOCALNET_SYSCTL]: 1 });
      }
    }
    // 3. Serve.
    await proxy.start();
    log.info(`ready: publishing ${formatMappings(cfg.mappings)}`, {
      ports: cfg.mappings.length,
      'userland-proxy': cfg.userlandProxy,
      firewall: cfg.firewall,
      pid: owner,
    });
    const sig = await stopped;
    log.info('stopping', { signal: sig, ...proxy.stats() });
    return 0;
  } finally {
    // 4. Rules first (nothing is NATed to a target we no longer vouch for), then the ports.
    removeRules();
    await proxy.close();
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    process.removeListener('exit', removeRules);
  }
}
