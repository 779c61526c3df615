// Upstream-node outbounds against real peers from Debian on loopback: microsocks and dante
// (SOCKS5), tinyproxy (HTTP CONNECT), ss-server (Shadowsocks AEAD, three ciphers). Traffic
// goes client → relay() → outbound → peer → Node target, all on 127.0.0.1.
// Peers are started on free ports and killed by pid in `finally`.
//
// Half-close: microsocks, tinyproxy and ss-server close the whole connection when the client
// half-closes (their relays stop at the first EOF), so a reply sent after the client's FIN
// cannot arrive through them; that is checked as their behaviour, and the full half-close
// path (client FIN → target EOF → reply still arrives) is checked through dante and through
// small Node peers (Shadowsocks, HTTP CONNECT) that keep the other direction open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { relay, type RelayResult } from '../../src/relay/relay.js';
import { createOutbound, parseNodeUri, type OutboundOptions } from '../../src/outbound/index.js';
import { OutboundError, type Destination, type TcpOutbound } from '../../src/outbound/types.js';
import { AeadStreamDecryptor, AeadStreamEncryptor, masterKey, SS_CIPHERS } from '../../src/outbound/shadowsocks.js';
import { decodeSocksAddress } from '../../src/outbound/socks5.js';
import { SS_METHODS, type SsMethod } from '../../src/outbound/uri.js';
import { refusingPort } from '../helpers/ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `p`, or a failure after `ms` (the timer does not outlive `p`). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
const CTX = { source: { address: '127.0.0.1', port: 1 } };
const MiB = 1 << 20;

function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}
const MISSING = ['microsocks', 'tinyproxy', 'ss-server', 'danted'].filter((b) => !have(b) && !have(`/usr/sbin/${b}`));
const skipAll =
  MISSING.length > 0
    ? `missing ${MISSING.join(', ')} (apt-get install microsocks tinyproxy shadowsocks-libev dante-server)`
    : false;

// ── plumbing ────────────────────────────────────────────────────────────────

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  s.listen(0, host);
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A loopback test server whose close() also destroys the connections it accepted. */
async function listen(handler: (s: net.Socket) => void, port = 0, host = '127.0.0.1'): Promise<net.Server> {
  const conns = new Set<net.Socket>();
  const s = net.createServer({ allowHalfOpen: true }, (c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    handler(c);
  });
  const close = s.close.bind(s);
  s.close = (cb?: (err?: Error) => void) => {
    for (const c of conns) c.destroy();
    return close(cb);
  };
  s.listen(port, host);
  await once(s, 'listening');
  return s;
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

/** Waits until something listens on 127.0.0.1:port (asked of `ss`, no probe connection). */
/** Until `proc` itself listens on `port` (not whoever else may have taken it); false if it exited first. */
async function waitListening(port: number, proc: ChildProcess, name: string): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = spawnSync('ss', ['-Hlntp', `sport = :${port}`], { encoding: 'utf8' });
    if (r.stdout.includes(`pid=${proc.pid},`)) return true;
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    if (Date.now() > deadline) throw new Error(`${name} does not listen on ${port}`);
    await sleep(30);
  }
}

interface Peers {
  /**
   * Starts `cmd` with `args(port)` on a free port of `host`, and returns the port once it
   * listens there; again on another port if it exits first (a parallel suite took the port).
   */
  start(name: string, cmd: string, args: (port: number) => string[], host?: string): Promise<number>;
  dir: string;
}

