// UDP outbounds to proxy nodes, made from a NodeSpec: SOCKS5 (UDP ASSOCIATE) and Shadowsocks
// (AEAD UDP relay). HTTP CONNECT nodes cannot carry UDP: createUdpOutbound gives undefined
// and udpUnsupportedReason says why, for the router's refusal message.
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, type NodeConnOptions } from './node-conn.js';
import { ShadowsocksUdpOutbound } from './udp-shadowsocks.js';
import { Socks5UdpOutbound } from './udp-socks5.js';
import type { UdpOutbound } from '../udp/types.js';
import type { NodeSpec } from './uri.js';

export { ShadowsocksUdpOutbound, Socks5UdpOutbound };

export interface UdpOutboundOptions {
  /** SO_MARK on the sockets to the node (control TCP and UDP), so they are not captured again. */
  mark?: number;
  /** Resolving the node's name and the SOCKS5 control connection; default 10 s. */
  connectTimeoutMs?: number;
  /** SOCKS5 greeting/authentication/UDP ASSOCIATE; default 10 s. */
  handshakeTimeoutMs?: number;
}

/** The UDP outbound of a node, or undefined when its kind cannot carry UDP (http). */
export function createUdpOutbound(spec: NodeSpec, opts: UdpOutboundOptions = {}): UdpOutbound | undefined {
  const o: NodeConnOptions = {
    ...(opts.mark ? { mark: opts.mark } : {}),
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  };
  switch (spec.kind) {
    case 'socks5':
      return new Socks5UdpOutbound(spec, o);
    case 'shadowsocks':
      return new ShadowsocksUdpOutbound(spec, o);
    case 'http':
      return undefined;
  }
}

/** Why a node cannot carry UDP (undefined when it can). */
export function udpUnsupportedReason(spec: NodeSpec): string | undefined {
  return spec.kind === 'http' ? `node '${spec.name}' is an HTTP CONNECT proxy, which carries TCP only` : undefined;
}
