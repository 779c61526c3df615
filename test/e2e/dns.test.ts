// DNS forwarder end to end on loopback: a small authoritative-style upstream written here
// (UDP + TCP, logs every query it sees), the forwarder on 127.0.0.1:<port>, and two kinds of
// client: raw packets over UDP and pipelined TCP, and Node's own c-ares resolver (which
// retries over TCP on TC=1 by itself). The `via` path goes through microsocks (SOCKS5).
// Peers are killed by pid in `finally`.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDnsForwarder, type DnsForwarder, type DnsForwarderOptions } from '../../src/dns/forwarder.js';
import { frame, TcpFramer } from '../../src/dns/upstream.js';
import { until } from '../helpers/wait.js';
import {
  buildQuery,
  buildResponse,
  encodeName,
  ipRdata,
  parseMessage,
  RCODE,
  rdataText,
  TYPE,
  type AnswerRecord,
  type DnsMessage,
} from '../../src/dns/wire.js';
import { createOutbound, parseNodeUri } from '../../src/outbound/index.js';
import type { Logger } from '../../src/observe/log.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

const logLines: string[] = [];
const log: Logger = {
  info: (m, f) => logLines.push(`info ${m} ${JSON.stringify(f ?? {})}`),
  warn: (m, f) => logLines.push(`warn ${m} ${JSON.stringify(f ?? {})}`),
  error: (m, f) => logLines.push(`error ${m} ${JSON.stringify(f ?? {})}`),
};

// ── the upstream ────────────────────────────────────────────────────────────

interface Seen {
  transport: 'udp' | 'tcp';
  name: string;
  type: number;
  /** The query's id and, over UDP, its source port. */
  id: number;
  port?: number;
}

interface TestUpstream {
  port: number;
  seen: Seen[];
  tcpConnections: number;
  /** Stop answering (UDP and TCP) without closing: a dead server behind a live port. */
  silent: boolean;
  close(): Promise<void>;
}

function soa(ttl: number, minimum: number): AnswerRecord {
  const fixed = Buffer.alloc(20);
  [2024, 7200, 3600, 1209600, minimum].forEach((v, i) => {
    fixed.writeUInt32BE(v, i * 4);
  });
  return {
    name: 'test',
    type: TYPE.SOA,
    ttl,
    rdata: Buffer.concat([encodeName('ns.test'), encodeName('hostmaster.test'), fixed]),
  };
}

const BIG_TXT = Buffer.concat(
  Array.from({ length: 12 }, (_, i) => Buffer.concat([Buffer.from([200]), Buffer.alloc(200, 0x61 + i)])),
);

/** What the upstream answers (`tcp` tells which transport asked). */
async function answer(raw: Buffer, q: DnsMessage, tcp: boolean): Promise<Buffer> {
  const question = q.questions[0]!;
  const name = question.name.toLowerCase();
  if (name.startsWith('slow.')) await sleep(300);
  if (name === 'big.test' && question.type === TYPE.TXT) {
    if (!tcp) {
      const r = buildResponse(raw, q, { rcode: RCODE.NOERROR, aa: true });
      r.writeUInt16BE(r.readUInt16BE(2) | 0x0200, 2); // TC: ask me over TCP
      return r;
    }
    return buildResponse(raw, q, {
      rcode: RCODE.NOERROR,
      aa: true,
      answers: [{ type: TYPE.TXT, ttl: 60, rdata: BIG_TXT }],
    });
  }
  if (name === 'fail.test') return buildResponse(raw, q, { rcode: RCODE.SERVFAIL });
  if (name.endsWith('.a.test') || name.endsWith('.lan')) {
    const n = [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) & 0xff, 7) || 1;
    if (question.type === TYPE.A)
      return buildResponse(raw, q, {
        rcode: 0,
        aa: true,
        answers: [{ type: TYPE.A, ttl: 300, rdata: ipRdata(`192.0.2.${n}`) }],
      });
    if (question.type === TYPE.MX)
      return buildResponse(raw, q, {
        rcode: 0,
        aa: true,
        answers: [
          { type: TYPE.MX, ttl: 300, rdata: Buffer.concat([Buffer.from([0, 10]), encodeName(`mail.${name}`)]) },
        ],
      });
    return buildResponse(raw, q, { rcode: 0, aa: true, authority: [soa(300, 60)] });
  }
  return buildResponse(raw, q, { rcode: RCODE.NXDOMAIN, aa: true, authority: [soa(3600, 60)] });
}

async function startUpstream(host = '127.0.0.1'): Promise<TestUpstream> {
  const up: TestUpstream = { port: 0, seen: [], tcpConnections: 0, silent: false, close: async () => {} };
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((s) => {
    up.tcpConnections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    const framer = new TcpFramer();
    s.on('data', (chunk: Buffer) => {
      for (const m of framer.push(chunk)) {
        const q = parseMessage(m);
        up.seen.push({ transport: 'tcp', name: q.questions[0]!.name, type: q.questions[0]!.type, id: q.header.id });
        if (up.silent) continue;
        void answer(m, q, true).then((r) => s.writable && s.write(frame(r)));
      }
    });
  });
  tcp.listen(0, host);
  await once(tcp, 'listening');
  up.port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.bind(up.port, host);
  await once(udp, 'listening');
  udp.on('message', (m, rinfo) => {
    const q = parseMessage(m);
    const question = q.questions[0]!;
    up.seen.push({ transport: 'udp', name: question.name, type: question.type, id: q.header.id, port: rinfo.port });
    if (up.silent) return;
    void answer(m, q, false).then((r) => udp.send(r, rinfo.port, rinfo.address));
  });
  up.close = async () => {
    udp.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => tcp.close(r));
  };
  return up;
}

