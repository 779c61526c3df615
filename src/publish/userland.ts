// The userland proxy (docker-proxy's job, for every mapping in one process): holds each
// host port from the start — nothing else can bind it — and relays what NAT rules do not
// cover (127.0.0.1 and ::1, a client family that differs from the target's, everything
// with --firewall none). TCP keeps half-close and backpressure (relay/); UDP keeps one
// upstream socket per client with an idle timeout.
import dgram from 'node:dgram';
import net from 'node:net';
import { TranproxyError, SyscallError } from '../errors.js';
import { closeFd, createListenerFd } from '../kernel/sockets.js';
import type { Logger } from '../observe/log.js';
import { connectDirect } from '../outbound/direct.js';
import { relay } from '../relay/relay.js';
import { canonicalIp, familyOf, formatEndpoint, listenAddresses, type PortMapping } from './mapping.js';

export interface UserlandOptions {
  connectTimeoutMs: number;
  /** TCP: close a connection idle in both directions this long; 0: never. */
  tcpIdleTimeoutMs: number;
  /** UDP: forget a client (and close its upstream socket) after this long without packets. */
  udpIdleTimeoutMs: number;
  /** TCP connections plus UDP clients at once, over all ports (two and one file descriptors). */
  maxConnections: number;
  /** UDP clients per port; the least recently active one is dropped beyond it. */
  maxUdpFlowsPerPort: number;
  log: Logger;
}

/** A host port could not be taken (in use, not a local address, no permission). */
export class PortUnavailableError extends TranproxyError {}

function ep(address: string, port: number): string {
  return formatEndpoint(address, port);
}

function bindError(m: PortMapping, address: string, e: unknown): PortUnavailableError {
  const code = e instanceof SyscallError ? e.code : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
  const where = `host port ${m.hostPort}/${m.proto} on ${ep(address, m.hostPort).replace(/:\d+$/, '')}`;
  const hint: Record<string, string> = {
    EADDRINUSE: 'is already in use: stop what holds it (ss -lntup) or choose another HOST_PORT',
    EADDRNOTAVAIL: 'cannot be bound: HOST_IP is not an address of this host',
    EACCES: 'needs privileges: run as root or grant CAP_NET_BIND_SERVICE',
    EPERM: 'needs privileges: run as root or grant CAP_NET_BIND_SERVICE',
  };
  return new PortUnavailableError(`${where} ${hint[code] ?? `cannot be bound (${code})`}`, { cause: e });
}

interface TcpBinding {
  mapping: PortMapping;
  address: string;
  fd: number;
  server?: net.Server;
}

interface UdpFlow {
  id: number;
  key: string;
  clientAddress: string;
  clientPort: number;
  upstream: dgram.Socket;
  started: number;
  last: number;
  up: number;
  down: number;
  timer: NodeJS.Timeout;
}

interface UdpBinding {
  mapping: PortMapping;
  address: string;
  socket: dgram.Socket;
  flows: Map<string, UdpFlow>;
}

export interface UserlandStats {
  tcpListeners: number;
  udpSockets: number;
  connections: number;
  udpFlows: number;
}

export class UserlandProxy {
  private readonly tcp: TcpBinding[] = [];
  private readonly udp: UdpBinding[] = [];
  private readonly conns = new Set<net.Socket>();
  private tcpActive = 0;
  private udpFlows = 0;
  private nextId = 0;
  private closed = false;

  private constructor(private readonly opts: UserlandOptions) {}

