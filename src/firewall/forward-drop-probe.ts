// Probe a network namespace for filter-forward chains that drop by policy (see forward-drop.ts).
// Read-only: `nft -j list ruleset`, and the legacy save only when the legacy filter table
// already exists (asking a legacy tool otherwise would create it).
import { hasTool, runSync } from '../kernel/exec.js';
import { forwardDropFromLegacySave, forwardDropsFromNft, type ForwardDrop, type IpFamily } from './forward-drop.js';

const LEGACY_NAMES: Record<IpFamily, string> = { 4: '/proc/net/ip_tables_names', 6: '/proc/net/ip6_tables_names' };

/** The legacy filter table of `family` exists in `netns` (the current one when undefined). */
export function legacyFilterExists(family: IpFamily, netns?: string): boolean {
  const r = runSync('cat', [LEGACY_NAMES[family]], { allowFailure: true, ...(netns ? { netns } : {}) });
  return r.status === 0 && r.stdout.split('\n').includes('filter');
}

/** Drops in `netns` (current when undefined), ignoring the nft tables named in `ignoreTables`. */
export function probeForwardDrops(ignoreTables: readonly string[], netns?: string): ForwardDrop[] {
  const on = netns ? { netns } : {};
  const drops: ForwardDrop[] = [];
  if (hasTool('nft')) {
    const r = runSync('nft', ['-j', 'list', 'ruleset'], { allowFailure: true, ...on });
    if (r.status === 0) drops.push(...forwardDropsFromNft(r.stdout, ignoreTables));
  }
  for (const family of [4, 6] as const) {
    const save = family === 4 ? 'iptables-legacy-save' : 'ip6tables-legacy-save';
    if (!hasTool(save) || !legacyFilterExists(family, netns)) continue;
    const out = runSync(save, ['-t', 'filter'], { allowFailure: true, ...on });
    if (out.status === 0) drops.push(...forwardDropFromLegacySave(out.stdout, family));
  }
  return drops;
}
