// What every outbound (direct, socks5, http, shadowsocks) offers the data plane.
import type { Duplex } from 'node:stream';
import { FlowError } from '../errors.js';

/** Where a flow wants to go: the original destination, plus the domain when one is known. */
export interface Destination {
  /** Original destination IP (from the kernel). */
  ip: string;
  port: number;
  family: 4 | 6;
  /** Domain name recovered by sniffing (HTTP Host / TLS SNI) or fake-IP, if any. */
  domain?: string;
}

export interface ConnectContext {
  /** Client address of the flow (for logs, and for `direct` with source preservation). */
  source: { address: string; port: number };
  /** Aborts the attempt (client gone, shutdown). */
  signal?: AbortSignal;
}

export interface TcpOutbound {
  /** Name used in routing rules and logs. */
  readonly name: string;
  /** Kind, for logs/metrics: direct, socks5, http, shadowsocks, reject. */
  readonly kind: string;
  /** A connected, ready-to-relay stream to `dst` (handshake done), or a rejected promise with OutboundError. */
  connect(dst: Destination, ctx: ConnectContext): Promise<Duplex>;
}

/** Why an outbound could not connect: a FlowError naming the outbound in its message. */
export class OutboundError extends FlowError {
  declare readonly outbound: string;
  constructor(outbound: string, code: string, message: string) {
    super(code, `${outbound}: ${message}`, outbound);
  }
}

/** Outbound error codes that mean the node itself could not be reached. */
export const NODE_UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
