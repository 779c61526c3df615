// startUdpTproxy: the UDP side of TPROXY. Transparent listeners (one per family) feed a
// UdpRelay (relay.ts); replies leave from the original destination through transparent
// reply sockets cached per destination (kernel/udp-tproxy.ts); a timer sweeps idle flows.
//
// The server sees the proxy's address, not the client's: the UDP source is not spoofed (that
// would need the firewall to divert the server's replies to a transparent socket bound to the
// client's address, as `socket transparent 1` does for TCP).
import { networkInterfaces } from 'node:os';
import type { Logger } from '../observe/log.js';
import type { Endpoint } from '../kernel/sockaddr.js';
import {
  UdpReplyPool,
  openUdpTproxyListener,
  type UdpRecvBackend,
  type UdpTproxyListener,
} from '../kernel/udp-tproxy.js';
import { directUdpOutbound } from './direct.js';
import { sweepInterval } from './flow-table.js';
import { UdpRelay, type UdpRelayStats } from './relay.js';
import type { UdpOutbound } from './types.js';

export interface UdpTproxyOptions {
  /** The port the firewall plan TPROXYs UDP to (usually the TCP listen port). */
  port: number;
  families: (4 | 6)[];
  /** A flow with no datagram in either direction for this long ends (60 s is usual). */
  idleTimeoutMs: number;
  /** SO_MARK for upstream and reply sockets (the plan's bypass mark). */
  mark?: number;
  log: Logger;
  /** Default: direct (with `mark`). */
  outbound?: UdpOutbound;
  /** Default 16384 flows; datagrams of new flows beyond it are dropped. */
  maxFlows?: number;
  /** Datagrams held per flow while its session opens (default 64). */
  maxPending?: number;
  /** How datagrams are received (default auto: event-loop when koffi offers it). */
  backend?: UdpRecvBackend;
  /** SO_RCVBUF for the listeners (default 4 MiB, capped by net.core.rmem_max). */
  receiveBuffer?: number;
}

export type UdpTproxyStats = UdpRelayStats;

export interface UdpTproxy {
  close(): Promise<void>;
  /** Flows alive now. */
  readonly flows: number;
  /** The bound listeners (family, port, receive backend). */
  readonly listeners: readonly { family: 4 | 6; port: number; backend: string }[];
  readonly stats: UdpTproxyStats;
}

/** Our own port on a local address: a datagram sent there directly (not diverted) loops. */
function selfCheck(port: number): (dst: Endpoint) => boolean {
  let at = 0;
  let local = new Set<string>();
  return (dst) => {
    if (dst.port !== port) return false;
    if (Date.now() - at > 1000) {
      local = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
      at = Date.now();
    }
    return (
      local.has(dst.address) ||
      dst.address.startsWith('127.') ||
      dst.address === '::1' ||
      dst.address === '0.0.0.0' ||
      dst.address === '::'
    );
  };
}

export async function startUdpTproxy(opts: UdpTproxyOptions): Promise<UdpTproxy> {
  const { log } = opts;
  const replies = new UdpReplyPool({ mark: opts.mark, idleTimeoutMs: Math.max(opts.idleTimeoutMs, 1000) });
  const relay = new UdpRelay({
    outbound: opts.outbound ?? directUdpOutbound({ mark: opts.mark }),
    log,
    idleTimeoutMs: opts.idleTimeoutMs,
    reply: (from, client, payload) => replies.send(from, client, payload),
    isSelf: selfCheck(opts.port),
    maxFlows: opts.maxFlows,
    maxPending: opts.maxPending,
  });

  const listeners: UdpTproxyListener[] = [];
  try {
    for (const family of opts.families) {
      listeners.push(
        await openUdpTproxyListener({
          family,
          port: opts.port,
          backend: opts.backend,
          receiveBuffer: opts.receiveBuffer ?? 4 << 20,
          onDatagram: (d) => relay.onDatagram(d.src, d.origDst, d.payload),
          onDrop: (reason, detail) => {
            relay.drop(reason);
            if (reason.endsWith('-error')) log.warn('udp receive failed', { reason, detail });
          },
        }),
      );
    }
  } catch (e) {
    for (const l of listeners) await l.close();
    replies.close();
    throw e;
  }

  const sweeper = setInterval(() => {
    relay.sweep();
    replies.sweep();
  }, sweepInterval(opts.idleTimeoutMs));
  sweeper.unref();

  let closed: Promise<void> | undefined;
  return {
    get flows() {
      return relay.flows;
    },
    listeners: listeners.map((l) => ({ family: l.family, port: l.local.port, backend: l.backend })),
    stats: relay.stats,
    close: () =>
      (closed ??= (async () => {
        clearInterval(sweeper);
        await Promise.all(listeners.map((l) => l.close()));
        relay.close('shutdown');
        replies.close();
      })()),
  };
}
