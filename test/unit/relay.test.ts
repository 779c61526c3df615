// The relay on loopback sockets: both directions, half-close, backpressure, idle timeout,
// rewriter events. No root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { relay, type RelayResult, type UpstreamRewriter } from '../../src/relay/relay.js';
import { RequestRewriter } from '../../src/http/rewriter.js';
import { compileInjectConfig } from '../../src/http/inject-config.js';
import { getsockoptInt } from '../../src/kernel/ffi.js';
import { IPPROTO_TCP, TCP_NODELAY } from '../../src/kernel/linux.js';
import { until } from '../helpers/wait.js';

/** A proxy on loopback that relays every accepted client to `target` with `relay()`. */
async function withRelay(
  target: net.AddressInfo,
  opts: { idleTimeoutMs?: number; rewriter?: () => UpstreamRewriter },
  fn: (port: number, results: Promise<RelayResult>[]) => Promise<void>,
): Promise<void> {
  const results: Promise<RelayResult>[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const upstream = net.connect({ port: target.port, host: '127.0.0.1', allowHalfOpen: true });
    results.push(
      once(upstream, 'connect').then(() =>
        relay(client, upstream, {
          idleTimeoutMs: opts.idleTimeoutMs ?? 10_000,
          ...(opts.rewriter ? { rewriter: opts.rewriter() } : {}),
        }),
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

async function listen(handler: (s: net.Socket) => void): Promise<net.Server> {
  const s = net.createServer({ allowHalfOpen: true }, handler);
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

function readAll(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

test('half-close: the client FIN reaches the server, and the reply still flows back', async () => {
  // The server answers only after the client's EOF: impossible without half-close.
  const upstream = await listen((s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => s.end(`got ${Buffer.concat(got).length} bytes`));
  });
  await withRelay(upstream.address() as net.AddressInfo, {}, async (port, results) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(c, 'connect');
    c.end(Buffer.alloc(12345, 1));
    const reply = await readAll(c);
    assert.equal(reply.toString(), 'got 12345 bytes');
    c.destroy();
    const r = await results[0]!;
    assert.equal(r.reason, 'eof');
    assert.equal(r.bytesUp, 12345);
    assert.equal(r.bytesDown, 'got 12345 bytes'.length);
  });
  upstream.close();
});

test('backpressure: a slow reader stalls the writer instead of filling memory; all bytes arrive', async () => {
  const total = 96 << 20;
  const accepted = new Promise<net.Socket>((resolve) => {
    void listen((s) => {
      s.pause(); // a reader that does not read yet
      resolve(s);
    }).then((srv) => (upstreamServer = srv));
  });
  let upstreamServer: net.Server | undefined;
  while (!upstreamServer) await new Promise((r) => setImmediate(r));
  await withRelay(upstreamServer.address() as net.AddressInfo, {}, async (port) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    await once(c, 'connect');
    const upstreamSocket = await accepted;
    const chunk = Buffer.alloc(1 << 20, 7);
    let written = 0;
    // Write until a drain does not come within 500 ms: the pipeline is full.
    for (;;) {
      written += chunk.length;
      if (c.write(chunk)) continue;
      const drained = await Promise.race([
        once(c, 'drain').then(() => true),
        new Promise((r) => setTimeout(() => r(false), 500)),
      ]);
      if (!drained || written >= total) break;
    }
    // Kernel buffers hold a few MiB per socket; without backpressure the relay would
    // swallow everything.
    assert.ok(written < total, `wrote ${written >> 20} MiB with the reader stopped: no backpressure`);
    let received = 0;
    const done = new Promise<void>((resolve) => {
      upstreamSocket.on('data', (d: Buffer) => {
        received += d.length;
        if (received >= total) resolve();
      });
    });
    upstreamSocket.resume();
    while (written < total) {
      written += chunk.length;
      if (!c.write(chunk)) await once(c, 'drain');
    }
    await done;
    assert.equal(received, total);
    c.destroy();
  });
  upstreamServer.close();
});

test('idle timeout closes a connection quiet in both directions', async () => {
  const upstream = await listen(() => {});
  await withRelay(upstream.address() as net.AddressInfo, { idleTimeoutMs: 200 }, async (port, results) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    c.on('error', () => {});
    await once(c, 'connect');
    c.write('x');
    const t0 = Date.now();
    await once(c, 'close');
    const r = await results[0]!;
    assert.equal(r.reason, 'idle');
    assert.ok(Date.now() - t0 >= 150, 'closed too early');
  });
  upstream.close();
});

test('idle timeout on a monotonic clock: the wall clock stepping 3 hours back does not keep a quiet connection open', async () => {
  const IDLE = 300;
  let gotByte!: () => void;
  const upstreamGot = new Promise<void>((r) => (gotByte = r));
  const upstream = await listen((s) => s.on('data', () => gotByte()));
  const realNow = Date.now;
  try {
    await withRelay(upstream.address() as net.AddressInfo, { idleTimeoutMs: IDLE }, async (port, results) => {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.on('error', () => {});
      await once(c, 'connect');
      try {
        c.write('x');
        await upstreamGot; // relayed: the quiet starts now
        Date.now = () => realNow() - 3 * 3600_000;
        const r = await Promise.race([results[0]!, new Promise<undefined>((res) => setTimeout(res, IDLE + 3000))]);
        assert.equal(r?.reason, 'idle', `still open ${IDLE + 3000} ms after its last byte (idle timeout ${IDLE} ms)`);
      } finally {
        c.destroy();
      }
    });
  } finally {
    Date.now = realNow;
    upstream.close();
  }
});

test('an upstream reset is propagated to the client as an error, not a clean EOF', async () => {
  const upstream = await listen((s) => s.once('data', () => s.resetAndDestroy()));
  await withRelay(upstream.address() as net.AddressInfo, {}, async (port, results) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    await once(c, 'connect');
    c.write('hello');
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    const r = await results[0]!;
    assert.equal(r.reason, 'upstream-error');
  });
  upstream.close();
});

test('rewriter: forward events replace bytes, reject answers the client and closes', async () => {
  const upstream = await listen((s) => readAll(s).then((b) => s.end(`upstream saw: ${b.toString()}`)));
  const upper: UpstreamRewriter = {
    push: (c) => [{ kind: 'forward', chunks: [Buffer.from(c.toString().toUpperCase())] }],
  };
  await withRelay(upstream.address() as net.AddressInfo, { rewriter: () => upper }, async (port) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(c, 'connect');
    c.end('abc');
    assert.equal((await readAll(c)).toString(), 'upstream saw: ABC');
  });
  const rejecting: UpstreamRewriter = {
    push: () => [
      { kind: 'reject', status: 400, reason: 'bad', response: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n') },
    ],
  };
  await withRelay(upstream.address() as net.AddressInfo, { rewriter: () => rejecting }, async (port, results) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    await once(c, 'connect');
    c.write('garbage');
    assert.equal((await readAll(c)).toString(), 'HTTP/1.1 400 Bad Request\r\n\r\n');
    const r = await results[0]!;
    assert.equal(r.reason, 'rejected');
  });
  upstream.close();
});

