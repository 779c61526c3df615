// The gateway's DNS forwarder: LAN hosts (or the firewall's port-53 capture) send their
// queries here; we answer fake-IP queries ourselves, serve the cache, and forward the rest
// to the upstream nameservers: over UDP directly (next upstream on timeout, TCP when the
// answer is truncated), or over TCP through an outbound node (pipelined, reused connections).
//
//   client ─UDP/TCP─▶ parse ─▶ fake-IP? ─▶ cache? ─▶ in flight already? ─▶ upstream
//                                                                          │
//   client ◀── id, question case, OPT, UDP size fitted ◀── cache.set ◀─────┘
//
// Nothing a client or an upstream sends can throw out of here: malformed queries get FORMERR
// (or are dropped when not even the header is readable), failures become SERVFAIL.
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../observe/log.js';
import type { TcpOutbound } from '../outbound/types.js';
import { batchUdpAvailable, openBatchUdpSocket, type BatchUdpSocket } from '../kernel/udp-batch.js';
import { cacheKey, DnsCache } from './cache.js';
import { FakeIpPool } from './fake-ip.js';
import { UdpRelay } from './udp-relay.js';
import {
  directConnector,
  frame,
  markedUdpSocket,
  outboundConnector,
  parseUpstream,
  TcpFramer,
  TcpPool,
  UdpUpstreamPool,
  UpstreamError,
  type Exchanged,
  type UdpSocketFactory,
  type Upstream,
} from './upstream.js';
import {
  buildQuery,
  buildResponse,
  CLASS_IN,
  CLASSIC_UDP_SIZE,
  HEADER_SIZE,
  optRecord,
  peekQuery,
  type QuickQuery,
  clientUdpLimit,
  EDNS_UDP_SIZE,
  fitUdp,
  formErrFor,
  ipRdata,
  normalizeName,
  OPCODE_QUERY,
  parseMessage,
  RCODE,
  rdataText,
  reverseNameToIp,
  tryParseMessage,
  TYPE,
  withoutOpt,
  withQuestionOf,
  encodeName,
  type DnsMessage,
  type DnsQuestion,
} from './wire.js';

export interface FakeIpOptions {
  /** IPv4 CIDR for A answers, e.g. 198.18.0.0/15. */
  range: string;
  /** IPv6 CIDR for AAAA answers; without it AAAA queries get NOERROR with no answer. */
  range6?: string;
  /** TTL of fake answers (default 1 s: clients ask again soon, so a reused address is rarely stale). */
  ttl?: number;
  /** Domains per family at most (LRU reuse past it); default: the range's size. */
  maxEntries?: number;
  /**
   * Domain suffixes answered with real addresses (forwarded). Default: localhost, local, lan,
   * home.arpa (names of the LAN itself must not be routed into the proxy).
   */
  exclude?: string[];
  /** Save the domain ↔ address map here on close and load it on start. */
  persistPath?: string;
}

export interface DnsForwarderOptions {
  /** Addresses to serve UDP and TCP on; port 0 picks a free port (the same one for both). */
  listen: { address: string; port: number }[];
  /** Upstream nameservers: `ip`, `ip:port`, `[v6]:port`. */
  upstreams: string[];
  /** When set, every upstream query goes over TCP through this node. */
  via?: TcpOutbound;
  cache: boolean;
  /** Cache entries at most (default 10,000). */
  cacheSize?: number;
  fakeIp?: FakeIpOptions;
  /** Wait for one upstream attempt (default 2000 ms); a query makes max(2, upstreams) attempts. */
  timeoutMs?: number;
  /** SO_MARK on direct upstream sockets (UDP and TCP), so the DNS capture does not take them again. */
  mark?: number;
  log: Logger;
  /** Milliseconds clock for the cache (tests). */
  now?: () => number;
  /**
   * Answer cache hits and fake-IP queries of plain shape in the socket's message handler,
   * without parsing the whole query (default true; false: every query takes the full path,
   * for tests that compare the two).
   */
  fastPath?: boolean;
  /** UDP sockets: 'auto' (default) batches with recvmmsg/sendmmsg when the FFI can; 'dgram': Node's dgram. */
  udpBackend?: 'auto' | 'dgram';
  /** UDP queries being answered at once, at most (more are dropped: the client retries). Default 10,000. */
  maxUdpInflight?: number;
}

