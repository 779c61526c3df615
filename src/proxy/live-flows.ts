// The Live view's group path: the members a connection goes through.
import { GroupOutbound } from '../outbound/group.js';
import type { TcpOutbound } from '../outbound/types.js';

/** Through a group: its member now, and on through nested groups (empty for a plain node). */
export function memberPath(outbounds: ReadonlyMap<string, TcpOutbound>, outbound: TcpOutbound): string[] {
  const path: string[] = [];
  for (let o: TcpOutbound | undefined = outbound; o instanceof GroupOutbound && path.length < 16; ) {
    path.push(o.now);
    o = outbounds.get(o.now);
  }
  return path;
}
