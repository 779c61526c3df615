// TLS SNI sniffer against real ClientHellos written by Node's TLS client, split at every
// offset, re-fragmented into many records, and damaged in every way a fuzzer would.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'node:test';
import { sniff, sniffTls, type SniffResult } from '../../src/sniff/index.js';
import { mulberry32 } from '../helpers/prng.js';

/** The first flight a TLS client writes: connect to a server that records bytes and hangs up. */
async function clientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  let captured!: (b: Buffer) => void;
  const done = new Promise<Buffer>((resolve) => (captured = resolve));
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        captured(buf);
        sock.destroy();
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
  client.on('error', () => {});
  try {
    return await done;
  } finally {
    client.destroy();
    server.close();
  }
}

/** Re-cut a single-record ClientHello into records of at most `size` handshake bytes. */
function refragment(hello: Buffer, size: number): Buffer {
  const hs = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const piece = hs.subarray(i, i + size);
    const head = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    head.writeUInt16BE(piece.length, 3);
    out.push(head, piece);
  }
  return Buffer.concat(out);
}

function isDomain(r: SniffResult, d: string): boolean {
  return typeof r === 'object' && r.domain === d;
}

/** Every prefix: need-more until the answer appears, then the same answer for every longer prefix. */
function assertEveryPrefix(bytes: Buffer, expected: SniffResult): void {
  let answeredAt = -1;
  for (let i = 0; i <= bytes.length; i++) {
    const r = sniffTls(bytes.subarray(0, i));
    if (answeredAt < 0) {
      if (r === 'need-more') continue;
      answeredAt = i;
    }
    assert.deepEqual(r, expected, `prefix of ${i} bytes (answer first at ${answeredAt})`);
  }
  assert.ok(answeredAt > 0, 'answered');
}

const NAMES = [
  'example.com',
  'a.b.c.example.org',
  'xn--bcher-kva.example',
  'under_score.test',
  `${'l'.repeat(63)}.${'m'.repeat(63)}.example.net`,
];

test('sniffTls: SNI of real ClientHellos (TLS 1.3 and 1.2, with ALPN), at every split offset', async () => {
  for (const servername of NAMES) {
    for (const extra of [{}, { maxVersion: 'TLSv1.2' as const }, { ALPNProtocols: ['h2', 'http/1.1'] }]) {
      const hello = await clientHello({ servername, ...extra });
      assert.deepEqual(sniffTls(hello), { domain: servername });
      assertEveryPrefix(hello, { domain: servername });
      assert.deepEqual(sniff(hello), { protocol: 'tls', domain: servername });
    }
  }
});

test('sniffTls: the name is lower-cased', async () => {
  const hello = await clientHello({ servername: 'WWW.Example.COM' });
  assert.deepEqual(sniffTls(hello), { domain: 'www.example.com' });
});

test('sniffTls: no SNI (IP host) → no-domain, after the whole hello', async () => {
  const hello = await clientHello({});
  assertEveryPrefix(hello, 'no-domain');
  assert.deepEqual(sniff(hello), { protocol: 'tls' });
});

test('sniffTls: ClientHello spread over many records, in chunks of any size', async () => {
  const hello = await clientHello({ servername: 'split.example.com' });
  for (const size of [1, 2, 3, 7, 50, 200]) {
    const bytes = refragment(hello, size);
    assert.deepEqual(sniffTls(bytes), { domain: 'split.example.com' }, `records of ${size}`);
    if (size >= 7) assertEveryPrefix(bytes, { domain: 'split.example.com' });
  }
});

test('sniffTls: records after the ClientHello (0-RTT data, CCS) are ignored', async () => {
  const hello = await clientHello({ servername: 'early.example' });
  const tail = Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb]);
  assert.deepEqual(sniffTls(Buffer.concat([hello, tail])), { domain: 'early.example' });
  assert.deepEqual(sniffTls(Buffer.concat([refragment(hello, 64), tail])), { domain: 'early.example' });
});

