// The UDP side of TPROXY: transparent listeners (one per family) feed a flow table keyed by
// (client, original destination); the first datagram of a flow opens an outbound session,
// replies go back to the client from the original destination (a transparent reply socket
// per destination), idle flows expire. One log line per flow when it ends:
//   udp src=10.0.0.2:5000 dst=192.0.2.1:53 up=120 down=480 packets=2/2 dur=60012ms close=idle out=direct
//
// The server sees the proxy's address, not the client's: the UDP source is not spoofed (that
// would need the firewall to divert the server's replies to a transparent socket bound to the
// client's address, as `socket transparent 1` does for TCP).
import { networkInterfaces } from 'node:os';
import type { Logger } from '../observe/log.js';
import { encodeSockaddr, type Endpoint } from '../kernel/sockaddr.js';
import { UdpReplyPool, openUdpTproxyListener, type UdpDatagram, type UdpRecvBackend, type UdpTproxyListener } from '../kernel/udp-tproxy.js';
import { directUdpOutbound } from './direct.js';
import { FlowTable, flowKey, sweepInterval } from './flow-table.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from './types.js';

export interface UdpTproxyOptions {
  /** The port the firewall plan TPROXYs UDP to (usually the TCP listen port). */
  port: number;
  families: (4 | 6)[];
  /** A flow with no datagram in either direction for this long ends (default 60 s). */
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
  backend?: UdpRecvBackend;
  /** SO_RCVBUF for the listeners (default 4 MiB, capped by net.core.rmem_max). */
  receiveBuffer?: number;
}

export interface UdpTproxyStats {
  flowsTotal: number;
  datagramsUp: number;
  datagramsDown: number;
  /** Datagrams dropped, by reason (truncated, loop, flows-full, pending-full, reply-failed, …). */
  drops: Record<string, number>;
}

export interface UdpTproxy {
  close(): Promise<void>;
  /** Flows alive now. */
  readonly flows: number;
  /** The bound listeners (family, port, receive backend). */
  readonly listeners: readonly { family: 4 | 6; port: number; backend: string }[];
  readonly stats: UdpTproxyStats;
}

interface Flow extends UdpFlowInfo {
  readonly key: string;
  /** The client's sockaddr, encoded once for every reply. */
  readonly srcSockaddr: Buffer;
  readonly started: number;
  session?: UdpSession;
  pending: Buffer[] | undefined;
  upBytes: number;
  downBytes: number;
  upPackets: number;
  downPackets: number;
  ended: boolean;
}

function fmt(ep: Endpoint): string {
  return ep.family === 6 ? `[${ep.address}]:${ep.port}` : `${ep.address}:${ep.port}`;
}

/** Local addresses, refreshed at most once per second (only consulted for our own port). */
function localAddressCache(): (address: string) => boolean {
  let at = 0;
  let set = new Set<string>();
  return (address) => {
    if (Date.now() - at > 1000) {
      set = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
      at = Date.now();
    }
    return set.has(address) || address.startsWith('127.') || address === '::1' || address === '0.0.0.0' || address === '::';
  };
}

