// VMess / VLESS / WebSocket decoders against arbitrary bytes, and the VMess, VLESS and Trojan
// outbounds against hostile servers on loopback (garbage, early close, endless or oversized
// frames, bad upgrades, untrusted certificates, stalls): each ends in a clean OutboundError
// with a stable code, nothing crashes and no descriptor is left open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { createOutbound, parseNodeUri } from '../../src/outbound/index.js';
import { CodecError } from '../../src/outbound/framed-stream.js';
import { OutboundError, type TcpOutbound } from '../../src/outbound/types.js';
import { VlessCodec } from '../../src/outbound/vless.js';
import { VmessChunkReader, VmessChunkWriter, VmessCodec, vmessCmdKey } from '../../src/outbound/vmess.js';
import { acceptKeyFor, WsFrameDecoder, WsProtocolError } from '../../src/outbound/websocket.js';
import { fc, params, splitAt } from './harness.js';
import { selfSignedCertArgs } from '../helpers/certs.js';
import { until } from '../helpers/wait.js';

const ID = '0d7e8f9a-1b2c-4d3e-8f40-5a6b7c8d9e0f';
const TARGET = { host: '10.0.0.1', port: 80, type: 1 as const };
const SECURITIES = ['aes-128-gcm', 'chacha20-poly1305', 'none'] as const;

test('VMess, VLESS and WebSocket decoders: arbitrary bytes in any chunking only ever raise their own errors', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 600 }),
      fc.array(fc.nat(600), { maxLength: 6 }),
      fc.constantFrom(...SECURITIES),
      (bytes, cuts, security) => {
        const b = Buffer.from(bytes);
        const run = (push: (p: Buffer) => unknown, ok: (e: unknown) => boolean) => {
          try {
            for (const piece of splitAt(b, cuts)) push(piece);
          } catch (e) {
            assert.ok(ok(e), `unexpected ${String(e)}`);
          }
        };
        const vm = new VmessCodec(vmessCmdKey(ID), security, TARGET);
        run(
          (p) => vm.decode(p),
          (e) => e instanceof CodecError,
        );
        const vl = new VlessCodec(ID, TARGET);
        run(
          (p) => vl.decode(p),
          (e) => e instanceof CodecError,
        );
        const ws = new WsFrameDecoder();
        run(
          (p) => ws.push(p),
          (e) => e instanceof WsProtocolError,
        );
      },
    ),
    params(300),
  );
});

test('VMess chunks round-trip through any chunking; a flipped byte is never accepted as other data', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { maxLength: 5 }),
      fc.array(fc.nat(20_000), { maxLength: 5 }),
      fc.nat(),
      (payloads, cuts, flip) => {
        const key = Buffer.alloc(16, 3);
        const iv = Buffer.alloc(16, 4);
        for (const security of ['aes-128-gcm', 'chacha20-poly1305'] as const) {
          const w = new VmessChunkWriter(security, key, iv);
          const wire = Buffer.concat([...payloads.map((p) => w.write(Buffer.from(p))), w.write(Buffer.alloc(0))]);
          const r = new VmessChunkReader(security, key, iv);
          const got = splitAt(wire, cuts).flatMap((piece) => r.push(piece).data);
          assert.deepEqual(Buffer.concat(got), Buffer.concat(payloads.map((p) => Buffer.from(p))));
          assert.equal(r.ended, true);
          const bad = Buffer.from(wire);
          const at = flip % bad.length;
          bad[at]! ^= 0x40;
          const r2 = new VmessChunkReader(security, key, iv);
          try {
            const out = Buffer.concat(r2.push(bad).data);
            // Only a change in the last (end) chunk's tag goes unseen: it carries no data.
            assert.ok(
              Buffer.concat(payloads.map((p) => Buffer.from(p)))
                .subarray(0, out.length)
                .equals(out),
            );
          } catch (e) {
            assert.ok(e instanceof CodecError);
          }
        }
      },
    ),
    params(60),
  );
});

