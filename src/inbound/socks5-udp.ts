// SOCKS5 UDP ASSOCIATE (RFC 1928 §7) on the server side: a UDP relay socket on the address
// the client reached us at, taking datagrams only from the client's address (and port, when
// the request named one). Each destination becomes a flow of the routed UDP outbound, routed
// like captured UDP (domain destinations by name); replies go back with the SOCKS header.
// Fragments (FRAG ≠ 0) are dropped. The association ends with its TCP control connection.
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type net from 'node:net';
import { formatEndpoint, unmapAddress, type Endpoint } from '../kernel/sockaddr.js';
import { UdpRefusedError } from '../flow/udp-routed.js';
import { ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, type SocksAddress } from '../outbound/socks5.js';
import type { Logger } from '../observe/log.js';
import type { UdpOutbound, UdpSession } from '../udp/types.js';
import type { ProxyTarget } from './dial.js';
import { decodeSocksUdpPacket, encodeSocksUdpPacket } from './socks5-server.js';

/** Destinations one association may talk to at once; datagrams to more are dropped. */
const MAX_FLOWS = 256;
/** Datagrams held per destination while its session opens. */
const MAX_PENDING = 16;

export interface UdpAssociationOptions {
  control: net.Socket;
  /** The client, as the control connection shows it. */
  client: Endpoint;
  /** DST of the request: where the client will send from; 0.0.0.0:0 when it cannot tell. */
  requested: ProxyTarget;
  outbound: UdpOutbound;
  resolve(name: string): Promise<{ address: string; family: 4 | 6 }>;
  idleTimeoutMs: number;
  log: Logger;
}

export interface AssociationTotals {
  up: number;
  down: number;
  flows: number;
  dropped: number;
}

interface UdpFlow {
  target: SocksAddress;
  /** Where replies go: the client's address and port of its latest datagram. */
  client: { address: string; port: number };
  session?: UdpSession;
  pending: Buffer[];
  /** Refused or failed: its datagrams are dropped until it expires. */
  failed?: boolean;
  last: number;
}

let nextUdpFlowId = 1;

export async function startUdpAssociation(
  o: UdpAssociationOptions,
): Promise<{ bound: Endpoint; done: Promise<AssociationTotals> }> {
  const local = unmapAddress(o.control.localAddress ?? '0.0.0.0');
  const family = isIP(local) === 6 ? 6 : 4;
  const sock = await bindRelaySocket(local, family);
  const association = new UdpAssociation(o, sock, family);
  const addr = sock.address();
  return { bound: { address: addr.address, port: addr.port, family }, done: association.done };
}

/** A UDP socket on the address the client reached us at, any port; closed again when binding fails. */
async function bindRelaySocket(local: string, family: 4 | 6): Promise<dgram.Socket> {
  const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: local, port: 0 }, () => {
      sock.removeListener('error', reject);
      resolve();
    });
  }).catch((e) => {
    sock.close();
    throw e;
  });
  return sock;
}