/** A UDP port nobody answers on (bound, silent): queries to it time out. */
async function blackhole(): Promise<{ port: number; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return { port: s.address().port, close: () => s.close() };
}

/** A port with nothing bound to it (UDP gets ICMP port unreachable, TCP RST). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

// ── clients ─────────────────────────────────────────────────────────────────

async function udpAsk(port: number, packet: Buffer, timeoutMs = 3000): Promise<Buffer | undefined> {
  const s = dgram.createSocket('udp4');
  try {
    s.connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.send(packet);
    const timeout = sleep(timeoutMs).then(() => undefined);
    const got = once(s, 'message').then(([m]) => m as Buffer);
    return await Promise.race([got, timeout]);
  } finally {
    s.close();
  }
}

/** Sends all packets at once on one TCP connection; returns the responses in arrival order. */
async function tcpAsk(port: number, packets: Buffer[], expect = packets.length, timeoutMs = 3000): Promise<Buffer[]> {
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  const out: Buffer[] = [];
  const framer = new TcpFramer();
  try {
    const done = new Promise<void>((resolve) => {
      s.on('data', (c: Buffer) => {
        out.push(...framer.push(c));
        if (out.length >= expect) resolve();
      });
      s.on('close', () => resolve());
    });
    s.write(Buffer.concat(packets.map(frame)));
    await Promise.race([done, sleep(timeoutMs)]);
    return out;
  } finally {
    s.destroy();
  }
}

function resolverFor(port: number): Resolver {
  const r = new Resolver({ timeout: 3000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

const q = (name: string, type: number = TYPE.A, id = 0x2222, edns?: { udpSize?: number; do?: boolean }) =>
  buildQuery({ id, name, type, ...(edns ? { edns } : {}) });
const answers = (buf: Buffer) => {
  const m = parseMessage(buf);
  return m.answers.map((r) => rdataText(buf, r));
};

async function withForwarder(
  o: Partial<DnsForwarderOptions>,
  fn: (f: DnsForwarder, port: number) => Promise<void>,
): Promise<void> {
  const f = await startDnsForwarder({
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [],
    cache: true,
    log,
    timeoutMs: 1000,
    ...o,
  });
  try {
    await fn(f, f.addresses[0]!.port);
  } finally {
    await f.close();
  }
}

// ── tests ───────────────────────────────────────────────────────────────────

test("UDP and TCP queries are answered; ids, question case and EDNS are the client's", async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], cache: false }, async (f, port) => {
      assert.equal(f.addresses.length, 1);
      assert.equal(f.addresses[0]!.address, '127.0.0.1');

      const r1 = (await udpAsk(port, q('WwW.A.TeSt', TYPE.A, 0x1111)))!;
      const m1 = parseMessage(r1);
      assert.equal(m1.header.id, 0x1111);
      assert.equal(m1.header.qr, true);
      assert.equal(m1.header.rcode, RCODE.NOERROR);
      assert.equal(m1.questions[0]!.name, 'WwW.A.TeSt', '0x20 case comes back as sent');
      assert.equal(m1.edns, undefined, 'no OPT for a client that sent none');
      assert.match(answers(r1)[0]!, /^192\.0\.2\.\d+$/);

      const withEdns = parseMessage(
        (await udpAsk(port, q('www.a.test', TYPE.A, 0x1112, { udpSize: 1232, do: true })))!,
      );
      assert.ok(withEdns.edns, 'OPT for a client that sent one');

      // Three pipelined queries on one TCP connection.
      const rs = await tcpAsk(port, [
        q('one.a.test', TYPE.A, 1),
        q('two.a.test', TYPE.MX, 2),
        q('nope.test', TYPE.A, 3),
      ]);
      assert.equal(rs.length, 3);
      const byId = new Map(rs.map((r) => [parseMessage(r).header.id, r]));
      assert.match(answers(byId.get(1)!)[0]!, /^192\.0\.2\./);
      assert.equal(parseMessage(byId.get(2)!).answers[0]!.type, TYPE.MX);
      assert.equal(parseMessage(byId.get(3)!).header.rcode, RCODE.NXDOMAIN);

      // Node's resolver (c-ares), both ways.
      const res = resolverFor(port);
      const a = await res.resolve4('node.a.test', { ttl: true });
      assert.equal(a.length, 1);
      assert.equal(a[0]!.ttl, 300);
      await assert.rejects(res.resolve4('missing.test'), { code: 'ENOTFOUND' });
      assert.ok(
        up.seen.every((s) => s.transport === 'udp'),
        'direct upstream queries go over UDP',
      );
      assert.ok(
        up.seen.every((s) => s.name === s.name.toLowerCase()),
        'upstream sees our own lowercased query',
      );
      const st = f.stats();
      assert.ok(st.udpQueries >= 4 && st.tcpQueries === 3, JSON.stringify(st));
    });
  } finally {
    await up.close();
  }
});

