// The splice engine on loopback sockets: integrity, half-close both ways, reset propagation,
// idle timeout, byte counts, hand-over of bytes Node already read, engine close, relayAuto's
// choice. No root needed.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { spawn } from 'node:child_process';
import {
  canSplice,
  createSpliceEngine,
  HandoverError,
  spliceAvailable,
  type SpliceEngine,
  type SpliceEngineOptions,
} from '../../src/relay/engine/engine.js';
import { relayAuto } from '../../src/relay/zero-copy.js';
import type { RelayResult } from '../../src/relay/relay.js';
import { sleep, until } from '../helpers/wait.js';

const skip = !spliceAvailable() && 'splice(2) via koffi is not available here';

// Every test runs in both hostings of the engine's loops: worker threads, and inline on this
// (the main) thread.
const HOSTINGS: { name: string; opts: SpliceEngineOptions }[] = [
  { name: 'worker threads', opts: { threads: 2 } },
  { name: 'inline', opts: { hosting: 'inline' } },
];
const engines = new Map<string, SpliceEngine>();
/** The engine of the test running now (tests in a file run one at a time). */
let engine: SpliceEngine;
let hostingOpts: SpliceEngineOptions;

before(() => {
  if (!skip) for (const h of HOSTINGS) engines.set(h.name, createSpliceEngine(h.opts));
});
after(async () => {
  await Promise.all([...engines.values()].map((e) => e.close()));
});

// What the running test opened, closed when it ends, passed or failed: a server still
// listening or a socket still reading after a failed assertion keeps the process alive after
// the last test (until CI's job time-out). In the test's finally, and again after each test
// (a timed-out test never reaches its finally).
const opened = { servers: new Set<net.Server>(), sockets: new Set<net.Socket>(), engines: new Set<SpliceEngine>() };

async function closeOpened(): Promise<void> {
  for (const s of opened.sockets) s.destroy();
  for (const s of opened.servers) s.close();
  const own = [...opened.engines];
  opened.sockets.clear();
  opened.servers.clear();
  opened.engines.clear();
  await Promise.all(own.map((e) => e.close()));
}
afterEach(closeOpened);

/** A server closed (and its connections destroyed) when the test ends. */
function tracked(server: net.Server): net.Server {
  opened.servers.add(server);
  server.on('connection', (s: net.Socket) => opened.sockets.add(s));
  return server;
}

/** A socket destroyed when the test ends. */
function trackedSocket(s: net.Socket): net.Socket {
  opened.sockets.add(s);
  return s;
}

/** An engine of the test's own, closed when the test ends. */
function ownEngine(opts: SpliceEngineOptions): SpliceEngine {
  const e = createSpliceEngine(opts);
  opened.engines.add(e);
  return e;
}

function engineTest(name: string, opts: { skip: string | false; timeout?: number }, fn: () => Promise<void>): void {
  // A test waiting for an event that never comes fails instead of holding CI for hours.
  const withTimeout = { timeout: 30_000, ...opts };
  for (const h of HOSTINGS)
    test(`${name} [${h.name}]`, withTimeout, async () => {
      engine = engines.get(h.name)!;
      hostingOpts = h.opts;
      try {
        await fn();
      } finally {
        await closeOpened();
      }
    });
}

type Relayer = (client: net.Socket, upstream: net.Socket) => Promise<RelayResult>;

/** A proxy on loopback that hands every accepted client and its upstream to `relayer`. */
async function withProxy(
  target: net.AddressInfo,
  relayer: Relayer,
  fn: (port: number, results: Promise<RelayResult>[]) => Promise<void>,
  beforeRelay?: (client: net.Socket, upstream: net.Socket) => Promise<void>,
): Promise<void> {
  const results: Promise<RelayResult>[] = [];
  const server = tracked(
    net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      const upstream = trackedSocket(net.connect({ port: target.port, host: '127.0.0.1', allowHalfOpen: true }));
      client.on('error', () => {});
      results.push(
        once(upstream, 'connect').then(async () => {
          if (beforeRelay) await beforeRelay(client, upstream);
          return relayer(client, upstream);
        }),
      );
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await fn((server.address() as net.AddressInfo).port, results);
  } finally {
    server.close();
  }
}

