// The publish plan meets the kernel: read the live nft table, apply and remove atomically
// (retrying when another publishing process changed the table in between), probe routes
// and sysctls. Every tool runs through a ToolRunner (kernel/exec's by default).
import { ToolFailedError } from '../errors.js';
import type { ForwardDrop } from '../firewall/forward-drop.js';
import { legacyFilterExists, probeForwardDrops as probeDrops } from '../firewall/forward-drop-probe.js';
import { NFT_TABLE } from '../firewall/plan.js';
import { systemRunner, type ToolRunner } from '../kernel/exec.js';
import { familyOf, parseTag, type IpFamily } from './mapping.js';
import { PUBLISH_TABLE, type IptablesBackend, type PublishPlan, type TargetRoute } from './plan.js';
import { ACCEPT_CHAIN, parseAcceptChain, planAcceptRemoval, renderAcceptApply } from './render-iptables.js';
import { EMPTY_TABLE, parseLiveTable, planRemoval, renderApply, type LiveTable } from './render-nft.js';

const ATTEMPTS = 4;

export const LOCALNET_SYSCTL = 'net.ipv4.conf.all.route_localnet';

export function readLiveTable(runner: ToolRunner = systemRunner): LiveTable {
  const args = ['-j', 'list', 'table', 'inet', PUBLISH_TABLE];
  const r = runner.run('nft', args, { allowFailure: true });
  if (r.status === 0) return parseLiveTable(r.stdout);
  if (/No such file or directory/.test(r.stderr)) return EMPTY_TABLE;
  return parseLiveTable(runner.run('nft', args).stdout); // throws the right error (permission, tool failure)
}

/** Run `step` until it succeeds; an nft transaction fails as a whole when a handle vanished meanwhile. */
function retrying<T>(step: () => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      return step();
    } catch (e) {
      if (attempt >= ATTEMPTS || !(e instanceof ToolFailedError)) throw e;
    }
  }
}

export interface AppliedPublish {
  /** The script of the successful transaction (for debugging). */
  script: string;
}

/** Add the plan's rules (replacing leftovers of the same mappings) in one transaction. */
export function applyPublish(
  plan: PublishPlan,
  localnetOriginal?: string,
  runner: ToolRunner = systemRunner,
): AppliedPublish {
  const applied = retrying(() => {
    const script = renderApply(plan, readLiveTable(runner), localnetOriginal === undefined ? {} : { localnetOriginal });
    runner.run('nft', ['-f', '-'], { input: script });
    return { script };
  });
  for (const c of plan.forwardAccept) applyForwardAccept(plan, c.backend, c.family, runner);
  return applied;
}

// ── iptables FORWARD accept chain ────────────────────────────────────────────

const IPT: Record<IptablesBackend, Record<IpFamily, [tool: string, restore: string]>> = {
  'iptables-nft': { 4: ['iptables-nft', 'iptables-nft-restore'], 6: ['ip6tables-nft', 'ip6tables-nft-restore'] },
  'iptables-legacy': {
    4: ['iptables-legacy', 'iptables-legacy-restore'],
    6: ['ip6tables-legacy', 'ip6tables-legacy-restore'],
  },
};
function ipt(runner: ToolRunner, backend: IptablesBackend, family: IpFamily, args: string[], allowFailure = false) {
  return runner.run(IPT[backend][family][0], ['-w', ...args], { allowFailure });
}

/** Our chain, the jump to it first in FORWARD, then the plan's rules (one restore transaction). */
function applyForwardAccept(plan: PublishPlan, backend: IptablesBackend, family: IpFamily, runner: ToolRunner): void {
  ipt(runner, backend, family, ['-N', ACCEPT_CHAIN], true); // exists already when another publisher runs
  if (ipt(runner, backend, family, ['-C', 'FORWARD', '-j', ACCEPT_CHAIN], true).status !== 0)
    ipt(runner, backend, family, ['-I', 'FORWARD', '1', '-j', ACCEPT_CHAIN]);
  const live = parseAcceptChain(ipt(runner, backend, family, ['-S', ACCEPT_CHAIN]).stdout);
  const script = renderAcceptApply(plan, (p) => p.family === family && p.forwardAccept.includes(backend), live);
  runner.run(IPT[backend][family][1], ['-w', '--noflush'], { input: script });
}