test('cache: two client queries, one upstream query; TTLs fall with the (fake) clock; negative caching', async () => {
  const up = await startUpstream();
  const clock = { t: 5_000_000 };
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], cache: true, now: () => clock.t }, async (f, port) => {
      const first = (await udpAsk(port, q('cached.a.test', TYPE.A, 1)))!;
      const second = (await udpAsk(port, q('CACHED.a.test', TYPE.A, 2)))!;
      assert.equal(up.seen.filter((s) => s.name === 'cached.a.test').length, 1, 'upstream asked once');
      assert.deepEqual(answers(second), answers(first));
      assert.equal(parseMessage(second).header.id, 2);
      assert.equal(parseMessage(second).questions[0]!.name, 'CACHED.a.test');
      assert.equal(parseMessage(first).answers[0]!.ttl, 300);

      clock.t += 42_500;
      const later = (await tcpAsk(port, [q('cached.a.test', TYPE.A, 3)]))[0]!;
      assert.equal(parseMessage(later).answers[0]!.ttl, 258, 'TTL decremented by whole seconds in cache');
      const node = await resolverFor(port).resolve4('cached.a.test', { ttl: true });
      assert.equal(node[0]!.ttl, 258);

      clock.t += 258_000;
      const fresh = (await udpAsk(port, q('cached.a.test', TYPE.A, 4)))!;
      assert.equal(parseMessage(fresh).answers[0]!.ttl, 300, 'expired entry refetched');
      assert.equal(up.seen.filter((s) => s.name === 'cached.a.test').length, 2);

      // NXDOMAIN cached for min(SOA TTL 3600, minimum 60) = 60 s.
      await udpAsk(port, q('gone.test'));
      await udpAsk(port, q('gone.test'));
      assert.equal(up.seen.filter((s) => s.name === 'gone.test').length, 1);
      clock.t += 60_000;
      await udpAsk(port, q('gone.test'));
      assert.equal(up.seen.filter((s) => s.name === 'gone.test').length, 2);

      // SERVFAIL is not cached.
      await udpAsk(port, q('fail.test'));
      await udpAsk(port, q('fail.test'));
      assert.equal(parseMessage((await udpAsk(port, q('fail.test')))!).header.rcode, RCODE.SERVFAIL);
      assert.ok(up.seen.filter((s) => s.name === 'fail.test').length >= 3);

      // DO bit is part of the key.
      await udpAsk(port, q('cached.a.test', TYPE.A, 5, { do: true }));
      assert.equal(up.seen.filter((s) => s.name === 'cached.a.test').length, 3);

      f.clearCache();
      await udpAsk(port, q('cached.a.test', TYPE.A, 6));
      assert.equal(up.seen.filter((s) => s.name === 'cached.a.test').length, 4);
      assert.ok(f.stats().cacheHits >= 4);
    });
  } finally {
    await up.close();
  }
});

test('identical queries in flight are coalesced into one upstream query', async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], cache: false }, async (f, port) => {
      const rs = await Promise.all([
        ...Array.from({ length: 6 }, (_, i) => udpAsk(port, q('slow.a.test', TYPE.A, 100 + i))),
        tcpAsk(port, [q('Slow.A.Test', TYPE.A, 200)]).then((r) => r[0]),
      ]);
      assert.equal(up.seen.filter((s) => s.name === 'slow.a.test').length, 1);
      const ids = rs.map((r) => parseMessage(r!).header.id);
      assert.deepEqual(ids, [100, 101, 102, 103, 104, 105, 200]);
      assert.equal(new Set(rs.map((r) => answers(r!)[0])).size, 1);
      assert.equal(f.stats().coalesced, 6);
      assert.equal(f.stats().inflight, 0);
    });
  } finally {
    await up.close();
  }
});