export interface DnsForwarderStats {
  queries: number;
  udpQueries: number;
  tcpQueries: number;
  cacheHits: number;
  cacheMisses: number;
  cacheEntries: number;
  /** Queries that joined an identical query already in flight. */
  coalesced: number;
  inflight: number;
  upstreamQueries: number;
  upstreamErrors: number;
  /** UDP answers with TC=1 asked again over TCP. */
  tcpFallbacks: number;
  tcpConnects: number;
  servfail: number;
  formerr: number;
  /** Packets we could not parse. */
  malformed: number;
  /** Queries dropped because too many were in flight. */
  dropped: number;
  fakeIpAnswers: number;
  /** Queries answered in the socket's message handler (cache hits and fake-IP answers of plain shape). */
  fastAnswers: number;
  /** UDP queries forwarded by the batched relay (udp-relay.ts) rather than handle(). */
  relayed: number;
  fakeIpEntries: number;
  fakeIpEvictions: number;
}

export interface DnsForwarder {
  close(): Promise<void>;
  stats(): DnsForwarderStats;
  /** The domain a fake-IP destination stands for (undefined: not a fake address, or unknown). */
  lookupFakeIp(ip: string): string | undefined;
  clearCache(): void;
  /**
   * Real addresses of `domain` (A or AAAA) through the forwarder's own upstream path (cache,
   * `via` node), never fake ones: for a fake-IP flow routed `direct`, which cannot connect to
   * the fake address. Rejects when the upstreams fail; [] for NXDOMAIN / no data.
   */
  resolveReal(domain: string, family?: 4 | 6): Promise<string[]>;
  /** Where it listens (ports resolved), UDP and TCP alike. */
  readonly addresses: readonly { address: string; port: number; family: 4 | 6 }[];
}

export const DEFAULT_FAKE_IP_EXCLUDE = ['localhost', 'local', 'lan', 'home.arpa'];
const DEFAULT_TIMEOUT_MS = 2000;
/** UDP queries being answered at once, at most (more are dropped: the client retries). */
const MAX_UDP_INFLIGHT = 10_000;
/** Queries in flight on one client TCP connection before we stop reading from it. */
const MAX_TCP_CLIENT_PENDING = 64;
const TCP_CLIENT_IDLE_MS = 10_000;

type Transport = 'udp' | 'tcp';

interface Listener {
  address: string;
  port: number;
  family: 4 | 6;
  udp: { close(): void };
  tcp: net.Server;
}

export async function startDnsForwarder(opts: DnsForwarderOptions): Promise<DnsForwarder> {
  const f = new Forwarder(opts);
  await f.start();
  return f;
}

class Forwarder implements DnsForwarder {
  private readonly log: Logger;
  private readonly upstreams: Upstream[];
  private readonly cache: DnsCache | undefined;
  private readonly fake: FakeIpPool | undefined;
  private readonly fakeTtl: number;
  private readonly fakeExclude: string[];
  private readonly timeoutMs: number;
  private readonly tcpPool: TcpPool;
  private readonly udpFactory: UdpSocketFactory | undefined;
  private readonly inflight = new Map<string, Promise<Exchanged>>();
  /** Shared UDP sockets per upstream (see UdpUpstreamPool). */
  private readonly udpPools = new Map<Upstream, UdpUpstreamPool>();
  private readonly listeners: Listener[] = [];
  private readonly tcpClients = new Set<net.Socket>();
  private readonly lastWarn = new Map<string, number>();
  private preferred = 0;
  /** UDP listeners use recvmmsg/sendmmsg (kernel/udp-batch.ts) rather than dgram. */
  private udpBatched = false;
  /** Forwards batched UDP queries of plain shape to the upstreams directly (see UdpRelay). */
  private relay: UdpRelay | undefined;
  private udpInflight = 0;
  private closed = false;
  /** The saved fake-IP map was read (or there was none): saving may overwrite it. */
  private fakeLoaded = false;
  private readonly counters = {
    queries: 0,
    udpQueries: 0,
    tcpQueries: 0,
    coalesced: 0,
    upstreamQueries: 0,
    upstreamErrors: 0,
    tcpFallbacks: 0,
    servfail: 0,
    formerr: 0,
    malformed: 0,
    dropped: 0,
    fakeIpAnswers: 0,
    fastAnswers: 0,
    relayed: 0,
  };