const viaEngine =
  (idleTimeoutMs = 10_000): Relayer =>
  (c, u) =>
    engine.relay(c, u, { idleTimeoutMs });

async function listen(
  handler: (s: net.Socket) => void,
  opts: net.ServerOpts = { allowHalfOpen: true },
): Promise<net.Server> {
  const s = tracked(net.createServer(opts, handler));
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

async function connect(port: number): Promise<net.Socket> {
  const c = trackedSocket(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
  await once(c, 'connect');
  return c;
}

function readAll(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

/** Hashes everything read until EOF. */
function hashUntilEnd(s: net.Socket): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    h.update(d);
    bytes += d.length;
  });
  return once(s, 'end').then(() => ({ bytes, sha: h.digest('hex') }));
}

/** Writes `total` bytes of a seeded pattern (each MiB tagged with its index), honouring backpressure, then ends. */
async function sendPattern(s: net.Socket, total: number, seed: Buffer): Promise<string> {
  const h = createHash('sha256');
  const chunk = 1 << 20;
  for (let off = 0, i = 0; off < total; off += chunk, i++) {
    const b = Buffer.from(seed.subarray(0, Math.min(chunk, total - off)));
    b.writeUInt32LE(i, 0);
    h.update(b);
    if (!s.write(b)) await once(s, 'drain');
  }
  s.end();
  return h.digest('hex');
}

engineTest('100 MB in both directions at once arrive byte-identical', { skip, timeout: 120_000 }, async () => {
  const MB100 = 100 << 20;
  const seedUp = randomBytes(1 << 20);
  const seedDown = randomBytes(1 << 20);
  let serverSide: Promise<[{ bytes: number; sha: string }, string]> | undefined;
  const upstream = await listen((s) => {
    serverSide = Promise.all([hashUntilEnd(s), sendPattern(s, MB100, seedDown)]);
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    const [got, sentSha] = await Promise.all([hashUntilEnd(c), sendPattern(c, MB100, seedUp)]);
    const [serverGot, serverSentSha] = await serverSide!;
    assert.equal(serverGot.bytes, MB100);
    assert.equal(serverGot.sha, sentSha, 'client → server intact');
    assert.equal(got.bytes, MB100);
    assert.equal(got.sha, serverSentSha, 'server → client intact');
    c.destroy();
    const r = await results[0]!;
    assert.deepEqual(r, { bytesUp: MB100, bytesDown: MB100, reason: 'eof' });
  });
});

engineTest('half-close: the client FIN reaches the server, and the reply still flows back', { skip }, async () => {
  const upstream = await listen((s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => s.end(`got ${Buffer.concat(got).length} bytes`));
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    c.end(Buffer.alloc(123_456, 1));
    assert.equal((await readAll(c)).toString(), 'got 123456 bytes');
    c.destroy();
    assert.deepEqual(await results[0]!, { bytesUp: 123_456, bytesDown: 16, reason: 'eof' });
  });
});

engineTest('half-close: the server FIN reaches the client, and the client can still send', { skip }, async () => {
  let serverGot: Promise<Buffer> | undefined;
  const upstream = await listen((s) => {
    serverGot = readAll(s);
    s.end('banner and bye');
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    assert.equal((await readAll(c)).toString(), 'banner and bye');
    // The client's direction is still open after the server's FIN.
    await new Promise((r) => setTimeout(r, 50));
    c.end(Buffer.alloc(77_777, 2));
    assert.equal((await serverGot!).length, 77_777);
    const r = await results[0]!;
    assert.deepEqual(r, { bytesUp: 77_777, bytesDown: 14, reason: 'eof' });
    c.destroy();
  });
});

