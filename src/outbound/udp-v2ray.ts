// UDP through VMess, VLESS and Trojan nodes: one transport stream (tcp, tls, ws, ws+tls) per
// UDP flow, carrying the flow's datagrams framed as each protocol frames packets:
//   VMess:  command UDP; each datagram is one body chunk.
//   VLESS:  command UDP; each datagram is length (2, BE) + payload.
//   Trojan: command UDP ASSOCIATE (3); each datagram is SOCKS5 address + length (2) + CRLF + payload.
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../kernel/sockaddr.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../udp/types.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { CodecError } from './framed-stream.js';
import { NodeOutbound, type NodeConnOptions } from './node-conn.js';
import { decodeSocksAddress, encodeSocksAddress, type SocksAddress } from './socks5.js';
import { loadCa, openTransport } from './transport.js';
import { encodeTrojanRequest, TROJAN_CMD_UDP, trojanPasswordHash } from './trojan.js';
import { OutboundError } from './types.js';
import { flowTarget, replySource } from './udp-socket.js';
import type { TrojanNodeSpec, V2rayNodeSpec, VlessNodeSpec, VmessNodeSpec } from './uri-v2ray.js';
import { VLESS_CMD_UDP, VlessCodec } from './vless.js';
import { VMESS_CMD_UDP, VmessCodec, vmessCmdKey, type VmessSession } from './vmess.js';

/** One UDP flow's framing over the stream. */
export interface PacketCodec {
  /** Sent once, when the stream opens. */
  readonly header: Buffer;
  /** One datagram on the wire; throws TypeError when it cannot be carried (too large). */
  encodePacket(payload: Buffer): Buffer;
  /** Whole datagrams in the node's bytes so far (with their source when the protocol says it). Throws CodecError. */
  decode(chunk: Buffer): Array<{ payload: Buffer; address?: SocksAddress }>;
}

export class VmessPacketCodec implements PacketCodec {
  private readonly codec: VmessCodec;

  constructor(cmdKey: Buffer, spec: Pick<VmessNodeSpec, 'security'>, target: SocksAddress, session?: VmessSession) {
    this.codec = new VmessCodec(cmdKey, spec.security, target, session, VMESS_CMD_UDP);
  }

  get header(): Buffer {
    return this.codec.header;
  }

  encodePacket(payload: Buffer): Buffer {
    if (payload.length > 0xffff - 16) throw new TypeError('datagram larger than a VMess chunk');
    return this.codec.encode(payload);
  }

  decode(chunk: Buffer): Array<{ payload: Buffer }> {
    return this.codec.decode(chunk).data.map((payload) => ({ payload }));
  }
}

/** Splits a byte stream of [length (2, BE)][payload] records. */
class LengthPackets {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
      const n = this.buf.readUInt16BE(0);
      out.push(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
    }
    return out;
  }
}

export class VlessPacketCodec implements PacketCodec {
  private readonly codec: VlessCodec;
  private readonly packets = new LengthPackets();

  constructor(id: string, target: SocksAddress) {
    this.codec = new VlessCodec(id, target, VLESS_CMD_UDP);
  }

  get header(): Buffer {
    return this.codec.header;
  }

  encodePacket(payload: Buffer): Buffer {
    if (payload.length > 0xffff) throw new TypeError('datagram larger than 65535 bytes');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(payload.length);
    return Buffer.concat([len, payload]);
  }

  decode(chunk: Buffer): Array<{ payload: Buffer }> {
    return this.codec.decode(chunk).data.flatMap((d) => this.packets.push(d).map((payload) => ({ payload })));
  }
}

export class TrojanPacketCodec implements PacketCodec {
  readonly header: Buffer;
  private readonly address: Buffer;
  private buf: Buffer = Buffer.alloc(0);

  constructor(passwordHash: string, target: SocksAddress) {
    this.header = encodeTrojanRequest(passwordHash, TROJAN_CMD_UDP, target);
    this.address = encodeSocksAddress(target);
  }

  encodePacket(payload: Buffer): Buffer {
    if (payload.length > 0xffff) throw new TypeError('datagram larger than 65535 bytes');
    const len = Buffer.from([payload.length >> 8, payload.length & 0xff, 0x0d, 0x0a]);
    return Buffer.concat([this.address, len, payload]);
  }