test('TC=1 from the upstream: the forwarder asks again over TCP; UDP clients get TC and retry over TCP', async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`] }, async (f, port) => {
      const viaTcp = (await tcpAsk(port, [q('big.test', TYPE.TXT, 9)]))[0]!;
      const m = parseMessage(viaTcp);
      assert.equal(m.header.tc, false);
      assert.equal(m.answers.length, 1);
      assert.ok(viaTcp.length > 2400);
      assert.deepEqual(
        up.seen.filter((s) => s.name === 'big.test').map((s) => s.transport),
        ['udp', 'tcp'],
      );
      assert.equal(f.stats().tcpFallbacks, 1);

      // A classic UDP client (512 bytes) gets TC=1 with the question and nothing else.
      const small = (await udpAsk(port, q('big.test', TYPE.TXT, 10)))!;
      const sm = parseMessage(small);
      assert.equal(sm.header.tc, true);
      assert.equal(sm.header.id, 10);
      assert.equal(sm.answers.length, 0);
      assert.ok(small.length <= 512);

      // c-ares sees TC and retries over TCP to the forwarder: the whole record arrives.
      const txt = await resolverFor(port).resolveTxt('big.test');
      assert.equal(txt.length, 1);
      assert.equal(txt[0]!.join('').length, 2400);
      assert.equal(up.seen.filter((s) => s.name === 'big.test').length, 2, 'the rest came from the cache');
    });
  } finally {
    await up.close();
  }
});

test('next upstream on timeout; all upstreams down → SERVFAIL quickly', async () => {
  const up = await startUpstream();
  const hole = await blackhole();
  const closed = await closedPort();
  try {
    await withForwarder(
      { upstreams: [`127.0.0.1:${hole.port}`, `127.0.0.1:${up.port}`], timeoutMs: 1000 },
      async (f, port) => {
        const t0 = Date.now();
        const r = (await udpAsk(port, q('failover.a.test'), 6000))!;
        const took = Date.now() - t0;
        assert.equal(parseMessage(r).header.rcode, RCODE.NOERROR);
        assert.ok(took >= 950 && took < 4000, `took ${took} ms`);
        // The working upstream is preferred from now on: no second timeout (counted, not timed).
        const errors = f.stats().upstreamErrors;
        assert.ok(errors >= 1);
        const second = (await udpAsk(port, q('second.a.test')))!;
        assert.equal(parseMessage(second).header.rcode, RCODE.NOERROR);
        assert.equal(f.stats().upstreamErrors, errors, 'no second timeout');
      },
    );

    await withForwarder({ upstreams: [`127.0.0.1:${closed}`] }, async (f, port) => {
      const t0 = Date.now();
      const r = (await udpAsk(port, q('down.a.test', TYPE.A, 0x4444)))!;
      const m = parseMessage(r);
      assert.equal(m.header.rcode, RCODE.SERVFAIL);
      assert.equal(m.header.id, 0x4444);
      assert.equal(m.questions[0]!.name, 'down.a.test');
      assert.ok(Date.now() - t0 < 500, `port unreachable noticed at once (${Date.now() - t0} ms)`);
      const tcp = (await tcpAsk(port, [q('down.a.test', TYPE.A, 5)]))[0]!;
      assert.equal(parseMessage(tcp).header.rcode, RCODE.SERVFAIL);
      assert.equal(f.stats().servfail, 2);
    });

    // A silent upstream: SERVFAIL after the attempts (2 × timeout, swept every 50 ms), not never.
    await withForwarder({ upstreams: [`127.0.0.1:${hole.port}`], timeoutMs: 200 }, async (_f, port) => {
      const t0 = Date.now();
      const r = (await udpAsk(port, q('silent.a.test'), 5000))!;
      assert.equal(parseMessage(r).header.rcode, RCODE.SERVFAIL);
      assert.ok(Date.now() - t0 < 2500, `SERVFAIL after ${Date.now() - t0} ms`);
    });
    assert.ok(logLines.some((l) => l.startsWith('warn dns upstream failed')));
  } finally {
    hole.close();
    await up.close();
  }
});

test('malformed queries: FORMERR when the header is readable, dropped otherwise, never a crash', async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`] }, async (f, port) => {
      // Header says one question, none follows.
      const bad = Buffer.from('abcd01000001000000000000', 'hex');
      const r = (await udpAsk(port, bad))!;
      const h = parseMessage(r).header;
      assert.equal(h.id, 0xabcd);
      assert.equal(h.rcode, RCODE.FORMERR);
      // A compression loop.
      const loop = Buffer.from('abce01000001000000000000c00c00010001', 'hex');
      assert.equal(parseMessage((await udpAsk(port, loop))!).header.rcode, RCODE.FORMERR);
      // Junk shorter than a header: no answer at all.
      assert.equal(await udpAsk(port, Buffer.from([1, 2, 3]), 300), undefined);
      // A response sent to us as if it were a query: ignored.
      const resp = buildResponse(q('x.a.test'), parseMessage(q('x.a.test')), { rcode: 0 });
      assert.equal(await udpAsk(port, resp, 300), undefined);
      // Two questions: FORMERR.
      const two = Buffer.concat([
        q('x.a.test').subarray(0, 12),
        q('x.a.test').subarray(12),
        q('y.a.test').subarray(12),
      ]);
      two.writeUInt16BE(2, 4);
      assert.equal(parseMessage((await udpAsk(port, two))!).header.rcode, RCODE.FORMERR);
      // A non-QUERY opcode (NOTIFY): NOTIMP.
      const notify = q('x.a.test');
      notify.writeUInt16BE((4 << 11) | 0x0100, 2);
      assert.equal(parseMessage((await udpAsk(port, notify))!).header.rcode, RCODE.NOTIMP);
      // Over TCP: junk, then a good query on the same connection.
      const rs = await tcpAsk(port, [bad, Buffer.from([9, 9]), q('after.a.test', TYPE.A, 77)], 2);
      const ids = rs.map((x) => parseMessage(x).header.id).sort((a, b) => a - b);
      assert.deepEqual(ids, [77, 0xabcd]);
      // Still alive.
      assert.equal(parseMessage((await udpAsk(port, q('alive.a.test')))!).header.rcode, RCODE.NOERROR);
      assert.ok(f.stats().malformed >= 4);
    });
  } finally {
    await up.close();
  }
});

