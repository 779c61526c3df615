// SOCKS5 UDP ASSOCIATE (RFC 1928 §7) as a UDP outbound.
//
// One association per UDP flow: a TCP control connection to the node (greeting and RFC 1929
// authentication as for CONNECT), UDP ASSOCIATE with DST 0.0.0.0:0 ("not known yet", the
// RFC's own choice for a client that cannot tell its address), and a connected UDP socket
// of our own towards BND.ADDR:BND.PORT (an unspecified BND.ADDR means "the node's address":
// the address the control connection reached). Each datagram carries
// RSV(2) FRAG(1) ATYP DST.ADDR DST.PORT; the destination is the flow's domain when one is
// known, else its IP; replies have the header stripped and their source taken from it.
// The association lives as long as the control connection: when the node closes it, the
// session ends ('association-closed'); closing the session closes both sockets.
//
// Why per flow and not one association per node shared by every flow: replies could only be
// told apart by the remote address in their header, and two clients talking to the same
// server (two LAN hosts asking one DNS server) would be indistinguishable. A socket per
// flow keeps flows apart by construction and gives each flow its own mapping on the node
// (its NAT is per association), at the price of one handshake (a few round trips on the LAN
// side of the node) and one TCP + one UDP socket per live flow. Datagrams that arrive while
// the association is made wait in the relay's per-flow queue.
import type dgram from 'node:dgram';
import type net from 'node:net';
import { isIP } from 'node:net';
import type { Endpoint } from '../kernel/sockaddr.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../udp/types.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import {
  connectNode,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  Handshake,
  NodeOutbound,
} from './node-conn.js';
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  ATYP_IPV6,
  CMD_UDP_ASSOCIATE,
  decodeSocksUdpPacket,
  encodeRequest,
  encodeSocksAddress,
  negotiateSocks5Auth,
  parseConnectReply,
  socksReplyText,
  type SocksAddress,
} from './socks5.js';
import { OutboundError } from './types.js';
import { flowTarget, NodeUdpSession, openConnectedUdp, resolveNode, unmapAddress } from './udp-socket.js';
import type { Socks5NodeSpec } from './uri.js';

/** RSV(2) FRAG(1): the header's constant part for standalone datagrams. */
const UDP_HEADER_START = Buffer.from([0, 0, 0]);

/** Where to send the datagrams of an association: BND, or the node itself when BND is unspecified. */
export function relayEndpoint(
  bound: SocksAddress,
  node: Endpoint,
): { address: string; port: number; needsLookup: boolean } {
  if (bound.type === ATYP_DOMAIN) return { address: bound.host, port: bound.port, needsLookup: true };
  const address = unmapAddress(bound.host);
  const unspecified = address === '0.0.0.0' || address === '::' || /^0*:(0*:)*0*$/.test(address);
  return { address: unspecified ? node.address : address, port: bound.port, needsLookup: false };
}

export class Socks5UdpOutbound extends NodeOutbound<Socks5NodeSpec> implements UdpOutbound {
  readonly kind = 'socks5';

  async open(flow: UdpFlowInfo): Promise<UdpSession> {
    let header: Buffer;
    try {
      header = Buffer.concat([UDP_HEADER_START, encodeSocksAddress(flowTarget(flow))]);
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot address ${formatEndpoint(flow.dst)} through node ${this.where}: ${(e as Error).message}`,
      );
    }
    const control = await connectNode(this.name, this.spec.host, this.spec.port, this.opts, undefined);
    let relay: Endpoint;
    try {
      relay = await this.associate(control);
    } catch (e) {
      control.destroy();
      throw e;
    }
    let sock: dgram.Socket;
    try {
      sock = await openConnectedUdp(relay, this.opts.mark);
    } catch (e) {
      control.destroy();
      const err = e as NodeJS.ErrnoException;
      throw new OutboundError(
        this.name,
        err.code ?? 'EUDP',
        `UDP socket to the relay ${formatEndpoint(relay)} of node ${this.where}: ${err.message}`,
      );
    }
    return new Socks5UdpSession(sock, flow, header, control);
  }

  /** Greeting, authentication, UDP ASSOCIATE; the relay address to send datagrams to. */
  private async associate(control: net.Socket): Promise<Endpoint> {
    const hs = new Handshake(
      control,
      this.name,
      this.where,
      this.opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      undefined,
    );
    await negotiateSocks5Auth(hs, this.spec);
    // DST = all zeros: we cannot know the address:port the node will see our datagrams from.
    const v6 = isIP(unmapAddress(control.remoteAddress ?? '')) === 6;
    hs.write(
      encodeRequest(CMD_UDP_ASSOCIATE, { host: v6 ? '::' : '0.0.0.0', port: 0, type: v6 ? ATYP_IPV6 : ATYP_IPV4 }),
    );
    const r = await hs.read(parseConnectReply, 'UDP ASSOCIATE reply');
    if (r.reply !== 0) {
      hs.failWith(
        'EREFUSED',
        `node ${this.where} refused UDP ASSOCIATE: ${socksReplyText(r.reply)} (SOCKS reply ${r.reply})${r.reply === 7 ? '; the node does not relay UDP' : ''}`,
      );
    }
    hs.done();
    const node: Endpoint = {
      address: unmapAddress(control.remoteAddress ?? this.spec.host),
      port: this.spec.port,
      family: isIP(unmapAddress(control.remoteAddress ?? this.spec.host)) === 6 ? 6 : 4,
    };
    const rel = relayEndpoint(r.bound, node);
    if (rel.port === 0) hs.failWith('EHANDSHAKE', `node ${this.where} answered UDP ASSOCIATE with relay port 0`);
    if (rel.needsLookup)
      return resolveNode(
        this.name,
        rel.address,
        rel.port,
        this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        this.opts.resolve,
      );
    return { address: rel.address, port: rel.port, family: isIP(rel.address) === 6 ? 6 : 4 };
  }
}

class Socks5UdpSession extends NodeUdpSession {
  constructor(
    sock: dgram.Socket,
    flow: UdpFlowInfo,
    private readonly header: Buffer,
    private readonly control: net.Socket,
  ) {
    super(sock, flow);
    // The node says nothing more on the control connection; its end is the association's end.
    control.setKeepAlive(true, 30_000);
    control.on('data', () => {});
    control.on('end', () => this.end('association-closed', 'the node closed the UDP association'));
    control.on('close', () => this.end('association-closed', 'the node closed the UDP association'));
    control.on('error', (e: NodeJS.ErrnoException) => this.end('association-closed', e.code ?? e.message));
    if (control.destroyed) this.end('association-closed', 'the node closed the UDP association');
  }

  protected frame(payload: Buffer): Buffer[] {
    return [this.header, payload];
  }

  protected unframe(datagram: Buffer): { payload: Buffer; address: SocksAddress } | undefined {
    const r = decodeSocksUdpPacket(datagram);
    // Fragments (FRAG ≠ 0) are optional in RFC 1928 and not reassembled here: dropped.
    if (!r.ok || r.packet.frag !== 0) return undefined;
    return { payload: r.packet.payload, address: r.packet.address };
  }

  protected override released(): void {
    this.control.destroy();
  }
}