/** Runs `fn` with a peer starter; every peer started is killed by its pid afterwards. */
async function withPeers(fn: (p: Peers) => Promise<void>): Promise<void> {
  const procs: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tranproxy-outbound-'));
  const logs = new Map<ChildProcess, string>();
  try {
    await fn({
      dir,
      async start(name, cmd, args, host = '127.0.0.1') {
        for (let attempt = 1; ; attempt++) {
          const port = await freePort(host);
          const p = spawn(cmd, args(port), {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
          });
          procs.push(p);
          logs.set(p, '');
          const keep = (d: Buffer) => logs.set(p, (logs.get(p)! + d.toString()).slice(-4000));
          p.stdout!.on('data', keep);
          p.stderr!.on('data', keep);
          p.on('error', (e) => logs.set(p, `${logs.get(p)}\nspawn error: ${e.message}`));
          let listening: boolean;
          try {
            listening = await waitListening(port, p, name);
          } catch (e) {
            throw new Error(`${(e as Error).message}\n${logs.get(p)}`);
          }
          if (listening) return port;
          if (attempt >= 5) throw new Error(`${name} exited with ${p.exitCode ?? p.signalCode}\n${logs.get(p)}`);
        }
      },
    });
  } finally {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
        const exited = once(p, 'exit');
        process.kill(p.pid, 'SIGTERM');
        const t = setTimeout(() => p.pid !== undefined && p.exitCode === null && process.kill(p.pid, 'SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Echo target: echoes as it reads, ends after the client's EOF. Records EOFs seen. */
async function echoServer(host = '127.0.0.1'): Promise<net.Server & { eofs: number; conns: number }> {
  const srv = (await listen(
    (s) => {
      srv.conns++;
      s.on('error', () => {});
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => {
        srv.eofs++;
        s.end();
      });
    },
    0,
    host,
  )) as net.Server & { eofs: number; conns: number };
  srv.eofs = 0;
  srv.conns = 0;
  return srv;
}

/** Target that answers only after the client's EOF: "<bytes> <sha256>". */
async function afterEofServer(): Promise<net.Server & { eofs: number }> {
  const srv = (await listen((s) => {
    s.on('error', () => {});
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => {
      srv.eofs++;
      setTimeout(() => s.end(`${n} ${h.digest('hex')}`), 50);
    });
  })) as net.Server & { eofs: number };
  srv.eofs = 0;
  return srv;
}

const dst = (port: number, domain?: string): Destination => ({
  ip: '127.0.0.1',
  port,
  family: 4,
  ...(domain ? { domain } : {}),
});

/** A client connected through a front listener that relays to `outbound.connect(dst)`. */
async function viaRelay(
  outbound: TcpOutbound,
  target: Destination,
): Promise<{ client: net.Socket; result: Promise<RelayResult>; close(): void }> {
  let resolveResult!: (r: RelayResult) => void;
  let rejectResult!: (e: unknown) => void;
  const result = new Promise<RelayResult>((res, rej) => ((resolveResult = res), (rejectResult = rej)));
  const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
    sock.on('error', () => {});
    outbound.connect(target, CTX).then(
      (up) => relay(sock, up as Duplex, { idleTimeoutMs: 20_000 }).then(resolveResult),
      (e) => {
        sock.destroy();
        rejectResult(e);
      },
    );
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const client = net.connect({ port: portOf(front), host: '127.0.0.1', allowHalfOpen: true });
  await once(client, 'connect');
  return { client, result, close: () => (client.destroy(), front.close()) };
}

function readAll(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

/** 1 MiB of random bytes through relay → outbound → peer → echo, back byte-identical. */
async function roundTrip(outbound: TcpOutbound, target: Destination, size = MiB): Promise<void> {
  const v = await viaRelay(outbound, target);
  try {
    const data = randomBytes(size);
    const got: Buffer[] = [];
    let n = 0;
    const all = new Promise<void>((resolve, reject) => {
      v.client.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n >= size) resolve();
      });
      v.client.on('error', reject);
      v.client.on('end', () => (n >= size ? resolve() : reject(new Error(`EOF after ${n} of ${size} bytes`))));
      v.result.catch(reject);
    });
    v.client.write(data);
    await all;
    assert.equal(n, size);
    assert.ok(Buffer.concat(got).equals(data), 'echoed bytes differ');
    const ended = once(v.client, 'end');
    v.client.end();
    await ended;
    const r = await v.result;
    assert.equal(r.bytesUp, size);
    assert.equal(r.bytesDown, size);
  } finally {
    v.close();
  }
}

/** Strict half-close: the client ends, the target sees EOF and only then replies. */
async function halfCloseReply(outbound: TcpOutbound, target: net.Server & { eofs: number }): Promise<void> {
  const v = await viaRelay(outbound, dst(portOf(target)));
  try {
    const data = randomBytes(300_000);
    v.client.end(data);
    const reply = await readAll(v.client);
    assert.equal(reply.toString(), `${data.length} ${createHash('sha256').update(data).digest('hex')}`);
    assert.equal(target.eofs, 1);
    assert.equal((await v.result).reason, 'eof');
  } finally {
    v.close();
  }
}