test('fake-IP: A from the range, lookupFakeIp maps back, AAAA empty, PTR, exclusions and other types forwarded', async () => {
  const up = await startUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'tranproxy-dns-'));
  const persistPath = join(dir, 'fake-ip.json');
  try {
    let remembered = '';
    await withForwarder(
      { upstreams: [`127.0.0.1:${up.port}`], fakeIp: { range: '198.18.0.0/15', persistPath } },
      async (f, port) => {
        const r = (await udpAsk(port, q('Video.Example.COM', TYPE.A, 1)))!;
        const m = parseMessage(r);
        assert.equal(m.header.rcode, RCODE.NOERROR);
        assert.equal(m.answers[0]!.ttl, 1);
        const ip = answers(r)[0]!;
        assert.match(ip, /^198\.1[89]\./);
        assert.equal(f.lookupFakeIp(ip), 'video.example.com');
        assert.equal(f.lookupFakeIp(`::ffff:${ip}`), 'video.example.com');
        assert.equal(f.lookupFakeIp('192.0.2.1'), undefined);
        remembered = ip;
        // Same name, same address; through Node's resolver too.
        assert.deepEqual(await resolverFor(port).resolve4('video.example.com'), [ip]);
        const other = answers((await udpAsk(port, q('other.example.com')))!)[0]!;
        assert.notEqual(other, ip);
        // AAAA without a v6 range: NOERROR, no answer.
        const aaaa = parseMessage((await udpAsk(port, q('video.example.com', TYPE.AAAA)))!);
        assert.equal(aaaa.header.rcode, RCODE.NOERROR);
        assert.equal(aaaa.answers.length, 0);
        // PTR of a fake address gives the domain back; of an unused one, NXDOMAIN.
        const rev = `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
        const ptr = (await udpAsk(port, q(rev, TYPE.PTR)))!;
        assert.deepEqual(answers(ptr), ['video.example.com']);
        assert.equal(
          parseMessage((await udpAsk(port, q('254.255.19.198.in-addr.arpa', TYPE.PTR)))!).header.rcode,
          RCODE.NXDOMAIN,
        );
        // None of that reached the upstream.
        assert.equal(up.seen.length, 0);
        // Other types and excluded names are forwarded.
        const mx = parseMessage((await udpAsk(port, q('mail.a.test', TYPE.MX)))!);
        assert.equal(mx.answers[0]!.type, TYPE.MX);
        assert.match(answers((await udpAsk(port, q('printer.lan')))!)[0]!, /^192\.0\.2\./);
        assert.deepEqual(up.seen.map((s) => s.name).sort(), ['mail.a.test', 'printer.lan']);
        // The data plane's way to the real address of a fake-IP flow routed direct.
        const real = await f.resolveReal('Video.a.test');
        assert.equal(real.length, 1);
        assert.match(real[0]!, /^192\.0\.2\./);
        assert.deepEqual(await f.resolveReal('nothing.test'), []);
        assert.equal(up.seen.filter((s) => s.name === 'video.a.test' && s.type === TYPE.A).length, 1);
        assert.equal(f.stats().fakeIpAnswers, 6);
        assert.equal(f.stats().fakeIpEntries, 2);
      },
    );
    // The map was saved on close and comes back on start.
    assert.ok(JSON.parse(readFileSync(persistPath, 'utf8')).entries.length === 2);
    await withForwarder({ upstreams: [], fakeIp: { range: '198.18.0.0/15', persistPath } }, async (f) => {
      assert.equal(f.lookupFakeIp(remembered), 'video.example.com');
    });

    // With a v6 range AAAA gets an address too, reachable both ways; the pool reuses LRU addresses.
    await withForwarder(
      { upstreams: [], fakeIp: { range: '10.77.0.0/30', range6: 'fc00:77::/120', ttl: 10 } },
      async (f, port) => {
        const r6 = (await udpAsk(port, q('v6.example', TYPE.AAAA)))!;
        const ip6 = answers(r6)[0]!;
        assert.match(ip6, /^fc00:77::/);
        assert.equal(parseMessage(r6).answers[0]!.ttl, 10);
        assert.equal(f.lookupFakeIp(ip6), 'v6.example');
        const a = answers((await udpAsk(port, q('a.example')))!)[0]!;
        const b = answers((await udpAsk(port, q('b.example')))!)[0]!;
        f.lookupFakeIp(a); // a is in use: b goes first
        const c = answers((await udpAsk(port, q('c.example')))!)[0]!;
        assert.equal(c, b);
        assert.equal(f.lookupFakeIp(c), 'c.example');
        assert.equal(f.lookupFakeIp(a), 'a.example');
        // No upstream: anything not faked is SERVFAIL right away.
        assert.equal(parseMessage((await udpAsk(port, q('x.example', TYPE.MX)))!).header.rcode, RCODE.SERVFAIL);
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await up.close();
  }
});

test('via a SOCKS5 node (microsocks): queries go over TCP through it, on one reused connection', {
  skip: have('microsocks') ? false : 'microsocks not installed (apt-get install microsocks)',
}, async () => {
  const up = await startUpstream();
  const socksPort = await closedPort();
  let proc: ChildProcess | undefined;
  try {
    proc = spawn('microsocks', ['-i', '127.0.0.1', '-p', String(socksPort)], { stdio: 'ignore' });
    const deadline = Date.now() + 5000;
    while (!spawnSync('ss', ['-Hlnt', `sport = :${socksPort}`], { encoding: 'utf8' }).stdout.trim()) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error('microsocks did not start');
      await sleep(30);
    }
    const via = createOutbound(parseNodeUri(`socks5://127.0.0.1:${socksPort}`));
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], via, cache: false }, async (f, port) => {
      const names = ['p1.a.test', 'p2.a.test', 'p3.a.test', 'p4.a.test'];
      const rs = await Promise.all(names.map((n, i) => udpAsk(port, q(n, TYPE.A, 300 + i))));
      for (const r of rs) assert.match(answers(r!)[0]!, /^192\.0\.2\./);
      const more = await tcpAsk(port, [q('p5.a.test', TYPE.A, 1), q('p6.a.test', TYPE.MX, 2)]);
      assert.equal(more.length, 2);
      assert.ok(up.seen.length === 6 && up.seen.every((s) => s.transport === 'tcp'), JSON.stringify(up.seen));
      assert.equal(up.tcpConnections, 1, 'one pipelined connection through the node');
      assert.equal(f.stats().tcpConnects, 1);

      // With the node gone, the path is gone: SERVFAIL quickly, not an answer from elsewhere.
      const exited = once(proc!, 'exit');
      process.kill(proc!.pid!, 'SIGTERM');
      await exited;
      await sleep(100);
      const t0 = Date.now();
      const r = (await udpAsk(port, q('p7.a.test')))!;
      assert.equal(parseMessage(r).header.rcode, RCODE.SERVFAIL);
      assert.ok(Date.now() - t0 < 1500, `${Date.now() - t0} ms`);
      assert.equal(up.seen.filter((s) => s.name === 'p7.a.test').length, 0);
    });
  } finally {
    if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      const exited = once(proc, 'exit');
      process.kill(proc.pid, 'SIGTERM');
      await exited;
    }
    await up.close();
  }
});

