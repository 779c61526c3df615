// What every proxy-node outbound shares: the TCP connection to the node (DNS, SO_MARK,
// connect timeout, abort) and a handshake reader that feeds incremental parsers, enforces
// the handshake deadline and hands any bytes after the handshake back to the stream.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type net from 'node:net';
import { OutboundError } from './types.js';
import { ConnectError, connectDirect } from './direct.js';
import { formatEndpoint } from '../kernel/sockaddr.js';
import type { NodeSpec } from './uri.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Resolves a node's host name (e.g. with the -N nameservers); default: the system's getaddrinfo. */
export type HostResolver = (host: string) => Promise<{ address: string; family: 4 | 6 }>;

/** getaddrinfo (honours /etc/hosts and nsswitch), the default. */
export const systemResolver: HostResolver = async (host) => {
  const r = await lookup(host, { verbatim: true });
  return { address: r.address, family: r.family === 6 ? 6 : 4 };
};

export interface NodeConnOptions {
  /** SO_MARK for the socket to the node, so the firewall plan does not capture it again. */
  mark?: number;
  /** How the node's host name is resolved; default systemResolver. */
  resolve?: HostResolver;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
}

/**
 * What every node outbound (TCP or UDP, any kind) holds: the node's spec and connection
 * options, its name, and its address as messages print it.
 */
export abstract class NodeOutbound<Spec extends NodeSpec> {
  readonly name: string;
  protected readonly where: string;

  constructor(
    protected readonly spec: Spec,
    protected readonly opts: NodeConnOptions = {},
  ) {
    this.name = spec.name;
    this.where = formatEndpoint({ address: spec.host, port: spec.port });
  }
}

/** What an incremental parser says about the bytes so far. */
export type Parsed<T> = 'need-more' | { ok: false; error: string } | ({ ok: true; length: number } & T);

/** TCP connection to the node at host:port (resolving a host name first), or OutboundError. */
export async function connectNode(
  outbound: string,
  host: string,
  port: number,
  opts: NodeConnOptions,
  signal: AbortSignal | undefined,
): Promise<net.Socket> {
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const started = Date.now();
  const where = formatEndpoint({ address: host, port });
  if (signal?.aborted) throw new OutboundError(outbound, 'EABORTED', `connect to node ${where} aborted`);
  let address = host;
  let family = isIP(host) as 0 | 4 | 6;
  if (family === 0) {
    try {
      const r = await withDeadline((opts.resolve ?? systemResolver)(host), timeoutMs, signal);
      address = r.address;
      family = r.family as 4 | 6;
    } catch (e) {
      if (e === TIMEOUT)
        throw new OutboundError(outbound, 'ETIMEDOUT', `resolving node ${host} timed out after ${timeoutMs} ms`);
      if (e === ABORTED) throw new OutboundError(outbound, 'EABORTED', `connect to node ${where} aborted`);
      const code = (e as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      throw new OutboundError(
        outbound,
        code === 'ENODATA' ? 'ENOTFOUND' : code,
        `cannot resolve node ${host}: ${code}`,
      );
    }
  }
  try {
    return await connectDirect(
      { address, port, family: family as 4 | 6 },
      { connectTimeoutMs: Math.max(1, timeoutMs - (Date.now() - started)), mark: opts.mark, signal },
    );
  } catch (e) {
    if (e instanceof ConnectError) {
      const text =
        e.code === 'ECONNREFUSED'
          ? `node ${where} refused the connection (is the proxy running?)`
          : e.code === 'ETIMEDOUT'
            ? `connect to node ${where} timed out after ${timeoutMs} ms`
            : e.code === 'EABORTED'
              ? `connect to node ${where} aborted`
              : `connect to node ${where}: ${e.message}`;
      throw new OutboundError(outbound, e.code, text);
    }
    throw new OutboundError(outbound, 'ECONNECT', `connect to node ${where}: ${(e as Error).message}`);
  }
}

const TIMEOUT = Symbol('timeout');
const ABORTED = Symbol('aborted');

function withDeadline<T>(p: Promise<T>, ms: number, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => finish(() => reject(TIMEOUT)), ms);
    const onAbort = (): void => finish(() => reject(ABORTED));
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (f: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      f();
    };
    p.then(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
  });
}

