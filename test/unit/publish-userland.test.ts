// The userland proxy on loopback (no root, no netns): ports held all-or-nothing, TCP
// half-close, UDP per-client flows with idle timeout and eviction, connection budget.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { test } from 'node:test';
import { createLogger } from '../../src/observe/log.js';
import { parseMappings } from '../../src/publish/mapping.js';
import { checkLoops } from '../../src/publish/plan.js';
import { PortUnavailableError, UserlandProxy, type UserlandOptions } from '../../src/publish/userland.js';
import { bindFreePort, refusingPort } from '../helpers/ports.js';
import { until } from '../helpers/wait.js';

function logSink(): { lines: string[]; opts: Pick<UserlandOptions, 'log'> } {
  const lines: string[] = [];
  return { lines, opts: { log: createLogger('text', (l) => lines.push(l)) } };
}

function options(over: Partial<UserlandOptions> = {}): UserlandOptions {
  return {
    connectTimeoutMs: 2000,
    tcpIdleTimeoutMs: 0,
    udpIdleTimeoutMs: 300,
    maxConnections: 100,
    maxUdpFlowsPerPort: 100,
    log: createLogger('text', () => {}),
    ...over,
  };
}

/** The proxy holding the mapping `spec(port)` on a port it could take (another, if a parallel suite took the first). */
function holdOnFreePort(spec: (port: number) => string, opts: UserlandOptions) {
  return bindFreePort(
    (port) => UserlandProxy.hold(parseMappings([spec(port)]), opts),
    (e) => e instanceof PortUnavailableError,
  );
}

/** TCP echo that answers the client's FIN with its own after echoing everything. */
async function tcpEcho(): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, server };
}

function halfCloseExchange(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end(payload));
    c.on('data', (d) => got.push(d));
    c.on('end', () => {
      c.destroy();
      resolve(Buffer.concat(got));
    });
    c.on('error', reject);
  });
}

test('TCP: held from hold(), relayed after start(), half-close and 1 MB both ways', async () => {
  const echo = await tcpEcho();
  const sink = logSink();
  const { port: hostPort, bound: proxy } = await holdOnFreePort(
    (p) => `127.0.0.1:${p}:127.0.0.1:${echo.port}`,
    options(sink.opts),
  );
  try {
    // Held before start(): nobody else can bind it.
    const other = net.createServer();
    const err = await new Promise<NodeJS.ErrnoException>((r) => {
      other.once('error', r);
      other.listen(hostPort, '127.0.0.1');
    });
    assert.equal(err.code, 'EADDRINUSE');
    await proxy.start();
    const payload = Buffer.alloc(1 << 20, 7);
    const back = await halfCloseExchange(hostPort, payload);
    assert.equal(back.length, payload.length);
    assert.ok(back.equals(payload));
    await until('the conn line', () => /conn id=1 proto=tcp/.test(sink.lines.join('')), 5000);
    assert.match(
      sink.lines.join(''),
      new RegExp(
        `conn id=1 proto=tcp src=127\\.0\\.0\\.1:\\d+ via=127\\.0\\.0\\.1:${hostPort} dst=127\\.0\\.0\\.1:${echo.port} up=1048576 down=1048576 close=eof dur=\\d+ms`,
      ),
    );
  } finally {
    await proxy.close();
    echo.server.close();
  }
});

test('TCP: a refused target resets the client and logs connect-error', async () => {
  const dead = await refusingPort();
  const sink = logSink();
  const { bound: proxy, port: hostPort } = await holdOnFreePort(
    (p) => `127.0.0.1:${p}:127.0.0.1:${dead.port}`,
    options(sink.opts),
  );
  await proxy.start();
  try {
    await assert.rejects(halfCloseExchange(hostPort, Buffer.from('x')), /ECONNRESET/);
    await until('the conn line', () => /conn id=1 proto=tcp/.test(sink.lines.join('')), 5000);
    assert.match(sink.lines.join(''), /conn id=1 proto=tcp .* close=connect-error error=ECONNREFUSED/);
    assert.equal(proxy.stats().connections, 0);
  } finally {
    await proxy.close();
    dead.release();
  }
});

test('hold is all or nothing: one port in use releases the others', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const b = (busy.address() as net.AddressInfo).port;
  try {
    // Refused for b; again on another a while a parallel suite took a first (the refusal names a).
    const { port: a, bound: refusal } = await bindFreePort(
      async (a) => {
        const mappings = parseMappings([`127.0.0.1:${a}:127.0.0.1:1`, `127.0.0.1:${b}:127.0.0.1:2`]);
        const e = await UserlandProxy.hold(mappings, options()).then(
          async (held) => void (await held.close()),
          (e: unknown) => e,
        );
        if (e instanceof PortUnavailableError && e.message.includes(`host port ${a}/`)) throw e;
        return e;
      },
      (e) => e instanceof PortUnavailableError,
    );
    assert.ok(
      refusal instanceof PortUnavailableError &&
        new RegExp(`host port ${b}/tcp on 127\\.0\\.0\\.1 is already in use`).test(refusal.message),
      String(refusal),
    );
    // a was released again.
    const again = net.createServer();
    await new Promise<void>((r, j) => {
      again.once('error', j);
      again.listen(a, '127.0.0.1', r);
    });
    again.close();
  } finally {
    busy.close();
  }
});