test('listens on several addresses (IPv4 and IPv6 loopback), the same port for UDP and TCP; close frees them', async () => {
  const up = await startUpstream();
  try {
    const f = await startDnsForwarder({
      listen: [
        { address: '127.0.0.1', port: 0 },
        { address: '::1', port: 0 },
      ],
      upstreams: [`127.0.0.1:${up.port}`],
      cache: true,
      log,
    });
    const [v4, v6] = f.addresses;
    assert.equal(v4!.family, 4);
    assert.equal(v6!.family, 6);
    const s = dgram.createSocket('udp6');
    s.send(q('six.a.test', TYPE.A, 66), v6!.port, '::1');
    const [msg] = (await once(s, 'message')) as [Buffer];
    s.close();
    assert.equal(parseMessage(msg).header.id, 66);
    assert.match(answers(msg)[0]!, /^192\.0\.2\./);
    await f.close();
    // The ports are free again.
    const again = dgram.createSocket('udp4');
    again.bind(v4!.port, '127.0.0.1');
    await once(again, 'listening');
    again.close();
    const srv = net.createServer().listen(v4!.port, '127.0.0.1');
    await once(srv, 'listening');
    srv.close();
  } finally {
    await up.close();
  }
});

test('an upstream that is the forwarder itself is refused', async () => {
  const port = await closedPort();
  await assert.rejects(
    startDnsForwarder({ listen: [{ address: '127.0.0.1', port }], upstreams: [`127.0.0.1:${port}`], cache: true, log }),
    /is the forwarder itself/,
  );
});

