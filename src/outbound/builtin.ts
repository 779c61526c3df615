// The built-in outbounds: 'direct' (connect to the destination itself) and 'reject' (refuse
// the flow). Routes, groups and fallbacks name them like any node.
import { FLOW_CODES } from '../errors.js';
import { connectDirect, type DirectOptions } from './direct.js';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';

/** `direct`, with the socket options a flow needs (mark, source address) chosen per flow. */
export function directOutbound(optionsFor: (dst: Destination, ctx: ConnectContext) => DirectOptions): TcpOutbound {
  return {
    name: 'direct',
    kind: 'direct',
    connect: (dst, ctx) => {
      const opts = optionsFor(dst, ctx);
      return connectDirect(
        { address: dst.ip, port: dst.port, family: dst.family },
        ctx.signal ? { ...opts, signal: ctx.signal } : opts,
      );
    },
  };
}

/** `reject`: every connect fails with EREJECTED (the flow is closed with a reset). */
export const rejectOutbound: TcpOutbound = {
  name: 'reject',
  kind: 'reject',
  connect: () => Promise.reject(new OutboundError('reject', FLOW_CODES.rejected, 'rejected')),
};