test('sniffTls: not TLS is recognised from the first bytes', () => {
  for (const text of ['GET / HTTP/1.1\r\n', 'SSH-2.0-OpenSSH_9.2\r\n', '\x00', 'PRI * HTTP/2.0']) {
    assert.equal(sniffTls(Buffer.from(text, 'latin1')), 'not-this-protocol', JSON.stringify(text));
  }
  assert.equal(sniffTls(Buffer.from([0x16])), 'need-more');
  assert.equal(sniffTls(Buffer.from([0x16, 0x03])), 'need-more');
  assert.equal(sniffTls(Buffer.from([0x16, 0x02])), 'not-this-protocol');
  assert.equal(sniffTls(Buffer.from([0x16, 0x03, 0x09])), 'not-this-protocol');
  assert.equal(sniffTls(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])), 'not-this-protocol'); // empty record
  assert.equal(sniffTls(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff])), 'not-this-protocol'); // oversized record
  assert.equal(sniffTls(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x02])), 'not-this-protocol'); // ServerHello
  assert.equal(sniffTls(Buffer.alloc(0)), 'need-more');
  assert.deepEqual(sniff(Buffer.from('SSH-2.0-x\r\n')), { protocol: 'unknown' });
});

test('sniffTls: gives up at maxBytes', async () => {
  const hello = await clientHello({ servername: 'limit.example' });
  const cut = hello.subarray(0, 60);
  assert.equal(sniffTls(cut), 'need-more');
  assert.equal(sniffTls(cut, { maxBytes: 60 }), 'no-domain');
  assert.deepEqual(sniff(cut, { tlsMaxBytes: 60 }), { protocol: 'tls' });
});

test('sniffTls: malformed, truncated and mutated input never throws', async () => {
  const hellos = [
    await clientHello({ servername: 'fuzz.example.com' }),
    await clientHello({ servername: 'fuzz.example.com', maxVersion: 'TLSv1.2' }),
  ];
  hellos.push(refragment(hellos[0]!, 37));
  const rand = mulberry32(0x5eed);
  let answers = 0;
  for (let round = 0; round < 3000; round++) {
    const base = Buffer.from(hellos[round % hellos.length]!);
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) {
      const at = rand() < 0.5 ? Math.floor(rand() * Math.min(base.length, 120)) : Math.floor(rand() * base.length);
      base[at] = rand() < 0.3 ? 0xff : rand() < 0.5 ? 0 : Math.floor(rand() * 256);
    }
    const cut = base.subarray(0, Math.floor(rand() * (base.length + 1)));
    const r = sniffTls(cut);
    assert.ok(r === 'need-more' || r === 'no-domain' || r === 'not-this-protocol' || typeof r.domain === 'string');
    if (typeof r === 'object') answers++;
    sniff(cut);
  }
  assert.ok(answers > 0);
  // Pure noise, and noise behind a valid-looking record header.
  for (let round = 0; round < 2000; round++) {
    const noise = Buffer.alloc(Math.floor(rand() * 600));
    for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(rand() * 256);
    if (round % 2 === 0 && noise.length > 6) noise.set([0x16, 0x03, 0x01, noise[3]! & 0x3f, noise[4]!, 0x01]);
    sniffTls(noise);
    sniff(noise);
  }
  // Hand-made lies: lengths that overrun their enclosing block.
  const liar = Buffer.from(hellos[0]!);
  liar[43] = 200; // session id longer than 32
  assert.equal(sniffTls(liar), 'no-domain');
  const hugeHello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0xff, 0xff, 0xff, 0x03, 0x03, 0, 0]);
  assert.equal(sniffTls(hugeHello), 'need-more');
  assert.equal(sniffTls(hugeHello, { maxBytes: hugeHello.length }), 'no-domain');
});

test('sniffTls: SNI entries that are not host names give no-domain', async () => {
  const hello = await clientHello({ servername: 'abcd.example' });
  const at = hello.indexOf('abcd.example');
  for (const bad of ['ab d', 'a..b', '1.2.', 'ab\u00e9d']) {
    const copy = Buffer.from(hello);
    copy.write(bad.padEnd(4, '.').slice(0, 4), at, 'latin1');
    assert.equal(sniffTls(copy), 'no-domain', bad);
  }
  assert.ok(isDomain(sniffTls(hello), 'abcd.example'));
});
