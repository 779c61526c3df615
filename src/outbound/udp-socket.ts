// What the UDP outbounds to proxy nodes share: resolving the node's name (with a deadline) and
// a connected dgram socket towards the node's UDP relay, carrying SO_MARK when asked (made by
// the kernel layer, adopted by dgram) so the firewall plan never captures it again.
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type { Endpoint } from '../kernel/sockaddr.js';
import { closeFd } from '../kernel/sockets.js';
import { createMarkedUdpFd } from '../kernel/udp-tproxy.js';
import type { UdpFlowInfo, UdpSession } from '../udp/types.js';
import { ATYP_DOMAIN, destinationAddress, type SocksAddress } from './socks5.js';
import { OutboundError } from './types.js';
import { systemResolver, type HostResolver } from './node-conn.js';

/** IPv4-mapped IPv6 text → IPv4 text (as Endpoint addresses are written). */
export function unmapAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/** The node's address (a host name is resolved, within `timeoutMs`), or OutboundError. */
export async function resolveNode(
  outbound: string,
  host: string,
  port: number,
  timeoutMs: number,
  resolve: HostResolver = systemResolver,
): Promise<Endpoint> {
  const family = isIP(host);
  if (family !== 0)
    return { address: unmapAddress(host), port, family: family === 4 || unmapAddress(host) !== host ? 4 : 6 };
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      resolve(host),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new OutboundError(outbound, 'ETIMEDOUT', `resolving node ${host} timed out after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    return { address: r.address, port, family: r.family === 6 ? 6 : 4 };
  } catch (e) {
    if (e instanceof OutboundError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
    throw new OutboundError(outbound, code === 'ENODATA' ? 'ENOTFOUND' : code, `cannot resolve node ${host}: ${code}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A dgram socket connected to `remote` (only its datagrams are received), bound to its own
 * ephemeral port, with SO_MARK `mark` when given. Rejects with the socket error.
 */
export function openConnectedUdp(remote: Endpoint, mark: number | undefined): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: remote.family === 4 ? 'udp4' : 'udp6' });
    const fail = (e: Error): void => {
      try {
        sock.close();
      } catch {
        /* not bound yet / already closed */
      }
      reject(e);
    };
    sock.once('error', fail);
    const connect = (): void =>
      sock.connect(remote.port, remote.address, () => {
        sock.removeListener('error', fail);
        resolve(sock);
      });
    if (!mark) return connect();
    let fd: number;
    try {
      fd = createMarkedUdpFd(remote.family, mark);
    } catch (e) {
      return fail(e as Error);
    }
    try {
      sock.bind({ fd }, connect);
    } catch (e) {
      closeFd(fd);
      fail(e as Error);
    }
  });
}

/** Same endpoint (addresses compared unmapped, IPv6 case-insensitively). */
export function sameEndpoint(a: { address: string; port: number }, b: { address: string; port: number }): boolean {
  return a.port === b.port && unmapAddress(a.address).toLowerCase() === unmapAddress(b.address).toLowerCase();
}

/**
 * Where a reply that a node says came from `addr` appears to come from, for the client:
 * undefined = the flow's original destination (what the client sent to, so a connected
 * client socket accepts it), an Endpoint = another remote (full cone), null = cannot be
 * shown to this client (an IPv6 source for an IPv4 client or the reverse): drop it.
 * A flow asked for by name (fake-IP) gets the target's replies from its original destination,
 * whatever address the node resolved the name to.
 */
export function replySource(flow: UdpFlowInfo, addr: SocksAddress): Endpoint | undefined | null {
  if (addr.type === ATYP_DOMAIN) return undefined;
  const address = unmapAddress(addr.host);
  if (sameEndpoint({ address, port: addr.port }, flow.dst)) return undefined;
  if (flow.domain !== undefined && addr.port === flow.dst.port) return undefined;
  const family = isIP(address) === 6 ? 6 : 4;
  if (family !== flow.dst.family) return null;
  return { address, port: addr.port, family };
}

/** The address a datagram for `flow` is sent to through a node: its domain when known, else its IP. */
export function flowTarget(flow: UdpFlowInfo): SocksAddress {
  return destinationAddress({
    ip: flow.dst.address,
    port: flow.dst.port,
    family: flow.dst.family,
    ...(flow.domain ? { domain: flow.domain } : {}),
  });
}

/**
 * A UDP session over one connected dgram socket to a node: subclasses frame outgoing
 * payloads and unframe incoming datagrams. Socket errors end the session (ECONNREFUSED =
 * the node's UDP port is closed: 'refused'); an end before onClose() is registered is
 * reported at registration. Undecodable datagrams and failed sends are counted and dropped.
 */
export abstract class NodeUdpSession implements UdpSession {
  /** Datagrams dropped: undecodable, unshowable source, or a failed send. */
  dropped = 0;
  protected closed = false;
  private messageCb: ((payload: Buffer, from?: Endpoint) => void) | undefined;
  private closeCb: ((reason: string, error?: string) => void) | undefined;
  private ended: { reason: string; error?: string } | undefined;

  constructor(
    protected readonly sock: dgram.Socket,
    protected readonly flow: UdpFlowInfo,
  ) {
    sock.on('message', (m: Buffer) => this.receive(m));
    sock.on('error', (e: NodeJS.ErrnoException) => this.onSocketError(e));
  }

  /** The datagram to send for `payload`; throws on a payload it cannot frame. */
  protected abstract frame(payload: Buffer): Buffer | Buffer[];
  /** The payload and its source address in a datagram from the node, or undefined to drop it. */
  protected abstract unframe(datagram: Buffer): { payload: Buffer; address: SocksAddress } | undefined;

  send(payload: Buffer): void {
    if (this.closed) return;
    let out: Buffer | Buffer[];
    try {
      out = this.frame(payload);
    } catch {
      this.dropped++;
      return;
    }
    this.sock.send(out, (err) => {
      if (!err) return;
      if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') this.onSocketError(err);
      else this.dropped++;
    });
  }

  onMessage(cb: (payload: Buffer, from?: Endpoint) => void): void {
    this.messageCb = cb;
  }

  onClose(cb: (reason: string, error?: string) => void): void {
    if (this.ended) {
      const e = this.ended;
      this.ended = undefined;
      cb(e.reason, e.error);
      return;
    }
    this.closeCb = cb;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCb = undefined;
    this.messageCb = undefined;
    try {
      this.sock.close();
    } catch {
      /* already closed */
    }
    this.released();
  }

  /** Releases what a subclass holds besides the socket (called once, from close()). */
  protected released(): void {}

  /** The session ends by itself: released, then reported once. */
  protected end(reason: string, error?: string): void {
    if (this.closed) return;
    const cb = this.closeCb;
    this.close();
    if (cb) cb(reason, error);
    else this.ended = { reason, ...(error ? { error } : {}) };
  }

  private onSocketError(e: NodeJS.ErrnoException): void {
    this.end(e.code === 'ECONNREFUSED' ? 'refused' : 'error', e.code ?? e.message);
  }

  private receive(datagram: Buffer): void {
    if (this.closed) return;
    const r = this.unframe(datagram);
    if (!r) return void this.dropped++;
    const from = replySource(this.flow, r.address);
    if (from === null) return void this.dropped++;
    this.messageCb?.(r.payload, from);
  }
}