/** Peers without half-close: the client's FIN still reaches the target, and the client sees a clean end. */
async function halfCloseNoReply(outbound: TcpOutbound): Promise<void> {
  const target = await echoServer(); // its own, so EOFs of earlier connections do not count
  const v = await viaRelay(outbound, dst(portOf(target)));
  try {
    v.client.write('some request');
    await sleep(100);
    const ended = readAll(v.client);
    v.client.end();
    await within(ended, 5000, 'client saw no end');
    for (let i = 0; i < 100 && target.eofs === 0; i++) await sleep(20);
    assert.equal(target.eofs, 1, 'the target saw the EOF');
  } finally {
    v.close();
    target.close();
  }
}

async function expectError(
  p: Promise<unknown>,
  codes: string | string[],
  within: number,
  text?: RegExp,
): Promise<OutboundError> {
  const t0 = Date.now();
  const err = await p.then(
    () => assert.fail('expected an OutboundError'),
    (e: unknown) => e,
  );
  const took = Date.now() - t0;
  assert.ok(err instanceof OutboundError, `not an OutboundError: ${String(err)}`);
  assert.ok(([] as string[]).concat(codes).includes(err.code), `code ${err.code} (${err.message}), expected ${codes}`);
  if (text) assert.match(err.message, text);
  assert.ok(took < within, `took ${took} ms (limit ${within})`);
  return err;
}

/** Connects straight through the outbound (no relay) and waits for the stream's error or end. */
async function streamOutcome(
  outbound: TcpOutbound,
  target: Destination,
  send: Buffer,
): Promise<{ error?: OutboundError; data: Buffer; ms: number }> {
  const t0 = Date.now();
  const s = await outbound.connect(target, CTX);
  const parts: Buffer[] = [];
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', (e) => resolve({ error: e as OutboundError, data: Buffer.concat(parts), ms: Date.now() - t0 }));
    s.on('end', () => {
      resolve({ data: Buffer.concat(parts), ms: Date.now() - t0 });
      s.destroy();
    });
    s.write(send);
  });
}

const opts: OutboundOptions = { connectTimeoutMs: 3000, handshakeTimeoutMs: 3000 };

// ── SOCKS5 ──────────────────────────────────────────────────────────────────

test('socks5 via microsocks: 1 MiB round trip by IP and by domain, refusals, node down, SO_MARK', {
  skip: skipAll,
}, async () => {
  await withPeers(async (peers) => {
    const echo = await echoServer();
    const port = await peers.start('microsocks', 'microsocks', (p) => ['-i', '127.0.0.1', '-p', String(p)]);
    try {
      // The node by name: resolved from /etc/hosts.
      const ob = createOutbound(parseNodeUri(`socks5://localhost:${port}`, 'ms'), opts);
      assert.equal(ob.kind, 'socks5');
      await roundTrip(ob, dst(portOf(echo)));
      await roundTrip(ob, dst(portOf(echo), 'localhost')); // ATYP 3: microsocks resolves it
      await halfCloseNoReply(ob);

      const closed = await refusingPort();
      await expectError(
        ob.connect(dst(closed.port), CTX),
        'EREFUSED',
        2000,
        /could not connect to 127\.0\.0\.1:\d+: .*\(SOCKS reply \d\)/,
      );
      closed.release();

      const down = await refusingPort();
      const gone = createOutbound(parseNodeUri(`socks5://127.0.0.1:${down.port}`), opts);
      await expectError(gone.connect(dst(portOf(echo)), CTX), 'ECONNREFUSED', 1000, /refused the connection/);
      down.release();

      // The socket to the node carries the bypass mark.
      const marked = createOutbound(parseNodeUri(`socks5://127.0.0.1:${port}`), { ...opts, mark: 0x2a5 });
      const s = await marked.connect(dst(portOf(echo)), CTX);
      const local = (s as net.Socket).localPort;
      const ssOut = spawnSync('ss', ['-Htne', `sport = :${local}`], { encoding: 'utf8' }).stdout;
      assert.match(ssOut, /fwmark:0x2a5/);
      s.destroy();
    } finally {
      echo.close();
    }
  });
});

