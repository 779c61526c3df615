// The mixed inbound (src/inbound/mixed.ts) on loopback with real sockets: hostile clients
// (silent, slow, oversize, garbage, wrong password) get a clean close within the handshake
// deadline and leave no descriptor behind; CONNECT and UDP ASSOCIATE carry bytes; the UDP
// relay takes datagrams only from the client's address and ends with its control connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { createListenerFd } from '../../src/kernel/sockets.js';
import { connectDirect } from '../../src/outbound/direct.js';
import { createLogger } from '../../src/observe/log.js';
import { directUdpOutbound } from '../../src/udp/direct.js';
import { networkInterfaces } from 'node:os';
import { PassThrough } from 'node:stream';
import { proxyDialer, type ProxyDialer } from '../../src/inbound/dial.js';
import type { FlowError } from '../../src/errors.js';
import { OutboundError, type Destination, type TcpOutbound } from '../../src/outbound/types.js';
import { compileRules } from '../../src/route/index.js';
import { startMixedInbound, type MixedInbound } from '../../src/inbound/mixed.js';
import { until } from '../helpers/wait.js';

const HANDSHAKE_MS = 300;

/** A mixed inbound on 127.0.0.1 whose dialer connects straight to `echoPort` (whatever was asked). */
async function withInbound(
  opts: { auth?: { username: string; password: string } },
  fn: (port: number, lines: string[], inbound: MixedInbound, echoPort: number) => Promise<void>,
): Promise<void> {
  const echo = net.createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const echoPort = (echo.address() as net.AddressInfo).port;
  const dial: ProxyDialer = () => ({
    via: 'direct',
    connect: async (signal) => ({
      stream: await connectDirect(
        { address: '127.0.0.1', port: echoPort, family: 4 },
        { connectTimeoutMs: 1000, signal },
      ),
      via: 'direct',
    }),
  });
  const lines: string[] = [];
  const fd = createListenerFd({ family: 4, address: '127.0.0.1', port: 0, transparent: false });
  const inbound = await startMixedInbound(
    {
      dial,
      udp: directUdpOutbound(),
      resolve: async (n) => {
        if (n.endsWith('.invalid')) throw Object.assign(new Error('no such name'), { code: 'ENOTFOUND' });
        return { address: n, family: 4 };
      },
      ...(opts.auth ? { auth: opts.auth } : {}),
      handshakeTimeoutMs: HANDSHAKE_MS,
      idleTimeoutMs: 5000,
      udpIdleTimeoutMs: 5000,
      maxConnections: 100,
    },
    [{ fd, family: 4, label: 'test' }],
    createLogger('text', (l) => void lines.push(l)),
  );
  try {
    await fn(inbound.addresses()[0]!.port, lines, inbound, echoPort);
  } finally {
    await inbound.stopAccepting();
    await inbound.destroyAll();
    echo.close();
  }
}

