// What a UDP outbound offers the UDP relay. `direct` is the first; SOCKS5 UDP ASSOCIATE and
// Shadowsocks UDP plug in by implementing the same two interfaces.
import type { Endpoint } from '../kernel/sockaddr.js';

/** One UDP flow: a client address talking to one original destination. */
export interface UdpFlowInfo {
  readonly id: number;
  /** The client (source of the captured datagrams). */
  readonly src: Endpoint;
  /** The original destination (TPROXY IP_ORIGDSTADDR). */
  readonly dst: Endpoint;
  /** Domain name, when one is known (sniffed / fake-IP); outbounds may prefer it. */
  readonly domain?: string;
}

export interface UdpSession {
  /** Send one datagram to the flow's destination. Never throws; a failure is a drop. */
  send(payload: Buffer): void;
  /**
   * Datagrams from upstream for the client. `from` is the remote that sent it when the
   * outbound knows it and it is not the flow's destination (SOCKS5 / Shadowsocks carry the
   * address in each datagram; full-cone NAT); the reply then leaves from that address.
   */
  onMessage(cb: (payload: Buffer, from?: Endpoint) => void): void;
  /** Called at most once when the session ends by itself (error, refused, proxy gone). */
  onClose(cb: (reason: string, error?: string) => void): void;
  /** Release everything (sockets, associations). Idempotent. */
  close(): void;
}

export interface UdpOutbound {
  /** Name used in routing rules and logs. */
  readonly name: string;
  /** Kind, for logs/metrics: direct, socks5, shadowsocks, reject. */
  readonly kind: string;
  /** A session ready to carry datagrams for `flow`, or a rejected promise. */
  open(flow: UdpFlowInfo): Promise<UdpSession>;
}