test('socks5 via microsocks with -u/-P: credentials, wrong password, none offered', { skip: skipAll }, async () => {
  await withPeers(async (peers) => {
    const echo = await echoServer();
    const port = await peers.start('microsocks', 'microsocks', (p) => [
      '-i',
      '127.0.0.1',
      '-p',
      String(p),
      '-u',
      'alice',
      '-P',
      's3cr:t@',
    ]);
    try {
      await roundTrip(
        createOutbound(parseNodeUri(`socks5://alice:s3cr%3At%40@127.0.0.1:${port}`), opts),
        dst(portOf(echo)),
      );
      const wrong = createOutbound(parseNodeUri(`socks5://alice:nope@127.0.0.1:${port}`), opts);
      const e = await expectError(
        wrong.connect(dst(portOf(echo)), CTX),
        'EAUTH',
        1000,
        /rejected the user name or password/,
      );
      assert.doesNotMatch(e.message, /nope/);
      const anon = createOutbound(parseNodeUri(`socks5://127.0.0.1:${port}`), opts);
      await expectError(anon.connect(dst(portOf(echo)), CTX), 'EAUTH', 1000, /requires authentication/);
    } finally {
      echo.close();
    }
  });
});

test('socks5 via dante: reply after the client half-closes arrives', { skip: skipAll }, async () => {
  await withPeers(async (peers) => {
    const target = await afterEofServer();
    const echo = await echoServer();
    const conf = join(peers.dir, 'danted.conf');
    const danteConf = (port: number) =>
      [
        'logoutput: stderr',
        `internal: 127.0.0.1 port = ${port}`,
        'external: 127.0.0.1',
        'socksmethod: none',
        'clientmethod: none',
        'user.privileged: root',
        'user.unprivileged: nobody',
        'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
        'socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }',
        '',
      ].join('\n');
    const port = await peers.start('danted', 'danted', (p) => {
      writeFileSync(conf, danteConf(p));
      return ['-f', conf, '-p', join(peers.dir, 'danted.pid'), '-N', '1'];
    });
    try {
      const ob = createOutbound(parseNodeUri(`socks5h://127.0.0.1:${port}`), opts);
      await halfCloseReply(ob, target);
      await roundTrip(ob, dst(portOf(echo)));
    } finally {
      target.close();
      echo.close();
    }
  });
});

test('IPv6: nodes at [::1], target ::1 sent as ATYP 4, via microsocks and ss-server', { skip: skipAll }, async () => {
  await withPeers(async (peers) => {
    const echo = await echoServer('::1');
    const target: Destination = { ip: '::1', port: portOf(echo), family: 6 };
    const msPort = await peers.start('microsocks', 'microsocks', (p) => ['-i', '::1', '-p', String(p)], '::1');
    const ssPort = await peers.start(
      'ss-server',
      'ss-server',
      (p) => ['-s', '::1', '-p', String(p), '-k', 'pw', '-m', 'aes-256-gcm'],
      '::1',
    );
    try {
      await roundTrip(
        createOutbound(parseNodeUri(`socks5://[::1]:${msPort}`), { ...opts, mark: 0x2a5 }),
        target,
        256 * 1024,
      );
      await roundTrip(
        createOutbound(parseNodeUri(`ss://aes-256-gcm:pw@[::1]:${ssPort}`), { ...opts, mark: 0x2a5 }),
        target,
        256 * 1024,
      );
      assert.equal(echo.conns, 2);
    } finally {
      echo.close();
    }
  });
});

// ── HTTP CONNECT ────────────────────────────────────────────────────────────

test('http CONNECT via tinyproxy: 1 MiB round trip by IP and domain, refusals, node down', {
  skip: skipAll,
}, async () => {
  await withPeers(async (peers) => {
    const echo = await echoServer();
    const conf = join(peers.dir, 'tinyproxy.conf');
    const port = await peers.start('tinyproxy', 'tinyproxy', (p) => {
      writeFileSync(
        conf,
        `Port ${p}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Warning\n`,
      );
      return ['-d', '-c', conf];
    });
    try {
      const ob = createOutbound(parseNodeUri(`http://127.0.0.1:${port}`), opts);
      assert.equal(ob.kind, 'http');
      await roundTrip(ob, dst(portOf(echo)));
      await roundTrip(ob, dst(portOf(echo), 'localhost'));
      await halfCloseNoReply(ob);
      const closed = await refusingPort();
      await expectError(
        ob.connect(dst(closed.port), CTX),
        'EREFUSED',
        3000,
        /refused CONNECT 127\.0\.0\.1:\d+: HTTP\/1\.[01] 5\d\d/,
      );
      closed.release();
      const down = await refusingPort();
      await expectError(
        createOutbound(parseNodeUri(`http://127.0.0.1:${down.port}`), opts).connect(dst(portOf(echo)), CTX),
        'ECONNREFUSED',
        1000,
      );
      down.release();
    } finally {
      echo.close();
    }
  });
});

