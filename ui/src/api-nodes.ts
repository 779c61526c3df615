// The Nodes page's part of the console API: kept delay tests and node groups.
import { get, post, put, type State } from './api.js';

/** A node's delay test: an HTTP GET of `url` through the node (the anchors' delay). */
export interface NodeTest {
  ok: boolean;
  url: string;
  delayMs?: number;
  error?: string;
  /** When it finished (ISO time). */
  at: string;
}
export interface NodeTests {
  url: string;
  results: Record<string, NodeTest>;
}
export interface GroupMember {
  name: string;
  alive: boolean;
  delayMs?: number;
  error?: string;
}
export interface Group {
  name: string;
  type: 'select' | 'url-test' | 'fallback';
  now: string;
  url: string;
  members: GroupMember[];
}

export const loadTests = () => get<NodeTests>('/api/node-tests');
export const testAll = () => post<NodeTests>('/api/node-tests');
export const testOne = (name: string) => post<NodeTest>(`/api/nodes/${encodeURIComponent(name)}/test`);
/** Make a node or group the default TCP outbound (`default`). */
export const setTcpDefault = (name: string) => put<State>('/api/settings', { tcpNode: name });
export const loadGroups = () => get<Group[]>('/api/groups');
export const selectMember = (group: string, member: string) =>
  put<Group[]>(`/api/groups/${encodeURIComponent(group)}`, { member });

/**
 * Node names ordered by delay: tested and answering first (fastest first), then failed,
 * then untested, each in file order.
 */
export function byDelay(names: readonly string[], results: Readonly<Record<string, NodeTest>>): string[] {
  const rank = (n: string) => {
    const r = results[n];
    return r === undefined ? 2 : r.ok && r.delayMs !== undefined ? 0 : 1;
  };
  return names
    .map((n, i) => ({ n, i }))
    .sort(
      (a, b) =>
        rank(a.n) - rank(b.n) || (rank(a.n) === 0 ? results[a.n]!.delayMs! - results[b.n]!.delayMs! : 0) || a.i - b.i,
    )
    .map((x) => x.n);
}

/** good < 300 ms ≤ warn < 1 s ≤ slow, as the anchors colour delays. */
export const delayClass = (ms: number) => (ms < 300 ? 'good' : ms < 1000 ? 'warn' : 'bad');
