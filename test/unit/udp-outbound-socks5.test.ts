// SOCKS5 UDP ASSOCIATE outbound against a tiny in-test SOCKS5 UDP relay on loopback: the
// control connection (greeting, RFC 1929 auth, UDP ASSOCIATE), the datagram header both ways
// (IP and domain targets), BND.ADDR 0.0.0.0 meaning the node's address, full-cone sources,
// fragments dropped, and the association's life bound to the control connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import type { Endpoint } from '../../src/kernel/sockaddr.js';
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  decodeSocksAddress,
  decodeSocksUdpPacket,
  encodeSocksAddress,
  encodeSocksUdpPacket,
  type SocksAddress,
} from '../../src/outbound/socks5.js';
import { createUdpOutbound, udpUnsupportedReason } from '../../src/outbound/udp-outbound.js';
import { relayEndpoint } from '../../src/outbound/udp-socks5.js';
import { replySource } from '../../src/outbound/udp-socket.js';
import { parseNodeUri } from '../../src/outbound/uri.js';
import type { UdpFlowInfo, UdpOutbound, UdpSession } from '../../src/udp/types.js';

const v4 = (address: string, port: number): Endpoint => ({ address, port, family: 4 });

interface RelayOpts {
  auth?: [string, string];
  /** BND.ADDR in the UDP ASSOCIATE reply: 'unspecified' (0.0.0.0) or 'loopback'. */
  bind?: 'unspecified' | 'loopback';
  /** SOCKS reply code for UDP ASSOCIATE (default 0). */
  reply?: number;
}

/** A SOCKS5 server that only does UDP ASSOCIATE, relaying to loopback targets. */
class TinyUdpRelay {
  tcp!: net.Server;
  udp!: dgram.Socket;
  controls = new Set<net.Socket>();
  /** Every datagram's decoded header, as the relay received it. */
  seen: SocksAddress[] = [];
  associateRequests: SocksAddress[] = [];
  /** Domain targets are answered as if from this address (the "resolved" one). */
  resolve = new Map<string, string>();
  private client: { address: string; port: number } | undefined;
  /** Outgoing socket to targets (one per relay, enough for these tests). */
  out!: dgram.Socket;

  constructor(private readonly o: RelayOpts = {}) {}

  async start(): Promise<void> {
    this.udp = dgram.createSocket('udp4');
    this.udp.bind(0, '127.0.0.1');
    await once(this.udp, 'listening');
    this.out = dgram.createSocket('udp4');
    this.out.bind(0, '127.0.0.1');
    await once(this.out, 'listening');
    this.udp.on('message', (m, rinfo) => {
      const d = decodeSocksUdpPacket(m);
      if (!d.ok) return;
      this.client = { address: rinfo.address, port: rinfo.port };
      this.seen.push(d.packet.address);
      const host =
        d.packet.address.type === ATYP_DOMAIN
          ? (this.resolve.get(d.packet.address.host) ?? '127.0.0.1')
          : d.packet.address.host;
      this.out.send(d.packet.payload, d.packet.address.port, host);
    });
    this.out.on('message', (m, rinfo) => this.reply(m, { host: rinfo.address, port: rinfo.port, type: ATYP_IPV4 }));
    this.tcp = net.createServer((c) => this.control(c));
    this.tcp.listen(0, '127.0.0.1');
    await once(this.tcp, 'listening');
  }

  /** Send a datagram to the associated client, as if from `from`. */
  reply(payload: Buffer, from: SocksAddress, frag = 0): void {
    if (this.client)
      this.udp.send(encodeSocksUdpPacket({ frag, address: from, payload }), this.client.port, this.client.address);
  }

  get port(): number {
    return (this.tcp.address() as net.AddressInfo).port;
  }

