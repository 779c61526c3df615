// Shadowsocks AEAD UDP relay as a UDP outbound (SIP004): every datagram to the node's UDP
// port (the same port number as its TCP one) is salt + seal(subkey(salt), zero nonce,
// ATYP address + payload), with a fresh random salt per datagram; the node answers the same
// way, the address in a reply being the remote that sent it.
//
// One connected UDP socket per flow: the node keeps a NAT entry per client address:port,
// so each flow gets its own mapping and its replies come back on its own socket (no demux
// by address, which two clients of the same server would make ambiguous). Nothing to
// handshake: the session is ready once the node's name is resolved and the socket exists.
// A node without UDP relaying answers with ICMP port unreachable: the session ends 'refused'.
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../udp/types.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './node-conn.js';
import { decryptUdpPacket, encryptUdpPacket, ShadowsocksNodeOutbound } from './shadowsocks.js';
import { encodeSocksAddress, type SocksAddress } from './socks5.js';
import { OutboundError } from './types.js';
import { flowTarget, NodeUdpSession, openConnectedUdp, resolveNode } from './udp-socket.js';
import type { SsMethod } from './uri.js';

export class ShadowsocksUdpOutbound extends ShadowsocksNodeOutbound implements UdpOutbound {
  readonly kind = 'shadowsocks';

  async open(flow: UdpFlowInfo): Promise<UdpSession> {
    const target = flowTarget(flow);
    try {
      encodeSocksAddress(target);
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot address ${formatEndpoint(flow.dst)} through node ${this.where}: ${(e as Error).message}`,
      );
    }
    const node = await resolveNode(
      this.name,
      this.spec.host,
      this.spec.port,
      this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      this.opts.resolve,
    );
    try {
      const sock = await openConnectedUdp(node, this.opts.mark);
      return new ShadowsocksUdpSession(sock, flow, this.spec.method, this.master, target);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new OutboundError(
        this.name,
        err.code ?? 'EUDP',
        `UDP socket to node ${formatEndpoint(node)}: ${err.message}`,
      );
    }
  }
}

class ShadowsocksUdpSession extends NodeUdpSession {
  constructor(
    sock: ConstructorParameters<typeof NodeUdpSession>[0],
    flow: UdpFlowInfo,
    private readonly method: SsMethod,
    private readonly master: Buffer,
    private readonly target: SocksAddress,
  ) {
    super(sock, flow);
  }

  protected frame(payload: Buffer): Buffer {
    return encryptUdpPacket(this.method, this.master, this.target, payload);
  }

  protected unframe(datagram: Buffer): { payload: Buffer; address: SocksAddress } | undefined {
    const r = decryptUdpPacket(this.method, this.master, datagram);
    return r.ok ? { payload: r.payload, address: r.address } : undefined;
  }
}
