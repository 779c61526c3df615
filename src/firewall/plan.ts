// A capture plan is plain data: what to capture and where to send it. Renderers turn it
// into nft or iptables-restore text; apply/remove feed that text to the kernel atomically.

export type CaptureMode = 'redirect' | 'tproxy';
/**
 * `output`: this host's (or pod's) own traffic. `prerouting`: traffic routed through it.
 * `inbound`: connections arriving for this host's own addresses (Istio's inbound capture).
 */
export type CapturePoint = 'output' | 'prerouting' | 'inbound';
export type Family = 'ipv4' | 'ipv6';
export type Protocol = 'tcp' | 'udp';

/** Inclusive port range; a single port has from === to. */
export interface PortRange {
  from: number;
  to: number;
}

/** A CIDR split into its family and text, e.g. { family: 'ipv4', text: '10.0.0.0/8' }. */
export interface Cidr {
  family: Family;
  text: string;
}

export interface CapturePlan {
  mode: CaptureMode;
  /** Where to capture; at least one. */
  capture: CapturePoint[];
  families: Family[];
  /** Protocols to capture (UDP only in TPROXY mode). */
  protocols: Protocol[];
  /** Local port the proxy listens on. */
  proxyPort: number;
  /** Destination ports to capture; empty means all ports. */
  includePorts: PortRange[];
  /** Destination ports never captured. */
  excludePorts: PortRange[];
  /** Destination CIDRs to capture; empty means all destinations. */
  includeDestinations: Cidr[];
  /** Destination CIDRs never captured. */
  excludeDestinations: Cidr[];
  /** prerouting only: capture only packets from these sources (empty: any). */
  sourceCidrs: Cidr[];
  /** prerouting only: capture only packets arriving on these interfaces (empty: any). */
  inInterfaces: string[];
  /** output only: sockets owned by these uids/gids are never captured (the proxy's own). */
  excludeUids: number[];
  excludeGids: number[];
  /** Packets carrying this mark (set by the proxy with SO_MARK) are never captured. */
  bypassMark: number;
  /** Bits of the packet mark the bypass mark is compared on (default 0xffffffff: all). */
  bypassMask?: number;
  /** TPROXY only: mark given to diverted packets, and the route table that delivers them locally. */
  tproxyMark: number;
  /** Bits of the packet mark the TPROXY mark occupies; other bits are kept (default: all). */
  tproxyMask?: number;
  tproxyTable: number;
  /** TPROXY only: preference of the `ip rule`; undefined lets the kernel choose. */
  rulePref?: number;
  /** inbound only: local destination ports to capture; empty or absent: all. */
  inboundPorts?: PortRange[];
  /** inbound only: local destination ports never captured (the proxy's own among them). */
  excludeInboundPorts?: PortRange[];
  /**
   * TPROXY inbound only: the proxy connects to the local app from the client's address with
   * the TPROXY mark on its socket; the connection keeps that mark (conntrack) so the app's
   * replies are routed back through lo to the proxy instead of out to the client.
   */
  inboundPreserveSource?: boolean;
}

/** Names shared by every renderer, so `rules remove` finds what any apply created. */
export const NFT_TABLE = 'tranproxy';
export const IPT_CHAIN_PREFIX = 'TRANPROXY_';
