// Probe a network namespace for filter-forward chains that drop by policy (see forward-drop.ts).
// Read-only: `nft -j list ruleset`, and the legacy save only when the legacy filter table
// already exists (asking a legacy tool otherwise would create it).
import { forwardDropFromLegacySave, forwardDropsFromNft, type ForwardDrop, type IpFamily } from './forward-drop.js';
import { hasToolAt, runAt, type Target } from './target.js';

const LEGACY_NAMES: Record<IpFamily, string> = { 4: '/proc/net/ip_tables_names', 6: '/proc/net/ip6_tables_names' };

/** The legacy filter table of `family` exists in the target's netns (the current one when unset). */
export function legacyFilterExists(family: IpFamily, target?: Target): boolean {
  const r = runAt(target, 'cat', [LEGACY_NAMES[family]], { allowFailure: true });
  return r.status === 0 && r.stdout.split('\n').includes('filter');
}

/** Drops in the target's netns (current when unset), ignoring the nft tables named in `ignoreTables`. */
export function probeForwardDrops(ignoreTables: readonly string[], target?: Target): ForwardDrop[] {
  const drops: ForwardDrop[] = [];
  if (hasToolAt(target, 'nft')) {
    const r = runAt(target, 'nft', ['-j', 'list', 'ruleset'], { allowFailure: true });
    if (r.status === 0) drops.push(...forwardDropsFromNft(r.stdout, ignoreTables));
  }
  for (const family of [4, 6] as const) {
    const save = family === 4 ? 'iptables-legacy-save' : 'ip6tables-legacy-save';
    if (!hasToolAt(target, save) || !legacyFilterExists(family, target)) continue;
    const out = runAt(target, save, ['-t', 'filter'], { allowFailure: true });
    if (out.status === 0) drops.push(...forwardDropFromLegacySave(out.stdout, family));
  }
  return drops;
}