test('http CONNECT via tinyproxy with BasicAuth: credentials, wrong password → EAUTH (401/407)', {
  skip: skipAll,
}, async () => {
  await withPeers(async (peers) => {
    const echo = await echoServer();
    const conf = join(peers.dir, 'tinyproxy.conf');
    const port = await peers.start('tinyproxy', 'tinyproxy', (p) => {
      writeFileSync(conf, `Port ${p}\nListen 127.0.0.1\nAllow 127.0.0.1\nBasicAuth bob hunter2\nLogLevel Warning\n`);
      return ['-d', '-c', conf];
    });
    try {
      await roundTrip(
        createOutbound(parseNodeUri(`http://bob:hunter2@127.0.0.1:${port}`), opts),
        dst(portOf(echo)),
        64 * 1024,
      );
      const e = await expectError(
        createOutbound(parseNodeUri(`http://bob:wrongpass@127.0.0.1:${port}`), opts).connect(dst(portOf(echo)), CTX),
        'EAUTH',
        1000,
        /40[17]/,
      );
      assert.doesNotMatch(e.message, /wrongpass/);
      await expectError(
        createOutbound(parseNodeUri(`http://127.0.0.1:${port}`), opts).connect(dst(portOf(echo)), CTX),
        'EAUTH',
        1000,
        /add user:password/,
      );
    } finally {
      echo.close();
    }
  });
});

// ── Shadowsocks ─────────────────────────────────────────────────────────────

/** ss-server on loopback at the port the peer harness picks. */
const ssServerArgs =
  (password: string, method: string) =>
  (port: number): string[] => ['-s', '127.0.0.1', '-p', String(port), '-k', password, '-m', method];

for (const method of SS_METHODS) {
  test(`shadowsocks ${method} via ss-server: 1 MiB round trip by IP and domain, wrong password, refusals, node down`, {
    skip: skipAll,
  }, async () => {
    await withPeers(async (peers) => {
      const echo = await echoServer();
      const port = await peers.start('ss-server', 'ss-server', ssServerArgs('p@ss word', method));
      try {
        const ob = createOutbound(
          parseNodeUri(
            `ss://${Buffer.from(`${method}:p@ss word`).toString('base64url')}@127.0.0.1:${port}#ss-${method}`,
          ),
          opts,
        );
        assert.equal(ob.kind, 'shadowsocks');
        assert.equal(ob.name, `ss-${method}`);
        await roundTrip(ob, dst(portOf(echo)));
        await roundTrip(ob, dst(portOf(echo), 'localhost'), 256 * 1024);
        await halfCloseNoReply(ob);

        // Wrong password: ss-server reads on but never answers and never closes (probe
        // resistance), so the client cannot tell it from a silent target: nothing must come
        // back and nothing may reach the target. (A node that closes instead gives ENOREPLY,
        // checked with a Node peer below.)
        const connsBefore = echo.conns;
        const wrong = createOutbound(parseNodeUri(`ss://${method}:wrong@127.0.0.1:${port}`), opts);
        const w = await wrong.connect(dst(portOf(echo)), CTX);
        const events: string[] = [];
        w.on('data', () => events.push('data'));
        w.on('end', () => events.push('end'));
        w.on('error', (e) => events.push(`error ${(e as OutboundError).code}`));
        w.write('hello');
        await sleep(500);
        assert.deepEqual(events, []);
        assert.equal(echo.conns, connsBefore, 'nothing reached the target');
        w.destroy();

        // Target refused: the node closes without a reply too (Shadowsocks has no error replies).
        const closed = await refusingPort();
        const r = await streamOutcome(ob, dst(closed.port), Buffer.from('hello'));
        assert.equal(r.error?.code, 'ENOREPLY');
        assert.ok(r.ms < 2000, `took ${r.ms} ms`);
        closed.release();

        const down = await refusingPort();
        await expectError(
          createOutbound(parseNodeUri(`ss://${method}:x@127.0.0.1:${down.port}`), opts).connect(dst(portOf(echo)), CTX),
          'ECONNREFUSED',
          1000,
        );
        down.release();
      } finally {
        echo.close();
      }
    });
  });
}

