// Talking to upstream nameservers: over UDP on a few shared connected sockets per upstream
// (random ids, ports renewed every few hundred queries; an ICMP port-unreachable fails the
// attempt at once), and
// DNS over TCP (RFC 7766: 2-byte length framing) on reused, pipelined connections, either
// straight to the server or through an outbound node (SOCKS5 / HTTP CONNECT / Shadowsocks).
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { ConnectError, connectDirect } from '../outbound/direct.js';
import { createOutboundFd } from '../kernel/sockets.js';
import type { Duplex } from 'node:stream';
import type { TcpOutbound } from '../outbound/types.js';
import { isResponseTo, tryParseMessage, type DnsMessage } from './wire.js';

export interface Upstream {
  host: string;
  port: number;
  family: 4 | 6;
  /** host:port (IPv6 in brackets), for logs and stats. */
  label: string;
}

/** `ip`, `ip:port`, `[v6]:port` or a bare IPv6 address. Throws TypeError otherwise. */
export function parseUpstream(text: string): Upstream {
  const s = text.trim();
  let host: string | undefined;
  let port = 53;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (isIP(s)) host = s;
  else if (m) {
    host = m[1];
    if (m[2] !== undefined) port = Number(m[2]);
  }
  const family = host ? isIP(host) : 0;
  if (!host || !family || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`nameserver '${text}': expected IP, IP:PORT or [IPv6]:PORT`);
  }
  return { host, port, family: family as 4 | 6, label: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

export type UpstreamErrorCode = 'timeout' | 'refused' | 'network' | 'closed' | 'connect' | 'busy' | 'aborted';

export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamErrorCode,
    readonly upstream: string,
    message: string,
  ) {
    super(`${upstream}: ${message}`);
    this.name = 'UpstreamError';
  }
}

export interface Exchanged {
  response: Buffer;
  msg: DnsMessage;
}

/** Makes a UDP socket for one exchange (lets the caller add SO_MARK); default: a plain one. */
export type UdpSocketFactory = (family: 4 | 6) => dgram.Socket | Promise<dgram.Socket>;

interface UdpSlot {
  ready: Promise<dgram.Socket>;
  pending: Map<number, Pending>;
  /** Queries sent on it; past queriesPerSocket it is retired (a new source port). */
  used: number;
  retired: boolean;
}

/**
 * UDP exchanges with one upstream over a few shared connected sockets: a query gets a random
 * id unused on its socket and the answer is matched by id and question, so one socket carries
 * many queries at once (no socket to create, connect and close per query). Each socket is
 * retired after `queriesPerSocket` queries, so source ports keep changing: a spoofer must
 * guess the port (one of a few, each short-lived) and the id. An ICMP port-unreachable fails
 * the queries waiting on that socket at once.
 */
export class UdpUpstreamPool {
  private readonly slots: UdpSlot[] = [];
  private next = 0;
  private closed = false;

  constructor(
    private readonly up: Upstream,
    private readonly factory?: UdpSocketFactory,
    private readonly opts = { sockets: 4, queriesPerSocket: 512 },
  ) {}

