// Helpers for the Live view of a data plane: the closed-flow entry of an ended flow, and the
// group members a connection goes through.
import { formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';
import type { FlowEnd } from '../flow/record.js';
import type { ClosedFlow } from '../observe/flow-stats.js';
import { GroupOutbound } from '../outbound/group.js';
import type { TcpOutbound } from '../outbound/types.js';

/** The "recently closed" entry of a flow that ended with `end`. */
export function closedOf(
  flow: { id: number; src: Endpoint; dst: Endpoint; started: number },
  end: FlowEnd,
  path?: string[],
): Omit<ClosedFlow, 'seq'> {
  return {
    id: flow.id,
    src: formatEndpoint(flow.src),
    dst: formatEndpoint(flow.dst),
    ...(end.domain ? { domain: end.domain } : {}),
    ...(end.rule ? { rule: end.rule } : {}),
    ...(end.via ? { via: end.via } : {}),
    ...(path?.length ? { path } : {}),
    up: end.up,
    down: end.down,
    started: flow.started,
    durMs: end.durMs,
    outcome: end.close,
    ...(end.error ? { error: end.error } : {}),
  };
}

/** Through a group: its member now, and on through nested groups (empty for a plain node). */
export function memberPath(outbounds: ReadonlyMap<string, TcpOutbound>, outbound: TcpOutbound): string[] {
  const path: string[] = [];
  for (let o: TcpOutbound | undefined = outbound; o instanceof GroupOutbound && path.length < 16; ) {
    path.push(o.now);
    o = outbounds.get(o.now);
  }
  return path;
}