  constructor(private readonly opts: DnsForwarderOptions) {
    this.log = opts.log;
    this.upstreams = opts.upstreams.map(parseUpstream);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.cache = opts.cache ? new DnsCache({ maxEntries: opts.cacheSize, now: opts.now }) : undefined;
    if (opts.fakeIp) {
      this.fake = new FakeIpPool({
        range: opts.fakeIp.range,
        range6: opts.fakeIp.range6,
        maxEntries: opts.fakeIp.maxEntries,
      });
      this.fakeTtl = opts.fakeIp.ttl ?? 1;
      this.fakeExclude = (opts.fakeIp.exclude ?? DEFAULT_FAKE_IP_EXCLUDE).map(normalizeName);
    } else {
      this.fakeTtl = 1;
      this.fakeExclude = [];
    }
    this.tcpPool = new TcpPool(opts.via ? outboundConnector(opts.via) : directConnector({ mark: opts.mark }));
    this.udpFactory = opts.mark ? markedUdpSocket(opts.mark) : undefined;
  }

  /** The relay for batched listeners: direct upstreams only (a `via` node takes the TCP path). */
  private makeRelay(): UdpRelay | undefined {
    if (this.opts.via || this.upstreams.length === 0 || this.opts.fastPath === false) return undefined;
    return new UdpRelay({
      upstreams: this.upstreams,
      timeoutMs: this.timeoutMs,
      mark: this.opts.mark,
      maxWaiting: this.maxUdpInflight,
      counters: this.counters,
      accept: (key, resp) => {
        if (!this.cache) return true;
        const r = tryParseMessage(resp);
        if (!r.ok) return false;
        this.cache.set(key, resp, r.msg);
        return true;
      },
      overTcp: async (up, query) =>
        (await this.tcpPool.exchange(up, query, parseMessage(query), this.timeoutMs)).response,
      servfail: (query) => {
        const r = tryParseMessage(query);
        return r.ok ? buildResponse(query, r.msg, { rcode: RCODE.SERVFAIL }) : undefined;
      },
      warn: (up, error) => this.warnOnce(up.label, 'dns upstream failed', { upstream: up.label, error }),
    });
  }

  private get maxUdpInflight(): number {
    return this.opts.maxUdpInflight ?? MAX_UDP_INFLIGHT;
  }

  get addresses(): readonly { address: string; port: number; family: 4 | 6 }[] {
    return this.listeners.map(({ address, port, family }) => ({ address, port, family }));
  }

