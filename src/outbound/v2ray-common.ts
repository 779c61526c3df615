// What VMess, VLESS and Trojan outbounds share: the node's transport (opened per connection,
// its CA read once) and the address form VMess and VLESS put in their request headers.
import { isIPv4, isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeSockaddr } from '../kernel/sockaddr.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { FramedStream, type FrameCodec } from './framed-stream.js';
import { NodeOutbound, type NodeConnOptions } from './node-conn.js';
import { ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, destinationAddress, type SocksAddress } from './socks5.js';
import { loadCa, openTransport } from './transport.js';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';
import type { V2rayNodeSpec } from './uri-v2ray.js';

/** VMess / VLESS address: port (2, BE), then type (1 IPv4, 2 domain, 3 IPv6) and the address. */
export function encodePortThenAddress(addr: SocksAddress): Buffer {
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) throw new TypeError(`bad port ${addr.port}`);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(addr.port);
  if (addr.type === ATYP_IPV4) {
    if (!isIPv4(addr.host)) throw new TypeError(`not an IPv4 address: ${addr.host}`);
    return Buffer.concat([port, Buffer.from([1]), encodeSockaddr({ address: addr.host, port: 0 }).subarray(4, 8)]);
  }
  if (addr.type === ATYP_IPV6) {
    if (!isIPv6(addr.host)) throw new TypeError(`not an IPv6 address: ${addr.host}`);
    return Buffer.concat([port, Buffer.from([3]), encodeSockaddr({ address: addr.host, port: 0 }).subarray(8, 24)]);
  }
  if (addr.type !== ATYP_DOMAIN) throw new TypeError(`unknown address type ${String(addr.type)}`);
  const name = Buffer.from(addr.host);
  if (name.length < 1 || name.length > 255) throw new TypeError('domain name must be 1-255 bytes');
  return Buffer.concat([port, Buffer.from([2, name.length]), name]);
}

/** 16 bytes of a UUID written as text (with or without dashes). */
export function uuidBytes(id: string): Buffer {
  const hex = id.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError('not a UUID');
  return Buffer.from(hex, 'hex');
}

/** A VMess / VLESS / Trojan node's TCP outbound: transport, then the protocol's codec around it. */
export abstract class V2rayTcpOutbound<Spec extends V2rayNodeSpec> extends NodeOutbound<Spec> implements TcpOutbound {
  abstract readonly kind: string;
  private readonly ca: Buffer | undefined;
  /** Trojan answers nothing before the payload, so a silent close is not a refusal there. */
  protected readonly silentServer: boolean = false;

  constructor(spec: Spec, opts: NodeConnOptions = {}) {
    super(spec, opts);
    this.ca = loadCa(spec.transport, spec.name);
  }

  /** The protocol's codec for one connection to `target`. Throws TypeError on an address it cannot carry. */
  protected abstract codecFor(target: SocksAddress): FrameCodec;

  async connect(dst: Destination, ctx: ConnectContext): Promise<Duplex> {
    let codec: FrameCodec;
    try {
      codec = this.codecFor(destinationAddress(dst));
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot ask node ${this.where} for ${formatEndpoint({ address: dst.ip, port: dst.port })}: ${(e as Error).message}`,
      );
    }
    const to = { outbound: this.name, host: this.spec.host, port: this.spec.port, where: this.where };
    const inner = await openTransport(this.spec.transport, to, this.ca, this.opts, ctx.signal);
    if (ctx.signal?.aborted) {
      inner.destroy();
      throw new OutboundError(this.name, 'EABORTED', `connect to node ${this.where} aborted`);
    }
    return new FramedStream(inner, codec, { outbound: this.name, where: this.where, silentServer: this.silentServer });
  }
}