test('a refused client that never closes its side is closed after a short linger, not at the idle timeout', async () => {
  const upstream = await listen((s) => s.resume());
  const rejecting: UpstreamRewriter = {
    push: () => [
      { kind: 'reject', status: 400, reason: 'bad', response: Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n') },
    ],
  };
  await withRelay(
    upstream.address() as net.AddressInfo,
    { idleTimeoutMs: 30_000, rewriter: () => rejecting },
    async (port, results) => {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }); // never ends its side
      c.on('error', () => {});
      await once(c, 'connect');
      const t0 = Date.now();
      c.write('garbage');
      const got: Buffer[] = [];
      c.on('data', (d: Buffer) => {
        got.push(d);
        c.write('more body the proxy drops'); // still sending: read and dropped while lingering
      });
      // The proxy's side of the connection is closed (the relay settles) well before the idle timeout.
      const r = await Promise.race([
        results[0]!,
        new Promise<undefined>((res) => setTimeout(() => res(undefined), 6000)),
      ]);
      const ms = Date.now() - t0;
      assert.ok(r, `the proxy still held the refused connection after ${ms} ms`);
      assert.equal(r.reason, 'rejected');
      assert.ok(ms >= 1500, `closed after ${ms} ms: the linger lets the answer arrive first`);
      assert.equal(Buffer.concat(got).toString(), 'HTTP/1.1 400 Bad Request\r\n\r\n');
      c.destroy();
    },
  );
  upstream.close();
});

