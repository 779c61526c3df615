import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  ATYP_IPV6,
  decodeSocksAddress,
  decodeSocksUdpPacket,
  destinationAddress,
  encodeGreeting,
  encodeRequest,
  encodeSocksAddress,
  encodeSocksUdpPacket,
  encodeUserPassAuth,
  parseAuthReply,
  parseConnectReply,
  parseMethodReply,
  socksReplyText,
} from '../../src/outbound/socks5.js';
import type { Parsed } from '../../src/outbound/node-conn.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Every proper prefix needs more; the whole message (with trailing bytes) parses to `length`. */
function checkIncremental<T>(parse: (b: Buffer) => Parsed<T>, msg: Buffer): { ok: true; length: number } & T {
  for (let i = 0; i < msg.length; i++)
    assert.equal(parse(msg.subarray(0, i)), 'need-more', `prefix ${i}/${msg.length}`);
  const r = parse(Buffer.concat([msg, Buffer.from('EXTRA')]));
  assert.ok(r !== 'need-more' && r.ok, JSON.stringify(r));
  assert.equal(r.length, msg.length, 'consumes exactly the message, not the bytes after it');
  return r as { ok: true; length: number } & T;
}

test('client messages: greeting, RFC 1929 auth, CONNECT with IPv4, IPv6 and domain', () => {
  assert.deepEqual(encodeGreeting([0, 2]), hex('05 02 00 02'));
  assert.deepEqual(
    encodeUserPassAuth('user', 'pässword'),
    Buffer.concat([hex('01 04'), Buffer.from('user'), hex('09'), Buffer.from('pässword')]),
  );
  assert.deepEqual(encodeUserPassAuth('u', ''), hex('01 01 75 00'));
  assert.throws(() => encodeUserPassAuth('', 'x'), /1-255/);
  assert.throws(() => encodeUserPassAuth('u', 'x'.repeat(256)), /at most 255/);
  assert.deepEqual(
    encodeRequest(1, { type: ATYP_IPV4, host: '10.1.2.3', port: 443 }),
    hex('05 01 00 01 0a010203 01bb'),
  );
  assert.deepEqual(
    encodeRequest(1, { type: ATYP_IPV6, host: '2001:db8::1', port: 80 }),
    hex('05 01 00 04 20010db8000000000000000000000001 0050'),
  );
  assert.deepEqual(
    encodeRequest(1, { type: ATYP_DOMAIN, host: 'example.com', port: 8080 }),
    Buffer.concat([hex('05 01 00 03 0b'), Buffer.from('example.com'), hex('1f90')]),
  );
  assert.throws(() => encodeSocksAddress({ type: ATYP_IPV4, host: '::1', port: 1 }), /not an IPv4/);
  assert.throws(() => encodeSocksAddress({ type: ATYP_DOMAIN, host: 'x'.repeat(256), port: 1 }), /1-255/);
  assert.throws(() => encodeSocksAddress({ type: ATYP_IPV4, host: '1.2.3.4', port: 65536 }), /bad port/);
});

test('destinationAddress prefers a usable sniffed domain, else the IP', () => {
  assert.deepEqual(destinationAddress({ ip: '1.2.3.4', port: 80, family: 4 }), {
    type: ATYP_IPV4,
    host: '1.2.3.4',
    port: 80,
  });
  assert.deepEqual(destinationAddress({ ip: '::1', port: 80, family: 6 }), { type: ATYP_IPV6, host: '::1', port: 80 });
  assert.deepEqual(destinationAddress({ ip: '1.2.3.4', port: 443, family: 4, domain: 'example.com.' }), {
    type: ATYP_DOMAIN,
    host: 'example.com',
    port: 443,
  });
  assert.equal(destinationAddress({ ip: '1.2.3.4', port: 443, family: 4, domain: 'bad name' }).type, ATYP_IPV4);
  assert.equal(destinationAddress({ ip: '1.2.3.4', port: 443, family: 4, domain: 'x'.repeat(256) }).type, ATYP_IPV4);
  assert.equal(destinationAddress({ ip: '1.2.3.4', port: 443, family: 4, domain: '' }).type, ATYP_IPV4);
});

test('method reply: incremental and strict', () => {
  assert.equal(checkIncremental(parseMethodReply, hex('05 00')).method, 0);
  assert.equal(checkIncremental(parseMethodReply, hex('05 ff')).method, 0xff);
  const bad = parseMethodReply(hex('04'));
  assert.ok(bad !== 'need-more' && !bad.ok && /not a SOCKS5 server/.test(bad.error));
  // An HTTP server answering: judged from the first byte.
  const http = parseMethodReply(Buffer.from('H'));
  assert.ok(http !== 'need-more' && !http.ok);
});

