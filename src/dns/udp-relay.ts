// Forwarding of UDP queries of plain shape (peekQuery) that the cache cannot answer, the way
// dnsmasq does it: our own query goes to the upstream on a few shared connected sockets with
// an id of ours (a table id → pending query per socket, bounded), queries and answers move in
// batches (sendmmsg / recvmmsg, kernel/udp-batch.ts), and one sweep timer expires them. No
// promise, timer or closure per query; identical questions in flight share one upstream query.
import { openBatchUdpClient, type BatchUdpClient, type BatchUdpSocket } from '../kernel/udp-batch.js';
import type { Upstream } from './upstream.js';
import {
  CLASSIC_UDP_SIZE,
  EDNS_UDP_SIZE,
  HEADER_SIZE,
  optRecord,
  optSpan,
  RCODE,
  sameQuestionBytes,
  type QuickQuery,
} from './wire.js';

/** A client waiting for the answer to its query. */
interface ClientWaiter {
  listener: BatchUdpSocket;
  /** The client's sockaddr (a copy). */
  to: Buffer;
  /** The client's query (a copy): its id, RD bit, question spelling and EDNS. */
  query: Buffer;
  edns: boolean;
  /** Largest UDP answer the client takes. */
  limit: number;
}

/** The forwarder's own path (TCP clients, resolveReal) sharing the query: the answer, or undefined. */
type Waiter = ClientWaiter | ((resp: Buffer | undefined) => void);

interface Pending {
  key: string;
  /** Our query (lower-case name, our OPT); its id is written per attempt. */
  wire: Buffer;
  questionEnd: number;
  waiters: Waiter[];
  /** Upstream index of the first attempt; attempt i asks (start + i) % n. */
  start: number;
  attempt: number;
  /** Where the current attempt waits (undefined: over TCP, or not sent). */
  socket: RelaySocket | undefined;
  id: number;
  deadline: number;
  /** A SERVFAIL/REFUSED answer, given when no upstream does better. */
  fallback: Buffer | undefined;
}

interface RelaySocket {
  client: BatchUdpClient;
  upstream: number;
  /** Queries waiting on this socket, by the id we gave them. */
  byId: Map<number, Pending>;
  used: number;
  retired: boolean;
  closing: boolean;
}

export interface RelayCounters {
  upstreamQueries: number;
  upstreamErrors: number;
  tcpFallbacks: number;
  coalesced: number;
  dropped: number;
  servfail: number;
}

export interface UdpRelayOptions {
  upstreams: Upstream[];
  timeoutMs: number;
  mark?: number;
  /** Client queries waiting at most (past it new ones are dropped: the client retries). */
  maxWaiting: number;
  /** Shared with the forwarder's stats. */
  counters: RelayCounters;
  /** Sockets per upstream, and queries per socket before a new one (a new source port). */
  sockets?: number;
  queriesPerSocket?: number;
  /** An answer to `key` arrived: false rejects it as malformed (it is then ignored). */
  accept(key: string, response: Buffer): boolean;
  /** Ask `up` again over TCP (the UDP answer was truncated); resolves with the response. */
  overTcp(up: Upstream, query: Buffer): Promise<Buffer>;
  /** SERVFAIL for a client's query (undefined: no answer). */
  servfail(query: Buffer): Buffer | undefined;
  warn(up: Upstream, error: string): void;
}