/**
 * Runs a request/response handshake over a fresh socket, in paused mode (no 'data' listener,
 * so nothing is lost): `await hs.read(parser)` until the parser has a complete message,
 * `hs.write(bytes)` to send, `hs.done()` when finished, which puts any bytes the node sent
 * after the handshake back at the front of the socket's read buffer. The whole handshake
 * shares one deadline; abort and errors reject with OutboundError and destroy the socket.
 */
export class Handshake {
  private buf: Buffer = Buffer.alloc(0);
  private readonly timer: NodeJS.Timeout;
  private failure: OutboundError | undefined;
  private wake: (() => void) | undefined;
  private ended = false;
  private finished = false;

  constructor(
    readonly socket: net.Socket,
    private readonly outbound: string,
    /** The node as messages name it (host:port). */
    readonly where: string,
    timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.timer = setTimeout(
      () =>
        this.fail(
          new OutboundError(outbound, 'ETIMEDOUT', `handshake with node ${where} timed out after ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    signal?.addEventListener('abort', this.onAbort, { once: true });
    socket.on('readable', this.onReadable);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    if (signal?.aborted) this.onAbort();
  }

  private readonly onAbort = (): void => {
    this.fail(new OutboundError(this.outbound, 'EABORTED', `handshake with node ${this.where} aborted`));
  };
  // Only wakes the reader: bytes are taken in pull(), never past what is buffered, so the
  // stream's 'end' is not triggered behind the relay's back after a complete handshake.
  private readonly onReadable = (): void => this.poke();
  private readonly onEnd = (): void => {
    this.ended = true;
    this.poke();
  };
  private readonly onError = (e: NodeJS.ErrnoException): void => {
    this.fail(
      new OutboundError(
        this.outbound,
        e.code ?? 'EHANDSHAKE',
        `connection to node ${this.where} failed during handshake: ${e.message}`,
      ),
    );
  };
  private readonly onClose = (): void => {
    this.ended = true;
    this.poke();
  };

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Fails the handshake (idempotent): the socket is destroyed, pending and later reads reject. */
  fail(err: OutboundError): void {
    if (this.failure || this.finished) return;
    this.failure = err;
    this.cleanup();
    this.socket.destroy();
    this.poke();
  }

  /** Fails the handshake with OutboundError(code, text) and throws that error. */
  failWith(code: string, text: string): never {
    const err = new OutboundError(this.outbound, code, text);
    this.fail(err);
    throw err;
  }

  write(bytes: Buffer): void {
    if (this.failure) throw this.failure;
    this.socket.write(bytes);
  }

  /**
   * Waits until `parse(buffered bytes)` is complete, consumes its `length` bytes and returns it.
   * A parser error becomes OutboundError(errorCode); EOF before a complete message becomes
   * OutboundError(eofCode) with `eofText`.
   */
  async read<T>(
    parse: (b: Buffer) => Parsed<T>,
    what: string,
    eof: { code: string; text: string } = { code: 'EHANDSHAKE', text: 'closed the connection during the handshake' },
  ): Promise<{ ok: true; length: number } & T> {
    for (;;) {
      if (this.failure) throw this.failure;
      this.pull();
      const r = parse(this.buf);
      if (r !== 'need-more') {
        if (!r.ok) this.failWith('EHANDSHAKE', `node ${this.where} sent an invalid ${what}: ${r.error}`);
        this.buf = this.buf.subarray(r.length);
        return r;
      }
      if (this.ended) this.failWith(eof.code, `node ${this.where} ${eof.text}`);
      const waiting = new Promise<void>((resolve) => (this.wake = resolve));
      // Nothing buffered: read(0) asks for more, and at EOF makes the stream emit 'end'.
      if (this.socket.readableLength === 0) this.socket.read(0);
      await waiting;
    }
  }

  /**
   * Takes exactly what is buffered. (A read() past the buffer at EOF would schedule 'end'
   * before the relay listens: it would never see the node's FIN.)
   */
  private pull(): void {
    const n = this.socket.readableLength;
    if (n === 0) return;
    const chunk = this.socket.read(n) as Buffer | null;
    if (chunk) this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Ends the handshake: returns the socket with any extra bytes put back in front. */
  done(): net.Socket {
    if (this.failure) throw this.failure;
    this.finished = true;
    this.cleanup();
    if (this.buf.length > 0) this.socket.unshift(this.buf);
    this.buf = Buffer.alloc(0);
    return this.socket;
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.socket.removeListener('readable', this.onReadable);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
  }
}

/** Printable, bounded text of untrusted bytes (status lines, reasons) for error messages. */
export function printable(text: string, max = 200): string {
  const t = text.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