test('shadowsocks known-answer vector (computed with Python cryptography) is accepted by ss-server', {
  skip: skipAll,
}, async (t) => {
  // Same vector as the unit test: aes-256-gcm, password "tranproxy-kat", salt 00..1f,
  // target 127.0.0.1:8080, payload "GET / HTTP/1.1\r\n\r\n". It needs the target on port 8080.
  const wire = Buffer.from(
    '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f71f37caea5924b90925651f9163ff4ad25cc87d71ba7f70424ae802a081a6959a50bfa8dee657971959e9ebcba328865ff2a3d20771f7acd0b2606',
    'hex',
  );
  let target: net.Server;
  // One buffer per connection: 127.0.0.1:8080 is the host's loopback, where some other local
  // client (a kubectl polling its default API address, say) may connect too.
  const received: Buffer[][] = [];
  try {
    target = await listen((s) => {
      const got: Buffer[] = [];
      received.push(got);
      s.on('data', (d: Buffer) => {
        got.push(d);
        if (Buffer.concat(got).includes('\r\n\r\n')) s.end('HTTP/1.1 204 No Content\r\n\r\n');
      });
      s.on('error', () => {});
    }, 8080);
  } catch {
    t.skip('127.0.0.1:8080 is busy');
    return;
  }
  try {
    await withPeers(async (peers) => {
      const port = await peers.start('ss-server', 'ss-server', ssServerArgs('tranproxy-kat', 'aes-256-gcm'));
      const sock = net.connect({ port, host: '127.0.0.1' });
      await once(sock, 'connect');
      const dec = new AeadStreamDecryptor(SS_CIPHERS['aes-256-gcm'], masterKey('aes-256-gcm', 'tranproxy-kat'));
      const plain: Buffer[] = [];
      sock.on('data', (d: Buffer) => plain.push(...dec.push(d)));
      sock.write(wire);
      await once(sock, 'end');
      sock.destroy();
      assert.ok(
        received.some((got) => Buffer.concat(got).toString() === 'GET / HTTP/1.1\r\n\r\n'),
        `ss-server decrypted the vector and forwarded its payload; received: ${JSON.stringify(received.map((g) => Buffer.concat(g).toString()))}`,
      );
      assert.equal(
        Buffer.concat(plain).toString(),
        'HTTP/1.1 204 No Content\r\n\r\n',
        'and its reply decrypts with our decryptor',
      );
    });
  } finally {
    target!.close();
  }
});

/** A minimal Shadowsocks server (our codec) that keeps half-closed connections open. */
async function nodeSsServer(method: SsMethod, password: string): Promise<net.Server> {
  const info = SS_CIPHERS[method];
  const master = masterKey(method, password);
  return listen((c) => {
    c.on('error', () => {});
    const dec = new AeadStreamDecryptor(info, master);
    const enc = new AeadStreamEncryptor(info, master);
    let up: net.Socket | undefined;
    let head = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      let plain: Buffer[];
      try {
        plain = dec.push(d);
      } catch {
        return void c.end(); // wrong key: close without a byte
      }
      for (const p of plain) {
        if (up) {
          up.write(p);
          continue;
        }
        head = Buffer.concat([head, p]);
        const a = decodeSocksAddress(head, 0);
        if (a === 'need-more') continue;
        if (!a.ok) return c.destroy();
        up = net.connect({ host: a.address.host, port: a.address.port, allowHalfOpen: true });
        up.on('error', () => c.destroy());
        up.on('data', (x: Buffer) => c.write(enc.seal(x)));
        up.on('end', () => c.end());
        if (head.length > a.length) up.write(head.subarray(a.length));
      }
    });
    c.on('end', () => up?.end());
    c.on('close', () => up?.destroy());
  });
}

