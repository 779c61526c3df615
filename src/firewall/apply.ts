// The firewall API the CLI calls: render, apply atomically, remove, show. Only our own nft
// table, TRANPROXY_* chains (+ their jumps) and tagged ip rules/routes are ever touched.
import { enableForwarding, restoreForwarding } from './forwarding.js';
import { ToolFailedError, ToolMissingError } from '../errors.js';
import { NFT_TABLE, type CapturePlan, type Family } from './plan.js';
import { renderNft, renderNftRemove } from './render-nft.js';
import {
  IPT_TOOLS,
  jumpCommands,
  parseSave,
  reconcileRestore,
  renderIptables,
  type IptablesRender,
} from './render-iptables.js';
import { applyRouting, removeRouting, routingCommands, routingFor, showRouting } from './routes.js';
import { hasToolAt, runAt, type Target } from './target.js';
import { FAMILIES, FAMILY_LABEL, validatePlan } from './validate.js';

export type Backend = 'nft' | 'iptables';

const TABLES = ['nat', 'mangle'] as const;

/** nft when the nft tool exists, else iptables; ToolMissingError when neither does. */
export function detectBackend(target?: Target): Backend {
  if (hasToolAt(target, 'nft')) return 'nft';
  if (hasToolAt(target, 'iptables-restore')) return 'iptables';
  throw new ToolMissingError('nft', 'nftables');
}

/** What `tranproxy rules plan` prints. Throws UsageError on an invalid plan. */
export function renderPlan(plan: CapturePlan, backend: Backend): string {
  const routes = routingCommands(routingFor(plan));
  const routeText = routes.length ? `# TPROXY policy routing (tagged proto, idempotent):\n${routes.join('\n')}\n` : '';
  if (backend === 'nft') return renderNft(plan) + (routeText ? `\n${routeText.replace(/^ip /gm, '# ip ')}` : '');
  const parts = FAMILIES.map((f) => renderIptables(plan, f))
    .filter((r) => r.restore)
    .map(
      (r) => `${r.restore}# jumps from built-in chains (inserted only when missing):\n${jumpCommands(r).join('\n')}\n`,
    );
  return [...parts, routeText].filter(Boolean).join('\n');
}

function nftHasTable(target?: Target): boolean {
  try {
    const out = runAt(target, 'nft', ['list', 'tables']).stdout;
    return out.split('\n').some((l) => l.trim() === `table inet ${NFT_TABLE}`);
  } catch (e) {
    if (e instanceof ToolFailedError) return false; // nf_tables unusable here: nothing of ours either
    throw e;
  }
}

function removeNft(target?: Target): void {
  if (hasToolAt(target, 'nft') && nftHasTable(target)) runAt(target, 'nft', ['-f', '-'], { input: renderNftRemove() });
}

function liveIptables(family: Family, target?: Target) {
  const text = TABLES.map((t) => runAt(target, IPT_TOOLS[family].save, ['-t', t]).stdout).join('\n');
  return parseSave(text);
}

/** Bring one family's iptables state to `desired` (undefined: nothing of ours) in one restore. */
function reconcileIptables(family: Family, desired: IptablesRender | undefined, target?: Target): void {
  const tools = IPT_TOOLS[family];
  if (!desired?.chains.length && !(hasToolAt(target, tools.save) && hasToolAt(target, tools.restore))) return;
  const text = reconcileRestore(desired, liveIptables(family, target));
  if (text) runAt(target, tools.restore, ['--noflush'], { input: text });
}

/**
 * Apply atomically. Leftovers of a crashed run (either backend) are replaced; on any failure
 * everything of ours is removed (fail closed: nothing half-applied) and the error rethrown.
 */
export function applyPlan(plan: CapturePlan, backend: Backend, target?: Target): void {
  const p = validatePlan(plan); // UsageError before touching anything
  const nft = backend === 'nft' ? renderNft(p) : '';
  const ipt = backend === 'iptables' ? FAMILIES.map((f) => renderIptables(p, f)) : [];
  const routing = routingFor(p);
  try {
    if (backend === 'nft') for (const f of FAMILIES) reconcileIptables(f, undefined, target);
    else removeNft(target);
    // Routes before rules: a marked packet without its route would leak out unproxied.
    applyRouting(routing, target);
    if (backend === 'nft') runAt(target, 'nft', ['-f', '-'], { input: nft });
    else for (const r of ipt) reconcileIptables(r.family, r.chains.length ? r : undefined, target);
    // A gateway forwards what it does not capture; the old values come back on removal.
    if (p.capture.includes('prerouting')) enableForwarding(p.families, target);
  } catch (e) {
    try {
      removeRules(target);
    } catch {
      // keep the original error: it names the real problem
    }
    throw e;
  }
}

/** Idempotent: our nft table, TRANPROXY_* chains and jumps (both families), tagged rules/routes. */
export function removeRules(target?: Target): void {
  removeNft(target);
  for (const f of FAMILIES) reconcileIptables(f, undefined, target);
  removeRouting(target);
  restoreForwarding(target);
}

/** Everything of ours currently installed, '' when none. */
export function showRules(target?: Target): string {
  const parts: string[] = [];
  if (hasToolAt(target, 'nft') && nftHasTable(target)) {
    parts.push(runAt(target, 'nft', ['list', 'table', 'inet', NFT_TABLE]).stdout.trimEnd());
  }
  for (const f of FAMILIES) {
    if (!hasToolAt(target, IPT_TOOLS[f].save)) continue;
    for (const t of TABLES) {
      const out = runAt(target, IPT_TOOLS[f].save, ['-t', t]).stdout;
      const lines = out.split('\n').filter((l) => l.includes('TRANPROXY') && !l.startsWith('#'));
      if (lines.length) parts.push([`# ${FAMILY_LABEL[f]} ${t} (${IPT_TOOLS[f].save})`, ...lines].join('\n'));
    }
  }
  const routes = showRouting(target);
  if (routes) parts.push(routes);
  return parts.length ? `${parts.join('\n\n')}\n` : '';
}