export async function startUdpTproxy(opts: UdpTproxyOptions): Promise<UdpTproxy> {
  const { log } = opts;
  const outbound = opts.outbound ?? directUdpOutbound({ mark: opts.mark });
  const maxFlows = opts.maxFlows ?? 16_384;
  const maxPending = opts.maxPending ?? 64;
  const table = new FlowTable<Flow>({ idleTimeoutMs: opts.idleTimeoutMs });
  const replies = new UdpReplyPool({ mark: opts.mark, idleTimeoutMs: Math.max(opts.idleTimeoutMs, 1000) });
  const stats: UdpTproxyStats = { flowsTotal: 0, datagramsUp: 0, datagramsDown: 0, drops: {} };
  const isLocal = localAddressCache();
  let nextId = 1;
  let closing = false;

  const drop = (reason: string) => {
    stats.drops[reason] = (stats.drops[reason] ?? 0) + 1;
  };

  const end = (flow: Flow, reason: string, error?: string) => {
    if (flow.ended) return;
    flow.ended = true;
    if (table.get(flow.key) === flow) table.delete(flow.key);
    flow.pending = undefined;
    flow.session?.close();
    log.info('udp', {
      src: fmt(flow.src),
      dst: fmt(flow.dst),
      up: flow.upBytes,
      down: flow.downBytes,
      packets: `${flow.upPackets}/${flow.downPackets}`,
      dur: `${Date.now() - flow.started}ms`,
      close: reason,
      out: outbound.name,
      ...(error ? { error } : {}),
    });
  };

  const reply = (flow: Flow, payload: Buffer, from?: Endpoint) => {
    if (flow.ended) return;
    table.touch(flow.key);
    flow.downBytes += payload.length;
    flow.downPackets++;
    stats.datagramsDown++;
    let ok: boolean;
    try {
      ok = replies.send(from ?? flow.dst, flow.srcSockaddr, payload);
    } catch (e) {
      // Binding the reply socket failed (e.g. the address:port is held without SO_REUSEADDR).
      drop('reply-failed');
      return end(flow, 'error', (e as Error).message);
    }
    if (!ok) drop('reply-failed');
  };

  const open = (flow: Flow) => {
    outbound.open(flow).then(
      (session) => {
        if (flow.ended) return session.close();
        flow.session = session;
        session.onMessage((payload, from) => reply(flow, payload, from));
        session.onClose((reason, error) => end(flow, reason, error));
        const pending = flow.pending ?? [];
        flow.pending = undefined;
        for (const p of pending) session.send(p);
      },
      (e: NodeJS.ErrnoException) => end(flow, 'error', e.code ?? e.message),
    );
  };

  const onDatagram = (d: UdpDatagram) => {
    if (closing) return;
    const key = flowKey(d.src, d.origDst);
    let flow = table.use(key);
    if (!flow) {
      // A datagram sent to our own port on a local address (not diverted by TPROXY) would
      // be relayed to ourselves forever.
      if (d.origDst.port === opts.port && isLocal(d.origDst.address)) return drop('loop');
      if (table.size >= maxFlows) return drop('flows-full');
      flow = {
        id: nextId++,
        key,
        src: d.src,
        dst: d.origDst,
        srcSockaddr: encodeSockaddr(d.src),
        started: Date.now(),
        pending: [],
        upBytes: 0,
        downBytes: 0,
        upPackets: 0,
        downPackets: 0,
        ended: false,
      };
      table.set(key, flow);
      stats.flowsTotal++;
      open(flow);
    }
    flow.upBytes += d.payload.length;
    flow.upPackets++;
    stats.datagramsUp++;
    if (flow.session) flow.session.send(d.payload);
    else if (flow.pending && flow.pending.length < maxPending) flow.pending.push(d.payload);
    else drop('pending-full');
  };

  const listeners: UdpTproxyListener[] = [];
  try {
    for (const family of opts.families) {
      listeners.push(
        await openUdpTproxyListener({
          family,
          port: opts.port,
          backend: opts.backend,
          receiveBuffer: opts.receiveBuffer ?? 4 << 20,
          onDatagram,
          onDrop: (reason, detail) => {
            drop(reason);
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
    for (const [, flow] of table.sweep()) end(flow, 'idle');
    replies.sweep();
  }, sweepInterval(opts.idleTimeoutMs));
  sweeper.unref();

  let closed: Promise<void> | undefined;
  return {
    get flows() {
      return table.size;
    },
    listeners: listeners.map((l) => ({ family: l.family, port: l.local.port, backend: l.backend })),
    stats,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        clearInterval(sweeper);
        await Promise.all(listeners.map((l) => l.close()));
        for (const [, flow] of table.drain()) end(flow, 'shutdown');
        replies.close();
      })()),
  };
}