test("fast path: cache hits, fake-IP answers and relayed misses are byte for byte the full path's, on batched and dgram sockets", async () => {
  const up = await startUpstream();
  const fake = { range: '198.18.0.0/24', range6: 'fc00:18::/120' };
  const names = ['www.a.test', 'x.lan', 'nope.test', 'deep.sub.a.test'];
  // Every shape the fast path takes, and some it must leave to the full path.
  const shapes: { id: number; rd?: boolean; cd?: boolean; edns?: { udpSize?: number; do?: boolean } }[] = [
    { id: 1 },
    { id: 0xbeef, rd: false },
    { id: 7, cd: true },
    { id: 8, edns: { udpSize: 1232 } },
    { id: 9, edns: { udpSize: 512, do: true } },
    { id: 10, edns: { udpSize: 4096 } },
  ];
  const mixCase = (n: string, seed: number) =>
    [...n].map((c, i) => ((seed >> (i % 8)) & 1 ? c.toUpperCase() : c)).join('');
  const queries: Buffer[] = [];
  names.forEach((n, i) => {
    for (const [j, s] of shapes.entries()) {
      for (const type of [TYPE.A, TYPE.AAAA, TYPE.MX, TYPE.TXT])
        queries.push(buildQuery({ name: mixCase(n, i * 7 + j), type, ...s }));
    }
  });
  queries.push(buildQuery({ id: 3, name: 'big.test', type: TYPE.TXT })); // too big for 512 bytes: TC=1 from the full path
  const start = (o: Partial<DnsForwarderOptions>) =>
    startDnsForwarder({
      listen: [{ address: '127.0.0.1', port: 0 }],
      upstreams: [`127.0.0.1:${up.port}`],
      cache: true,
      log,
      timeoutMs: 1000,
      now: () => 1_000_000,
      ...o,
    });
  const fwd = await Promise.all([
    start({ fakeIp: fake }),
    start({ fakeIp: fake, fastPath: false }),
    start({ fakeIp: fake, udpBackend: 'dgram' }),
    start({}),
    start({ fastPath: false }),
  ]);
  try {
    const [fastFake, slowFake, dgramFake, fastPlain, slowPlain] = fwd;
    for (const [a, b, what] of [
      [fastFake, slowFake, 'fake-IP'],
      [dgramFake, slowFake, 'fake-IP over dgram'],
      [fastPlain, slowPlain, 'cache'],
    ] as const) {
      for (let pass = 0; pass < 2; pass++) {
        // Pass 0 fills the caches (and the fake-IP pools, in the same order); pass 1 is answered from them.
        for (const query of queries) {
          const ra = await udpAsk(a.addresses[0]!.port, query);
          const rb = await udpAsk(b.addresses[0]!.port, query);
          assert.ok(ra && rb, `${what}: an answer to ${parseMessage(query).questions[0]!.name}`);
          assert.deepEqual(
            ra.toString('hex'),
            rb.toString('hex'),
            `${what}, pass ${pass}: ${JSON.stringify(parseMessage(query).questions[0])} ${JSON.stringify(parseMessage(query).header)}`,
          );
        }
      }
      const tcpA = await tcpAsk(a.addresses[0]!.port, queries.slice(0, 6));
      const tcpB = await tcpAsk(b.addresses[0]!.port, queries.slice(0, 6));
      const byId = (rs: Buffer[]) => new Map(rs.map((r) => [r.readUInt16BE(0), r.toString('hex')]));
      assert.deepEqual(byId(tcpA), byId(tcpB), `${what} over TCP`);
    }
    assert.equal(slowFake.stats().fastAnswers + slowPlain.stats().fastAnswers, 0);
    // Pass 0 of the cache comparison: the misses of plain shape went through the relay, byte for byte handle()'s.
    assert.ok(fastPlain.stats().relayed >= names.length, JSON.stringify(fastPlain.stats()));
    assert.equal(slowPlain.stats().relayed + dgramFake.stats().relayed, 0);
    // Pass 1 of the cache comparison: every query but big.test's and the uncacheable ones came from the fast path.
    assert.ok(fastPlain.stats().fastAnswers >= names.length * shapes.length * 3, JSON.stringify(fastPlain.stats()));
    assert.ok(fastFake.stats().fastAnswers >= 2 * 3 * shapes.length * 2, JSON.stringify(fastFake.stats()));
    assert.ok(dgramFake.stats().fastAnswers > 0);
  } finally {
    await Promise.all(fwd.map((f) => f.close()));
    await up.close();
  }
});

// ── the relay (uncached UDP queries of plain shape, batched, ids of ours) ──────

/** The A address the test upstream gives `name` (see answer()). */
const addressOfName = (name: string) =>
  `192.0.2.${[...name.toLowerCase()].reduce((h, c) => (h * 31 + c.charCodeAt(0)) & 0xff, 7) || 1}`;

test('relay: clients using the same id at once each get their own answer; ids are unique per upstream socket', async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], cache: false }, async (f, port) => {
      // slow.*: the upstream holds each answer 300 ms, so all twelve are in flight together.
      const names = Array.from({ length: 12 }, (_, i) => `slow.c${i}.a.test`);
      const rs = await Promise.all(names.map((n) => udpAsk(port, q(n, TYPE.A, 0x1234))));
      rs.forEach((r, i) => {
        const m = parseMessage(r!);
        assert.equal(m.header.id, 0x1234);
        assert.equal(m.questions[0]!.name, names[i]);
        assert.deepEqual(answers(r!), [addressOfName(names[i]!)]);
      });
      const seen = up.seen.filter((s) => s.name.startsWith('slow.c'));
      assert.equal(seen.length, 12);
      const perPort = new Map<number, number[]>();
      for (const s of seen) perPort.set(s.port!, [...(perPort.get(s.port!) ?? []), s.id]);
      for (const ids of perPort.values()) assert.equal(new Set(ids).size, ids.length, `ids on one socket: ${ids}`);
      assert.equal(f.stats().relayed, 12);
      assert.equal(f.stats().inflight, 0);
    });
  } finally {
    await up.close();
  }
});