engineTest('an upstream reset reaches the client as a reset', { skip }, async () => {
  const upstream = await listen((s) => {
    s.once('data', () => s.resetAndDestroy());
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    c.write('hello');
    const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    const r = await results[0]!;
    assert.equal(r.reason, 'upstream-error');
    assert.equal(r.error, 'ECONNRESET');
    assert.equal(r.bytesUp, 5);
  });
});

engineTest('a client reset reaches the server as a reset', { skip }, async () => {
  let serverErr: Promise<unknown> | undefined;
  const upstream = await listen((s) => {
    serverErr = once(s, 'error').then(([e]) => e);
    s.write('hi');
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    await once(c, 'data');
    c.resetAndDestroy();
    const err = (await serverErr!) as NodeJS.ErrnoException;
    assert.equal(err.code, 'ECONNRESET');
    const r = await results[0]!;
    assert.equal(r.reason, 'client-error');
    assert.equal(r.error, 'ECONNRESET');
    assert.equal(r.bytesDown, 2);
  });
});

engineTest('idle timeout closes both sides; traffic keeps it alive', { skip, timeout: 15_000 }, async () => {
  const IDLE = 500;
  const serverEnded: Promise<unknown>[] = [];
  const upstream = await listen((s) => {
    serverEnded.push(once(s, 'end'));
    s.on('error', () => {});
    s.on('data', () => {});
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(IDLE), async (port, results) => {
    const c = await connect(port);
    c.on('data', () => {});
    c.on('error', () => {});
    let settled = false;
    void results[0]!.then(() => (settled = true));
    // 700 ms of a byte every 100 ms (longer than the timeout, each gap a fifth of it): still open.
    const gaps: number[] = [];
    let lastWrite = 0;
    for (let i = 0; i < 7; i++) {
      const t = Date.now();
      if (i > 0) gaps.push(t - lastWrite);
      lastWrite = t;
      c.write('x');
      await sleep(100);
    }
    assert.equal(settled, false, `closed while bytes kept coming (gaps ${gaps.join(', ')} ms)`);
    const ended = once(c, 'end'); // a FIN (allowHalfOpen keeps the socket itself open)
    const r = await results[0]!;
    // The quiet began with the last byte: the engine read it after this write, and closes no
    // sooner than IDLE after reading (both are Date.now(), the engine's clock).
    const quiet = Date.now() - lastWrite;
    assert.equal(r.reason, 'idle');
    assert.equal(r.bytesUp, 7);
    assert.ok(quiet >= IDLE && quiet < IDLE + 1300, `closed after ${quiet} ms of quiet (gaps ${gaps.join(', ')} ms)`);
    await ended;
    await serverEnded[0];
  });
});

// Inline only: the loop then runs on this thread, where Date.now can be made to jump (a
// worker thread has its own). Nothing of the host's clock is touched.
test('idle deadlines are on a monotonic clock: a wall-clock step ahead does not close an idle flow early, one back does not keep it open [inline]', {
  skip,
  timeout: 20_000,
}, async () => {
  const IDLE = 1500;
  const HOURS = 3 * 3600_000;
  const own = ownEngine({ hosting: 'inline' });
  let gotByte!: () => void;
  const upstreamGot = new Promise<void>((r) => (gotByte = r));
  const upstream = await listen((s) => {
    s.on('error', () => {});
    s.on('data', () => gotByte());
  });
  const realNow = Date.now;
  try {
    await withProxy(
      upstream.address() as net.AddressInfo,
      (c, u) => own.relay(c, u, { idleTimeoutMs: IDLE }),
      async (port, results) => {
        const c = await connect(port);
        c.on('error', () => {});
        c.resume();
        await until('the hand-over', () => results.length === 1 && own.active === 1);
        let settled = false;
        void results[0]!.then(() => (settled = true));
        c.write('x');
        await upstreamGot; // the engine has read it: its idle time starts now
        const lastByte = performance.now();
        Date.now = () => realNow() + HOURS;
        await sleep(IDLE / 2);
        assert.equal(settled, false, 'closed as idle once the wall clock jumped 3 hours ahead');
        Date.now = () => realNow() - HOURS;
        const r = await Promise.race([results[0]!, sleep(IDLE + 3000).then(() => undefined)]);
        const quiet = performance.now() - lastByte;
        assert.ok(
          r,
          `still open ${Math.round(quiet)} ms after its last byte (idle timeout ${IDLE} ms), the wall clock 3 hours back`,
        );
        assert.equal(r.reason, 'idle');
        assert.ok(quiet >= IDLE - 20 && quiet < IDLE + 1300, `closed after ${Math.round(quiet)} ms of quiet`);
      },
    );
  } finally {
    Date.now = realNow;
  }
});

/** In a child process: N connections to 127.0.0.1:PORT, a byte on each every 100 ms. */
const TRICKLE = `
const net = require('node:net');
const [port, n] = process.argv.slice(1).map(Number);
const socks = [];
let open = 0;
for (let i = 0; i < n; i++) {
  const s = net.connect(port, '127.0.0.1', () => ++open === n && console.log('connected'));
  s.setNoDelay(true);
  s.on('error', () => {});
  s.resume();
  socks.push(s);
}
setInterval(() => { for (const s of socks) if (!s.connecting) s.write('x'); }, 100);
process.stdin.on('end', () => process.exit(0));
`;

// epoll_wait hands out 256 events a turn: after a stall longer than the idle timeout, the
// flows whose events come in the next batches must not be taken for idle meanwhile.
test('after a stall longer than the idle timeout, 300 flows with bytes waiting are not closed as idle [inline]', {
  skip,
  timeout: 30_000,
}, async () => {
  const N = 300;
  const IDLE = 1000;
  const own = ownEngine({ hosting: 'inline' });
  const upstream = await listen((s) => {
    s.on('error', () => {});
    s.resume();
  });
  let clients: ReturnType<typeof spawn> | undefined;
  try {
    await withProxy(
      upstream.address() as net.AddressInfo,
      (c, u) => own.relay(c, u, { idleTimeoutMs: IDLE }),
      async (port, results) => {
        const child = spawn(process.execPath, ['-e', TRICKLE, String(port), String(N)], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        clients = child;
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await until('the clients connected', () => out.includes('connected'));
        await until(
          () => `${N} flows in the engine (accepted ${results.length}, in the engine ${own.active})`,
          () => results.length === N && own.active === N,
        );
        const ended: string[] = [];
        for (const r of results) void r.then((x) => ended.push(x.reason));
        // The main thread (the inline loop's) busy for twice the idle timeout, bytes arriving meanwhile.
        const stallEnd = performance.now() + 2 * IDLE;
        while (performance.now() < stallEnd);
        await sleep(500);
        assert.deepEqual(ended, [], `flows closed after the stall: ${ended.length}`);
        assert.equal(own.active, N);
      },
    );
  } finally {
    clients?.kill('SIGKILL');
  }
});

engineTest('byte counts are per direction and include what Node had already read', { skip }, async () => {
  // A server-first protocol: the banner is read by Node before the hand-over and must be
  // flushed to the client and counted.
  let serverGot: Promise<Buffer> | undefined;
  const upstream = await listen((s) => {
    serverGot = readAll(s);
    s.write('220 banner\r\n');
    s.once('data', () => s.end(Buffer.alloc(300_001, 3)));
  });
  const beforeRelay = async (client: net.Socket, up: net.Socket): Promise<void> => {
    // Let Node read the banner into its buffer (paused stream, reading started).
    up.read(0);
    while (up.readableLength === 0) await new Promise((r) => setTimeout(r, 5));
    assert.ok(canSplice(client, up));
  };
  await withProxy(
    upstream.address() as net.AddressInfo,
    viaEngine(),
    async (port, results) => {
      const c = await connect(port);
      const got = readAll(c);
      await once(c, 'readable');
      c.end(Buffer.alloc(4_242, 4));
      const all = await got;
      assert.equal(all.subarray(0, 12).toString(), '220 banner\r\n');
      assert.equal(all.length, 12 + 300_001);
      assert.equal((await serverGot!).length, 4_242);
      assert.deepEqual(await results[0]!, { bytesUp: 4_242, bytesDown: 300_013, reason: 'eof' });
      c.destroy();
    },
    beforeRelay,
  );
});

engineTest('hand-over sends nothing: the peers see no FIN while the engine holds the sockets', { skip }, async () => {
  let serverSock: net.Socket | undefined;
  let serverEnded = false;
  const upstream = await listen((s) => {
    serverSock = s;
    s.on('end', () => {
      serverEnded = true;
      s.end();
    });
    s.on('data', (d: Buffer) => s.write(d));
  });
  await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
    const c = await connect(port);
    let clientEnded = false;
    c.on('end', () => (clientEnded = true));
    await until('the hand-over to the engine', () => engine.active >= 1, 5000);
    assert.equal(serverEnded, false);
    assert.equal(clientEnded, false);
    c.write('ping');
    const [d] = (await once(c, 'data')) as [Buffer];
    assert.equal(d.toString(), 'ping');
    c.end();
    await once(c, 'end');
    assert.ok(serverSock);
    assert.deepEqual(await results[0]!, { bytesUp: 4, bytesDown: 4, reason: 'eof' });
    c.destroy();
  });
});

