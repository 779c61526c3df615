// Shadowsocks AEAD outbound (SIP004 with the session subkeys of the AEAD spec):
//   master key = EVP_BytesToKey(MD5, password)          subkey = HKDF-SHA1(master, salt, "ss-subkey")
//   TCP stream, each direction: salt, then chunks  [len(2, BE) + tag][payload + tag],
//     payload at most 0x3FFF bytes, nonce = 12-byte little-endian counter from 0, +1 per seal/open.
//   The first payload client → node starts with the target address (SOCKS5 ATYP format).
//   UDP packet: salt + seal(subkey, zero nonce, address + payload).
// The crypto is pure and exported (known-answer tests, fuzzing); ShadowsocksStream puts it
// around a TCP socket as a Duplex the relay can use like a socket.
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { formatEndpoint } from '../kernel/sockaddr.js';
import { connectNode, NodeOutbound, type NodeConnOptions } from './node-conn.js';
import { decodeSocksAddress, destinationAddress, encodeSocksAddress, type SocksAddress } from './socks5.js';
import { OutboundError, type ConnectContext, type Destination, type TcpOutbound } from './types.js';
import { releaseInner } from './stream-teardown.js';
import type { ShadowsocksNodeSpec, SsMethod } from './uri.js';
import { pluginHostFor } from './sip003.js';
import {
  aeadOpen,
  aeadSeal,
  AeadStreamDecryptor,
  AeadStreamEncryptor,
  deriveSubkey,
  masterKey,
  NONCE_LEN,
  SS_CIPHERS,
  TAG_LEN,
  type SsDecryptError,
} from './shadowsocks-aead.js';

export * from './shadowsocks-aead.js';

// ── UDP ──────────────────────────────────────────────────────────────────────

/** salt + seal(subkey, zero nonce, ATYP address + payload) */
export function encryptUdpPacket(
  method: SsMethod,
  master: Buffer,
  address: SocksAddress,
  payload: Buffer,
  salt?: Buffer,
): Buffer {
  const info = SS_CIPHERS[method];
  const s = salt ?? randomBytes(info.saltLen);
  if (s.length !== info.saltLen) throw new TypeError(`salt must be ${info.saltLen} bytes`);
  const key = deriveSubkey(master, s, info.keyLen);
  return Buffer.concat([
    s,
    aeadSeal(info, key, Buffer.alloc(NONCE_LEN), Buffer.concat([encodeSocksAddress(address), payload])),
  ]);
}

export function decryptUdpPacket(
  method: SsMethod,
  master: Buffer,
  packet: Buffer,
): { ok: true; address: SocksAddress; payload: Buffer } | { ok: false; error: string } {
  const info = SS_CIPHERS[method];
  if (packet.length < info.saltLen + TAG_LEN) return { ok: false, error: 'packet shorter than salt + tag' };
  const key = deriveSubkey(master, packet.subarray(0, info.saltLen), info.keyLen);
  const plain = aeadOpen(info, key, Buffer.alloc(NONCE_LEN), packet.subarray(info.saltLen));
  if (!plain) return { ok: false, error: 'packet failed authentication (wrong password or method?)' };
  const addr = decodeSocksAddress(plain, 0);
  if (addr === 'need-more') return { ok: false, error: 'truncated address' };
  if (!addr.ok) return addr;
  return { ok: true, address: addr.address, payload: plain.subarray(addr.length) };
}

// ── the stream ───────────────────────────────────────────────────────────────

// A Shadowsocks server answers a request it cannot decrypt (wrong password or method) by
// closing the connection, and does the same when it cannot reach the target: the client
// cannot tell the two apart, so a close before the node's first byte is ENOREPLY.
const NO_REPLY =
  'closed the connection without answering: wrong password or method, or the target refused or closed the connection';

export interface ShadowsocksStreamOptions {
  outbound: string;
  /** node host:port, for messages */
  where: string;
  method: SsMethod;
  master: Buffer;
  /** Target address header, sent in the first chunk (with the first data when it comes at once). */
  header: Buffer;
  /** Fixed client salt (tests only). */
  salt?: Buffer;
}