/** Remove `owner`'s accept rules (all when undefined) wherever our chain exists; the chain goes with its last rule. */
function removeForwardAccept(owner: number | undefined, runner: ToolRunner): number {
  let removed = 0;
  for (const backend of Object.keys(IPT) as IptablesBackend[]) {
    for (const family of [4, 6] as const) {
      if (backend === 'iptables-legacy' && !legacyFilterExists(family, { runner })) continue;
      if (!runner.has(IPT[backend][family][0])) continue;
      const listed = ipt(runner, backend, family, ['-S', ACCEPT_CHAIN], true);
      if (listed.status !== 0) continue; // no chain of ours here
      const r = planAcceptRemoval(parseAcceptChain(listed.stdout), owner);
      if (r.script) runner.run(IPT[backend][family][1], ['-w', '--noflush'], { input: r.script });
      removed += r.removed;
      if (!r.chainEmpty) continue;
      while (ipt(runner, backend, family, ['-D', 'FORWARD', '-j', ACCEPT_CHAIN], true).status === 0);
      // Another publisher may have added a rule meanwhile: then its jump comes back.
      if (ipt(runner, backend, family, ['-X', ACCEPT_CHAIN], true).status !== 0)
        ipt(runner, backend, family, ['-I', 'FORWARD', '1', '-j', ACCEPT_CHAIN], true);
    }
  }
  return removed;
}

/** Filter-forward chains of this netns that drop by policy (nft, iptables-nft, iptables-legacy). */
export function probeForwardDrops(runner: ToolRunner = systemRunner): ForwardDrop[] {
  return probeDrops([PUBLISH_TABLE, NFT_TABLE], { runner });
}

export interface RemoveResult {
  removed: number;
  /** Owners (pids) whose rules were in the table, before removal. */
  owners: number[];
  restoredLocalnet?: string;
}

/** Remove `owner`'s rules (every rule when undefined); restore route_localnet when we were the last to need it. */
export function removePublish(owner?: number, runner: ToolRunner = systemRunner): RemoveResult {
  return retrying(() => {
    const live = readLiveTable(runner);
    const owners = [...new Set(live.rules.flatMap((r) => parseTag(r.comment)?.owner ?? []))].sort((a, b) => a - b);
    const removal = planRemoval(live, owner);
    if (removal.script) runner.run('nft', ['-f', '-'], { input: removal.script });
    removeForwardAccept(owner, runner);
    if (removal.restoreLocalnet !== undefined) writeSysctl(LOCALNET_SYSCTL, removal.restoreLocalnet, runner);
    return {
      removed: removal.removed,
      owners,
      ...(removal.restoreLocalnet !== undefined ? { restoredLocalnet: removal.restoreLocalnet } : {}),
    };
  });
}

export function readSysctl(key: string, runner: ToolRunner = systemRunner): string | undefined {
  const r = runner.run('sysctl', ['-n', key], { allowFailure: true });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function writeSysctl(key: string, value: string, runner: ToolRunner = systemRunner): void {
  runner.run('sysctl', ['-qw', `${key}=${value}`]);
}

export function forwardingEnabled(runner: ToolRunner = systemRunner): Record<IpFamily, boolean> {
  return {
    4: readSysctl('net.ipv4.ip_forward', runner) === '1',
    6: readSysctl('net.ipv6.conf.all.forwarding', runner) === '1',
  };
}

interface IpRoute {
  type?: string;
  dst?: string;
  dev?: string;
  gateway?: string;
}

/** Is the target local, and which prefixes share its segment (for hairpin masquerade)? */
export function probeRoute(targetIp: string, runner: ToolRunner = systemRunner): TargetRoute {
  const got = runner.run('ip', ['-j', 'route', 'get', targetIp], { allowFailure: true });
  if (got.status !== 0) return { local: false, onLink: [] }; // no route (yet): only the target itself
  const [info] = JSON.parse(got.stdout || '[]') as IpRoute[];
  if (!info) return { local: false, onLink: [] };
  if (info.type === 'local') return { local: true, onLink: [] };
  if (!info.dev) return { local: false, onLink: [] };
  const fam = familyOf(targetIp) === 4 ? '-4' : '-6';
  const shown = runner.run('ip', ['-j', fam, 'route', 'show', 'dev', info.dev], { allowFailure: true });
  if (shown.status !== 0) return { local: false, onLink: [] };
  const onLink = (JSON.parse(shown.stdout || '[]') as IpRoute[])
    .filter((r) => !r.gateway && r.dst && r.dst !== 'default' && (!r.type || r.type === 'unicast'))
    .map((r) => r.dst!)
    .filter((d) => !/^fe80:/i.test(d) && !/^(22[4-9]|23\d)\./.test(d) && !/^ff/i.test(d));
  return { local: false, onLink };
}
