// The one place a node's kind (the scheme of its URI) picks its implementations: the TCP
// outbound, and the UDP outbound when the kind can carry UDP. createOutbound (index.ts) and
// createUdpOutbound (udp-outbound.ts) both build from here, so a new kind is added once.
import { HttpConnectOutbound } from './http-connect.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type HostResolver,
  type NodeConnOptions,
} from './node-conn.js';
import { ShadowsocksOutbound } from './shadowsocks.js';
import { Socks5Outbound } from './socks5.js';
import type { TcpOutbound } from './types.js';
import type { UdpOutbound } from '../udp/types.js';
import { ShadowsocksUdpOutbound } from './udp-shadowsocks.js';
import { Socks5UdpOutbound } from './udp-socks5.js';
import { TrojanOutbound } from './trojan.js';
import { V2rayUdpOutbound } from './udp-v2ray.js';
import { VlessOutbound } from './vless.js';
import { VmessOutbound } from './vmess.js';
import type { NodeSpec } from './uri.js';

/** What callers may set for the connections to a node; the rest has defaults. */
export interface NodeOutboundOptions {
  mark?: number;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  resolve?: HostResolver;
}

/** Options as the outbounds take them: timeouts defaulted, no mark when it is 0 or unset. */
export function nodeConnOptions(opts: NodeOutboundOptions): NodeConnOptions {
  return {
    ...(opts.mark ? { mark: opts.mark } : {}),
    ...(opts.resolve ? { resolve: opts.resolve } : {}),
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  };
}

/** A node's implementations, made on demand (a TCP-only user never builds the UDP side). */
export type NodeImplementations =
  | { tcp(o: NodeConnOptions): TcpOutbound; udp(o: NodeConnOptions): UdpOutbound }
  | { tcp(o: NodeConnOptions): TcpOutbound; udp: undefined; udpUnsupported: string };

export function implementationsOf(spec: NodeSpec): NodeImplementations {
  switch (spec.kind) {
    case 'socks5':
      return { tcp: (o) => new Socks5Outbound(spec, o), udp: (o) => new Socks5UdpOutbound(spec, o) };
    case 'http':
      return {
        tcp: (o) => new HttpConnectOutbound(spec, o),
        udp: undefined,
        udpUnsupported: `node '${spec.name}' is an HTTP CONNECT proxy, which carries TCP only`,
      };
    case 'shadowsocks':
      if (spec.plugin) {
        return {
          tcp: (o) => new ShadowsocksOutbound(spec, o),
          udp: undefined,
          udpUnsupported: `node '${spec.name}' runs the SIP003 plugin ${spec.plugin.name}, which carries TCP only`,
        };
      }
      return { tcp: (o) => new ShadowsocksOutbound(spec, o), udp: (o) => new ShadowsocksUdpOutbound(spec, o) };
    case 'vmess':
      return { tcp: (o) => new VmessOutbound(spec, o), udp: (o) => new V2rayUdpOutbound(spec, o) };
    case 'vless':
      return { tcp: (o) => new VlessOutbound(spec, o), udp: (o) => new V2rayUdpOutbound(spec, o) };
    case 'trojan':
      return { tcp: (o) => new TrojanOutbound(spec, o), udp: (o) => new V2rayUdpOutbound(spec, o) };
  }
}