/**
 * A Duplex over a connected socket to the node: writes are encrypted and sent, the node's
 * bytes come out decrypted. end() flushes and half-closes the socket; the node's EOF ends
 * the readable side; an authentication failure destroys the stream with OutboundError EAUTH.
 */
export class ShadowsocksStream extends Duplex {
  private readonly enc: AeadStreamEncryptor;
  private readonly dec: AeadStreamDecryptor;
  private header: Buffer | undefined;
  private headerTimer: NodeJS.Immediate | undefined;
  private writeCb: ((err?: Error | null) => void) | undefined;
  private sentAny = false;
  /** The client sent bytes beyond the target header. */
  private sentPayload = false;
  /** Our side is half-closed (the client's EOF). */
  private ended = false;
  private eof = false;

  constructor(
    readonly socket: net.Socket,
    private readonly o: ShadowsocksStreamOptions,
  ) {
    super({ allowHalfOpen: true });
    const info = SS_CIPHERS[o.method];
    this.enc = new AeadStreamEncryptor(info, o.master, o.salt);
    this.dec = new AeadStreamDecryptor(info, o.master);
    this.header = o.header;
    // Target first: if the client says nothing at once (server-speaks-first protocols), the
    // header goes alone.
    this.headerTimer = setImmediate(() => {
      this.headerTimer = undefined;
      this.flushHeader();
    });
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
  }

  private flushHeader(): void {
    if (!this.header || this.socket.destroyed) return;
    const h = this.header;
    this.header = undefined;
    this.sentAny = true;
    this.socket.write(this.enc.seal(h));
  }

  private readonly onData = (chunk: Buffer): void => {
    let plain: Buffer[];
    try {
      plain = this.dec.push(chunk);
    } catch (e) {
      const err = e as SsDecryptError;
      this.fail(err.code, `data from node ${this.o.where} ${err.message}`);
      return;
    }
    for (const p of plain) {
      if (!this.push(p)) this.socket.pause();
    }
  };

  /**
   * Closed before the node's first byte: a wrong key or an unreachable target, unless the
   * client sent nothing and ended: then closing is the target's (or node's) fair answer.
   */
  private noReply(): boolean {
    return !this.dec.started && this.sentAny && (this.sentPayload || !this.ended);
  }

  private readonly onEnd = (): void => {
    if (this.noReply()) {
      this.fail('ENOREPLY', `node ${this.o.where} ${NO_REPLY}`);
      return;
    }
    if (this.dec.pending > 0) {
      this.fail('EPROTO', `node ${this.o.where} closed the connection in the middle of a chunk`);
      return;
    }
    this.eof = true;
    this.push(null);
  };

  private readonly onError = (e: NodeJS.ErrnoException): void => {
    if (this.noReply() && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      this.fail('ENOREPLY', `node ${this.o.where} ${NO_REPLY} (reset)`);
      return;
    }
    this.fail(e.code ?? 'ECONNRESET', `connection to node ${this.o.where}: ${e.message}`);
  };

  private readonly onClose = (): void => {
    if (!this.destroyed && !this.eof) {
      this.fail('ECONNRESET', `connection to node ${this.o.where} closed`);
    }
  };

  private readonly onDrain = (): void => {
    const cb = this.writeCb;
    this.writeCb = undefined;
    cb?.();
  };

  private fail(code: string, text: string): void {
    if (this.destroyed) return;
    this.destroy(new OutboundError(this.o.outbound, code, text));
  }

  private send(data: Buffer, cb: (err?: Error | null) => void): void {
    if (data.length > 0) this.sentPayload = true;
    if (this.header) {
      data = Buffer.concat([this.header, data]);
      this.header = undefined;
    }
    if (data.length === 0) return cb();
    this.sentAny = true;
    if (this.writeParts(this.enc.sealParts(data))) cb();
    else this.writeCb = cb;
  }