test('relay: past the in-flight bound queries are dropped; unanswered ones get SERVFAIL after the attempts', async () => {
  const hole = await blackhole();
  try {
    await withForwarder(
      { upstreams: [`127.0.0.1:${hole.port}`], cache: false, timeoutMs: 500, maxUdpInflight: 4 },
      async (f, port) => {
        const rs: Promise<Buffer | undefined>[] = [];
        for (let i = 0; i < 6; i++) {
          rs.push(udpAsk(port, q(`b${i}.a.test`, TYPE.A, 0x700 + i), 2500));
          // In this order: the first four are taken, the last two dropped, all before the first
          // one's two 500 ms attempts are over (a fixed gap between sends decided that on a loaded machine).
          const counted = () => f.stats().inflight + f.stats().dropped === i + 1;
          await until(`query ${i} taken or dropped`, counted, 1000, 2);
        }
        const got = await Promise.all(rs);
        for (let i = 0; i < 4; i++) {
          const m = parseMessage(got[i]!);
          assert.equal(m.header.rcode, RCODE.SERVFAIL);
          assert.equal(m.header.id, 0x700 + i);
          assert.equal(m.questions[0]!.name, `b${i}.a.test`);
        }
        assert.deepEqual(got.slice(4), [undefined, undefined]);
        const st = f.stats();
        assert.equal(st.dropped, 2);
        assert.equal(st.servfail, 4);
        assert.equal(st.upstreamQueries, 8, 'two attempts each');
        assert.equal(st.inflight, 0);
      },
    );
  } finally {
    hole.close();
  }
});

test('relay: TC from the upstream goes over TCP; each client gets the answer fitted to it, OPT only with EDNS, its own spelling', async () => {
  const up = await startUpstream();
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.port}`], cache: false }, async (f, port) => {
      const whole = (await udpAsk(port, q('Big.Test', TYPE.TXT, 0x51, { udpSize: 4096 })))!;
      const wm = parseMessage(whole);
      assert.equal(wm.header.tc, false);
      assert.equal(wm.header.id, 0x51);
      assert.equal(wm.questions[0]!.name, 'Big.Test');
      assert.equal(wm.answers.length, 1);
      assert.ok(wm.edns, 'an EDNS client gets the OPT');

      const classic = (await udpAsk(port, q('big.test', TYPE.TXT, 0x52)))!;
      const cm = parseMessage(classic);
      assert.equal(cm.header.tc, true);
      assert.equal(cm.header.id, 0x52);
      assert.equal(cm.answers.length, 0);
      assert.equal(cm.edns, undefined);
      assert.ok(classic.length <= 512);
      assert.deepEqual(
        up.seen.filter((s) => s.name === 'big.test').map((s) => s.transport),
        ['udp', 'tcp', 'udp', 'tcp'],
      );

      // The upstream is asked with our OPT; a client without EDNS gets none back, RD as it sent it.
      const plain = (await udpAsk(port, buildQuery({ id: 0x53, name: 'PLAIN.a.test', type: TYPE.A, rd: false })))!;
      const pm = parseMessage(plain);
      assert.equal(pm.edns, undefined);
      assert.equal(pm.header.arcount, 0);
      assert.equal(pm.header.rd, false);
      assert.equal(pm.questions[0]!.name, 'PLAIN.a.test');
      assert.deepEqual(answers(plain), [addressOfName('plain.a.test')]);
      assert.equal(up.seen.find((s) => s.name === 'plain.a.test')?.transport, 'udp', 'asked in lower case');
      assert.equal(f.stats().relayed, 3);
      assert.equal(f.stats().tcpFallbacks, 2);
    });
  } finally {
    await up.close();
  }
});

test('relay: spoofed answers (other question, other id) are ignored; upstream sockets are renewed, so source ports change', async () => {
  const ports = new Set<number>();
  const up = dgram.createSocket('udp4');
  up.bind(0, '127.0.0.1');
  await once(up, 'listening');
  up.on('message', (m, rinfo) => {
    ports.add(rinfo.port);
    const qm = parseMessage(m);
    const name = qm.questions[0]!.name;
    const reply = (query: Buffer, ip: string) => {
      const qq = parseMessage(query);
      up.send(
        buildResponse(query, qq, { rcode: 0, answers: [{ type: TYPE.A, ttl: 60, rdata: ipRdata(ip) }] }),
        rinfo.port,
        rinfo.address,
      );
    };
    if (name === 'spoofed.test') {
      reply(buildQuery({ id: qm.header.id, name: 'other.test', type: TYPE.A }), '6.6.6.6'); // right id, other question
      const wrongId = Buffer.from(m);
      wrongId.writeUInt16BE(qm.header.id ^ 0x5555, 0);
      reply(wrongId, '6.6.6.7'); // right question, other id
    }
    reply(m, '192.0.2.77');
  });
  try {
    await withForwarder({ upstreams: [`127.0.0.1:${up.address().port}`], cache: false }, async (f, port) => {
      assert.deepEqual(answers((await udpAsk(port, q('spoofed.test')))!), ['192.0.2.77']);
      // Four sockets, each renewed after 512 queries: 2,100 queries leave from more than four ports.
      const client = dgram.createSocket('udp4');
      try {
        client.connect(port, '127.0.0.1');
        await once(client, 'connect');
        let got = 0;
        client.on('message', () => got++);
        for (let i = 0; i < 2100; i++) {
          client.send(q(`r${i}.test`, TYPE.A, i));
          if (i % 50 === 49) {
            const want = i + 1;
            for (let w = 0; w < 200 && got < want; w++) await sleep(5);
          }
        }
        for (let w = 0; w < 200 && got < 2100; w++) await sleep(5);
        assert.equal(got, 2100);
      } finally {
        client.close();
      }
      assert.ok(ports.size > 4, `source ports: ${ports.size}`);
      assert.ok(f.stats().relayed >= 2101);
    });
  } finally {
    up.close();
  }
});