test('shadowsocks half-close through a peer that supports it: FIN reaches the target, the reply still arrives', async () => {
  const target = await afterEofServer();
  const server = await nodeSsServer('chacha20-ietf-poly1305', 'pw');
  try {
    const ob = createOutbound(parseNodeUri(`ss://chacha20-ietf-poly1305:pw@127.0.0.1:${portOf(server)}`), opts);
    await halfCloseReply(ob, target);
    // And a client that sends nothing at all before its FIN: the header still goes out.
    const v = await viaRelay(ob, dst(portOf(target)));
    try {
      v.client.end();
      assert.equal((await readAll(v.client)).toString(), `0 ${createHash('sha256').digest('hex')}`);
    } finally {
      v.close();
    }
  } finally {
    target.close();
    server.close();
  }
});

test('shadowsocks: a server-speaks-first target works (header sent without client data)', async () => {
  const banner = await listen((s) => {
    s.on('error', () => {});
    s.end('220 hello\r\n');
  });
  const server = await nodeSsServer('aes-128-gcm', 'pw');
  try {
    const ob = createOutbound(parseNodeUri(`ss://aes-128-gcm:pw@127.0.0.1:${portOf(server)}`), opts);
    const s = await ob.connect(dst(portOf(banner)), CTX);
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    await once(s, 'end');
    s.destroy();
    assert.equal(Buffer.concat(parts).toString(), '220 hello\r\n');
  } finally {
    banner.close();
    server.close();
  }
});

test('shadowsocks: a node that closes on a wrong password gives ENOREPLY at once', async () => {
  const target = await echoServer();
  const server = await nodeSsServer('aes-256-gcm', 'right');
  try {
    const ob = createOutbound(parseNodeUri(`ss://aes-256-gcm:wrong@127.0.0.1:${portOf(server)}`), opts);
    const r = await streamOutcome(ob, dst(portOf(target)), Buffer.from('hello'));
    assert.equal(r.error?.code, 'ENOREPLY', r.error?.message);
    assert.match(r.error!.message, /wrong password or method/);
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
    assert.equal(target.conns, 0);
  } finally {
    target.close();
    server.close();
  }
});

test('shadowsocks: a node answering with another key is EAUTH', async () => {
  const target = await echoServer();
  // A node that answers every request, but sealed with a key derived from another password.
  const liar = await listen((c) => {
    c.on('error', () => {});
    const enc = new AeadStreamEncryptor(SS_CIPHERS['aes-256-gcm'], masterKey('aes-256-gcm', 'other'));
    c.once('data', () => c.write(enc.seal(Buffer.from('not for you'))));
  });
  try {
    const ob = createOutbound(parseNodeUri(`ss://aes-256-gcm:pw@127.0.0.1:${portOf(liar)}`), opts);
    const r = await streamOutcome(ob, dst(portOf(target)), Buffer.from('x'));
    assert.equal(r.error?.code, 'EAUTH', r.error?.message);
  } finally {
    target.close();
    liar.close();
  }
});

// ── handshake details with scripted peers ───────────────────────────────────

test('bytes the node sends right after its reply are delivered, also when the node closes at once', async () => {
  const cases: Array<{ kind: 'socks5' | 'http'; reply: Buffer }> = [
    { kind: 'socks5', reply: Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 80]) },
    { kind: 'http', reply: Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n') },
  ];
  for (const { kind, reply } of cases) {
    for (const closeAfter of [false, true]) {
      for (const banner of ['SSH-2.0-peer\r\n', '']) {
        const node = await listen((s) => {
          s.on('error', () => {});
          let seen = Buffer.alloc(0);
          s.on('data', (d: Buffer) => {
            seen = Buffer.concat([seen, d]);
            if (kind === 'socks5' && seen.length === 3) s.write(Buffer.from([5, 0]));
            else if ((kind === 'socks5' && seen.length > 3) || (kind === 'http' && seen.includes('\r\n\r\n'))) {
              const out = Buffer.concat([reply, Buffer.from(banner)]);
              if (closeAfter) s.end(out);
              else s.write(out);
            }
          });
        });
        try {
          const ob = createOutbound(parseNodeUri(`${kind}://127.0.0.1:${portOf(node)}`), opts);
          const s = await ob.connect(dst(80), CTX);
          const parts: Buffer[] = [];
          s.on('data', (d: Buffer) => parts.push(d));
          if (closeAfter) {
            await within(once(s, 'end'), 3000, `${kind}: the node's FIN was lost, no end`);
          } else {
            for (let i = 0; i < 50 && Buffer.concat(parts).length < banner.length; i++) await sleep(10);
          }
          assert.equal(Buffer.concat(parts).toString(), banner, `${kind} closeAfter=${closeAfter}`);
          s.destroy();
        } finally {
          node.close();
        }
      }
    }
  }
});