engineTest('closing the engine closes its live connections', { skip }, async () => {
  const own = ownEngine(hostingOpts);
  const serverEnds: Promise<unknown>[] = [];
  const upstream = await listen((s) => {
    serverEnds.push(once(s, 'end'));
    s.on('data', () => {});
  });
  await withProxy(
    upstream.address() as net.AddressInfo,
    (c, u) => own.relay(c, u, { idleTimeoutMs: 60_000 }),
    async (port, results) => {
      const clients = await Promise.all([connect(port), connect(port), connect(port)]);
      for (const c of clients) c.write('x');
      while (own.active < 3) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 50));
      const ends = clients.map((c) => {
        c.on('data', () => {});
        return once(c, 'end');
      });
      await own.close();
      await Promise.all(ends);
      await Promise.all(serverEnds);
      for (const r of await Promise.all(results)) assert.equal(r.reason, 'aborted');
      assert.throws(() => own.relay(clients[0]!, clients[1]!, { idleTimeoutMs: 1 }), HandoverError);
      for (const c of clients) c.destroy();
    },
  );
});

engineTest(
  'relayAuto: the engine for plain sockets, the JS relay for rewriters and other streams',
  { skip },
  async () => {
    const upstream = await listen((s) => s.pipe(s));
    const target = upstream.address() as net.AddressInfo;
    // Plain sockets with a sniffed head: engine (the Node sockets are destroyed at hand-over).
    let handedOver = false;
    await withProxy(
      target,
      async (c, u) => {
        const p = relayAuto(c, u, { idleTimeoutMs: 5000, engine, head: Buffer.from('HEAD') });
        await until('the hand-over', () => c.destroyed && u.destroyed, 5000).catch(() => {});
        handedOver = c.destroyed && u.destroyed;
        return p;
      },
      async (port, results) => {
        const c = await connect(port);
        const got = readAll(c);
        c.end('tail');
        assert.equal((await got).toString(), 'HEADtail');
        assert.deepEqual(await results[0]!, { bytesUp: 8, bytesDown: 8, reason: 'eof' });
        c.destroy();
      },
    );
    assert.equal(handedOver, true);
    // A rewriter: the JS relay (the sockets stay Node's).
    let jsRelay = false;
    let checked!: () => void;
    const check = new Promise<void>((r) => (checked = r));
    await withProxy(
      target,
      async (c, u) => {
        const rewriter = { push: (chunk: Buffer) => [{ kind: 'forward' as const, chunks: [chunk] }] };
        const p = relayAuto(c, u, { idleTimeoutMs: 5000, engine, rewriter });
        await new Promise((r) => setTimeout(r, 50));
        jsRelay = !c.destroyed && !u.destroyed;
        checked();
        return p;
      },
      async (port, results) => {
        const c = await connect(port);
        await check;
        const got = readAll(c);
        c.end('abc');
        assert.equal((await got).toString(), 'abc');
        assert.equal((await results[0]!).reason, 'eof');
        c.destroy();
      },
    );
    assert.equal(jsRelay, true);
    // Not a socket upstream (e.g. an encrypted outbound stream): the JS relay.
    const server = await listen(
      (client) => {
        const pt = new PassThrough();
        void relayAuto(client, pt, { idleTimeoutMs: 5000, engine }); // echoes through the PassThrough
      },
      { allowHalfOpen: true, pauseOnConnect: true },
    );
    const c = await connect((server.address() as net.AddressInfo).port);
    c.write('echo');
    const [d] = (await once(c, 'data')) as [Buffer];
    assert.equal(d.toString(), 'echo');
    c.destroy();
  },
);

