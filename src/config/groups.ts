// Group validation: members must be known outbounds, and groups must not contain themselves.
import { unknownOutboundMessage } from '../route/index.js';

/** The first cycle among groups, as a path that ends where it starts ("a -> b -> a"), if any. */
export function findGroupCycle(groups: Readonly<Record<string, { members: readonly string[] }>>): string[] | undefined {
  const done = new Set<string>();
  const visit = (name: string, path: string[]): string[] | undefined => {
    const at = path.indexOf(name);
    if (at >= 0) return [...path.slice(at), name];
    if (done.has(name) || !groups[name]) return undefined;
    for (const m of groups[name].members) {
      const c = visit(m, [...path, name]);
      if (c) return c;
    }
    done.add(name);
    return undefined;
  };
  for (const g of Object.keys(groups)) {
    const c = visit(g, []);
    if (c) return c;
  }
  return undefined;
}

/** Problems with the groups, as [path, message] pairs (empty: fine). */
export function groupProblems(
  groups: Readonly<Record<string, { members: readonly string[] }>>,
  known: readonly string[],
  nodes: readonly string[],
): [(string | number)[], string][] {
  const out: [(string | number)[], string][] = [];
  for (const [name, g] of Object.entries(groups)) {
    if (nodes.includes(name)) out.push([['groups', name], `'${name}' is already a node; give the group another name`]);
    if (g.members.length === 0)
      out.push([['groups', name, 'members'], 'empty list: a group needs at least one member']);
    g.members.forEach((m, i) => {
      if (!known.includes(m)) out.push([['groups', name, 'members', i], unknownOutboundMessage(m, known)]);
    });
  }
  const cycle = findGroupCycle(groups);
  if (cycle) out.push([['groups', cycle[0]!], `groups form a cycle: ${cycle.join(' -> ')}`]);
  return out;
}