test('a client EOF that arrived before the relay started (while peeking) is still forwarded', async () => {
  const upstream = await listen((s) => readAll(s).then((b) => s.end(`saw ${b.toString()}`)));
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    // Read everything, including the EOF, before the relay exists.
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    client.once('end', () => {
      client.removeAllListeners('data');
      const up = net.connect({
        port: (upstream.address() as net.AddressInfo).port,
        host: '127.0.0.1',
        allowHalfOpen: true,
      });
      up.once('connect', () => void relay(client, up, { idleTimeoutMs: 5000, head: Buffer.concat(chunks) }));
    });
    client.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const c = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await once(c, 'connect');
  c.end('early');
  assert.equal((await readAll(c)).toString(), 'saw early');
  c.destroy();
  server.close();
  upstream.close();
});

test('Upgrade not yet answered: the client is paused after ~64 KiB held; a 101 releases it all raw', async () => {
  const rw = new RequestRewriter(
    compileInjectConfig({ headers: [{ name: 'X-Id', value: 'pod' }], maxHeadBytes: 65536 }),
  );
  let got = Buffer.alloc(0);
  let serverSide: net.Socket | undefined;
  const upstream = await listen((s) => {
    serverSide = s;
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
    });
  });
  await withRelay(upstream.address() as net.AddressInfo, { rewriter: () => rw }, async (port) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    await once(c, 'connect');
    const head = 'GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
    const frames = Buffer.alloc(4 << 20, 0x81);
    c.write(head);
    c.write(frames);
    await until(
      () => `the client paused (held ${rw.heldBytes})`,
      settledAbove(() => rw.heldBytes, 65536),
      10_000,
      100,
    );
    assert.equal(
      got.toString('latin1'),
      head.replace('\r\n\r\n', '\r\nX-Id: pod\r\n\r\n'),
      'only the stamped head went up',
    );
    assert.ok(rw.heldBytes > 0 && rw.heldBytes <= 2 * 65536, `held ${rw.heldBytes} bytes`);
    serverSide!.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
    const want = got.length + frames.length;
    for (let i = 0; i < 100 && got.length < want; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, want, 'every held and later byte went up raw');
    assert.ok(got.subarray(got.length - frames.length).equals(frames));
    c.destroy();
  });
  upstream.close();
});

test('a client pipelining requests to a server that does not answer is paused after 4096 unanswered', async () => {
  const rw = new RequestRewriter(
    compileInjectConfig({ headers: [{ name: 'X-Id', value: 'pod' }], maxHeadBytes: 65536 }),
  );
  let received = 0;
  const upstream = await listen((s) =>
    s.on('data', (d: Buffer) => {
      received += d.length;
    }),
  );
  await withRelay(upstream.address() as net.AddressInfo, { rewriter: () => rw }, async (port) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    await once(c, 'connect');
    c.write('GET / HTTP/1.1\r\n\r\n'.repeat(100_000)); // 1.8 MB of tiny requests
    await until(
      () => `the client paused (${rw.unanswered} unanswered)`,
      settledAbove(() => rw.requests, 4096),
      10_000,
      100,
    );
    assert.ok(rw.unanswered > 4096 && rw.unanswered < 4096 + 5000, `${rw.unanswered} requests in flight`);
    assert.ok(rw.requests < 20_000, `${rw.requests} requests read`);
    assert.ok(received > 0);
    c.destroy();
  });
  upstream.close();
});

test('the client socket gets TCP_NODELAY: small replies (an encrypted node, a rewritten head) do not wait on Nagle', async () => {
  const upstream = await listen((s) => s.on('end', () => s.end('ok')).resume());
  let accepted: net.Socket | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted = client;
    const before = nodelay(client);
    assert.equal(before, 0, 'accepted sockets start with Nagle on');
    const up = net.connect({ port: (upstream.address() as net.AddressInfo).port, host: '127.0.0.1' });
    void once(up, 'connect').then(() => relay(client, up, { idleTimeoutMs: 10_000 }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const c = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    const reply = readAll(c);
    for (let i = 0; i < 100 && (!accepted || nodelay(accepted) !== 1); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(nodelay(accepted!), 1);
    c.end();
    assert.equal((await reply).toString(), 'ok');
    c.destroy();
  } finally {
    server.close();
    upstream.close();
  }
});

/** True once `read()` is above `floor` and unchanged since the previous call: the relay stopped reading. */
function settledAbove(read: () => number, floor: number): () => boolean {
  let last = -1;
  return () => {
    const now = read();
    const settled = now > floor && now === last;
    last = now;
    return settled;
  };
}

function nodelay(s: net.Socket): number {
  const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
  const r = getsockoptInt(fd, IPPROTO_TCP, TCP_NODELAY, Buffer.alloc(16));
  if ('errno' in r) throw new Error(`getsockopt errno ${r.errno}`);
  return r.value === 0 ? 0 : 1;
}