test('handshake timeout, abort, and a node that is not a proxy', async () => {
  const silent = await listen((s) => s.on('error', () => {}));
  const chatty = await listen((s) => {
    s.on('error', () => {});
    s.end('SSH-2.0-OpenSSH_9.2\r\n');
  });
  try {
    for (const kind of ['socks5', 'http'] as const) {
      const slow = createOutbound(parseNodeUri(`${kind}://127.0.0.1:${portOf(silent)}`), { handshakeTimeoutMs: 300 });
      await expectError(slow.connect(dst(80), CTX), 'ETIMEDOUT', 1500, /handshake .* timed out after 300 ms/);

      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const t0 = Date.now();
      await expectError(slow.connect(dst(80), { ...CTX, signal: ac.signal }), 'EABORTED', 1000);
      assert.ok(Date.now() - t0 >= 90);
      const pre = new AbortController();
      pre.abort();
      await expectError(slow.connect(dst(80), { ...CTX, signal: pre.signal }), 'EABORTED', 100);

      const wrongPeer = createOutbound(parseNodeUri(`${kind}://127.0.0.1:${portOf(chatty)}`), opts);
      await expectError(wrongPeer.connect(dst(80), CTX), 'EHANDSHAKE', 1000, /invalid/);
    }
    const ss = createOutbound(parseNodeUri(`ss://aes-128-gcm:x@127.0.0.1:${portOf(silent)}`), opts);
    const pre = new AbortController();
    pre.abort();
    await expectError(ss.connect(dst(80), { ...CTX, signal: pre.signal }), 'EABORTED', 100);
  } finally {
    silent.close();
    chatty.close();
  }
});

test('connect timeout: a node whose accept queue is full drops the SYN', async () => {
  // A listener with backlog 0 that never accepts; two connections fill its queue.
  const py = spawn(
    'python3',
    [
      '-c',
      'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const fillers: net.Socket[] = [];
  try {
    const port = Number((await within(once(py.stdout!, 'data'), 5000, 'python listener'))[0].toString());
    for (let i = 0; i < 3; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => {}));
    await sleep(200);
    for (const kind of ['socks5', 'http', 'ss'] as const) {
      const uri = kind === 'ss' ? `ss://aes-128-gcm:x@127.0.0.1:${port}` : `${kind}://127.0.0.1:${port}`;
      const ob = createOutbound(parseNodeUri(uri), { connectTimeoutMs: 300 });
      await expectError(ob.connect(dst(80), CTX), 'ETIMEDOUT', 1500, /connect to node .* timed out after 300 ms/);
    }
  } finally {
    for (const f of fillers) f.destroy();
    if (py.pid !== undefined && py.exitCode === null) process.kill(py.pid, 'SIGKILL');
  }
});

test('http CONNECT half-close through a Node proxy that supports it', async () => {
  const target = await afterEofServer();
  const proxy = http.createServer();
  proxy.on('connect', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    sock.on('error', () => {});
    const [host, port] = [
      req.url!.slice(0, req.url!.lastIndexOf(':')),
      Number(req.url!.slice(req.url!.lastIndexOf(':') + 1)),
    ];
    const up = net.connect({ host, port, allowHalfOpen: true }, () => {
      sock.write('HTTP/1.1 200 Connection established\r\n\r\n');
      if (head.length) up.write(head);
      sock.pipe(up);
      up.pipe(sock);
    });
    up.on('error', () => sock.destroy());
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  try {
    const ob = createOutbound(parseNodeUri(`http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`), opts);
    await halfCloseReply(ob, target);
  } finally {
    target.close();
    proxy.close();
    proxy.closeAllConnections();
  }
});