engineTest('ineligible sockets are refused untouched', { skip }, async () => {
  const upstream = await listen((s) => s.pipe(s));
  const c1 = await connect((upstream.address() as net.AddressInfo).port);
  const c2 = await connect((upstream.address() as net.AddressInfo).port);
  c1.on('data', () => {});
  assert.equal(canSplice(c1, c2), false);
  assert.throws(() => engine.relay(c1, c2, { idleTimeoutMs: 1000 }), HandoverError);
  assert.equal(c1.destroyed || c2.destroyed, false);
  c2.end();
  assert.equal(canSplice(c2, c2), false);
  c1.destroy();
  c2.destroy();
});

engineTest('relayAuto: a sniffed head goes first, then what Node buffered, then the rest', { skip }, async () => {
  const upstream = await listen((s) => s.pipe(s));
  await withProxy(
    upstream.address() as net.AddressInfo,
    async (c, u) => {
      // A sniffer took 5 bytes; more of the client's bytes sit in Node's buffer.
      c.read(0);
      while (c.readableLength < 12) await new Promise((r) => setTimeout(r, 5));
      const head = c.read(5) as Buffer;
      assert.ok(c.readableLength > 0);
      return relayAuto(c, u, { idleTimeoutMs: 5000, engine, head });
    },
    async (port, results) => {
      const c = await connect(port);
      const got = readAll(c);
      c.write('0123456789ab');
      await new Promise((r) => setTimeout(r, 100));
      c.end('-tail');
      assert.equal((await got).toString(), '0123456789ab-tail');
      assert.deepEqual(await results[0]!, { bytesUp: 17, bytesDown: 17, reason: 'eof' });
      c.destroy();
    },
  );
});

