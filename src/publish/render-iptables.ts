// Accept rules for DNATed flows where an iptables FORWARD chain drops (Docker's default policy).
// Pure. Like Docker's DOCKER-USER/DOCKER-FORWARD: our own chain TPX_PUBLISH in the filter table,
// one jump to it at the top of FORWARD, one rule per mapping tagged like the nft rules (so each
// publishing process removes only its own); the jump and chain go with the last rule.
// A rule matches the conntrack entry (DNAT from HOST_PORT to TARGET:PORT): both directions of
// exactly that published flow, nothing else.
import { parseTag } from './mapping.js';
import type { MappingPlan, PublishPlan } from './plan.js';

export const ACCEPT_CHAIN = 'TPX_PUBLISH';

/** A rule of the live chain: its spec as `iptables -S` prints it (after `-A CHAIN `). */
export interface LiveAcceptRule {
  spec: string;
  comment?: string;
}

/** `iptables -S TPX_PUBLISH` → its rules. */
export function parseAcceptChain(text: string): LiveAcceptRule[] {
  const out: LiveAcceptRule[] = [];
  const prefix = `-A ${ACCEPT_CHAIN} `;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const spec = line.slice(prefix.length);
    const c = /--comment "((?:[^"\\]|\\.)*)"/.exec(spec) ?? /--comment (\S+)/.exec(spec);
    out.push({ spec, ...(c ? { comment: c[1]! } : {}) });
  }
  return out;
}

/** The accept rule of one mapping (iptables-restore syntax, without `-A CHAIN`). */
export function acceptRule(p: MappingPlan): string {
  const m = p.mapping;
  return (
    `-p ${m.proto} -m conntrack --ctstate DNAT --ctorigdstport ${m.hostPort} --ctreplsrc ${m.targetIp} --ctreplsrcport ${m.targetPort} ` +
    `-m comment --comment "${p.tag}" -j ACCEPT`
  );
}

/**
 * One `iptables-restore --noflush` transaction for one backend and family: drop leftovers of
 * the same mappings (their owner is gone: we hold the ports), add ours.
 */
export function renderAcceptApply(
  plan: PublishPlan,
  mine: (p: MappingPlan) => boolean,
  live: readonly LiveAcceptRule[],
): string {
  const keys = new Set(plan.mappings.map((p) => p.key));
  const stale = live.filter((r) => {
    const t = parseTag(r.comment);
    return t !== undefined && keys.has(t.key);
  });
  const lines = ['*filter', ...stale.map((r) => `-D ${ACCEPT_CHAIN} ${r.spec}`)];
  for (const p of plan.mappings) if (mine(p)) lines.push(`-A ${ACCEPT_CHAIN} ${acceptRule(p)}`);
  return [...lines, 'COMMIT', ''].join('\n');
}

export interface AcceptRemoval {
  /** iptables-restore --noflush script; '' when none of the rules is the owner's. */
  script: string;
  /** Nothing of anybody's is left: remove the jump and the chain. */
  chainEmpty: boolean;
  removed: number;
}

/** Remove `owner`'s rules (every rule when undefined). */
export function planAcceptRemoval(live: readonly LiveAcceptRule[], owner?: number): AcceptRemoval {
  const mine = (r: LiveAcceptRule) => owner === undefined || parseTag(r.comment)?.owner === owner;
  const removed = live.filter(mine);
  const script = removed.length
    ? ['*filter', ...removed.map((r) => `-D ${ACCEPT_CHAIN} ${r.spec}`), 'COMMIT', ''].join('\n')
    : '';
  return { script, chainEmpty: removed.length === live.length, removed: removed.length };
}