  private control(c: net.Socket): void {
    this.controls.add(c);
    c.on('close', () => this.controls.delete(c));
    c.on('error', () => {});
    let buf = Buffer.alloc(0);
    let stage: 'greet' | 'auth' | 'request' | 'done' = 'greet';
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (stage === 'greet') {
          if (buf.length < 2 || buf.length < 2 + buf[1]!) return;
          const methods = [...buf.subarray(2, 2 + buf[1]!)];
          buf = buf.subarray(2 + buf[1]!);
          const want = this.o.auth ? 2 : 0;
          if (!methods.includes(want)) return void c.end(Buffer.from([5, 0xff]));
          c.write(Buffer.from([5, want]));
          stage = this.o.auth ? 'auth' : 'request';
        } else if (stage === 'auth') {
          if (buf.length < 2) return;
          const ul = buf[1]!;
          if (buf.length < 3 + ul) return;
          const pl = buf[2 + ul]!;
          if (buf.length < 3 + ul + pl) return;
          const user = buf.toString('utf8', 2, 2 + ul);
          const pass = buf.toString('utf8', 3 + ul, 3 + ul + pl);
          buf = buf.subarray(3 + ul + pl);
          const ok = user === this.o.auth![0] && pass === this.o.auth![1];
          c.write(Buffer.from([1, ok ? 0 : 1]));
          if (!ok) return void c.end();
          stage = 'request';
        } else if (stage === 'request') {
          if (buf.length < 4) return;
          const a = decodeSocksAddress(buf, 3);
          if (a === 'need-more') return;
          assert.ok(a.ok);
          assert.equal(buf[1], 3, 'UDP ASSOCIATE');
          this.associateRequests.push(a.address);
          buf = buf.subarray(3 + a.length);
          const code = this.o.reply ?? 0;
          const bnd: SocksAddress = {
            host: this.o.bind === 'unspecified' ? '0.0.0.0' : '127.0.0.1',
            port: (this.udp.address() as dgram.RemoteInfo).port,
            type: ATYP_IPV4,
          };
          c.write(Buffer.concat([Buffer.from([5, code, 0]), encodeSocksAddress(bnd)]));
          if (code !== 0) return void c.end();
          stage = 'done';
        } else return;
      }
    });
  }

  close(): void {
    for (const c of this.controls) c.destroy();
    this.tcp.close();
    this.udp.close();
    this.out.close();
  }
}