export class UdpRelay {
  private readonly byKey = new Map<string, Pending>();
  private readonly pools: RelaySocket[][];
  private readonly rr: number[];
  private readonly dirtySockets = new Set<RelaySocket>();
  private readonly dirtyListeners = new Set<BatchUdpSocket>();
  private readonly tries: number;
  private preferred = 0;
  private waiting = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: UdpRelayOptions) {
    this.pools = o.upstreams.map(() => []);
    this.rr = o.upstreams.map(() => 0);
    this.tries = Math.max(2, o.upstreams.length);
  }

  /** Client queries waiting for an answer. */
  get size(): number {
    return this.waiting;
  }

  /** Forward `packet` (parsed as `q`, from `from` on `listener`), or join the same question in flight. */
  take(q: QuickQuery, key: string, packet: Buffer, from: Buffer, listener: BatchUdpSocket): void {
    if (this.waiting >= this.o.maxWaiting || this.closed) {
      this.o.counters.dropped++;
      return;
    }
    const waiter: ClientWaiter = {
      listener,
      to: Buffer.from(from),
      query: Buffer.from(packet.subarray(0, q.questionEnd)),
      edns: q.edns !== undefined,
      limit: q.edns ? Math.max(CLASSIC_UDP_SIZE, q.edns.udpSize) : CLASSIC_UDP_SIZE,
    };
    this.waiting++;
    const running = this.byKey.get(key);
    if (running) {
      this.o.counters.coalesced++;
      running.waiters.push(waiter);
      return;
    }
    const p: Pending = {
      key,
      wire: upstreamQuery(packet, q),
      questionEnd: q.questionEnd,
      waiters: [waiter],
      start: this.preferred,
      attempt: 0,
      socket: undefined,
      id: 0,
      deadline: 0,
      fallback: undefined,
    };
    this.byKey.set(key, p);
    this.send(p);
    this.sweeper ??= setInterval(() => this.sweep(), Math.max(10, Math.min(100, this.o.timeoutMs / 4))).unref();
  }

  /** The answer to `key` when it is in flight here (a copy; undefined: failed), else undefined. */
  join(key: string): Promise<Buffer | undefined> | undefined {
    const running = this.byKey.get(key);
    if (!running) return undefined;
    this.waiting++;
    return new Promise((resolve) => running.waiters.push(resolve));
  }

  /** Sends what this wake-up queued: queries to the upstreams, answers to the clients. */
  flush(): void {
    for (const s of this.dirtySockets) s.client.flush();
    this.dirtySockets.clear();
    for (const l of this.dirtyListeners) l.flush();
    this.dirtyListeners.clear();
  }

  /** The current attempt of `p`, or its end when every attempt is spent. */
  private send(p: Pending): void {
    const n = this.o.upstreams.length;
    for (; p.attempt < this.tries && n > 0; p.attempt++) {
      const index = (p.start + p.attempt) % n;
      this.o.counters.upstreamQueries++;
      let sock: RelaySocket;
      try {
        sock = this.socketFor(index);
      } catch (e) {
        this.o.counters.upstreamErrors++;
        this.o.warn(this.o.upstreams[index]!, `UDP: ${(e as Error).message}`);
        continue;
      }
      let id = (Math.random() * 0x10000) | 0;
      while (sock.byId.has(id)) id = (id + 1) & 0xffff;
      p.wire.writeUInt16BE(id, 0);
      sock.client.queue(p.wire);
      sock.byId.set(id, p);
      this.dirtySockets.add(sock);
      p.socket = sock;
      p.id = id;
      p.deadline = performance.now() + this.o.timeoutMs;
      return;
    }
    this.finish(p, p.fallback);
  }

  /** The socket for the next query to upstream `index`, round robin; a worn-out one is replaced. */
  private socketFor(index: number): RelaySocket {
    const pool = this.pools[index]!;
    const i = this.rr[index]!++ % (this.o.sockets ?? 4);
    let sock = pool[i];
    if (!sock || sock.retired || sock.used >= (this.o.queriesPerSocket ?? 512)) {
      if (sock) this.retire(sock);
      sock = this.open(index);
      pool[i] = sock;
    }
    sock.used++;
    return sock;
  }

  private open(index: number): RelaySocket {
    const up = this.o.upstreams[index]!;
    let sock: RelaySocket;
    const client = openBatchUdpClient({
      family: up.family,
      host: up.host,
      port: up.port,
      mark: this.o.mark,
      onDatagram: (payload, truncated) => this.onAnswer(sock, payload, truncated),
      onDrained: () => this.flush(),
      onError: (code, message) => this.onSocketError(sock, code, message),
    });
    sock = { client, upstream: index, byId: new Map(), used: 0, retired: false, closing: false };
    return sock;
  }

  private onAnswer(sock: RelaySocket, resp: Buffer, truncated: boolean): void {
    if (resp.length < HEADER_SIZE) return;
    const p = sock.byId.get(resp.readUInt16BE(0));
    if (!p || !sameQuestionBytes(resp, p.wire, p.questionEnd)) return; // late, or not ours
    const tc = truncated || (resp[2]! & 0x02) !== 0;
    if (!tc && (optSpan(resp, p.questionEnd) === undefined || !this.o.accept(p.key, resp))) return;
    this.unwait(p);
    const up = this.o.upstreams[sock.upstream]!;
    if (tc) {
      this.o.counters.tcpFallbacks++;
      p.deadline = Number.POSITIVE_INFINITY;
      this.o.overTcp(up, Buffer.from(p.wire)).then(
        (r) => this.afterTcp(p, sock.upstream, r),
        (e: Error) => this.attemptFailed(p, up, e.message),
      );
      return;
    }
    const rcode = resp[3]! & 0x0f;
    if ((rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) && p.attempt < this.tries - 1) {
      p.fallback = Buffer.from(resp);
      p.attempt++;
      this.send(p);
      return;
    }
    this.preferred = sock.upstream;
    this.finish(p, resp);
  }

  private afterTcp(p: Pending, upstream: number, resp: Buffer): void {
    if (this.closed) return;
    if (!sameQuestionBytes(resp, p.wire, p.questionEnd) || !this.o.accept(p.key, resp)) {
      this.attemptFailed(p, this.o.upstreams[upstream]!, 'malformed answer over TCP');
      return;
    }
    this.preferred = upstream;
    this.finish(p, resp);
    this.flush();
  }

  /** The current attempt failed: the next upstream, or the end. */
  private attemptFailed(p: Pending, up: Upstream, why: string): void {
    if (this.closed) return;
    this.o.counters.upstreamErrors++;
    this.o.warn(up, why);
    p.attempt++;
    this.send(p);
    this.flush();
  }

  /** `p` no longer waits on its socket. */
  private unwait(p: Pending): void {
    const sock = p.socket;
    if (!sock) return;
    p.socket = undefined;
    sock.byId.delete(p.id);
    this.release(sock);
  }

  /** Answers every client waiting on `p` with `resp` (made each client's own), or SERVFAIL. */
  private finish(p: Pending, resp: Buffer | undefined): void {
    this.byKey.delete(p.key);
    this.waiting -= p.waiters.length;
    for (const w of p.waiters) {
      if (typeof w === 'function') {
        w(resp && !this.closed ? Buffer.from(resp) : undefined);
        continue;
      }
      if (this.closed) continue;
      let out = resp && replyFor(w, resp, p.questionEnd);
      if (!out) {
        this.o.counters.servfail++;
        out = this.o.servfail(w.query);
      }
      if (!out) continue;
      w.listener.queue(w.to, out);
      this.dirtyListeners.add(w.listener);
    }
  }

  /** Attempts past their deadline fail: the next upstream is asked. */
  private sweep(): void {
    if (this.byKey.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = performance.now();
    for (const p of [...this.byKey.values()]) {
      if (p.deadline > now || !p.socket) continue;
      const up = this.o.upstreams[p.socket.upstream]!;
      this.unwait(p);
      this.o.counters.upstreamErrors++;
      this.o.warn(up, `no answer over UDP in ${this.o.timeoutMs} ms`);
      p.attempt++;
      this.send(p);
    }
    this.flush();
  }

  /** ICMP port unreachable fails the socket's queries at once; other errors wait for the timeout. */
  private onSocketError(sock: RelaySocket, code: string, message: string): void {
    if (!['ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'EPOLL'].includes(code)) {
      this.o.warn(this.o.upstreams[sock.upstream]!, message);
      return;
    }
    this.retire(sock);
    const up = this.o.upstreams[sock.upstream]!;
    for (const p of [...sock.byId.values()]) {
      this.unwait(p);
      this.attemptFailed(p, up, code === 'ECONNREFUSED' ? 'port unreachable' : `UDP: ${code}`);
    }
  }

  private retire(sock: RelaySocket): void {
    sock.retired = true;
    this.release(sock);
  }

  /** Closes a retired socket once nothing waits on it (later: it may be inside its own callback). */
  private release(sock: RelaySocket): void {
    if (!sock.retired || sock.byId.size > 0 || sock.closing) return;
    sock.closing = true;
    this.dirtySockets.delete(sock);
    setImmediate(() => sock.client.close());
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of [...this.byKey.values()]) {
      this.unwait(p);
      this.finish(p, undefined);
    }
    for (const pool of this.pools) for (const sock of pool) this.retire(sock);
  }
}