/** One association: its relay socket, a flow per destination, idle expiry, and its end with the control connection. */
class UdpAssociation {
  readonly totals: AssociationTotals = { up: 0, down: 0, flows: 0, dropped: 0 };
  readonly done: Promise<AssociationTotals>;
  private ended = false;
  private readonly flows = new Map<string, UdpFlow>();
  private readonly requestedHost: string;
  /** The request named the client's address: datagrams must come from it. */
  private readonly specific: boolean;
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly o: UdpAssociationOptions,
    private readonly sock: dgram.Socket,
    private readonly family: 4 | 6,
  ) {
    this.requestedHost = isIP(o.requested.host) ? unmapAddress(o.requested.host) : '';
    this.specific = this.requestedHost !== '' && this.requestedHost !== '0.0.0.0' && this.requestedHost !== '::';
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    sock.on('error', () => {}); // a send to a client that went away; the control connection decides
    this.sweep = setInterval(() => this.expireIdle(), Math.min(Math.max(o.idleTimeoutMs / 2, 1000), 30_000));
    this.sweep.unref();
    this.done = new Promise<AssociationTotals>((resolve) => {
      const end = (): void => {
        if (this.end()) resolve(this.totals);
      };
      // The control connection carries nothing more; its end is the association's end.
      o.control.on('data', () => {});
      o.control.once('end', end);
      o.control.once('close', end);
      o.control.on('error', end);
      o.control.resume();
      if (o.control.destroyed) end();
    });
  }

  /** Closes everything once; false when already ended. */
  private end(): boolean {
    if (this.ended) return false;
    this.ended = true;
    clearInterval(this.sweep);
    for (const key of [...this.flows.keys()]) this.closeFlow(key);
    this.sock.close();
    this.o.control.destroy();
    return true;
  }

  /** From the client only (and its port, when the request named one); unfragmented SOCKS datagrams. */
  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo) {
    const from = unmapAddress(rinfo.address);
    const requestedPort = this.o.requested.port;
    const ok =
      from === this.o.client.address &&
      (requestedPort === 0 || rinfo.port === requestedPort) &&
      (!this.specific || from === this.requestedHost);
    const d = ok ? decodeSocksUdpPacket(msg) : undefined;
    return d?.ok && d.packet.frag === 0 ? d.packet : undefined;
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const { totals } = this;
    const packet = this.fromClient(msg, rinfo);
    if (!packet) {
      totals.dropped++;
      return;
    }
    const target = packet.address;
    const key = `${target.host}|${target.port}`;
    let f = this.flows.get(key);
    if (!f) {
      if (this.flows.size >= MAX_FLOWS) {
        totals.dropped++;
        return;
      }
      f = { target, client: { address: rinfo.address, port: rinfo.port }, pending: [], last: performance.now() };
      this.flows.set(key, f);
      totals.flows++;
      this.open(key, f);
    }
    f.client = { address: rinfo.address, port: rinfo.port };
    f.last = performance.now();
    const payload = packet.payload;
    if (f.failed || (!f.session && f.pending.length >= MAX_PENDING)) {
      totals.dropped++;
      return;
    }
    totals.up += payload.length;
    if (f.session) f.session.send(payload);
    else f.pending.push(payload);
  }

  /** Opens the flow's session on the routed outbound (a domain resolved first), then sends what waited. */
  private open(key: string, f: UdpFlow): void {
    const { o } = this;
    const t = f.target;
    const domain = t.type === ATYP_DOMAIN ? t.host : undefined;
    void (async () => {
      const r = domain ? await o.resolve(domain) : { address: unmapAddress(t.host), family: isIP(t.host) as 4 | 6 };
      const session = await o.outbound.open({
        id: nextUdpFlowId++,
        src: { ...f.client, family: this.family },
        dst: { address: r.address, port: t.port, family: r.family },
        ...(domain ? { domain } : {}),
      });
      if (this.flows.get(key) !== f) return session.close();
      f.session = session;
      session.onMessage((payload, from) => this.reply(f, payload, from));
      session.onClose(() => this.closeFlow(key));
      for (const p of f.pending) session.send(p);
      f.pending = [];
    })().catch((e: NodeJS.ErrnoException) => {
      // Refused (the routed outbound logged why) or unreachable: drop until it expires.
      f.failed = true;
      f.pending = [];
      if (!(e instanceof UdpRefusedError))
        o.log.info('udp route', {
          src: formatEndpoint(f.client),
          dst: formatEndpoint({ address: t.host, port: t.port }),
          refused: 'open-failed',
          error: e.code ?? e.message,
        });
    });
  }

  private reply(f: UdpFlow, payload: Buffer, from?: Endpoint): void {
    const source: SocksAddress = from
      ? { host: from.address, port: from.port, type: isIP(from.address) === 6 ? ATYP_IPV6 : ATYP_IPV4 }
      : f.target;
    if (this.ended) return; // a late reply after the association closed its socket
    f.last = performance.now();
    this.totals.down += payload.length;
    this.sock.send(encodeSocksUdpPacket({ frag: 0, address: source, payload }), f.client.port, f.client.address);
  }

  private closeFlow(key: string): void {
    this.flows.get(key)?.session?.close();
    this.flows.delete(key);
  }

  private expireIdle(): void {
    const now = performance.now();
    for (const [key, f] of this.flows) if (now - f.last > this.o.idleTimeoutMs) this.closeFlow(key);
  }
}