async function udpEcho(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

const portOf = (s: dgram.Socket) => s.address().port;

function collect(session: UdpSession): {
  msgs: { text: string; from?: Endpoint }[];
  closed: Promise<[string, string | undefined]>;
  next: () => Promise<void>;
} {
  const msgs: { text: string; from?: Endpoint }[] = [];
  let wake: (() => void) | undefined;
  session.onMessage((p, from) => {
    msgs.push({ text: p.toString(), ...(from ? { from } : {}) });
    wake?.();
  });
  const closed = new Promise<[string, string | undefined]>((r) =>
    session.onClose((reason, error) => r([reason, error])),
  );
  const next = () =>
    new Promise<void>((r, j) => {
      const n = msgs.length;
      const t = setTimeout(() => j(new Error('no datagram within 2 s')), 2000);
      wake = () => {
        if (msgs.length > n) {
          clearTimeout(t);
          r();
        }
      };
    });
  return { msgs, closed, next };
}

async function withRelay(o: RelayOpts, fn: (relay: TinyUdpRelay, echo: dgram.Socket) => Promise<void>): Promise<void> {
  const relay = new TinyUdpRelay(o);
  const echo = await udpEcho();
  try {
    await relay.start();
    await fn(relay, echo);
  } finally {
    relay.close();
    echo.close();
  }
}

const flow = (dst: Endpoint, domain?: string): UdpFlowInfo => ({
  id: 1,
  src: v4('10.0.0.2', 40000),
  dst,
  ...(domain ? { domain } : {}),
});

test('socks5 UDP: round trip through the association, header stripped, BND 0.0.0.0 means the node', async () => {
  await withRelay({ bind: 'unspecified' }, async (relay, echo) => {
    const ob = createUdpOutbound(parseNodeUri(`socks5://127.0.0.1:${relay.port}#n1`)) as UdpOutbound;
    assert.equal(ob.kind, 'socks5');
    assert.equal(ob.name, 'n1');
    const s = await ob.open(flow(v4('127.0.0.1', portOf(echo))));
    const c = collect(s);
    const got = c.next();
    s.send(Buffer.from('hello'));
    await got;
    assert.deepEqual(c.msgs, [{ text: 'echo:hello' }], 'from the destination itself: no `from`');
    assert.deepEqual(relay.seen, [{ host: '127.0.0.1', port: portOf(echo), type: ATYP_IPV4 }]);
    assert.deepEqual(relay.associateRequests, [{ host: '0.0.0.0', port: 0, type: ATYP_IPV4 }], 'DST all zeros');
    // Full cone: a datagram from another remote keeps its source; fragments are dropped.
    relay.reply(Buffer.from('frag'), { host: '127.0.0.9', port: 9, type: ATYP_IPV4 }, 1);
    const other = c.next();
    relay.reply(Buffer.from('other'), { host: '127.0.0.9', port: 9, type: ATYP_IPV4 });
    await other;
    assert.deepEqual(c.msgs[1], { text: 'other', from: v4('127.0.0.9', 9) });
    s.close();
    s.close(); // idempotent
    // Closing the session closes the control connection.
    for (let i = 0; i < 100 && relay.controls.size; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(relay.controls.size, 0);
  });
});

test('socks5 UDP: domain target when known, auth, association ends with the control connection', async () => {
  await withRelay({ auth: ['alice', 's3cret'], bind: 'loopback' }, async (relay, echo) => {
    const ob = createUdpOutbound(parseNodeUri(`socks5://alice:s3cret@127.0.0.1:${relay.port}`))!;
    relay.resolve.set('echo.test', '127.0.0.1');
    // Fake-IP flow: the node gets the name; its replies from the target port appear from the fake address.
    const s = await ob.open(flow(v4('198.18.0.7', portOf(echo)), 'echo.test'));
    const c = collect(s);
    const got = c.next();
    s.send(Buffer.from('named'));
    await got;
    assert.deepEqual(relay.seen, [{ host: 'echo.test', port: portOf(echo), type: ATYP_DOMAIN }]);
    assert.deepEqual(c.msgs, [{ text: 'echo:named' }]);
    for (const ctl of relay.controls) ctl.destroy();
    assert.deepEqual((await c.closed)[0], 'association-closed');
    s.send(Buffer.from('after close')); // a no-op, never throws

    const bad = createUdpOutbound(parseNodeUri(`socks5://alice:wrong@127.0.0.1:${relay.port}`))!;
    await assert.rejects(bad.open(flow(v4('127.0.0.1', portOf(echo)))), { code: 'EAUTH' });
    const none = createUdpOutbound(parseNodeUri(`socks5://127.0.0.1:${relay.port}`))!;
    await assert.rejects(
      none.open(flow(v4('127.0.0.1', portOf(echo)))),
      (e: Error & { code: string }) => e.code === 'EAUTH' && /requires authentication/.test(e.message),
    );
  });
});

test('socks5 UDP: a node that refuses UDP ASSOCIATE, a node that is down', async () => {
  await withRelay({ reply: 7 }, async (relay, echo) => {
    const ob = createUdpOutbound(parseNodeUri(`socks5://127.0.0.1:${relay.port}`))!;
    await assert.rejects(ob.open(flow(v4('127.0.0.1', portOf(echo)))), (e: Error & { code: string }) => {
      assert.equal(e.code, 'EREFUSED');
      assert.match(e.message, /command not supported.*does not relay UDP/);
      return true;
    });
  });
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  const down = createUdpOutbound(parseNodeUri(`socks5://127.0.0.1:${port}`))!;
  await assert.rejects(down.open(flow(v4('127.0.0.1', 9))), { code: 'ECONNREFUSED' });
});

test('UDP header and address helpers (pure)', () => {
  const pkt = encodeSocksUdpPacket({
    frag: 0,
    address: { host: 'a.test', port: 53, type: ATYP_DOMAIN },
    payload: Buffer.from('q'),
  });
  assert.deepEqual([...pkt.subarray(0, 5)], [0, 0, 0, ATYP_DOMAIN, 6]);
  const d = decodeSocksUdpPacket(pkt);
  assert.ok(d.ok);
  assert.equal(d.packet.payload.toString(), 'q');
  assert.deepEqual(d.packet.address, { host: 'a.test', port: 53, type: ATYP_DOMAIN });
  assert.equal(decodeSocksUdpPacket(Buffer.from([0, 1, 0, 1])).ok, false);

  const node = v4('192.0.2.1', 1080);
  assert.deepEqual(relayEndpoint({ host: '0.0.0.0', port: 4000, type: ATYP_IPV4 }, node), {
    address: '192.0.2.1',
    port: 4000,
    needsLookup: false,
  });
  assert.deepEqual(relayEndpoint({ host: '::', port: 4000, type: 4 }, node), {
    address: '192.0.2.1',
    port: 4000,
    needsLookup: false,
  });
  assert.deepEqual(relayEndpoint({ host: '192.0.2.9', port: 4000, type: ATYP_IPV4 }, node), {
    address: '192.0.2.9',
    port: 4000,
    needsLookup: false,
  });
  assert.deepEqual(relayEndpoint({ host: 'relay.test', port: 4000, type: ATYP_DOMAIN }, node), {
    address: 'relay.test',
    port: 4000,
    needsLookup: true,
  });

  const f = flow(v4('192.0.2.53', 53));
  assert.equal(replySource(f, { host: '192.0.2.53', port: 53, type: ATYP_IPV4 }), undefined);
  assert.equal(replySource(f, { host: '::ffff:192.0.2.53', port: 53, type: 4 }), undefined, 'mapped = same');
  assert.deepEqual(replySource(f, { host: '192.0.2.54', port: 53, type: ATYP_IPV4 }), v4('192.0.2.54', 53));
  assert.equal(replySource(f, { host: '2001:db8::1', port: 53, type: 4 }), null, 'IPv6 source for an IPv4 client');
  assert.equal(replySource(f, { host: 'x.test', port: 53, type: ATYP_DOMAIN }), undefined);

  assert.equal(createUdpOutbound(parseNodeUri('http://127.0.0.1:3128')), undefined);
  assert.match(udpUnsupportedReason(parseNodeUri('http://127.0.0.1:3128#web'))!, /'web' is an HTTP CONNECT proxy/);
  assert.equal(udpUnsupportedReason(parseNodeUri('socks5://127.0.0.1:1080')), undefined);
});