  decode(chunk: Buffer): Array<{ payload: Buffer; address: SocksAddress }> {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Array<{ payload: Buffer; address: SocksAddress }> = [];
    for (;;) {
      const a = decodeSocksAddress(this.buf, 0);
      if (a === 'need-more') break;
      if (!a.ok) throw new CodecError('EPROTO', `UDP packet: ${a.error}`);
      if (this.buf.length < a.length + 4) break;
      const n = this.buf.readUInt16BE(a.length);
      if (this.buf[a.length + 2] !== 0x0d || this.buf[a.length + 3] !== 0x0a)
        throw new CodecError('EPROTO', 'UDP packet without CRLF after its length');
      if (this.buf.length < a.length + 4 + n) break;
      out.push({ payload: this.buf.subarray(a.length + 4, a.length + 4 + n), address: a.address });
      this.buf = this.buf.subarray(a.length + 4 + n);
    }
    return out;
  }
}

/** A UDP session over one stream to the node. A stream error or close ends the session. */
class StreamUdpSession implements UdpSession {
  dropped = 0;
  private closed = false;
  private messageCb: ((payload: Buffer, from?: Endpoint) => void) | undefined;
  private closeCb: ((reason: string, error?: string) => void) | undefined;
  private ended: { reason: string; error?: string } | undefined;

  constructor(
    private readonly stream: Duplex,
    private readonly codec: PacketCodec,
    private readonly flow: UdpFlowInfo,
  ) {
    stream.write(codec.header);
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (e: NodeJS.ErrnoException) =>
      this.end('error', e instanceof OutboundError ? e.code : (e.code ?? e.message)),
    );
    stream.on('end', () => this.end('closed'));
    stream.on('close', () => this.end('closed'));
  }

  send(payload: Buffer): void {
    if (this.closed || payload.length === 0) return void this.dropped++;
    try {
      this.stream.write(this.codec.encodePacket(payload));
    } catch {
      this.dropped++;
    }
  }

  onMessage(cb: (payload: Buffer, from?: Endpoint) => void): void {
    this.messageCb = cb;
  }

  onClose(cb: (reason: string, error?: string) => void): void {
    if (this.ended) {
      const e = this.ended;
      this.ended = undefined;
      return cb(e.reason, e.error);
    }
    this.closeCb = cb;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCb = undefined;
    this.messageCb = undefined;
    this.stream.on('error', () => {});
    this.stream.destroy();
  }

  private end(reason: string, error?: string): void {
    if (this.closed) return;
    const cb = this.closeCb;
    this.close();
    if (cb) cb(reason, error);
    else this.ended = { reason, ...(error ? { error } : {}) };
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    let packets: Array<{ payload: Buffer; address?: SocksAddress }>;
    try {
      packets = this.codec.decode(chunk);
    } catch (e) {
      return this.end('error', (e as CodecError).code ?? 'EPROTO');
    }
    for (const p of packets) {
      const from = p.address ? replySource(this.flow, p.address) : undefined;
      if (from === null) this.dropped++;
      else this.messageCb?.(p.payload, from);
    }
  }
}

/** UDP outbound of a VMess, VLESS or Trojan node. */
export class V2rayUdpOutbound extends NodeOutbound<V2rayNodeSpec> implements UdpOutbound {
  readonly kind: string;
  private readonly ca: Buffer | undefined;
  private readonly codecFor: (target: SocksAddress) => PacketCodec;

  constructor(spec: V2rayNodeSpec, opts: NodeConnOptions = {}) {
    super(spec, opts);
    this.kind = spec.kind;
    this.ca = loadCa(spec.transport, spec.name);
    this.codecFor = codecFactory(spec);
  }

  async open(flow: UdpFlowInfo): Promise<UdpSession> {
    let codec: PacketCodec;
    try {
      codec = this.codecFor(flowTarget(flow));
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot address ${formatEndpoint(flow.dst)} through node ${this.where}: ${(e as Error).message}`,
      );
    }
    const to = { outbound: this.name, host: this.spec.host, port: this.spec.port, where: this.where };
    const stream = await openTransport(this.spec.transport, to, this.ca, this.opts, undefined);
    return new StreamUdpSession(stream, codec, flow);
  }
}

function codecFactory(spec: V2rayNodeSpec): (target: SocksAddress) => PacketCodec {
  switch (spec.kind) {
    case 'vmess': {
      const cmdKey = vmessCmdKey(spec.id);
      return (t) => new VmessPacketCodec(cmdKey, spec, t);
    }
    case 'vless':
      return (t) => new VlessPacketCodec((spec as VlessNodeSpec).id, t);
    case 'trojan': {
      const hash = trojanPasswordHash((spec as TrojanNodeSpec).password);
      return (t) => new TrojanPacketCodec(hash, t);
    }
  }
}
