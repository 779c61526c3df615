// UDP outbounds to proxy nodes, made from a NodeSpec: SOCKS5 (UDP ASSOCIATE) and Shadowsocks
// (AEAD UDP relay). HTTP CONNECT nodes cannot carry UDP: createUdpOutbound gives undefined
// and udpUnsupportedReason says why, for the router's refusal message.
import { implementationsOf, nodeConnOptions } from './node-kinds.js';
import { ShadowsocksUdpOutbound } from './udp-shadowsocks.js';
import { Socks5UdpOutbound } from './udp-socks5.js';
import type { UdpOutbound } from '../udp/types.js';
import type { NodeSpec } from './uri.js';
import type { HostResolver } from './node-conn.js';

export { ShadowsocksUdpOutbound, Socks5UdpOutbound };

export interface UdpOutboundOptions {
  /** SO_MARK on the sockets to the node (control TCP and UDP), so they are not captured again. */
  mark?: number;
  /** Resolving the node's name and the SOCKS5 control connection; default 10 s. */
  connectTimeoutMs?: number;
  /** SOCKS5 greeting/authentication/UDP ASSOCIATE; default 10 s. */
  handshakeTimeoutMs?: number;
  /** Resolves the node's host name (-N); default: the system resolver. */
  resolve?: HostResolver;
}

/** The UDP outbound of a node, or undefined when its kind cannot carry UDP (http). */
export function createUdpOutbound(spec: NodeSpec, opts: UdpOutboundOptions = {}): UdpOutbound | undefined {
  return implementationsOf(spec).udp?.(nodeConnOptions(opts));
}

/** Why a node cannot carry UDP (undefined when it can). */
export function udpUnsupportedReason(spec: NodeSpec): string | undefined {
  const impl = implementationsOf(spec);
  return impl.udp ? undefined : impl.udpUnsupported;
}
