// The UDP flow relay without sockets: datagrams in (from the transparent listeners), flows
// keyed by (client, original destination), one outbound session per flow, replies out
// through an injected sender, idle expiry by sweep(). startUdpTproxy (tproxy.ts) wires it to
// the kernel; the unit tests drive it with a fake outbound and a fake clock.
//
// One log line per flow when it ends:
//   udp src=10.0.0.2:5000 dst=192.0.2.1:53 up=120 down=480 packets=2/2 dur=60012ms close=idle out=direct
// up/down are payload bytes, packets are datagrams up/down; close is idle | refused | error |
// shutdown (or a reason an outbound session reported).
import type { Logger } from '../observe/log.js';
import { encodeSockaddr, formatEndpoint, type Endpoint } from '../kernel/sockaddr.js';
import { FlowTable, flowKey } from './flow-table.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from './types.js';

export interface UdpRelayOptions {
  outbound: UdpOutbound;
  log: Logger;
  idleTimeoutMs: number;
  /** Send a datagram to the client FROM `from`; false when it was dropped. May throw. */
  reply: (from: Endpoint, client: Buffer, payload: Buffer) => boolean;
  /** Destinations never relayed (the proxy itself): the datagram is dropped as 'loop'. */
  isSelf?: (dst: Endpoint) => boolean;
  /** Default 16384; datagrams of new flows beyond it are dropped ('flows-full'). */
  maxFlows?: number;
  /** Datagrams held per flow while its session opens (default 64; beyond: 'pending-full'). */
  maxPending?: number;
  now?: () => number;
}

export interface UdpRelayStats {
  flowsTotal: number;
  datagramsUp: number;
  datagramsDown: number;
  /** Datagrams dropped, by reason. */
  drops: Record<string, number>;
}

interface UdpRelayFlow extends UdpFlowInfo {
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

export class UdpRelay {
  readonly stats: UdpRelayStats = { flowsTotal: 0, datagramsUp: 0, datagramsDown: 0, drops: {} };
  private readonly table: FlowTable<UdpRelayFlow>;
  private readonly now: () => number;
  private readonly maxFlows: number;
  private readonly maxPending: number;
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: UdpRelayOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.table = new FlowTable<UdpRelayFlow>({ idleTimeoutMs: opts.idleTimeoutMs, now: this.now });
    this.maxFlows = opts.maxFlows ?? 16_384;
    this.maxPending = opts.maxPending ?? 64;
  }

  /** Flows alive now. */
  get flows(): number {
    return this.table.size;
  }

  drop(reason: string): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + 1;
  }

  /** A datagram from a client to its original destination. */
  onDatagram(src: Endpoint, dst: Endpoint, payload: Buffer): void {
    if (this.closed) return;
    const key = flowKey(src, dst);
    let flow = this.table.use(key);
    if (!flow) {
      if (this.opts.isSelf?.(dst)) return this.drop('loop');
      if (this.table.size >= this.maxFlows) return this.drop('flows-full');
      flow = {
        id: this.nextId++,
        key,
        src,
        dst,
        srcSockaddr: encodeSockaddr(src),
        started: this.now(),
        pending: [],
        upBytes: 0,
        downBytes: 0,
        upPackets: 0,
        downPackets: 0,
        ended: false,
      };
      this.table.set(key, flow);
      this.stats.flowsTotal++;
      this.open(flow);
    }
    flow.upBytes += payload.length;
    flow.upPackets++;
    this.stats.datagramsUp++;
    if (flow.session) flow.session.send(payload);
    else if (flow.pending && flow.pending.length < this.maxPending) flow.pending.push(payload);
    else this.drop('pending-full');
  }

  /** End flows idle for the timeout; returns how many ended. */
  sweep(): number {
    const expired = this.table.sweep();
    for (const [, flow] of expired) this.end(flow, 'idle');
    return expired.length;
  }

  /** End every flow (logged with `reason`) and refuse new datagrams. */
  close(reason = 'shutdown'): void {
    this.closed = true;
    for (const [, flow] of this.table.drain()) this.end(flow, reason);
  }

  private open(flow: UdpRelayFlow): void {
    let opening: Promise<UdpSession>;
    try {
      opening = this.opts.outbound.open(flow);
    } catch (e) {
      opening = Promise.reject(e);
    }
    opening.then(
      (session) => {
        if (flow.ended) return session.close();
        flow.session = session;
        session.onMessage((payload, from) => this.reply(flow, payload, from));
        session.onClose((reason, error) => this.end(flow, reason, error));
        const pending = flow.pending ?? [];
        flow.pending = undefined;
        for (const p of pending) session.send(p);
      },
      (e: NodeJS.ErrnoException) => this.end(flow, 'error', e.code ?? e.message),
    );
  }

  private reply(flow: UdpRelayFlow, payload: Buffer, from?: Endpoint): void {
    if (flow.ended) return;
    this.table.touch(flow.key);
    flow.downBytes += payload.length;
    flow.downPackets++;
    this.stats.datagramsDown++;
    let ok: boolean;
    try {
      ok = this.opts.reply(from ?? flow.dst, flow.srcSockaddr, payload);
    } catch (e) {
      // The reply socket could not be made (e.g. its address:port is held without SO_REUSEADDR).
      this.drop('reply-failed');
      return this.end(flow, 'error', (e as Error).message);
    }
    if (!ok) this.drop('reply-failed');
  }

  private end(flow: UdpRelayFlow, reason: string, error?: string): void {
    if (flow.ended) return;
    flow.ended = true;
    if (this.table.get(flow.key) === flow) this.table.delete(flow.key);
    flow.pending = undefined;
    flow.session?.close();
    this.opts.log.info('udp', {
      src: formatEndpoint(flow.src),
      dst: formatEndpoint(flow.dst),
      up: flow.upBytes,
      down: flow.downBytes,
      packets: `${flow.upPackets}/${flow.downPackets}`,
      dur: `${Math.round(this.now() - flow.started)}ms`,
      close: reason,
      out: this.opts.outbound.name,
      ...(error ? { error } : {}),
    });
  }
}