// ── hostile servers ──────────────────────────────────────────────────────────

type Behaviour = (s: net.Socket, firstBytes: Buffer) => void;

/** A loopback server: reads the client's first bytes, then behaves. WebSocket mode answers the upgrade first (or not, per `upgrade`). */
async function hostile(
  behave: Behaviour,
  opts: { ws?: 'ok' | ((s: net.Socket, key: string) => void); tls?: { key: Buffer; cert: Buffer } } = {},
): Promise<net.Server> {
  const onConn = (s: net.Socket): void => {
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let upgraded = !opts.ws;
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(buf.toString('latin1', 0, end))?.[1] ?? '';
        buf = buf.subarray(end + 4);
        if (opts.ws !== 'ok') {
          s.removeListener('data', onData);
          opts.ws!(s, key);
          return;
        }
        s.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKeyFor(key)}\r\n\r\n`,
        );
        upgraded = true;
        if (buf.length === 0) return;
      }
      s.removeListener('data', onData);
      behave(s, buf);
    };
    s.on('data', onData);
  };
  const srv = opts.tls
    ? tls.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onConn)
    : net.createServer(onConn);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return srv;
}

/** Connects through `ob`, sends a request, reads to the end: the OutboundError code, or 'eof'. */
async function outcome(ob: TcpOutbound): Promise<string> {
  let stream: Awaited<ReturnType<TcpOutbound['connect']>>;
  try {
    stream = await ob.connect({ ip: '10.0.0.1', port: 80, family: 4 }, { source: { address: '127.0.0.1', port: 1 } });
  } catch (e) {
    assert.ok(e instanceof OutboundError, `connect failed with ${String(e)}`);
    return `connect:${e.code}`;
  }
  stream.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  stream.resume();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      stream.destroy();
      resolve('stalled');
    }, 1500);
    stream.once('end', () => {
      clearTimeout(t);
      stream.destroy();
      resolve('eof');
    });
    stream.once('error', (e) => {
      clearTimeout(t);
      assert.ok(e instanceof OutboundError, `stream failed with ${String(e)}`);
      resolve(e.code);
    });
  });
}

const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
const fds = () => readdirSync('/proc/self/fd').length;
const vmessUri = (port: number, o: object = {}) =>
  `vmess://${Buffer.from(JSON.stringify({ add: '127.0.0.1', port, id: ID, scy: 'aes-128-gcm', ...o })).toString('base64')}`;

test('hostile servers: garbage, early close, cut or endless frames, bad upgrades, untrusted certificates and stalls end in clean OutboundErrors, no fd left', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpx-v2ray-fuzz-'));
  const servers: net.Server[] = [];
  try {
    const made = spawnSync(
      'openssl',
      selfSignedCertArgs({ names: [], cn: 'other.test', days: 1, keyFile: join(dir, 'k'), certFile: join(dir, 'c') }),
    );
    assert.equal(made.status, 0, made.stderr?.toString());
    const cert = { key: readFileSync(join(dir, 'k')), cert: readFileSync(join(dir, 'c')) };
    const before = fds();
    const serve = async (b: Behaviour, o?: Parameters<typeof hostile>[1]) => {
      const s = await hostile(b, o);
      servers.push(s);
      return portOf(s);
    };
    const garbage: Behaviour = (s) => s.end(Buffer.alloc(200, 0x5a));
    const closeAtOnce: Behaviour = (s) => s.end();
    const reset: Behaviour = (s) => s.resetAndDestroy();
    const stall: Behaviour = () => {};
    const cases: Array<[string, string, RegExp | string]> = [
      ['VMess, garbage answer', vmessUri(await serve(garbage)), 'EAUTH'],
      ['VMess, closed without answering', vmessUri(await serve(closeAtOnce)), 'ENOREPLY'],
      ['VMess, reset without answering', vmessUri(await serve(reset)), 'ENOREPLY'],
      ['VMess, half a response header', vmessUri(await serve((s) => s.end(Buffer.alloc(10)))), 'EPROTO'],
      [
        'VLESS, an HTTP answer',
        `vless://${ID}@127.0.0.1:${await serve((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'))}`,
        'EPROTO',
      ],
      [
        'VLESS, addons cut short',
        `vless://${ID}@127.0.0.1:${await serve((s) => s.end(Buffer.from([0, 200, 1])))}`,
        'EPROTO',
      ],
      ['VLESS, stalls after the header', `vless://${ID}@127.0.0.1:${await serve(stall)}`, 'stalled'],
      [
        'Trojan, untrusted certificate',
        `trojan://pw@127.0.0.1:${await serve(garbage, { tls: cert })}?sni=other.test`,
        'connect:ECERT',
      ],
      [
        'Trojan, certificate for another name',
        `trojan://pw@127.0.0.1:${await serve(garbage, { tls: cert })}?sni=node.test&allowInsecure=0&ca=${join(dir, 'c')}`,
        'connect:ECERT',
      ],
      ['Trojan, not TLS at all', `trojan://pw@127.0.0.1:${await serve(garbage)}?sni=other.test`, 'connect:ETLS'],
      [
        'Trojan, TLS that never answers',
        `trojan://pw@127.0.0.1:${await serve(stall)}?sni=other.test`,
        'connect:ETIMEDOUT',
      ],
      [
        'WebSocket, 404',
        `vless://${ID}@127.0.0.1:${await serve(stall, { ws: (s) => s.end('HTTP/1.1 404 Not Found\r\n\r\n') })}?type=ws&path=/x`,
        'connect:EHANDSHAKE',
      ],
      [
        'WebSocket, wrong accept key',
        `vless://${ID}@127.0.0.1:${await serve(stall, { ws: (s) => s.end('HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: AAAA\r\n\r\n') })}?type=ws`,
        'connect:EHANDSHAKE',
      ],
      [
        'WebSocket, endless response head',
        `vless://${ID}@127.0.0.1:${await serve(stall, { ws: (s) => s.write(Buffer.alloc(40_000, 0x41)) })}?type=ws`,
        'connect:EHANDSHAKE',
      ],
      [
        'WebSocket, no answer to the upgrade',
        `vless://${ID}@127.0.0.1:${await serve(stall, { ws: () => {} })}?type=ws`,
        'connect:ETIMEDOUT',
      ],
      [
        'WebSocket, reserved bits',
        vmessUri(await serve((s) => s.write(Buffer.from([0xf2, 0x01, 0x00])), { ws: 'ok' }), { net: 'ws' }),
        'EPROTO',
      ],
      [
        'WebSocket, 2^40-byte frame cut short',
        `vless://${ID}@127.0.0.1:${await serve((s) => s.end(Buffer.from([0x82, 0x7f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2])), { ws: 'ok' })}?type=ws`,
        'EPROTO',
      ],
      [
        'WebSocket, 2^63 frame length',
        `vless://${ID}@127.0.0.1:${await serve((s) => s.write(Buffer.from([0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0])), { ws: 'ok' })}?type=ws`,
        'EPROTO',
      ],
      [
        'WebSocket, garbage VMess inside',
        vmessUri(await serve((s) => s.write(Buffer.from([0x82, 0x40, ...Buffer.alloc(64, 1)])), { ws: 'ok' }), {
          net: 'ws',
        }),
        'EAUTH',
      ],
    ];
    const results = await Promise.all(
      cases.map(async ([what, uri]) => {
        const ob = createOutbound(parseNodeUri(uri, 'hostile'), { handshakeTimeoutMs: 500, connectTimeoutMs: 2000 });
        return [what, await outcome(ob)] as const;
      }),
    );
    for (const [i, [what, got]] of results.entries()) assert.equal(got, cases[i]![2], what);
    for (const s of servers) s.close();
    await until(
      () => `every socket to the hostile servers to close (${fds()} fds, ${before} before)`,
      () => fds() === before,
      5000,
    );
  } finally {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