  /**
   * Bind every host port of every mapping (TCP listeners, UDP sockets) or none: on the
   * first failure everything bound so far is released and a PortUnavailableError thrown.
   * TCP sockets listen at once (the kernel queues connections until start()).
   */
  static async hold(mappings: readonly PortMapping[], opts: UserlandOptions): Promise<UserlandProxy> {
    const p = new UserlandProxy(opts);
    try {
      for (const m of mappings) {
        for (const address of listenAddresses(m)) {
          if (m.proto === 'tcp') p.holdTcp(m, address);
          else await p.holdUdp(m, address);
        }
      }
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  private holdTcp(m: PortMapping, address: string): void {
    let fd: number;
    try {
      fd = createListenerFd({ family: familyOf(address), address, port: m.hostPort, transparent: false, backlog: 511 });
    } catch (e) {
      throw bindError(m, address, e);
    }
    this.tcp.push({ mapping: m, address, fd });
  }

  private holdUdp(m: PortMapping, address: string): Promise<void> {
    const v6 = familyOf(address) === 6;
    const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => {
        socket.close();
        reject(bindError(m, address, e));
      };
      socket.once('error', onError);
      socket.bind({ address, port: m.hostPort, exclusive: true }, () => {
        socket.removeListener('error', onError);
        const b: UdpBinding = { mapping: m, address, socket, flows: new Map() };
        socket.on('error', (e) =>
          this.opts.log.warn('udp socket error', { host: ep(address, m.hostPort), error: e.message }),
        );
        socket.on('message', (msg, rinfo) => this.onDatagram(b, msg, rinfo));
        this.udp.push(b);
        resolve();
      });
    });
  }

