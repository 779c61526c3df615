// `publish --list`: the registered mappings, grouped by owner, ranges compacted. Pure.
import { compact, formatGroup } from './mapping.js';
import type { ListedMapping } from './render-nft.js';

/** One line per mapping group: `tcp *:8080->10.0.0.2:80  pid 1234 (running)`. */
export function formatListing(listed: readonly ListedMapping[], alive: (pid: number) => boolean): string {
  if (listed.length === 0) return 'no published ports\n';
  const owners = [...new Set(listed.map((l) => l.owner))];
  const rows: [string, string][] = [];
  for (const owner of owners) {
    const state = alive(owner) ? 'running' : 'not running: leftover, remove with tranproxy publish --remove-all';
    for (const g of compact(listed.filter((l) => l.owner === owner).map((l) => l.mapping))) {
      rows.push([formatGroup(g), `pid ${owner} (${state})`]);
    }
  }
  const width = Math.max(...rows.map(([m]) => m.length));
  return `${rows.map(([m, o]) => `${m.padEnd(width)}  ${o}`).join('\n')}\n`;
}
