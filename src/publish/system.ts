// The publish plan meets the kernel: read the live nft table, apply and remove atomically
// (retrying when another publishing process changed the table in between), probe routes
// and sysctls. Every tool runs through kernel/exec.
import { ToolFailedError } from '../errors.js';
import { runSync } from '../kernel/exec.js';
import { familyOf, parseTag, type IpFamily } from './mapping.js';
import { PUBLISH_TABLE, type PublishPlan, type TargetRoute } from './plan.js';
import { EMPTY_TABLE, parseLiveTable, planRemoval, renderApply, type LiveTable } from './render-nft.js';

const ATTEMPTS = 4;

export const LOCALNET_SYSCTL = 'net.ipv4.conf.all.route_localnet';

export function readLiveTable(): LiveTable {
  const args = ['-j', 'list', 'table', 'inet', PUBLISH_TABLE];
  const r = runSync('nft', args, { allowFailure: true });
  if (r.status === 0) return parseLiveTable(r.stdout);
  if (/No such file or directory/.test(r.stderr)) return EMPTY_TABLE;
  return parseLiveTable(runSync('nft', args).stdout); // throws the right error (permission, tool failure)
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
export function applyPublish(plan: PublishPlan, localnetOriginal?: string): AppliedPublish {
  return retrying(() => {
    const script = renderApply(plan, readLiveTable(), localnetOriginal === undefined ? {} : { localnetOriginal });
    runSync('nft', ['-f', '-'], { input: script });
    return { script };
  });
}

export interface RemoveResult {
  removed: number;
  /** Owners (pids) whose rules were in the table, before removal. */
  owners: number[];
  restoredLocalnet?: string;
}

/** Remove `owner`'s rules (every rule when undefined); restore route_localnet when we were the last to need it. */
export function removePublish(owner?: number): RemoveResult {
  return retrying(() => {
    const live = readLiveTable();
    const owners = [...new Set(live.rules.flatMap((r) => parseTag(r.comment)?.owner ?? []))].sort((a, b) => a - b);
    const removal = planRemoval(live, owner);
    if (removal.script) runSync('nft', ['-f', '-'], { input: removal.script });
    if (removal.restoreLocalnet !== undefined) writeSysctl(LOCALNET_SYSCTL, removal.restoreLocalnet);
    return {
      removed: removal.removed,
      owners,
      ...(removal.restoreLocalnet !== undefined ? { restoredLocalnet: removal.restoreLocalnet } : {}),
    };
  });
}

export function readSysctl(key: string): string | undefined {
  const r = runSync('sysctl', ['-n', key], { allowFailure: true });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function writeSysctl(key: string, value: string): void {
  runSync('sysctl', ['-qw', `${key}=${value}`]);
}

export function forwardingEnabled(): Record<IpFamily, boolean> {
  return {
    4: readSysctl('net.ipv4.ip_forward') === '1',
    6: readSysctl('net.ipv6.conf.all.forwarding') === '1',
  };
}

interface IpRoute {
  type?: string;
  dst?: string;
  dev?: string;
  gateway?: string;
}

/** Is the target local, and which prefixes share its segment (for hairpin masquerade)? */
export function probeRoute(targetIp: string): TargetRoute {
  const got = runSync('ip', ['-j', 'route', 'get', targetIp], { allowFailure: true });
  if (got.status !== 0) return { local: false, onLink: [] }; // no route (yet): only the target itself
  const [info] = JSON.parse(got.stdout || '[]') as IpRoute[];
  if (!info) return { local: false, onLink: [] };
  if (info.type === 'local') return { local: true, onLink: [] };
  if (!info.dev) return { local: false, onLink: [] };
  const fam = familyOf(targetIp) === 4 ? '-4' : '-6';
  const shown = runSync('ip', ['-j', fam, 'route', 'show', 'dev', info.dev], { allowFailure: true });
  if (shown.status !== 0) return { local: false, onLink: [] };
  const onLink = (JSON.parse(shown.stdout || '[]') as IpRoute[])
    .filter((r) => !r.gateway && r.dst && r.dst !== 'default' && (!r.type || r.type === 'unicast'))
    .map((r) => r.dst!)
    .filter((d) => !/^fe80:/i.test(d) && !/^(22[4-9]|23\d)\./.test(d) && !/^ff/i.test(d));
  return { local: false, onLink };
}
