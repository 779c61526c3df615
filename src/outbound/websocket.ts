// Client side of RFC 6455 WebSocket, as v2ray's `ws` transport uses it: an HTTP/1.1 Upgrade
// request, then binary messages carrying the proxied byte stream. Client frames are masked
// (mandatory); server frames are streamed out as they arrive, so a huge frame length never
// buffers more than one socket read. The frame codec is pure and exported for tests.
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { printable, type Handshake, type Parsed } from './node-conn.js';
import { OutboundError } from './types.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;
/** After the client's end, the stream closes when the server sends nothing for this long (v2ray's downlinkOnly). */
export const WS_LINGER_MS = 5000;
/** Largest upgrade response head accepted. */
const MAX_RESPONSE_HEAD = 16 * 1024;

/** The Upgrade request. `host` is the Host header; `path` starts with '/'. */
export function encodeUpgradeRequest(host: string, path: string, key: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: tranproxy\r\n\r\n`,
  );
}

export function acceptKeyFor(key: string): string {
  return createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}

/** The server's answer to the Upgrade request: 101 with the right Sec-WebSocket-Accept. */
export function parseUpgradeResponse(b: Buffer, key: string): Parsed<object> {
  const end = b.indexOf('\r\n\r\n');
  if (end < 0)
    return b.length > MAX_RESPONSE_HEAD
      ? { ok: false, error: `response head longer than ${MAX_RESPONSE_HEAD} bytes` }
      : 'need-more';
  const lines = b.toString('latin1', 0, end).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!status) return { ok: false, error: `not an HTTP response: '${printable(lines[0]!, 80)}'` };
  if (status[1] !== '101')
    return {
      ok: false,
      error: `HTTP ${status[1]} ${printable(status[2] ?? '', 80)} instead of 101 Switching Protocols (wrong path or Host?)`,
    };
  const accept = lines.slice(1).find((l) => /^sec-websocket-accept:/i.test(l));
  if (!accept || accept.slice(accept.indexOf(':') + 1).trim() !== acceptKeyFor(key)) {
    return { ok: false, error: 'missing or wrong Sec-WebSocket-Accept' };
  }
  return { ok: true, length: end + 4 };
}

/** One masked client frame (FIN set). `mask` is 4 bytes (random unless a test fixes it). */
export function encodeClientFrame(opcode: number, payload: Buffer, mask: Buffer = randomBytes(4)): Buffer {
  const n = payload.length;
  const lenBytes = n < 126 ? 0 : n < 0x10000 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + 4);
  head[0] = 0x80 | opcode;
  if (lenBytes === 0) head[1] = 0x80 | n;
  else if (lenBytes === 2) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  mask.copy(head, 2 + lenBytes);
  return Buffer.concat([head, xorMask(payload, mask)]);
}

/** payload XOR the repeated 4-byte mask, a 32-bit word at a time (on a fresh, aligned copy). */
function xorMask(payload: Buffer, mask: Buffer): Buffer {
  const n = payload.length;
  const ab = new ArrayBuffer(n);
  const out = Buffer.from(ab);
  payload.copy(out);
  const word = new Uint32Array(new Uint8Array(mask.subarray(0, 4)).buffer)[0]!;
  const words = new Uint32Array(ab, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i]! ^= word;
  for (let i = n & ~3; i < n; i++) out[i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** What the server sent, frame by frame: data bytes (streamed) and control messages. */
export type WsEvent =
  | { type: 'data'; bytes: Buffer }
  | { type: 'ping'; payload: Buffer }
  | { type: 'close'; code?: number };

export class WsProtocolError extends Error {}

/**
 * Incremental decoder of server frames. Data frames (text, binary, continuation) are passed
 * on piece by piece; control frames (at most 125 bytes, never fragmented) whole.
 */
export class WsFrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  /** Payload bytes left in the current data frame (-1: reading a header). */
  private left = -1;
  private mask: Buffer | undefined;
  private maskPos = 0;

  push(chunk: Buffer): WsEvent[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: WsEvent[] = [];
    for (;;) {
      if (this.left > 0) {
        if (this.buf.length === 0) break;
        const take = Math.min(this.left, this.buf.length);
        const bytes = this.unmask(this.buf.subarray(0, take));
        this.buf = this.buf.subarray(take);
        this.left -= take;
        out.push({ type: 'data', bytes });
        continue;
      }
      this.left = -1;
      const frame = this.header();
      if (frame === undefined) break;
      if (frame.opcode >= 0x8) {
        if (this.buf.length < frame.length) {
          this.buf = Buffer.concat([frame.raw, this.buf]);
          break;
        }
        const payload = this.unmask(this.buf.subarray(0, frame.length));
        this.buf = this.buf.subarray(frame.length);
        if (frame.opcode === OP_CLOSE)
          out.push({ type: 'close', ...(payload.length >= 2 ? { code: payload.readUInt16BE(0) } : {}) });
        else if (frame.opcode === OP_PING) out.push({ type: 'ping', payload });
        continue;
      }
      this.left = frame.length;
    }
    return out;
  }

  /** Bytes of an unfinished frame at EOF (non-zero: the stream was cut). */
  get pending(): number {
    return this.buf.length + Math.max(0, this.left);
  }

  private unmask(bytes: Buffer): Buffer {
    if (!this.mask) return bytes;
    const out = Buffer.allocUnsafe(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! ^ this.mask[(this.maskPos + i) & 3]!;
    this.maskPos += bytes.length;
    return out;
  }

  /** Consumes one frame header; undefined when it is not all here. Throws WsProtocolError. */
  private header(): { opcode: number; length: number; raw: Buffer } | undefined {
    const b = this.buf;
    if (b.length < 2) return undefined;
    if ((b[0]! & 0x70) !== 0) throw new WsProtocolError('frame with reserved bits set (no extension was negotiated)');
    const opcode = b[0]! & 0x0f;
    const fin = (b[0]! & 0x80) !== 0;
    if (![OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG].includes(opcode))
      throw new WsProtocolError(`unknown opcode ${opcode}`);
    const masked = (b[1]! & 0x80) !== 0;
    let length = b[1]! & 0x7f;
    let off = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = b.readUInt16BE(2);
      off = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new WsProtocolError('frame length out of range');
      length = Number(big);
      off = 10;
    }
    if (opcode >= 0x8 && (length > 125 || !fin))
      throw new WsProtocolError('control frame longer than 125 bytes or fragmented');
    if (masked) off += 4;
    if (b.length < off) return undefined;
    this.mask = masked ? Buffer.from(b.subarray(off - 4, off)) : undefined;
    this.maskPos = 0;
    const raw = b.subarray(0, off);
    this.buf = b.subarray(off);
    return { opcode, length, raw };
  }
}

/** Sends the Upgrade request and checks the answer; the socket then carries frames. */
export async function upgradeToWebSocket(hs: Handshake, host: string, path: string): Promise<net.Socket> {
  const key = randomBytes(16).toString('base64');
  hs.write(encodeUpgradeRequest(host, path, key));
  await hs.read((b) => parseUpgradeResponse(b, key), 'WebSocket upgrade response');
  return hs.done();
}

/**
 * A Duplex over an upgraded socket: each write is one binary message; the server's data
 * frames come out as bytes. end() sends nothing at once (see _final); a ping is answered
 * with a pong, a Close with a Close.
 */
export class WebSocketStream extends Duplex {
  private readonly dec = new WsFrameDecoder();
  private writeCb: ((err?: Error | null) => void) | undefined;
  private wsClosed = false;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: net.Socket,
    private readonly outbound: string,
    private readonly where: string,
    /** How long the server may stay silent after the client's end before the stream closes. */
    private readonly lingerMs = WS_LINGER_MS,
  ) {
    super({ allowHalfOpen: true });
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
  }

  private readonly onData = (chunk: Buffer): void => {
    let events: WsEvent[];
    try {
      events = this.dec.push(chunk);
    } catch (e) {
      this.fail('EPROTO', `node ${this.where} sent a bad WebSocket frame: ${(e as Error).message}`);
      return;
    }
    for (const ev of events) {
      if (ev.type === 'data') {
        this.lingerTimer?.refresh();
        if (!this.wsClosed && !this.push(ev.bytes)) this.socket.pause();
      } else if (ev.type === 'ping') {
        this.socket.write(encodeClientFrame(OP_PONG, ev.payload));
      } else if (!this.wsClosed) {
        this.wsClosed = true;
        this.push(null);
        if (!this.socket.destroyed) this.socket.end(encodeClientFrame(OP_CLOSE, Buffer.from([0x03, 0xe8])));
      }
    }
  };

  private readonly onEnd = (): void => {
    if (this.wsClosed) return;
    if (this.dec.pending > 0)
      return this.fail('EPROTO', `node ${this.where} closed the connection in the middle of a WebSocket frame`);
    this.wsClosed = true;
    this.push(null);
  };

  private readonly onError = (e: NodeJS.ErrnoException): void => {
    this.fail(e.code ?? 'ECONNRESET', `connection to node ${this.where}: ${e.message}`);
  };

  private readonly onClose = (): void => {
    if (!this.wsClosed) this.fail('ECONNRESET', `connection to node ${this.where} closed`);
    else if (!this.writableFinished && !this.destroyed) this.destroy();
  };

  private readonly onDrain = (): void => {
    const cb = this.writeCb;
    this.writeCb = undefined;
    cb?.();
  };

  private fail(code: string, text: string): void {
    if (!this.destroyed) this.destroy(new OutboundError(this.outbound, code, text));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) return cb();
    if (this.socket.write(encodeClientFrame(OP_BINARY, chunk))) cb();
    else this.writeCb = cb;
  }

  // WebSocket has no half-close, and v2ray drops the rest of the response when the client
  // sends Close. So, as v2ray's own client does, the client's end is not sent: the stream
  // keeps reading and closes once the server has been silent for `lingerMs`.
  override _final(cb: (err?: Error | null) => void): void {
    this.lingerTimer = setTimeout(this.onLingerEnd, this.lingerMs);
    cb();
  }

  private readonly onLingerEnd = (): void => {
    this.lingerTimer = undefined;
    if (this.wsClosed || this.destroyed) return;
    this.wsClosed = true;
    this.push(null);
    if (!this.socket.destroyed) this.socket.end(encodeClientFrame(OP_CLOSE, Buffer.from([0x03, 0xe8])));
  };

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    clearTimeout(this.lingerTimer);
    const pending = this.writeCb;
    this.writeCb = undefined;
    for (const [ev, fn] of [
      ['data', this.onData],
      ['end', this.onEnd],
      ['error', this.onError],
      ['close', this.onClose],
      ['drain', this.onDrain],
    ] as const) {
      this.socket.removeListener(ev, fn as (...a: unknown[]) => void);
    }
    this.socket.on('error', () => {});
    this.socket.destroy();
    pending?.(err ?? undefined);
    cb(err);
  }
}
