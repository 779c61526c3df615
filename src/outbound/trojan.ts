// Trojan outbound: hex(SHA-224(password)), CRLF, command (1 CONNECT, 3 UDP ASSOCIATE), the
// target as SOCKS5 writes it, CRLF, then the raw stream both ways. The server answers
// nothing of its own (a wrong password gets the fallback site, not an error).
import { createHash } from 'node:crypto';
import type { FrameCodec } from './framed-stream.js';
import type { NodeConnOptions } from './node-conn.js';
import { encodeSocksAddress, type SocksAddress } from './socks5.js';
import { V2rayTcpOutbound } from './v2ray-common.js';
import type { TrojanNodeSpec } from './uri-v2ray.js';

export const TROJAN_CMD_CONNECT = 1;
export const TROJAN_CMD_UDP = 3;
const CRLF = Buffer.from('\r\n');

export function trojanPasswordHash(password: string): string {
  return createHash('sha224').update(password).digest('hex');
}

export function encodeTrojanRequest(passwordHash: string, command: number, target: SocksAddress): Buffer {
  return Buffer.concat([Buffer.from(passwordHash), CRLF, Buffer.from([command]), encodeSocksAddress(target), CRLF]);
}

export class TrojanCodec implements FrameCodec {
  readonly header: Buffer;
  answered = false;
  readonly pending = 0;

  constructor(passwordHash: string, target: SocksAddress, command = TROJAN_CMD_CONNECT) {
    this.header = encodeTrojanRequest(passwordHash, command, target);
  }

  encode(payload: Buffer): Buffer {
    return payload;
  }

  finish(): undefined {
    return undefined;
  }

  decode(chunk: Buffer): { data: Buffer[]; eof: boolean } {
    this.answered = true;
    return { data: [chunk], eof: false };
  }
}

export class TrojanOutbound extends V2rayTcpOutbound<TrojanNodeSpec> {
  readonly kind = 'trojan';
  protected override readonly silentServer = true;
  private readonly hash: string;

  constructor(spec: TrojanNodeSpec, opts: NodeConnOptions = {}) {
    super(spec, opts);
    this.hash = trojanPasswordHash(spec.password);
  }

  protected codecFor(target: SocksAddress): TrojanCodec {
    return new TrojanCodec(this.hash, target);
  }
}
