// VLESS outbound (no flow): request = version 0, UUID (16), addons length 0, command
// (1 TCP, 2 UDP), port-then-address; response = version 0, addons length, addons; then the
// raw stream both ways.
import { CodecError, type FrameCodec } from './framed-stream.js';
import type { NodeConnOptions } from './node-conn.js';
import type { SocksAddress } from './socks5.js';
import { encodePortThenAddress, uuidBytes, V2rayTcpOutbound } from './v2ray-common.js';
import type { VlessNodeSpec } from './uri-v2ray.js';

export const VLESS_CMD_TCP = 1;
export const VLESS_CMD_UDP = 2;

export function encodeVlessRequest(id: string, command: number, target: SocksAddress): Buffer {
  return Buffer.concat([Buffer.from([0]), uuidBytes(id), Buffer.from([0, command]), encodePortThenAddress(target)]);
}

/** Strips the response header from the node's first bytes; the rest passes through. */
export class VlessCodec implements FrameCodec {
  readonly header: Buffer;
  private buf: Buffer | undefined = Buffer.alloc(0);

  constructor(id: string, target: SocksAddress, command = VLESS_CMD_TCP) {
    this.header = encodeVlessRequest(id, command, target);
  }

  get answered(): boolean {
    return this.buf === undefined;
  }

  get pending(): number {
    return this.buf?.length ?? 0;
  }

  encode(payload: Buffer): Buffer {
    return payload;
  }

  finish(): undefined {
    return undefined;
  }

  decode(chunk: Buffer): { data: Buffer[]; eof: boolean } {
    if (this.buf === undefined) return { data: [chunk], eof: false };
    const b = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (b.length > 0 && b[0] !== 0)
      throw new CodecError('EPROTO', `VLESS response version ${b[0]} (expected 0; not a VLESS server?)`);
    if (b.length < 2 || b.length < 2 + b[1]!) {
      this.buf = b;
      return { data: [], eof: false };
    }
    this.buf = undefined;
    const rest = b.subarray(2 + b[1]!);
    return { data: rest.length > 0 ? [rest] : [], eof: false };
  }
}

export class VlessOutbound extends V2rayTcpOutbound<VlessNodeSpec> {
  readonly kind = 'vless';

  constructor(spec: VlessNodeSpec, opts: NodeConnOptions = {}) {
    super(spec, opts);
  }

  protected codecFor(target: SocksAddress): VlessCodec {
    return new VlessCodec(this.spec.id, target);
  }
}
