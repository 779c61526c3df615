// Outbounds to upstream proxy nodes, made from a NodeSpec (see uri.ts for the URI forms).
import { HttpConnectOutbound } from './http-connect.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type HostResolver,
  type NodeConnOptions,
} from './node-conn.js';
import { implementationsOf, nodeConnOptions } from './node-kinds.js';
import { ShadowsocksOutbound } from './shadowsocks.js';
import { Socks5Outbound } from './socks5.js';
import type { TcpOutbound } from './types.js';
import type { NodeSpec } from './uri.js';

export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  HttpConnectOutbound,
  ShadowsocksOutbound,
  Socks5Outbound,
};
export type { HostResolver, NodeConnOptions };
export { parseNodeUri, redactUri, SS_METHODS, type NodeSpec, type SsMethod } from './uri.js';
export { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';

export interface OutboundOptions {
  /** SO_MARK on the socket to the node (needs CAP_NET_ADMIN), so it is not captured again. */
  mark?: number;
  /** TCP connect to the node (including resolving its name); default 10 s. */
  connectTimeoutMs?: number;
  /** Protocol handshake with the node (SOCKS5 / HTTP CONNECT); default 10 s. */
  handshakeTimeoutMs?: number;
  /** Resolves the node's host name (-N); default: the system resolver. */
  resolve?: HostResolver;
}

export function createOutbound(spec: NodeSpec, opts: OutboundOptions = {}): TcpOutbound {
  return implementationsOf(spec).tcp(nodeConnOptions(opts));
}