test('auth reply: incremental, version 1 only', () => {
  assert.deepEqual(checkIncremental(parseAuthReply, hex('01 00')), { ok: true, length: 2, success: true, status: 0 });
  assert.equal(checkIncremental(parseAuthReply, hex('01 01')).success, false);
  const v5 = parseAuthReply(hex('05 00'));
  assert.ok(v5 !== 'need-more' && !v5.ok);
});

test('CONNECT reply: every address type, split at every byte, trailing data kept', () => {
  const v4 = checkIncremental(parseConnectReply, hex('05 00 00 01 7f000001 1f90'));
  assert.deepEqual(
    { reply: v4.reply, bound: v4.bound },
    { reply: 0, bound: { type: ATYP_IPV4, host: '127.0.0.1', port: 8080 } },
  );
  const v6 = checkIncremental(parseConnectReply, hex('05 00 00 04 fd000000000000000000000000000002 0050'));
  assert.deepEqual(v6.bound, { type: ATYP_IPV6, host: 'fd00::2', port: 80 });
  const mapped = checkIncremental(parseConnectReply, hex('05 00 00 04 00000000000000000000ffff01020304 0050'));
  assert.equal(mapped.bound.host, '::ffff:1.2.3.4');
  const dom = checkIncremental(
    parseConnectReply,
    Buffer.concat([hex('05 05 00 03 07'), Buffer.from('example'), hex('0001')]),
  );
  assert.deepEqual(
    { reply: dom.reply, bound: dom.bound },
    { reply: 5, bound: { type: ATYP_DOMAIN, host: 'example', port: 1 } },
  );
});

test('CONNECT reply: strict rejections', () => {
  for (const [bytes, why] of [
    ['04 00 00 01 7f000001 0050', /version 4/],
    ['05 00 01 01 7f000001 0050', /reserved byte/],
    ['05 00 00 02 7f000001 0050', /unknown address type 2/],
    ['05 00 00 03 00 0050', /empty domain/],
  ] as const) {
    const r = parseConnectReply(hex(bytes));
    assert.ok(r !== 'need-more' && !r.ok, bytes);
    assert.match((r as { error: string }).error, why);
  }
  // Errors are found as soon as the offending byte is there.
  const early = parseConnectReply(hex('05 00 07'));
  assert.ok(early !== 'need-more' && !early.ok);
});

test('reply codes have RFC 1928 texts', () => {
  assert.equal(socksReplyText(5), 'connection refused');
  assert.equal(socksReplyText(2), 'connection not allowed by ruleset');
  assert.equal(socksReplyText(42), 'unknown reply code 42');
});

test('parsers never throw on random input (light fuzz)', () => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let i = 0; i < 5000; i++) {
    const len = rnd() % 40;
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = j < 3 && rnd() & 1 ? [5, 0, 0][j]! : rnd();
    for (const p of [parseMethodReply, parseAuthReply, parseConnectReply, (x: Buffer) => decodeSocksAddress(x, 0)]) {
      const r = p(b);
      if (r !== 'need-more' && r.ok) assert.ok(r.length <= b.length);
    }
    decodeSocksUdpPacket(b);
  }
});

test('UDP ASSOCIATE datagrams round-trip and reject junk', () => {
  const addr = { type: ATYP_IPV6, host: 'fd00::53', port: 53 } as const;
  const pkt = encodeSocksUdpPacket({ frag: 0, address: addr, payload: Buffer.from('query') });
  assert.deepEqual(pkt.subarray(0, 4), hex('00 00 00 04'));
  const d = decodeSocksUdpPacket(pkt);
  assert.ok(d.ok);
  assert.deepEqual(d.packet.address, addr);
  assert.equal(d.packet.payload.toString(), 'query');
  const dom = decodeSocksUdpPacket(
    encodeSocksUdpPacket({
      frag: 3,
      address: { type: ATYP_DOMAIN, host: 'dns.example', port: 53 },
      payload: Buffer.alloc(0),
    }),
  );
  assert.ok(
    dom.ok && dom.packet.frag === 3 && dom.packet.address.host === 'dns.example' && dom.packet.payload.length === 0,
  );
  assert.deepEqual(decodeSocksUdpPacket(hex('00 00')), {
    ok: false,
    error: 'datagram shorter than the SOCKS5 UDP header',
  });
  assert.equal(decodeSocksUdpPacket(hex('01 00 00 01 01020304 0035')).ok, false);
  assert.equal(decodeSocksUdpPacket(hex('00 00 00 01 0102')).ok, false);
  assert.throws(() => encodeSocksUdpPacket({ frag: 256, address: addr, payload: Buffer.alloc(0) }), /bad frag/);
});