  async start(): Promise<void> {
    if (this.opts.listen.length === 0) throw new TypeError('dns forwarder: nothing to listen on');
    const anyV4 = this.opts.listen.some((l) => isIP(l.address) === 4);
    try {
      for (const l of this.opts.listen) {
        const family = isIP(l.address);
        if (!family) throw new TypeError(`dns forwarder: listen address '${l.address}' is not an IP address`);
        this.listeners.push(await this.bind(l.address, l.port, family as 4 | 6, family === 6 && anyV4));
      }
      this.checkLoops();
      await this.loadFakeIps();
    } catch (e) {
      await this.close();
      throw e;
    }
    if (this.upstreams.length === 0)
      this.log.warn('dns forwarder has no upstream nameserver: only fake-IP queries can be answered');
    this.log.info('dns forwarder listening', {
      listen: this.listeners
        .map((l) => (l.family === 6 ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`))
        .join(','),
      upstreams: this.upstreams.map((u) => u.label).join(','),
      via: this.opts.via?.name ?? 'direct',
      cache: this.cache !== undefined,
      udp: this.udpBatched ? 'batched' : 'dgram',
      'fake-ip': this.opts.fakeIp
        ? [this.opts.fakeIp.range, this.opts.fakeIp.range6].filter(Boolean).join(',')
        : undefined,
    });
  }

  /** Refuses an upstream that is one of our own listen addresses (every query would loop). */
  private checkLoops(): void {
    for (const up of this.upstreams) {
      for (const l of this.listeners) {
        const wildcard = l.address === '0.0.0.0' || l.address === '::';
        const local = up.host === l.address || (wildcard && (up.host.startsWith('127.') || up.host === '::1'));
        if (local && up.port === l.port)
          throw new TypeError(`dns forwarder: upstream ${up.label} is the forwarder itself`);
      }
    }
  }

  private async bind(address: string, port: number, family: 4 | 6, ipv6Only: boolean): Promise<Listener> {
    for (let attempt = 0; ; attempt++) {
      const tcp = net.createServer((s) => this.onTcpClient(s));
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: address, port, ipv6Only, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      }).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`dns forwarder: cannot listen on TCP ${fmtAddr(address, port)}: ${e.code ?? e.message}`);
      });
      tcp.on('error', (e) => this.log.error('dns TCP listener error', { error: e.message }));
      const bound = (tcp.address() as net.AddressInfo).port;
      let udp: { close(): void };
      try {
        udp = await this.bindUdp(address, bound, family, ipv6Only);
      } catch (e) {
        await new Promise((r) => tcp.close(r));
        const code = (e as NodeJS.ErrnoException).code;
        if (port === 0 && code === 'EADDRINUSE' && attempt < 10) continue;
        throw new Error(
          `dns forwarder: cannot listen on UDP ${fmtAddr(address, bound)}: ${code ?? (e as Error).message}`,
        );
      }
      return { address, port: bound, family, udp, tcp };
    }
  }

  /** The UDP side: batched (recvmmsg/sendmmsg) where the FFI offers it, else Node's dgram. */
  private async bindUdp(address: string, port: number, family: 4 | 6, ipv6Only: boolean): Promise<{ close(): void }> {
    if (this.opts.udpBackend !== 'dgram' && batchUdpAvailable()) {
      this.udpBatched = true;
      this.relay ??= this.makeRelay();
      const sock: BatchUdpSocket = openBatchUdpSocket({
        family,
        address,
        port,
        ipv6Only,
        onDatagram: (payload, from) => {
          const q = this.peek(payload);
          if (q) {
            const quick = this.quickAnswer(payload, q, 'udp');
            if (quick) return quick;
            if (this.relayed(q, payload, from, sock)) return undefined;
          }
          const to = Buffer.from(from); // views into the batch: the next one overwrites them
          return this.slowUdp(Buffer.from(payload), (resp) => sock.send(to, resp));
        },
        onDrained: () => this.relay?.flush(),
        onError: (message) => this.warnOnce('udp-listener', 'dns UDP listener error', { error: message }),
      });
      return sock;
    }
    const udp = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address, port, exclusive: true }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    udp.on('error', (e) => this.log.error('dns UDP listener error', { error: e.message }));
    udp.on('message', (m, rinfo) => {
      const q = this.peek(m);
      const quick = q && this.quickAnswer(m, q, 'udp');
      if (quick) udp.send(quick, rinfo.port, rinfo.address);
      else this.slowUdp(m, (resp) => udp.send(resp, rinfo.port, rinfo.address, () => {}));
    });
    return udp;
  }

  /** A query the fast path could not answer: handle() it, send the answer when it comes. */
  private slowUdp(packet: Buffer, send: (resp: Buffer) => void): undefined {
    if (this.udpInflight >= this.maxUdpInflight) {
      this.counters.dropped++;
      return undefined;
    }
    this.udpInflight++;
    this.handle(packet, 'udp')
      .then((resp) => {
        if (resp && !this.closed) send(resp);
      })
      .finally(() => this.udpInflight--);
    return undefined;
  }

  private onTcpClient(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.tcpClients.add(sock);
    sock.setNoDelay(true);
    const framer = new TcpFramer();
    let pending = 0;
    let ended = false;
    const idle = () => sock.setTimeout(pending === 0 ? TCP_CLIENT_IDLE_MS : 0);
    idle();
    sock.on('timeout', () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.tcpClients.delete(sock));
    sock.on('end', () => {
      ended = true;
      if (pending === 0) sock.end();
    });
    sock.on('data', (chunk: Buffer) => {
      for (const m of framer.push(chunk)) {
        const q = this.peek(m);
        const quick = q && this.quickAnswer(m, q, 'tcp');
        if (quick) {
          if (sock.writable) sock.write(frame(quick));
          continue;
        }
        pending++;
        if (pending >= MAX_TCP_CLIENT_PENDING) sock.pause();
        idle();
        this.handle(m, 'tcp')
          .then((resp) => {
            if (resp && !sock.destroyed && sock.writable) sock.write(frame(resp));
          })
          .finally(() => {
            pending--;
            if (pending < MAX_TCP_CLIENT_PENDING / 2 && sock.isPaused()) sock.resume();
            if (ended && pending === 0) sock.end();
            idle();
          });
      }
    });
  }

  /**
   * The answer when it needs no waiting: a fake-IP address or a cache hit, for a query of
   * plain shape (peekQuery). Byte for byte what handle() would answer; undefined: use handle().
   */
  private quickAnswer(packet: Buffer, q: QuickQuery, transport: Transport): Buffer | undefined {
    let out: Buffer | undefined;
    const fakeable = this.fake !== undefined && q.class === CLASS_IN && (q.type === TYPE.A || q.type === TYPE.AAAA);
    if (fakeable && q.name !== '' && !this.fakeExcluded(q.name)) {
      out = this.quickFake(packet, q);
      if (out) this.counters.fakeIpAnswers++;
    } else if (!(this.fake && q.type === TYPE.PTR)) out = this.quickCached(packet, q, transport);
    if (!out) return undefined;
    this.counters.fastAnswers++;
    this.counters.queries++;
    this.counters[transport === 'udp' ? 'udpQueries' : 'tcpQueries']++;
    return out;
  }

  /** The query's plain shape (peekQuery), when the fast paths may take it. */
  private peek(packet: Buffer): QuickQuery | undefined {
    if (this.closed || this.opts.fastPath === false) return undefined;
    return peekQuery(packet);
  }

  /**
   * Hands a query the fast path could not answer to the relay when handle() would forward it
   * (not a fake-IP or PTR question of the pool, not in the cache); false: handle() takes it.
   */
  private relayed(q: QuickQuery, packet: Buffer, from: Buffer, listener: BatchUdpSocket): boolean {
    if (!this.relay) return false;
    if (this.fake) {
      const fakeable = q.class === CLASS_IN && (q.type === TYPE.A || q.type === TYPE.AAAA) && q.name !== '';
      if (q.type === TYPE.PTR || (fakeable && !this.fakeExcluded(q.name))) return false;
    }
    const key = `${q.name}|${q.type}|${q.class}|${q.edns?.do ? 1 : 0}${q.cd ? 1 : 0}`;
    if (this.inflight.has(key) || this.cache?.get(key)) return false; // handle() joins or answers it
    this.counters.queries++;
    this.counters.udpQueries++;
    this.counters.relayed++;
    this.relay.take(q, key, packet, from, listener);
    return true;
  }

  private fakeExcluded(name: string): boolean {
    return this.fakeExclude.some((s) => name === s || name.endsWith(`.${s}`));
  }

  /** What fakeAnswer + buildResponse give for an A/AAAA query, written directly. */
  private quickFake(packet: Buffer, q: QuickQuery): Buffer | undefined {
    const rdata = this.fake!.allocateRdata(q.name, q.type === TYPE.A ? 4 : 6);
    if (!rdata) return undefined;
    const answerAt = q.questionEnd;
    const out = Buffer.allocUnsafe(answerAt + 12 + rdata.length + (q.edns ? 11 : 0));
    out.writeUInt16BE(q.id, 0);
    out.writeUInt16BE(0x8080 | (q.rd ? 0x0100 : 0) | (q.cd ? 0x0010 : 0), 2);
    out.writeUInt32BE(0x00010001, 4); // one question, one answer
    out.writeUInt32BE(q.edns ? 1 : 0, 8); // no authority; the OPT when the query had one
    packet.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
    out.writeUInt16BE(0xc000 | HEADER_SIZE, answerAt); // owner: the question's name
    out.writeUInt16BE(q.type, answerAt + 2);
    out.writeUInt16BE(CLASS_IN, answerAt + 4);
    out.writeUInt32BE(Math.max(0, Math.floor(this.fakeTtl)) >>> 0, answerAt + 6);
    out.writeUInt16BE(rdata.length, answerAt + 10);
    rdata.copy(out, answerAt + 12);
    if (q.edns) optRecord(EDNS_UDP_SIZE, q.edns.do).copy(out, answerAt + 12 + rdata.length);
    return out;
  }

  /** What answer() + reply() give for a cache hit: the stored wire with the client's id, RD and question. */
  private quickCached(packet: Buffer, q: QuickQuery, transport: Transport): Buffer | undefined {
    if (!this.cache) return undefined;
    const hit = this.cache.get(`${q.name}|${q.type}|${q.class}|${q.edns?.do ? 1 : 0}${q.cd ? 1 : 0}`, false);
    if (!hit) return undefined;
    const rq = hit.msg.questions[0];
    if (
      hit.msg.questions.length !== 1 ||
      !rq ||
      rq.start !== HEADER_SIZE ||
      rq.end !== q.questionEnd ||
      rq.type !== q.type ||
      rq.class !== q.class
    )
      return undefined;
    if (rq.name !== q.name && normalizeName(rq.name) !== q.name) return undefined;
    const base = !q.edns && hit.msg.edns ? this.cache.withoutOpt(hit) : hit.response;
    // Too big for the client: handle() answers with TC=1 (fitUdp).
    if (transport === 'udp' && base.length > (q.edns ? Math.max(CLASSIC_UDP_SIZE, q.edns.udpSize) : CLASSIC_UDP_SIZE))
      return undefined;
    const out = Buffer.allocUnsafe(base.length);
    base.copy(out);
    packet.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
    out.writeUInt16BE(q.id, 0);
    if (!q.rd) out[2]! &= ~0x01;
    return out;
  }

  /** One query in, one response out (or nothing: dropped). Never rejects. */
  private async handle(packet: Buffer, transport: Transport): Promise<Buffer | undefined> {
    this.counters.queries++;
    this.counters[transport === 'udp' ? 'udpQueries' : 'tcpQueries']++;
    const parsed = tryParseMessage(packet);
    if (!parsed.ok) {
      this.counters.malformed++;
      const r = formErrFor(packet);
      if (r) this.counters.formerr++;
      return r;
    }
    const q = parsed.msg;
    try {
      if (q.header.qr) {
        this.counters.malformed++;
        return undefined;
      }
      if (q.header.opcode !== OPCODE_QUERY) return buildResponse(packet, q, { rcode: RCODE.NOTIMP });
      const question = q.questions[0];
      if (q.questions.length !== 1 || !question) {
        this.counters.formerr++;
        return buildResponse(packet, { ...q, questions: [] }, { rcode: RCODE.FORMERR });
      }
      const fake = this.fakeAnswer(packet, q, question);
      if (fake) {
        this.counters.fakeIpAnswers++;
        return transport === 'udp' ? fitUdp(fake, packet, q, clientUdpLimit(q)) : fake;
      }
      let ex: Exchanged;
      try {
        ex = await this.answer(question, q.edns?.do ?? false, q.header.cd);
      } catch {
        this.counters.servfail++;
        return buildResponse(packet, q, { rcode: RCODE.SERVFAIL });
      }
      return this.reply(ex.response, ex.msg, packet, q, transport);
    } catch (e) {
      // A bug, not a client's fault: answer SERVFAIL rather than leave the client waiting.
      this.warnOnce('internal', 'dns forwarder: cannot answer a query', { error: (e as Error).message });
      this.counters.servfail++;
      try {
        return buildResponse(packet, q, { rcode: RCODE.SERVFAIL });
      } catch {
        return undefined;
      }
    }
  }

  /** The answer to a question: from the cache, from an identical query in flight, or asked upstream. */
  private answer(
    question: Pick<DnsQuestion, 'name' | 'type' | 'class'>,
    dnssecOk: boolean,
    cd: boolean,
  ): Promise<Exchanged> {
    const key = cacheKey({ name: question.name, type: question.type, class: question.class, do: dnssecOk, cd });
    const hit = this.cache?.get(key);
    if (hit) return Promise.resolve({ response: hit.response, msg: hit.msg });
    const running = this.inflight.get(key) ?? this.joinRelay(key);
    if (running) {
      this.counters.coalesced++;
      return running;
    }
    const p = this.forward(question, dnssecOk, cd).then((ex) => {
      if (this.cache && !this.closed) this.cache.set(key, ex.response, ex.msg);
      return ex;
    });
    this.inflight.set(key, p);
    void p.then(
      () => this.inflight.delete(key),
      () => this.inflight.delete(key),
    );
    return p;
  }

  /** The relay's answer to a question it is asking already. */
  private joinRelay(key: string): Promise<Exchanged> | undefined {
    const joined = this.relay?.join(key);
    if (!joined) return undefined;
    return joined.then((response) => {
      const r = response ? tryParseMessage(response) : undefined;
      if (!response || !r?.ok) throw new UpstreamError('network', '-', 'no answer from the upstreams');
      return { response, msg: r.msg };
    });
  }

  async resolveReal(domain: string, family: 4 | 6 = 4): Promise<string[]> {
    const type = family === 4 ? TYPE.A : TYPE.AAAA;
    const ex = await this.answer({ name: normalizeName(domain), type, class: CLASS_IN }, false, false);
    return ex.msg.answers.filter((r) => r.type === type && r.class === CLASS_IN).map((r) => rdataText(ex.response, r));
  }

  /** The upstream's (or cache's) response made the client's own. */
  private reply(resp: Buffer, rmsg: DnsMessage, query: Buffer, qmsg: DnsMessage, transport: Transport): Buffer {
    let out = withQuestionOf(resp, rmsg, query, qmsg);
    if (out === resp) out = Buffer.from(resp);
    out.writeUInt16BE(qmsg.header.id, 0);
    if (!qmsg.header.rd) out.writeUInt16BE(out.readUInt16BE(2) & ~0x0100, 2);
    if (!qmsg.edns && rmsg.edns) out = withoutOpt(out, rmsg);
    return transport === 'udp' ? fitUdp(out, query, qmsg, clientUdpLimit(qmsg)) : out;
  }

  private fakeAnswer(packet: Buffer, q: DnsMessage, question: DnsQuestion): Buffer | undefined {
    if (!this.fake || question.class !== CLASS_IN) return undefined;
    const name = normalizeName(question.name);
    if (question.type === TYPE.PTR) {
      const ip = reverseNameToIp(name);
      if (!ip || !this.fake.contains(ip)) return undefined;
      const domain = this.fake.lookup(ip);
      if (!domain) return buildResponse(packet, q, { rcode: RCODE.NXDOMAIN });
      return buildResponse(packet, q, {
        rcode: RCODE.NOERROR,
        answers: [{ type: TYPE.PTR, ttl: this.fakeTtl, rdata: encodeName(domain) }],
      });
    }
    if (question.type !== TYPE.A && question.type !== TYPE.AAAA) return undefined;
    if (name === '' || this.fakeExcluded(name)) return undefined;
    const ip = this.fake.allocate(name, question.type === TYPE.A ? 4 : 6);
    if (!ip) return buildResponse(packet, q, { rcode: RCODE.NOERROR });
    return buildResponse(packet, q, {
      rcode: RCODE.NOERROR,
      answers: [{ type: question.type, ttl: this.fakeTtl, rdata: ipRdata(ip) }],
    });
  }

  /** Asks the upstreams: our own query (lowercased name, EDNS, RD), next upstream on failure. */
  private async forward(
    question: Pick<DnsQuestion, 'name' | 'type' | 'class'>,
    dnssecOk: boolean,
    cd: boolean,
  ): Promise<Exchanged> {
    const n = this.upstreams.length;
    if (n === 0) throw new UpstreamError('closed', '-', 'no upstream nameserver');
    const query = buildQuery({
      id: randomInt(0x10000),
      name: question.name.toLowerCase(),
      type: question.type,
      class: question.class,
      rd: true,
      cd,
      edns: { udpSize: EDNS_UDP_SIZE, do: dnssecOk },
    });
    const qmsg = parseMessage(query);
    const tries = Math.max(2, n);
    const start = this.preferred;
    let fallback: Exchanged | undefined;
    let lastError: unknown;
    for (let i = 0; i < tries && !this.closed; i++) {
      const index = (start + i) % n;
      const up = this.upstreams[index]!;
      this.counters.upstreamQueries++;
      try {
        let ex: Exchanged;
        if (this.opts.via) ex = await this.tcpPool.exchange(up, query, qmsg, this.timeoutMs);
        else {
          ex = await this.udpPool(up).exchange(query, qmsg, this.timeoutMs);
          if (ex.msg.header.tc) {
            this.counters.tcpFallbacks++;
            ex = await this.tcpPool.exchange(up, query, qmsg, this.timeoutMs);
          }
        }
        const rcode = ex.msg.header.rcode;
        if ((rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) && i < tries - 1) {
          fallback = ex;
          continue;
        }
        this.preferred = index;
        return ex;
      } catch (e) {
        this.counters.upstreamErrors++;
        lastError = e;
        this.warnOnce(up.label, 'dns upstream failed', {
          upstream: up.label,
          via: this.opts.via?.name,
          error: (e as Error).message,
        });
      }
    }
    if (fallback) return fallback;
    throw lastError ?? new UpstreamError('closed', '-', 'forwarder closed');
  }

  private udpPool(up: Upstream): UdpUpstreamPool {
    let pool = this.udpPools.get(up);
    if (!pool) {
      pool = new UdpUpstreamPool(up, this.udpFactory);
      this.udpPools.set(up, pool);
    }
    return pool;
  }

  /** One warning per subject per 10 s. */
  private warnOnce(subject: string, msg: string, fields: Record<string, string | undefined>): void {
    const now = Date.now();
    if (now - (this.lastWarn.get(subject) ?? -Infinity) < 10_000) return;
    this.lastWarn.set(subject, now);
    this.log.warn(msg, fields);
  }

  lookupFakeIp(ip: string): string | undefined {
    return this.fake?.lookup(ip);
  }

  clearCache(): void {
    this.cache?.clear();
  }

  stats(): DnsForwarderStats {
    return {
      ...this.counters,
      cacheHits: this.cache?.hits ?? 0,
      cacheMisses: this.cache?.misses ?? 0,
      cacheEntries: this.cache?.size ?? 0,
      inflight: this.inflight.size + (this.relay?.size ?? 0),
      tcpConnects: this.tcpPool.connects,
      fakeIpEntries: this.fake?.size ?? 0,
      fakeIpEvictions: this.fake?.evictions ?? 0,
    };
  }

  private async loadFakeIps(): Promise<void> {
    const path = this.opts.fakeIp?.persistPath;
    if (!this.fake || !path) return;
    this.fakeLoaded = true;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log.warn('cannot read the fake-IP map', { path, error: (e as Error).message });
      return;
    }
    try {
      const data = JSON.parse(text) as { entries?: unknown };
      const pairs = Array.isArray(data.entries)
        ? (data.entries.filter((p) => Array.isArray(p) && p.length === 2) as [string, string][])
        : [];
      const n = this.fake.restore(pairs);
      this.log.info('fake-IP map loaded', { path, entries: n });
    } catch (e) {
      this.log.warn('ignoring a damaged fake-IP map', { path, error: (e as Error).message });
    }
  }

  private async saveFakeIps(): Promise<void> {
    const path = this.opts.fakeIp?.persistPath;
    if (!this.fake || !path || !this.fakeLoaded) return;
    try {
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify({ version: 1, entries: this.fake.entries() })}\n`);
      await rename(tmp, path);
    } catch (e) {
      this.log.warn('cannot save the fake-IP map', { path, error: (e as Error).message });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.relay?.close();
    this.tcpPool.close();
    for (const pool of this.udpPools.values()) pool.close();
    for (const s of this.tcpClients) s.destroy();
    await Promise.all(
      this.listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            try {
              l.udp.close();
            } catch {
              /* already closed */
            }
            l.tcp.close(() => resolve());
          }),
      ),
    );
    await this.saveFakeIps();
  }
}

function fmtAddr(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