/** Sends `chunks` (with `gapMs` between them), returns what came back and how long until the close. */
async function exchange(port: number, chunks: Buffer[], gapMs = 0): Promise<{ got: Buffer; ms: number }> {
  const t0 = Date.now();
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  const closed = new Promise((r) => s.once('close', r)); // once() would reject on the RST
  const got: Buffer[] = [];
  s.on('data', (d) => got.push(d));
  await once(s, 'connect');
  for (const c of chunks) {
    if (s.destroyed) break;
    s.write(c);
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  await closed;
  return { got: Buffer.concat(got), ms: Date.now() - t0 };
}

const fdCount = () => readdirSync('/proc/self/fd').length;

test('hostile clients: silent, dripping, oversize, garbage, bad SOCKS versions: clean close by the deadline, no fd left', async () => {
  await withInbound({}, async (port, lines) => {
    const before = fdCount();
    const silent = await exchange(port, []);
    assert.equal(silent.got.length, 0);
    assert.ok(silent.ms >= HANDSHAKE_MS - 50 && silent.ms < HANDSHAKE_MS + 1000, `closed after ${silent.ms} ms`);
    // A head dripping in a byte at a time does not extend the deadline.
    const drip = await exchange(
      port,
      [...Buffer.from('GET http://a/ HTTP/1.1\r\nX: y')].map((b) => Buffer.from([b])),
      30,
    );
    assert.ok(drip.ms < HANDSHAKE_MS + 1000, `drip closed after ${drip.ms} ms`);
    const big = await exchange(port, [Buffer.from(`GET http://a/ HTTP/1.1\r\nX: ${'y'.repeat(20_000)}`)]);
    assert.match(big.got.toString(), /^HTTP\/1\.1 431 /);
    const garbage = await exchange(port, [Buffer.from('\x16\x03\x01 not http at all\r\n\r\n')]);
    assert.match(garbage.got.toString(), /^HTTP\/1\.1 400 /);
    const badSocks = await exchange(port, [Buffer.from([5, 0])]);
    assert.equal(badSocks.got.length, 0, 'SOCKS5 greeting with no methods: closed without a word');
    const badRequest = await exchange(port, [Buffer.from([5, 1, 0]), Buffer.from([4, 1, 0, 1, 1, 2, 3, 4, 0, 80])], 20);
    assert.deepEqual([...badRequest.got], [5, 0], 'method chosen, then the bad request closes it');
    // Many at once, then the descriptors are all back.
    await Promise.all(Array.from({ length: 50 }, () => exchange(port, [Buffer.from('junk\r\n\r\n')])));
    await until(
      () => `fds back to ${before} + 2: ${fdCount()}`,
      () => fdCount() <= before + 2,
    );
    assert.ok(lines.some((l) => /refused inbound=proxy .*reason=bad-request status=431/.test(l)));
  });
});

test('HTTP CONNECT and SOCKS5 CONNECT carry bytes both ways; wrong credentials are refused', async () => {
  const auth = { username: 'u', password: 'p' };
  await withInbound({ auth }, async (port, lines) => {
    const basic = Buffer.from('u:p').toString('base64');
    const http = net.connect(port, '127.0.0.1');
    http.write(`CONNECT x:1 HTTP/1.1\r\nProxy-Authorization: Basic ${basic}\r\n\r\nping`);
    let text = '';
    http.on('data', (d) => {
      text += d.toString();
      if (text.endsWith('ping')) http.end();
    });
    await once(http, 'close');
    assert.equal(text, 'HTTP/1.1 200 Connection established\r\n\r\nping');
    const noAuth = await exchange(port, [Buffer.from('CONNECT x:1 HTTP/1.1\r\n\r\n')]);
    assert.match(noAuth.got.toString(), /^HTTP\/1\.1 407 .*Proxy-Authenticate: Basic/s);
    const wrong = await exchange(port, [Buffer.from([5, 1, 2]), Buffer.from([1, 1, 0x75, 1, 0x71])], 20);
    assert.deepEqual([...wrong.got], [5, 2, 1, 1], 'user/password chosen, then status 1 and closed');
    const noMethod = await exchange(port, [Buffer.from([5, 1, 0])]);
    assert.deepEqual([...noMethod.got], [5, 0xff], 'no-auth offered to a server that requires a password');
    const socks = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    socks.on('data', (d) => {
      got.push(d);
      if (Buffer.concat(got).toString('latin1').endsWith('pong')) socks.end();
    });
    socks.write(Buffer.from([5, 1, 2]));
    socks.write(Buffer.from([1, 1, 0x75, 1, 0x70]));
    socks.write(Buffer.from([5, 1, 0, 3, 1, 0x78, 0, 1]));
    socks.write('pong');
    await once(socks, 'close');
    const all = Buffer.concat(got);
    assert.deepEqual([...all.subarray(0, 6)], [5, 2, 1, 0, 5, 0]);
    assert.equal(all.subarray(-4).toString(), 'pong');
    assert.ok(
      lines.some((l) => /conn .*inbound=socks5 .*dst=x:1 via=direct .*close=eof/.test(l)),
      lines.join('\n'),
    );
  });
});

test('UDP ASSOCIATE: datagrams from another address are dropped; the relay closes with the control connection', async () => {
  await withInbound({}, async (port, lines) => {
    const echo = dgram.createSocket('udp4');
    echo.on('message', (m, r) => echo.send(m, r.port, r.address));
    echo.bind(0, '127.0.0.1');
    await once(echo, 'listening');
    const echoPort = echo.address().port;
    const control = net.connect(port, '127.0.0.1');
    await once(control, 'connect');
    control.write(Buffer.from([5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
    let reply = Buffer.alloc(0);
    while (reply.length < 12) reply = Buffer.concat([reply, (await once(control, 'data'))[0] as Buffer]);
    assert.deepEqual([...reply.subarray(0, 3)], [5, 0, 5]);
    const relayPort = reply.readUInt16BE(10);
    const header = Buffer.from([0, 0, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff]);
    const ask = async (from: string, frag = 0): Promise<string> => {
      const u = dgram.createSocket('udp4');
      u.bind(0, from);
      await once(u, 'listening');
      const h = Buffer.from(header);
      h[2] = frag;
      u.send(Buffer.concat([h, Buffer.from(`hi-${from}`)]), relayPort, '127.0.0.1');
      const r = await Promise.race([
        once(u, 'message').then(([m]) => (m as Buffer).subarray(10).toString()),
        new Promise<string>((res) => setTimeout(() => res('timeout'), 400)),
      ]);
      u.close();
      return r;
    };
    assert.equal(await ask('127.0.0.1'), 'hi-127.0.0.1');
    assert.equal(await ask('127.0.0.2'), 'timeout', 'another address may not use the association');
    assert.equal(await ask('127.0.0.1', 1), 'timeout', 'fragments are dropped');
    // A name that does not resolve: no answer, and a line says why.
    const u = dgram.createSocket('udp4');
    u.send(Buffer.from([0, 0, 0, 3, 12, ...Buffer.from('none.invalid'), 0, 53, 0x71]), relayPort, '127.0.0.1');
    await until(
      () => `the open-failed line in:\n${lines.join('\n')}`,
      () => lines.some((l) => /udp route .*dst=none\.invalid:53 refused=open-failed error=ENOTFOUND/.test(l)),
      2000,
    );
    u.close();
    control.end();
    await once(control, 'close');
    // The association's closing line says the relay is gone; only then may no answer prove it.
    await until(
      () => `the association's close line in:\n${lines.join('\n')}`,
      () => lines.some((l) => /conn .*dst=udp-associate:0 .*flows=2 dropped=2/.test(l)),
      2000,
    );
    assert.equal(await ask('127.0.0.1'), 'timeout', 'the relay closed with its control connection');
    echo.close();
  });
});

test('the dialer: domain rules match the asked name, nodes get the name, fallbacks on an unreachable node; loopback and own ports refused', async () => {
  const asked: Destination[] = [];
  const node = (name: string, fail?: string): TcpOutbound => ({
    name,
    kind: 'test',
    connect: async (dst) => {
      asked.push(dst);
      if (fail) throw new OutboundError(name, fail, 'down');
      return new PassThrough();
    },
  });
  const outbounds = new Map([
    ['a', node('a')],
    ['dead', node('dead', 'ECONNREFUSED')],
  ]);
  const router = compileRules(
    [
      { domainSuffix: 'via-a.test', outbound: 'a' },
      { domain: 'dead.test', outbound: 'dead' },
      { domain: 'blocked.test', outbound: 'reject' },
    ],
    'direct',
    ['a', 'dead'],
  );
  const log = createLogger('text', () => {});
  const dial = proxyDialer({
    routing: { router, outbounds, fallbacks: new Map([['dead', 'a']]) },
    resolve: async (n) => {
      if (n === 'loop.test') return { address: '127.0.0.1', family: 4 };
      throw Object.assign(new Error('no'), { code: 'ENOTFOUND' });
    },
    connectTimeoutMs: 1000,
    mark: 0,
    ownPorts: [15001],
    log,
  });
  const src = { address: '10.0.0.2', port: 5000, family: 4 as const };
  const signal = new AbortController().signal;
  const connect = (t: { host: string; port: number }) => dial(t, src).connect(signal);
  const planA = dial({ host: 'www.via-a.test', port: 443 }, src);
  const viaA = await planA.connect(signal);
  assert.deepEqual([viaA.via, planA.rule, planA.domain], ['a', 'rules[0]', 'www.via-a.test']);
  assert.equal(asked[0]?.domain, 'www.via-a.test', 'the node gets the name, not an address');
  const fell = await connect({ host: 'dead.test', port: 80 });
  assert.deepEqual([fell.via, fell.fallbackFrom], ['a', 'dead']);
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => 'connected',
      (e: FlowError) => e.code,
    );
  assert.equal(await codeOf(connect({ host: 'blocked.test', port: 80 })), 'EREJECTED');
  assert.equal(await codeOf(connect({ host: 'loop.test', port: 15000 })), 'ELOOP');
  assert.equal(await codeOf(connect({ host: '127.0.0.1', port: 22 })), 'ELOOP');
  assert.equal(await codeOf(connect({ host: '::1', port: 22 })), 'ELOOP');
  assert.equal(await codeOf(connect({ host: 'nowhere.test', port: 80 })), 'ENOTFOUND');
  const ownAddress = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (ownAddress) assert.equal(await codeOf(connect({ host: ownAddress, port: 15001 })), 'ELOOP');
});