function udpAsk(
  port: number,
  msg: string,
  sock = dgram.createSocket('udp4'),
): Promise<{ reply: string; sock: dgram.Socket }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no UDP reply')), 2000);
    sock.once('message', (m) => {
      clearTimeout(t);
      resolve({ reply: m.toString(), sock });
    });
    sock.send(msg, port, '127.0.0.1');
  });
}

test('UDP: one upstream socket per client, replies only from the target, idle timeout, eviction', async () => {
  // Target: echoes with the source port it saw, so flows are distinguishable.
  const target = dgram.createSocket('udp4');
  await new Promise<void>((r) => target.bind(0, '127.0.0.1', r));
  const sources = new Set<number>();
  target.on('message', (m, r) => {
    sources.add(r.port);
    target.send(`${m.toString()}@${r.port}`, r.port, r.address);
  });
  const tport = target.address().port;
  const sink = logSink();
  const { port: hostPort, bound: proxy } = await holdOnFreePort(
    (p) => `127.0.0.1:${p}:127.0.0.1:${tport}/udp`,
    options({ ...sink.opts, udpIdleTimeoutMs: 300, maxUdpFlowsPerPort: 2 }),
  );
  await proxy.start();
  try {
    const a = await udpAsk(hostPort, 'a1');
    const a2 = await udpAsk(hostPort, 'a2', a.sock);
    assert.equal(a.reply.split('@')[1], a2.reply.split('@')[1], 'same client, same upstream socket');
    const b = await udpAsk(hostPort, 'b1');
    assert.notEqual(b.reply.split('@')[1], a.reply.split('@')[1], 'another client, another upstream socket');
    assert.equal(proxy.stats().udpFlows, 2);
    // A third client evicts the least recently active (a).
    const c = await udpAsk(hostPort, 'c1');
    assert.equal(proxy.stats().udpFlows, 2);
    assert.match(
      sink.lines.join(''),
      /conn id=\d+ proto=udp src=127\.0\.0\.1:\d+ via=127\.0\.0\.1:\d+ dst=127\.0\.0\.1:\d+ up=4 down=\d+ dur=\d+ms close=evicted/,
    );
    // Idle: both remaining flows end after 300 ms without packets.
    const idleLines = () => sink.lines.join('').match(/close=idle/g)?.length ?? 0;
    await until(
      () => `the idle flows to end (${proxy.stats().udpFlows} left, ${idleLines()} idle lines)`,
      () => proxy.stats().udpFlows === 0 && idleLines() >= 2,
      5000,
    );
    assert.equal(idleLines(), 2);
    for (const s of [a.sock, b.sock, c.sock]) s.close();
  } finally {
    await proxy.close();
    target.close();
  }
});

test('connection budget: beyond maxConnections new clients are reset', async () => {
  const echo = await tcpEcho();
  const sink = logSink();
  const { port: hostPort, bound: proxy } = await holdOnFreePort(
    (p) => `127.0.0.1:${p}:127.0.0.1:${echo.port}`,
    options({ ...sink.opts, maxConnections: 1 }),
  );
  await proxy.start();
  const first = net.connect(hostPort, '127.0.0.1');
  try {
    await new Promise<void>((r) => first.once('connect', () => r()));
    first.write('hold');
    await new Promise((r) => first.once('data', r));
    await assert.rejects(halfCloseExchange(hostPort, Buffer.from('x')), /ECONNRESET|EPIPE/);
    assert.match(sink.lines.join(''), /connection refused: too many connections max=1/);
  } finally {
    first.destroy();
    await proxy.close();
    echo.server.close();
  }
});

test('a target that is the published port itself is refused (it would loop)', () => {
  assert.throws(() => checkLoops(parseMappings(['8080:127.0.0.1:8080']), () => false), /would loop/);
  assert.throws(() => checkLoops(parseMappings(['8080:10.1.0.1:8080']), (ip) => ip === '10.1.0.1'), /would loop/);
  checkLoops(parseMappings(['8080:10.0.0.2:8080', '8081:127.0.0.1:8080']), () => false);
  checkLoops(parseMappings(['127.0.0.2:8080:127.0.0.1:8080']), () => false);
});