  exchange(query: Buffer, qmsg: DnsMessage, timeoutMs: number): Promise<Exchanged> {
    if (this.closed) return Promise.reject(new UpstreamError('closed', this.up.label, 'forwarder closed'));
    const slot = this.slot();
    let id = (Math.random() * 0x10000) | 0;
    while (slot.pending.has(id)) id = (id + 1) & 0xffff;
    const wire = Buffer.from(query);
    wire.writeUInt16BE(id, 0);
    const expect: DnsMessage = { ...qmsg, header: { ...qmsg.header, id } };
    return new Promise<Exchanged>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        this.release(slot);
        reject(new UpstreamError('timeout', this.up.label, `no answer over UDP in ${timeoutMs} ms`));
      }, timeoutMs);
      slot.pending.set(id, { qmsg: expect, resolve, reject, timer });
      slot.ready.then(
        (sock) =>
          sock.send(wire, (err) => {
            if (err) this.fail(slot, id, 'network', `UDP send: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
          }),
        (e: Error) => this.fail(slot, id, 'network', `UDP: ${(e as NodeJS.ErrnoException).code ?? e.message}`),
      );
    });
  }

  /** The socket for the next query, round robin; a worn-out one is replaced. */
  private slot(): UdpSlot {
    const i = this.next++ % this.opts.sockets;
    let slot = this.slots[i];
    if (!slot || slot.retired || slot.used >= this.opts.queriesPerSocket) {
      if (slot) this.retire(slot);
      slot = this.open();
      this.slots[i] = slot;
    }
    slot.used++;
    return slot;
  }

  private open(): UdpSlot {
    const slot: UdpSlot = { ready: undefined!, pending: new Map(), used: 0, retired: false };
    slot.ready = (async () => {
      const sock = this.factory
        ? await this.factory(this.up.family)
        : dgram.createSocket(this.up.family === 6 ? 'udp6' : 'udp4');
      sock.on('message', (data: Buffer) => this.onMessage(slot, data));
      sock.on('error', (e: NodeJS.ErrnoException) => this.onError(slot, e));
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.connect(this.up.port, this.up.host, () => {
          sock.off('error', reject);
          resolve();
        });
      });
      return sock;
    })();
    slot.ready.catch(() => this.retire(slot));
    return slot;
  }

  private onMessage(slot: UdpSlot, data: Buffer): void {
    if (data.length < 12) return;
    const p = slot.pending.get(data.readUInt16BE(0));
    if (!p) return; // late, or not ours
    const r = tryParseMessage(data);
    if (!r.ok || !isResponseTo(r.msg, p.qmsg)) return;
    slot.pending.delete(r.msg.header.id);
    clearTimeout(p.timer);
    p.resolve({ response: data, msg: r.msg });
    this.release(slot);
  }

  private onError(slot: UdpSlot, e: NodeJS.ErrnoException): void {
    const refused = e.code === 'ECONNREFUSED';
    const why = refused ? 'port unreachable' : `UDP: ${e.code ?? e.message}`;
    for (const id of [...slot.pending.keys()]) this.fail(slot, id, refused ? 'refused' : 'network', why);
    this.retire(slot);
  }

  private fail(slot: UdpSlot, id: number, code: UpstreamErrorCode, why: string): void {
    const p = slot.pending.get(id);
    if (!p) return;
    slot.pending.delete(id);
    clearTimeout(p.timer);
    p.reject(new UpstreamError(code, this.up.label, why));
    this.release(slot);
  }

  /** No new queries on `slot`; it is closed once nothing waits on it. */
  private retire(slot: UdpSlot): void {
    slot.retired = true;
    this.release(slot);
  }

  private release(slot: UdpSlot): void {
    if (!slot.retired || slot.pending.size > 0) return;
    void slot.ready.then(
      (sock) => {
        try {
          sock.close();
        } catch {
          /* already closed */
        }
      },
      () => {},
    );
  }

  close(): void {
    this.closed = true;
    for (const slot of this.slots) {
      for (const id of [...slot.pending.keys()]) this.fail(slot, id, 'closed', 'forwarder closed');
      this.retire(slot);
    }
    this.slots.length = 0;
  }
}

interface Pending {
  qmsg: DnsMessage;
  resolve: (x: Exchanged) => void;
  reject: (e: UpstreamError) => void;
  timer: NodeJS.Timeout;
}

/** Reassembles length-framed DNS messages from a TCP byte stream. */
export class TcpFramer {
  private buf: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the whole messages now complete. */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + len) break;
      out.push(Buffer.from(this.buf.subarray(2, 2 + len)));
      this.buf = this.buf.subarray(2 + len);
    }
    return out;
  }

  get buffered(): number {
    return this.buf.length;
  }
}

export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + msg.length);
  out.writeUInt16BE(msg.length, 0);
  out.set(msg, 2);
  return out;
}

/**
 * One DNS-over-TCP connection carrying any number of outstanding queries (pipelining,
 * answers matched by id, in any order). Each query gets its own id on the connection.
 */
export class TcpChannel {
  private readonly pending = new Map<number, Pending>();
  private readonly framer = new TcpFramer();
  private idleTimer: NodeJS.Timeout | undefined;
  private dead = false;
  /** Responses received so far (a channel that never answered is not worth a retry). */
  answered = 0;

  constructor(
    private readonly stream: Duplex,
    readonly label: string,
    private readonly idleMs: number,
    private readonly maxPending: number,
  ) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => this.fail('closed', 'connection error'));
    stream.on('close', () => this.fail('closed', 'connection closed'));
    stream.on('end', () => this.fail('closed', 'connection closed by the server'));
    this.armIdle();
  }

  get alive(): boolean {
    return !this.dead;
  }

  get load(): number {
    return this.pending.size;
  }

  /** Sends `query` (its id is replaced) and resolves with the matching response. */
  query(query: Buffer, qmsg: DnsMessage, timeoutMs: number): Promise<Exchanged> {
    if (this.dead) return Promise.reject(new UpstreamError('closed', this.label, 'connection closed'));
    if (this.pending.size >= this.maxPending)
      return Promise.reject(new UpstreamError('busy', this.label, 'too many queries in flight'));
    let id = (Math.random() * 0x10000) | 0;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    const wire = Buffer.from(query);
    wire.writeUInt16BE(id, 0);
    const expect: DnsMessage = { ...qmsg, header: { ...qmsg.header, id } };
    clearTimeout(this.idleTimer);
    return new Promise<Exchanged>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UpstreamError('timeout', this.label, `no answer over TCP in ${timeoutMs} ms`));
        this.armIdle();
      }, timeoutMs);
      this.pending.set(id, { qmsg: expect, resolve, reject, timer });
      this.stream.write(frame(wire));
    });
  }

  close(): void {
    this.fail('closed', 'connection closed');
  }

  private onData(chunk: Buffer): void {
    for (const m of this.framer.push(chunk)) {
      const r = tryParseMessage(m);
      if (!r.ok) continue;
      const p = this.pending.get(r.msg.header.id);
      if (!p || !isResponseTo(r.msg, p.qmsg)) continue;
      this.pending.delete(r.msg.header.id);
      clearTimeout(p.timer);
      this.answered++;
      p.resolve({ response: m, msg: r.msg });
    }
    this.armIdle();
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.dead || this.pending.size > 0) return;
    this.idleTimer = setTimeout(() => this.close(), this.idleMs);
    this.idleTimer.unref();
  }

  private fail(code: UpstreamErrorCode, message: string): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.idleTimer);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new UpstreamError(code, this.label, message));
    }
    this.pending.clear();
    this.stream.destroy();
  }
}

/** Opens a TCP stream to an upstream (directly, or through a node). */
export type TcpConnector = (up: Upstream, signal: AbortSignal) => Promise<Duplex>;

/** Straight TCP to the upstream, with SO_MARK when `mark` is set (loop avoidance). */
export function directConnector(o: { mark?: number; connectTimeoutMs?: number } = {}): TcpConnector {
  return async (up, signal) => {
    try {
      return await connectDirect(
        { address: up.host, port: up.port, family: up.family },
        { connectTimeoutMs: o.connectTimeoutMs ?? 10_000, mark: o.mark, signal },
      );
    } catch (e) {
      const code = e instanceof ConnectError ? e.code : 'ECONNECT';
      throw new UpstreamError(
        code === 'ECONNREFUSED' ? 'refused' : 'connect',
        up.label,
        `TCP connect: ${(e as Error).message}`,
      );
    }
  };
}

/** A UDP socket carrying SO_MARK (needs CAP_NET_ADMIN), for UdpUpstreamPool. */
export function markedUdpSocket(mark: number): UdpSocketFactory {
  return (family) => {
    const fd = createOutboundFd({ family, mark, udp: true });
    const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    if (fd !== undefined) sock.bind({ fd });
    return sock;
  };
}

export function outboundConnector(outbound: TcpOutbound): TcpConnector {
  return async (up, signal) => {
    try {
      return await outbound.connect(
        { ip: up.host, port: up.port, family: up.family },
        { source: { address: '0.0.0.0', port: 0 }, signal },
      );
    } catch (e) {
      throw new UpstreamError('connect', up.label, `through ${outbound.name}: ${(e as Error).message}`);
    }
  };
}

export interface TcpPoolOptions {
  /** Close a connection idle this long (default 10 s). */
  idleMs?: number;
  /** Outstanding queries per connection (default 1000). */
  maxPending?: number;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
}

/**
 * One reusable TCP channel per upstream, opened on demand. A query that fails because a
 * reused connection was closed under it (servers close idle or pipelined connections) is
 * retried once on a fresh connection.
 */
export class TcpPool {
  private readonly channels = new Map<string, TcpChannel>();
  private readonly connecting = new Map<string, Promise<TcpChannel>>();
  private readonly aborter = new AbortController();
  private closed = false;
  connects = 0;

  constructor(
    private readonly connector: TcpConnector,
    private readonly o: TcpPoolOptions = {},
  ) {}

  async exchange(up: Upstream, query: Buffer, qmsg: DnsMessage, timeoutMs: number): Promise<Exchanged> {
    const deadline = Date.now() + timeoutMs;
    const withDeadline = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new UpstreamError('timeout', up.label, `no TCP connection in ${timeoutMs} ms`)),
          Math.max(1, deadline - Date.now()),
        );
        p.then(
          (v) => (clearTimeout(t), resolve(v)),
          (e) => (clearTimeout(t), reject(e)),
        );
      });
    for (let attempt = 0; ; attempt++) {
      const reused = this.channels.get(up.label)?.alive === true;
      const ch = await withDeadline(this.channel(up));
      try {
        return await ch.query(query, qmsg, Math.max(1, deadline - Date.now()));
      } catch (e) {
        const retry =
          attempt === 0 && reused && e instanceof UpstreamError && e.code === 'closed' && Date.now() < deadline;
        if (!retry) throw e;
      }
    }
  }

  private channel(up: Upstream): Promise<TcpChannel> {
    if (this.closed) return Promise.reject(new UpstreamError('closed', up.label, 'forwarder closed'));
    const have = this.channels.get(up.label);
    if (have?.alive) return Promise.resolve(have);
    let p = this.connecting.get(up.label);
    if (!p) {
      const signal = AbortSignal.any([this.aborter.signal, AbortSignal.timeout(this.o.connectTimeoutMs ?? 10_000)]);
      p = this.connector(up, signal)
        .then((stream) => {
          if (this.closed) {
            stream.destroy();
            throw new UpstreamError('closed', up.label, 'forwarder closed');
          }
          this.connects++;
          const ch = new TcpChannel(stream, up.label, this.o.idleMs ?? 10_000, this.o.maxPending ?? 1000);
          this.channels.set(up.label, ch);
          return ch;
        })
        .finally(() => this.connecting.delete(up.label));
      this.connecting.set(up.label, p);
    }
    return p;
  }

  close(): void {
    this.closed = true;
    this.aborter.abort();
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }
}