/** Our query for `q`: RD, the client's CD, its question with the name in lower case, our OPT with its DO. */
function upstreamQuery(packet: Buffer, q: QuickQuery): Buffer {
  const end = q.questionEnd;
  const out = Buffer.allocUnsafe(end + 11);
  out.writeUInt32BE((0x0100 | (q.cd ? 0x0010 : 0)) >>> 0, 0); // id 0 until sent, flags
  out.writeUInt32BE(0x00010000, 4); // one question, no answers
  out.writeUInt32BE(0x00000001, 8); // no authority, one additional (the OPT)
  for (let i = HEADER_SIZE; i < end - 4; i++) {
    const c = packet[i]!;
    out[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c; // peekQuery's names: labels of plain characters
  }
  packet.copy(out, end - 4, end - 4, end);
  optRecord(EDNS_UDP_SIZE, q.edns?.do ?? false).copy(out, end);
  return out;
}

/** The upstream's answer made the client's own: its id, RD, question spelling; no OPT without EDNS; fitted. */
function replyFor(w: ClientWaiter, resp: Buffer, questionEnd: number): Buffer | undefined {
  const span = w.edns ? undefined : optSpan(resp, questionEnd);
  let out: Buffer;
  if (span && span[1] > 0) {
    out = Buffer.allocUnsafe(resp.length - (span[1] - span[0]));
    resp.copy(out, 0, 0, span[0]);
    resp.copy(out, span[0], span[1]);
    out.writeUInt16BE(resp.readUInt16BE(10) - 1, 10);
  } else {
    out = Buffer.allocUnsafe(resp.length);
    resp.copy(out);
  }
  w.query.copy(out, 0, 0, 2); // the client's id
  w.query.copy(out, HEADER_SIZE, HEADER_SIZE, questionEnd);
  if ((w.query[2]! & 0x01) === 0) out[2]! &= ~0x01;
  if (out.length <= w.limit) return out;
  return truncated(out, w, questionEnd);
}

/** What fitUdp gives for an answer too big for the client: header with TC, the question, an OPT with EDNS. */
function truncated(resp: Buffer, w: ClientWaiter, questionEnd: number): Buffer {
  const out = Buffer.allocUnsafe(questionEnd + (w.edns ? 11 : 0));
  resp.copy(out, 0, 0, HEADER_SIZE);
  w.query.copy(out, HEADER_SIZE, HEADER_SIZE, questionEnd);
  out[2]! |= 0x02;
  out.writeUInt32BE(0x00010000, 4);
  out.writeUInt32BE(w.edns ? 1 : 0, 8);
  if (w.edns) optRecord(EDNS_UDP_SIZE, false).copy(out, questionEnd);
  return out;
}