engineTest(
  'backpressure: a server that does not read stalls the client; nothing piles up; all bytes arrive',
  {
    skip,
    timeout: 60_000,
  },
  async () => {
    let serverSock: net.Socket | undefined;
    const upstream = await listen((s) => {
      serverSock = s;
      s.pause(); // not reading (yet)
    });
    await withProxy(upstream.address() as net.AddressInfo, viaEngine(), async (port, results) => {
      const c = await connect(port);
      const chunk = Buffer.alloc(1 << 20, 9);
      // Write until the kernel stops taking bytes: client sndbuf + proxy rcvbuf + one pipe +
      // proxy sndbuf + server rcvbuf, a few MiB on loopback, not the 64 MiB offered.
      let accepted = 0;
      for (let i = 0; i < 64; i++) {
        c.write(chunk);
        await new Promise((r) => setTimeout(r, 10));
        accepted = c.bytesWritten - c.writableLength;
      }
      await new Promise((r) => setTimeout(r, 200));
      accepted = c.bytesWritten - c.writableLength;
      assert.ok(
        c.writableLength > 16 << 20,
        `the client is held back (${c.writableLength} bytes still queued in the client)`,
      );
      assert.ok(accepted < 48 << 20, `${accepted} bytes accepted while nobody reads`);
      // The server reads now: everything arrives.
      let got = 0;
      serverSock!.on('data', (d: Buffer) => (got += d.length));
      serverSock!.on('end', () => serverSock!.end());
      serverSock!.resume();
      c.end();
      await once(serverSock!, 'end');
      assert.equal(got, 64 << 20);
      c.on('data', () => {});
      await once(c, 'end');
      assert.deepEqual(await results[0]!, { bytesUp: 64 << 20, bytesDown: 0, reason: 'eof' });
      c.destroy();
    });
  },
);