  /** Accept on every TCP listener. Resolves once all of them serve. */
  async start(): Promise<void> {
    await Promise.all(
      this.tcp.map(
        (b) =>
          new Promise<void>((resolve, reject) => {
            const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) =>
              this.onConnection(b, s),
            );
            b.server = server;
            server.once('error', reject);
            server.listen({ fd: b.fd }, () => {
              server.removeListener('error', reject);
              server.on('error', (e) =>
                this.opts.log.warn('listener error', { host: ep(b.address, b.mapping.hostPort), error: e.message }),
              );
              resolve();
            });
          }),
      ),
    );
  }

  stats(): UserlandStats {
    return {
      tcpListeners: this.tcp.length,
      udpSockets: this.udp.length,
      connections: this.tcpActive,
      udpFlows: this.udpFlows,
    };
  }

  private onConnection(b: TcpBinding, client: net.Socket): void {
    const m = b.mapping;
    if (this.closed || this.tcpActive + this.udpFlows >= this.opts.maxConnections) {
      this.opts.log.warn('connection refused: too many connections', {
        max: this.opts.maxConnections,
        host: ep(b.address, m.hostPort),
      });
      client.resetAndDestroy();
      return;
    }
    const id = ++this.nextId;
    const started = performance.now();
    const src = ep(client.remoteAddress ?? '?', client.remotePort ?? 0);
    const via = ep(client.localAddress ?? b.address, client.localPort ?? m.hostPort);
    const dst = ep(m.targetIp, m.targetPort);
    this.conns.add(client);
    this.tcpActive++;
    client.on('error', () => {}); // the relay reports errors; before it runs there is nothing to tell
    const abort = new AbortController();
    client.once('close', () => abort.abort());
    const done = (fields: Record<string, string | number>) => {
      this.conns.delete(client);
      this.tcpActive--;
      this.opts.log.info('conn', {
        id,
        proto: 'tcp',
        src,
        via,
        dst,
        ...fields,
        dur: `${Math.round(performance.now() - started)}ms`,
      });
    };
    connectDirect(
      { family: familyOf(m.targetIp), address: m.targetIp, port: m.targetPort },
      { connectTimeoutMs: this.opts.connectTimeoutMs, signal: abort.signal },
    ).then(
      async (upstream) => {
        this.conns.add(upstream);
        const r = await relay(client, upstream, { idleTimeoutMs: this.opts.tcpIdleTimeoutMs });
        this.conns.delete(upstream);
        done({ up: r.bytesUp, down: r.bytesDown, close: r.reason, ...(r.error ? { error: r.error } : {}) });
      },
      (e: { code?: string; message: string }) => {
        if (!client.destroyed) client.resetAndDestroy();
        done({ up: 0, down: 0, close: 'connect-error', error: e.code ?? e.message });
      },
    );
  }

  private onDatagram(b: UdpBinding, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = b.flows.get(key);
    if (flow) {
      b.flows.delete(key); // re-insert: the Map's order is least recently active first
    } else {
      if (b.flows.size >= this.opts.maxUdpFlowsPerPort || this.tcpActive + this.udpFlows >= this.opts.maxConnections) {
        const oldest = b.flows.values().next().value as UdpFlow | undefined;
        if (!oldest) return; // the budget is spent elsewhere: drop, as a full network would
        this.endFlow(b, oldest, 'evicted');
      }
      flow = this.newFlow(b, key, rinfo);
      this.udpFlows++;
    }
    b.flows.set(key, flow);
    flow.last = performance.now();
    flow.up += msg.length;
    const m = b.mapping;
    flow.upstream.send(msg, m.targetPort, m.targetIp, () => {});
  }

  private newFlow(b: UdpBinding, key: string, rinfo: dgram.RemoteInfo): UdpFlow {
    const m = b.mapping;
    const upstream = dgram.createSocket(familyOf(m.targetIp) === 6 ? 'udp6' : 'udp4');
    const now = performance.now();
    const flow: UdpFlow = {
      id: ++this.nextId,
      key,
      clientAddress: rinfo.address,
      clientPort: rinfo.port,
      upstream,
      started: now,
      last: now,
      up: 0,
      down: 0,
      timer: setTimeout(() => this.checkIdle(b, flow), this.opts.udpIdleTimeoutMs),
    };
    upstream.on('message', (reply, from) => {
      // Only the target's answers go back to the client.
      if (from.port !== m.targetPort || canonicalIp(from.address) !== m.targetIp) return;
      flow.last = performance.now();
      flow.down += reply.length;
      b.socket.send(reply, flow.clientPort, flow.clientAddress, () => {});
    });
    upstream.on('error', (e) => this.endFlow(b, flow, 'upstream-error', e.message));
    return flow;
  }

  private checkIdle(b: UdpBinding, flow: UdpFlow): void {
    const quiet = performance.now() - flow.last;
    if (quiet >= this.opts.udpIdleTimeoutMs) this.endFlow(b, flow, 'idle');
    else flow.timer = setTimeout(() => this.checkIdle(b, flow), this.opts.udpIdleTimeoutMs - quiet + 1);
  }

  private endFlow(b: UdpBinding, flow: UdpFlow, reason: string, error?: string): void {
    if (b.flows.get(flow.key) !== flow) return;
    b.flows.delete(flow.key);
    this.udpFlows--;
    clearTimeout(flow.timer);
    try {
      flow.upstream.close();
    } catch {
      /* already closed */
    }
    const m = b.mapping;
    this.opts.log.info('conn', {
      id: flow.id,
      proto: 'udp',
      src: ep(flow.clientAddress, flow.clientPort),
      via: ep(b.address, m.hostPort),
      dst: ep(m.targetIp, m.targetPort),
      up: flow.up,
      down: flow.down,
      dur: `${Math.round(performance.now() - flow.started)}ms`,
      close: reason,
      ...(error ? { error } : {}),
    });
  }

  /** Stop serving, release every port, end every connection and flow. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closing: Promise<void>[] = [];
    for (const b of this.tcp) {
      if (b.server) closing.push(new Promise((r) => b.server!.close(() => r())));
      else {
        try {
          closeFd(b.fd);
        } catch {
          /* already closed */
        }
      }
    }
    for (const s of this.conns) s.destroy();
    for (const b of this.udp) {
      for (const f of [...b.flows.values()]) this.endFlow(b, f, 'shutdown');
      closing.push(new Promise((r) => b.socket.close(() => r())));
    }
    await Promise.all(closing);
  }
}