  /** One writev for a write's chunks; true while the socket takes more. */
  private writeParts(parts: Buffer[]): boolean {
    const s = this.socket;
    s.cork();
    let more = true;
    for (const p of parts) more = s.write(p);
    s.uncork();
    return more;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    this.flushHeader();
    if (this.socket.destroyed) return cb();
    this.socket.end(() => cb());
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Abortive close: the node's socket is reset (RST), like net.Socket.resetAndDestroy(). */
  resetAndDestroy(): this {
    if (!this.socket.destroyed && !this.socket.connecting) this.socket.resetAndDestroy();
    return this.destroy();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.headerTimer) clearImmediate(this.headerTimer);
    this.headerTimer = undefined;
    const pending = this.writeCb;
    this.writeCb = undefined;
    releaseInner(
      this.socket,
      { onData: this.onData, onEnd: this.onEnd, onClose: this.onClose, onDrain: this.onDrain, onError: this.onError },
      err,
    );
    pending?.(err ?? undefined);
    this.enc.free();
    this.dec.free();
    cb(err);
  }
}

// ── the outbound ─────────────────────────────────────────────────────────────

/** A Shadowsocks node's outbound, TCP or UDP: the master key is derived once, from the spec. */
export abstract class ShadowsocksNodeOutbound extends NodeOutbound<ShadowsocksNodeSpec> {
  protected readonly master: Buffer;

  constructor(spec: ShadowsocksNodeSpec, opts: NodeConnOptions = {}) {
    super(spec, opts);
    this.master = masterKey(spec.method, spec.password);
  }
}

export class ShadowsocksOutbound extends ShadowsocksNodeOutbound implements TcpOutbound {
  readonly kind = 'shadowsocks';

  async connect(dst: Destination, ctx: ConnectContext): Promise<Duplex> {
    let header: Buffer;
    try {
      header = encodeSocksAddress(destinationAddress(dst));
    } catch (e) {
      throw new OutboundError(
        this.name,
        'EINVAL',
        `cannot ask node ${this.where} for ${formatEndpoint({ address: dst.ip, port: dst.port })}: ${(e as Error).message}`,
      );
    }
    const socket = this.spec.plugin
      ? await connectViaPlugin(this.name, this.spec, this.opts, ctx.signal)
      : await connectNode(this.name, this.spec.host, this.spec.port, this.opts, ctx.signal);
    if (ctx.signal?.aborted) {
      socket.destroy();
      throw new OutboundError(this.name, 'EABORTED', `connect to node ${this.where} aborted`);
    }
    return new ShadowsocksStream(socket, {
      outbound: this.name,
      where: this.where,
      method: this.spec.method,
      master: this.master,
      header,
    });
  }
}

/** A plugin only just started may not listen yet: refused connections are retried for this long. */
const PLUGIN_WARMUP_MS = 3000;

/** TCP connection to the node's SIP003 plugin on loopback (the plugin carries it to the node). */
async function connectViaPlugin(
  name: string,
  spec: ShadowsocksNodeSpec,
  opts: NodeConnOptions,
  signal: AbortSignal | undefined,
): Promise<net.Socket> {
  const host = pluginHostFor(spec as ShadowsocksNodeSpec & { plugin: NonNullable<ShadowsocksNodeSpec['plugin']> });
  for (;;) {
    const port = await host.localPort();
    try {
      return await connectNode(name, '127.0.0.1', port, opts, signal);
    } catch (e) {
      const warming = e instanceof OutboundError && e.code === 'ECONNREFUSED' && host.uptimeMs() < PLUGIN_WARMUP_MS;
      if (!warming || signal?.aborted)
        throw e instanceof OutboundError && e.code === 'ECONNREFUSED'
          ? new OutboundError(
              name,
              'EPLUGIN',
              `SIP003 plugin ${host.plugin} on 127.0.0.1:${port} refused the connection`,
            )
          : e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