/** In a child process: the threads an engine adds, and whether the process then exits on its own. */
const THREADS_ADDED = `
import { readdirSync } from 'node:fs';
import { createSpliceEngine, spliceAvailable } from ${JSON.stringify(new URL('../../src/relay/engine/engine.ts', import.meta.url).href)};
spliceAvailable(); // koffi loaded before counting
const tasks = () => readdirSync('/proc/self/task').length;
const before = tasks();
createSpliceEngine({ hosting: process.argv[1] });
setTimeout(() => console.log(JSON.stringify({ added: tasks() - before })), 300);
`;

test('inline hosting runs the loop on the main thread: no thread is started (a worker adds one); idle, neither holds the process', {
  skip,
  timeout: 30_000,
}, async () => {
  const run = (hosting: string) =>
    new Promise<{ added: number; code: number | null; ms: number }>((resolve, reject) => {
      const t0 = Date.now();
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', THREADS_ADDED, hosting], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('error', reject);
      child.on('exit', (code) => {
        clearTimeout(kill);
        resolve({ ...(JSON.parse(out || '{"added":-1}') as { added: number }), code, ms: Date.now() - t0 });
      });
    });
  const [inline, worker] = [await run('inline'), await run('worker')];
  assert.equal(inline.added, 0, 'no thread for the inline loop');
  assert.ok(worker.added >= 1, `a worker thread for the worker loop (${worker.added})`);
  assert.deepEqual([inline.code, worker.code], [0, 0], 'both exited on their own (not killed)');
});

/** In a child process: one flow through an engine, then it ends ('ended') or the engine closes under it ('closed'). */
const FLOW_THEN = `
import net from 'node:net';
import { once } from 'node:events';
import { createSpliceEngine } from ${JSON.stringify(new URL('../../src/relay/engine/engine.ts', import.meta.url).href)};
const [hosting, mode] = process.argv.slice(1);
const engine = createSpliceEngine({ hosting });
const upstream = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
await once(upstream, 'listening');
let result;
const proxy = net.createServer({ pauseOnConnect: true }, (client) => {
  const up = net.connect(upstream.address().port, '127.0.0.1');
  result = once(up, 'connect').then(() => engine.relay(client, up, { idleTimeoutMs: 60_000 }));
}).listen(0, '127.0.0.1');
await once(proxy, 'listening');
const c = net.connect(proxy.address().port, '127.0.0.1');
c.on('error', () => {});
await once(c, 'connect');
c.write('ping');
await once(c, 'data');
upstream.close();
proxy.close();
c.resume();
if (mode === 'ended') c.end();
else await engine.close();
console.log(JSON.stringify({ reason: (await result).reason }));
`;

test('an engine holds the process only while it has work: after its last flow ended, or once close() (with a flow live) resolved, the process exits on its own', {
  skip,
  timeout: 60_000,
}, async () => {
  const run = (hosting: string, mode: string) =>
    new Promise<{ out: string; code: number | null }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', FLOW_THEN, hosting, mode],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('error', reject);
      child.on('exit', (code) => {
        clearTimeout(kill);
        resolve({ out: out.trim(), code });
      });
    });
  for (const hosting of ['inline', 'worker'])
    for (const [mode, reason] of [
      ['ended', 'eof'],
      ['closed', 'aborted'],
    ] as const) {
      const r = await run(hosting, mode);
      // 13: the event loop ran out with close() still pending (an unref'd worker it waited for)
      assert.deepEqual(r, { out: JSON.stringify({ reason }), code: 0 }, `${hosting}, ${mode}`);
    }
});
