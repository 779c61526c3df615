// The head-read timeout (--head-timeout, against slowloris) on loopback sockets: the relay
// with the real request rewriter in front of a real keep-alive HTTP server. No root needed.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { compileInjectConfig } from '../../src/http/inject-config.js';
import { RequestRewriter } from '../../src/http/rewriter.js';
import { relay, type RelayResult } from '../../src/relay/relay.js';
import { until } from '../helpers/wait.js';

/** Whatever a test opened: closed after each test, so a failed assertion fails the run instead of hanging it. */
const opened = new Set<() => void>();
afterEach(() => {
  for (const close of opened) close();
  opened.clear();
});

const INJECT = compileInjectConfig({ headers: [{ name: 'X-Injected', value: 'yes' }], maxHeadBytes: 65536 });
const RESPONSE_408 = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

/** Keep-alive HTTP upstream answering `<method> <path> <body length> <x-injected>`; counts requests. */
async function httpUpstream(): Promise<{ port: number; requests: () => number; close: () => void }> {
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      const body = `${req.method} ${req.url} ${n} ${String(req.headers['x-injected'])}\n`;
      res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  opened.add(() => {
    server.closeAllConnections();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    requests: () => requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A proxy on loopback relaying each client to 127.0.0.1:`target` through a RequestRewriter. */
async function withProxy(
  target: number,
  headTimeoutMs: number,
  fn: (port: number, results: Promise<RelayResult>[]) => Promise<void>,
): Promise<void> {
  const results: Promise<RelayResult>[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const upstream = net.connect({ port: target, host: '127.0.0.1', allowHalfOpen: true });
    opened.add(() => client.destroy()).add(() => upstream.destroy());
    results.push(
      once(upstream, 'connect').then(() =>
        relay(client, upstream, { idleTimeoutMs: 10_000, headTimeoutMs, rewriter: new RequestRewriter(INJECT) }),
      ),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await fn((server.address() as net.AddressInfo).port, results);
  } finally {
    server.close();
  }
}

/** A client that collects what it receives; `allowHalfOpen` so it never closes its side by itself. */
async function connect(port: number): Promise<{ sock: net.Socket; got: () => string; ended: Promise<number> }> {
  const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  opened.add(() => sock.destroy());
  sock.on('error', () => {});
  await once(sock, 'connect');
  let text = '';
  sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const ended = new Promise<number>((resolve) => sock.once('end', () => resolve(Date.now())));
  return { sock, got: () => text, ended };
}

/** Until the client has received `text` (3 s at most). */
const received = (c: { got: () => string }, text: string): Promise<void> =>
  until(
    () => `${JSON.stringify(text)} in ${JSON.stringify(c.got())}`,
    () => c.got().includes(text),
    3000,
    10,
  );

/** Writes `text` a byte at a time every `everyMs` until done or the socket stops being writable. */
async function drip(sock: net.Socket, text: string, everyMs: number): Promise<void> {
  for (const ch of text) {
    if (sock.destroyed || sock.writableEnded || sock.readableEnded) return;
    sock.write(ch);
    await sleep(everyMs);
  }
}

const SLOW_HEAD = `GET /slow HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(200)}\r\n\r\n`;

test('slowloris: a head dripped a byte every 40 ms gets 408 at the deadline and both sides close', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 400, async (port, results) => {
    const c = await connect(port);
    const t0 = Date.now();
    void drip(c.sock, SLOW_HEAD, 40); // ~10 s at this pace: it cannot finish in time
    const endedAt = await c.ended;
    const r = await results[0]!;
    const settledAt = Date.now();
    assert.equal(c.got(), RESPONSE_408);
    assert.equal(r.reason, 'head-timeout');
    assert.match(r.error ?? '', /^408 request head not complete within 400ms$/);
    // Each byte must not push the deadline: the 408 comes at ~400 ms, not after the last byte.
    assert.ok(endedAt - t0 >= 380, `answered after ${endedAt - t0} ms: too early`);
    assert.ok(endedAt - t0 < 1500, `answered after ${endedAt - t0} ms: the drip kept the head open`);
    // The relay settled, so the proxy closed its socket although this client never closed
    // its side (after a short linger, not the 10 s idle timeout); the server saw nothing.
    assert.ok(settledAt - t0 < 4000, `relay settled after ${settledAt - t0} ms`);
    assert.equal(up.requests(), 0);
    c.sock.destroy();
  });
  up.close();
});

test('a head split across chunks but complete in time is served; the connection outlives the deadline', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 600, async (port, results) => {
    const c = await connect(port);
    for (const piece of ['GET /a HT', 'TP/1.1\r\nHo', 'st: x\r\n', '\r\n']) {
      c.sock.write(piece);
      await sleep(60); // 240 ms in all: within 600 ms
    }
    await received(c, 'GET /a 0 yes');
    await sleep(900); // well past the first head's deadline: no timer may still be running
    assert.doesNotMatch(c.got(), /408/);
    c.sock.write('GET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    await received(c, 'GET /b 0 yes');
    c.sock.end();
    const r = await results[0]!;
    assert.equal(r.reason, 'eof');
    c.sock.destroy();
  });
  up.close();
});

test('keep-alive: a connection idle between requests longer than the head timeout is not cut', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 200, async (port, results) => {
    const c = await connect(port);
    c.sock.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\n');
    await received(c, 'GET /first 0 yes');
    await sleep(700); // idle: covered by the idle timeout, not the head timeout
    c.sock.write('GET /second HTTP/1.1\r\nHost: x\r\n\r\n');
    await received(c, 'GET /second 0 yes');
    assert.doesNotMatch(c.got(), /408/);
    c.sock.end();
    assert.equal((await results[0]!).reason, 'eof');
    c.sock.destroy();
  });
  up.close();
});

