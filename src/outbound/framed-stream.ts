// A Duplex that puts a proxy protocol's framing (VMess chunks, a VLESS or Trojan request
// header) around a transport stream to the node. The protocol is a FrameCodec: pure, so it
// is unit-tested and fuzzed without sockets; this class only moves bytes and maps failures
// to OutboundError.
import type { Duplex as DuplexType } from 'node:stream';
import { Duplex } from 'node:stream';
import { OutboundError } from './types.js';
import { releaseInner } from './stream-teardown.js';

/** Why the node's bytes could not be decoded. */
export class CodecError extends Error {
  constructor(
    readonly code: 'EAUTH' | 'EPROTO',
    message: string,
  ) {
    super(message);
    this.name = 'CodecError';
  }
}

export interface FrameCodec {
  /** The request header: sent once, in front of the first payload. */
  readonly header: Buffer;
  /** Frames client payload (never empty). */
  encode(payload: Buffer): Buffer;
  /** Bytes that tell the node the client is done (before the transport's end), if the protocol has them. */
  finish(): Buffer | undefined;
  /** Payload decoded from the node's bytes; `eof` when the node signalled the end in band. Throws CodecError. */
  decode(chunk: Buffer): { data: Buffer[]; eof: boolean };
  /** True once the node has answered (its response header, or any byte when there is none). */
  readonly answered: boolean;
  /** Bytes held that are not a whole frame yet (non-zero at EOF: cut stream). */
  readonly pending: number;
}

// A server that cannot authenticate the request, or cannot reach the target, closes the
// connection: the client cannot tell which, so a close before the node's first byte is ENOREPLY.
const NO_REPLY =
  'closed the connection without answering: wrong id/password or security, or the target refused or closed the connection';

export interface FramedStreamOptions {
  outbound: string;
  where: string;
  /** Set when the server answers nothing before the payload (Trojan): a clean close before any byte is no ENOREPLY. */
  silentServer?: boolean;
}

export class FramedStream extends Duplex {
  private header: Buffer | undefined;
  private headerTimer: NodeJS.Immediate | undefined;
  private writeCb: ((err?: Error | null) => void) | undefined;
  private sentAny = false;
  private eof = false;

  constructor(
    readonly inner: DuplexType,
    private readonly codec: FrameCodec,
    private readonly o: FramedStreamOptions,
  ) {
    super({ allowHalfOpen: true });
    this.header = codec.header;
    // If the client says nothing at once (server-speaks-first protocols), the header goes alone.
    this.headerTimer = setImmediate(() => {
      this.headerTimer = undefined;
      this.flushHeader();
    });
    inner.on('data', this.onData);
    inner.on('end', this.onEnd);
    inner.on('error', this.onError);
    inner.on('close', this.onClose);
    inner.on('drain', this.onDrain);
  }

  private flushHeader(): void {
    if (!this.header || this.inner.destroyed) return;
    const h = this.header;
    this.header = undefined;
    this.sentAny = true;
    this.inner.write(h);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.eof) return;
    let out: { data: Buffer[]; eof: boolean };
    try {
      out = this.codec.decode(chunk);
    } catch (e) {
      const err = e as CodecError;
      this.fail(err.code ?? 'EPROTO', `data from node ${this.o.where}: ${err.message}`);
      return;
    }
    for (const p of out.data) if (!this.push(p)) (this.inner as DuplexType & { pause(): void }).pause();
    if (out.eof) {
      this.eof = true;
      this.push(null);
    }
  };

  private readonly onEnd = (): void => {
    if (this.eof) return;
    if (this.codec.pending > 0)
      return this.fail('EPROTO', `node ${this.o.where} closed the connection in the middle of a frame`);
    if (!this.codec.answered && this.sentAny && !this.o.silentServer)
      return this.fail('ENOREPLY', `node ${this.o.where} ${NO_REPLY}`);
    this.eof = true;
    this.push(null);
  };

  private readonly onError = (e: NodeJS.ErrnoException): void => {
    if (e instanceof OutboundError) return this.fail(e.code, e.message.slice(e.outbound.length + 2));
    if (!this.codec.answered && this.sentAny && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
      return this.fail('ENOREPLY', `node ${this.o.where} ${NO_REPLY} (reset)`);
    }
    this.fail(e.code ?? 'ECONNRESET', `connection to node ${this.o.where}: ${e.message}`);
  };

  private readonly onClose = (): void => {
    if (!this.destroyed && !this.eof) this.fail('ECONNRESET', `connection to node ${this.o.where} closed`);
  };

  private readonly onDrain = (): void => {
    const cb = this.writeCb;
    this.writeCb = undefined;
    cb?.();
  };

  private fail(code: string, text: string): void {
    if (!this.destroyed) this.destroy(new OutboundError(this.o.outbound, code, text));
  }

  private send(data: Buffer, cb: (err?: Error | null) => void): void {
    if (data.length === 0) return cb();
    let out = this.codec.encode(data);
    if (this.header) {
      out = Buffer.concat([this.header, out]);
      this.header = undefined;
    }
    this.sentAny = true;
    if (this.inner.write(out)) cb();
    else this.writeCb = cb;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.send(chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.flushHeader();
    if (this.inner.destroyed) return cb();
    const trailer = this.codec.finish();
    if (trailer) this.inner.write(trailer);
    this.inner.end(() => cb());
  }

  override _read(): void {
    const inner = this.inner as DuplexType & { isPaused(): boolean; resume(): void };
    if (inner.isPaused()) inner.resume();
  }

  /** Abortive close: the node's TCP connection is reset when there is one underneath. */
  resetAndDestroy(): this {
    const s = this.inner as DuplexType & {
      resetAndDestroy?: () => void;
      connecting?: boolean;
      socket?: DuplexType & { resetAndDestroy?: () => void };
    };
    const tcp = typeof s.resetAndDestroy === 'function' ? s : s.socket;
    if (
      tcp &&
      !tcp.destroyed &&
      typeof tcp.resetAndDestroy === 'function' &&
      !(tcp as { connecting?: boolean }).connecting
    ) {
      try {
        tcp.resetAndDestroy();
      } catch {
        // a TLS socket over a TCP socket: plain destroy below is enough
      }
    }
    return this.destroy();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.headerTimer) clearImmediate(this.headerTimer);
    this.headerTimer = undefined;
    const pending = this.writeCb;
    this.writeCb = undefined;
    releaseInner(
      this.inner,
      { onData: this.onData, onEnd: this.onEnd, onClose: this.onClose, onDrain: this.onDrain, onError: this.onError },
      err,
    );
    pending?.(err ?? undefined);
    cb(err);
  }
}