test('each head has its own deadline: a chunk that ends one head and begins the next restarts it', async () => {
  const up = await httpUpstream();
  // Each head takes 700 ms of its 1,200: a stalled event loop (the proxy runs in this process)
  // has 500 ms before a deadline fires ahead of the write that completes the head.
  await withProxy(up.port, 1200, async (port, results) => {
    const c = await connect(port);
    c.sock.write('GET /a HTTP/1.1\r\nHo');
    await sleep(700);
    c.sock.write('st: x\r\n\r\nGET /b HTTP/1.1\r\nHo'); // pipelined: /b begins here
    await sleep(700); // 1,400 ms after /a began, 700 ms after /b began
    c.sock.write('st: x\r\n\r\n');
    await received(c, 'GET /b 0 yes');
    assert.doesNotMatch(c.got(), /408/);
    assert.match(c.got(), /GET \/a 0 yes[\s\S]*GET \/b 0 yes/);
    c.sock.end();
    assert.equal((await results[0]!).reason, 'eof');
    c.sock.destroy();
  });
  up.close();
});

test('a slow second request on a keep-alive connection gets 408 after the first response', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 300, async (port, results) => {
    const c = await connect(port);
    c.sock.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    await received(c, 'GET /fast 0 yes');
    const t0 = Date.now();
    void drip(c.sock, SLOW_HEAD, 30);
    const endedAt = await c.ended;
    const r = await results[0]!;
    assert.equal(r.reason, 'head-timeout');
    assert.ok(c.got().endsWith(`GET /fast 0 yes\n${RESPONSE_408}`), JSON.stringify(c.got()));
    assert.ok(endedAt - t0 >= 280 && endedAt - t0 < 2500, `answered after ${endedAt - t0} ms`);
    assert.equal(up.requests(), 1);
    c.sock.destroy();
  });
  up.close();
});

test('a body dripped slower than the head timeout is not cut (no timer while a body streams)', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 200, async (port, results) => {
    const c = await connect(port);
    c.sock.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n');
    await drip(c.sock, 'abcdef', 100); // 600 ms of body
    await received(c, 'POST /upload 6 yes');
    assert.doesNotMatch(c.got(), /408/);
    c.sock.end();
    assert.equal((await results[0]!).reason, 'eof');
    c.sock.destroy();
  });
  up.close();
});

test('non-HTTP bytes the rewriter passes through are not subject to the head timeout', async () => {
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  opened.add(() => echo.close());
  await withProxy((echo.address() as net.AddressInfo).port, 150, async (port, results) => {
    const c = await connect(port);
    const tlsLike = '\x16\x03\x01\x00\x05hello';
    await drip(c.sock, tlsLike, 60); // 600 ms, 4× the timeout
    await until('the echo', () => c.got() === tlsLike, 3000, 10);
    await sleep(300);
    assert.equal(c.sock.readableEnded, false, 'passthrough connection was closed');
    c.sock.end();
    assert.equal((await results[0]!).reason, 'eof');
    c.sock.destroy();
  });
  echo.close();
});

test('headTimeoutMs 0 switches the limit off', async () => {
  const up = await httpUpstream();
  await withProxy(up.port, 0, async (port, results) => {
    const c = await connect(port);
    c.sock.write('GET /patient HTTP/1.1\r\nHo');
    await sleep(400);
    c.sock.write('st: x\r\n\r\n');
    await received(c, 'GET /patient 0 yes');
    c.sock.end();
    assert.equal((await results[0]!).reason, 'eof');
    c.sock.destroy();
  });
  up.close();
});

test('RequestRewriter.headPending: only between the first byte of a head and its end', () => {
  const rw = new RequestRewriter(INJECT);
  const pending = (s: string): boolean => (rw.push(Buffer.from(s, 'latin1')), rw.headPending);
  assert.equal(rw.headPending, false);
  assert.equal(pending('\r\n'), false, 'empty lines before a request line are not a head');
  assert.equal(pending('GE'), true);
  assert.equal(pending('T / HTTP/1.1\r\nContent-Length: 4\r\n'), true);
  assert.equal(pending('\r\nab'), false, 'inside a body');
  assert.equal(pending('cd'), false, 'between requests');
  assert.equal(pending('GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y'), true, 'the next pipelined head');
  assert.equal(rw.requests, 2);
  const tls = new RequestRewriter(INJECT);
  tls.push(Buffer.from([0x16, 0x03, 0x01]));
  assert.equal(tls.headPending, false, 'passthrough');
});
