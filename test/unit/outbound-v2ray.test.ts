// VMess / VLESS / Trojan codecs, the WebSocket frame codec and the vmess://, vless://,
// trojan:// links: known answers (v2ray-core's own KDF vector, FNV-1a, SHA-224), and a VMess
// server side written here from v2ray's algorithm (auth ID check, header open, chunks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { UsageError } from '../../src/errors.js';
import { CodecError } from '../../src/outbound/framed-stream.js';
import { serverName } from '../../src/outbound/transport.js';
import { encodeTrojanRequest, TrojanCodec, trojanPasswordHash } from '../../src/outbound/trojan.js';
import { TrojanPacketCodec, VlessPacketCodec, VmessPacketCodec } from '../../src/outbound/udp-v2ray.js';
import { parseNodeUri, redactUri } from '../../src/outbound/uri.js';
import { encodePortThenAddress } from '../../src/outbound/v2ray-common.js';
import { encodeVlessRequest, VlessCodec } from '../../src/outbound/vless.js';
import {
  fnv1a32,
  ShakeMask,
  VmessChunkReader,
  VmessChunkWriter,
  VmessCodec,
  vmessAuthId,
  vmessCmdKey,
  vmessKdf,
  type VmessSession,
} from '../../src/outbound/vmess.js';
import {
  acceptKeyFor,
  encodeClientFrame,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  parseUpgradeResponse,
  WsFrameDecoder,
  WsProtocolError,
} from '../../src/outbound/websocket.js';

const ID = 'b831381d-6324-4d53-ad4f-8cda48b30811';
const IPV4 = { host: '10.0.0.7', port: 80, type: 1 as const };
const DOMAIN = { host: 'www.example.com', port: 443, type: 3 as const };

// ── VMess ────────────────────────────────────────────────────────────────────

test('VMess KDF gives v2ray-core kdf_test.go vector', () => {
  const key = vmessKdf(
    Buffer.from('Demo Key for KDF Value Test'),
    'Demo Path for KDF Value Test',
    'Demo Path for KDF Value Test2',
    'Demo Path for KDF Value Test3',
  );
  assert.equal(key.toString('hex'), '53e9d7e1bd7bd25022b71ead07d8a596efc8a845c7888652fd684b4903dc8892');
});

test('VMess cmdKey, FNV-1a and SHAKE128 length masks', () => {
  const want = createHash('md5')
    .update(Buffer.from(ID.replace(/-/g, ''), 'hex'))
    .update('c48619fe-8f02-49e0-b9e9-edf763e17e21')
    .digest();
  assert.deepEqual(vmessCmdKey(ID), want);
  assert.equal(fnv1a32(Buffer.alloc(0)), 0x811c9dc5);
  assert.equal(fnv1a32(Buffer.from('a')), 0xe40c292c);
  assert.equal(fnv1a32(Buffer.from('foobar')), 0xbf9cf968);
  // The mask is SHAKE128(iv) read two bytes at a time, across the internal refills.
  const iv = Buffer.alloc(16, 9);
  const stream = createHash('shake128', { outputLength: 6000 }).update(iv).digest();
  const m = new ShakeMask(iv);
  for (let i = 0; i < 3000; i++) assert.equal(m.next(), stream.readUInt16BE(i * 2), `mask ${i}`);
});

/** What a v2ray server does with the request header: auth ID, then length and header. */
function openRequest(cmdKey: Buffer, wire: Buffer): { header: Buffer; rest: Buffer; time: number } {
  const authId = wire.subarray(0, 16);
  const d = createDecipheriv('aes-128-ecb', vmessKdf(cmdKey, 'AES Auth ID Encryption').subarray(0, 16), null);
  d.setAutoPadding(false);
  const plain = Buffer.concat([d.update(authId), d.final()]);
  assert.equal(plain.readUInt32BE(12), crc32(plain.subarray(0, 12)), 'auth ID checksum');
  const nonce = wire.subarray(34, 42);
  const open = (keyPath: string, ivPath: string, sealed: Buffer): Buffer => {
    const dec = createDecipheriv(
      'aes-128-gcm',
      vmessKdf(cmdKey, keyPath, authId, nonce).subarray(0, 16),
      vmessKdf(cmdKey, ivPath, authId, nonce).subarray(0, 12),
    );
    dec.setAAD(authId);
    dec.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([dec.update(sealed.subarray(0, sealed.length - 16)), dec.final()]);
  };
  const len = open(
    'VMess Header AEAD Key_Length',
    'VMess Header AEAD Nonce_Length',
    wire.subarray(16, 34),
  ).readUInt16BE(0);
  const header = open('VMess Header AEAD Key', 'VMess Header AEAD Nonce', wire.subarray(42, 42 + len + 16));
  return { header, rest: wire.subarray(42 + len + 16), time: Number(plain.readBigInt64BE(0)) };
}

function session(padding = 3): VmessSession {
  return {
    key: Buffer.alloc(16, 1),
    iv: Buffer.alloc(16, 2),
    responseByte: 0x5a,
    padding: Buffer.alloc(padding, 0xee),
  };
}

test('VMess request header: auth ID, sealed length and header open as v2ray opens them; fields in place', () => {
  const cmdKey = vmessCmdKey(ID);
  for (const [security, code] of [
    ['aes-128-gcm', 3],
    ['chacha20-poly1305', 4],
    ['none', 5],
  ] as const) {
    const codec = new VmessCodec(cmdKey, security, DOMAIN, session(), 1, 1_700_000_000);
    const { header, time } = openRequest(cmdKey, codec.header);
    assert.equal(time, 1_700_000_000);
    assert.equal(header[0], 1, 'version');
    assert.deepEqual(header.subarray(1, 17), Buffer.alloc(16, 2), 'body iv');
    assert.deepEqual(header.subarray(17, 33), Buffer.alloc(16, 1), 'body key');
    assert.equal(header[33], 0x5a, 'response byte');
    assert.equal(header[34], 0x05, 'options: chunk stream + chunk masking');
    assert.equal(header[35], (3 << 4) | code, 'padding length and security');
    assert.equal(header[37], 1, 'command TCP');
    const addr = encodePortThenAddress(DOMAIN);
    assert.deepEqual(header.subarray(38, 38 + addr.length), addr);
    assert.equal(header.readUInt32BE(header.length - 4), fnv1a32(header.subarray(0, header.length - 4)));
  }
  // A wrong id's key cannot open it.
  const codec = new VmessCodec(cmdKey, 'none', IPV4, session());
  assert.throws(() => openRequest(vmessCmdKey('00000000-0000-0000-0000-000000000000'), codec.header));
});

test('VMess address encoding: port first, then type 1/2/3', () => {
  assert.equal(encodePortThenAddress(IPV4).toString('hex'), '0050010a000007');
  assert.equal(encodePortThenAddress({ host: '::1', port: 1, type: 4 }).toString('hex'), `000103${'0'.repeat(30)}01`);
  assert.equal(encodePortThenAddress({ host: 'ab', port: 2, type: 3 }).toString('hex'), '000202026162');
});

/** The server's answer: AEAD response header then body chunks, as v2ray writes them. */
function serverResponse(
  s: VmessSession,
  security: 'aes-128-gcm' | 'chacha20-poly1305' | 'none',
  payloads: Buffer[],
  echo = s.responseByte,
): Buffer {
  const rk = createHash('sha256').update(s.key).digest().subarray(0, 16);
  const riv = createHash('sha256').update(s.iv).digest().subarray(0, 16);
  const seal = (k: string, iv: string, plain: Buffer): Buffer => {
    const c = createCipheriv('aes-128-gcm', vmessKdf(rk, k).subarray(0, 16), vmessKdf(riv, iv).subarray(0, 12));
    return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  };
  const head = Buffer.from([echo, 0, 0, 0]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(head.length);
  const w = new VmessChunkWriter(security, rk, riv);
  return Buffer.concat([
    seal('AEAD Resp Header Len Key', 'AEAD Resp Header Len IV', len),
    seal('AEAD Resp Header Key', 'AEAD Resp Header IV', head),
    ...payloads.map((p) => w.write(p)),
    w.write(Buffer.alloc(0)),
  ]);
}

test('VMess body: request chunks decode with the request keys; the response decodes in any chunking and ends in band', () => {
  for (const security of ['aes-128-gcm', 'chacha20-poly1305', 'none'] as const) {
    const s = session(0);
    const codec = new VmessCodec(vmessCmdKey(ID), security, IPV4, s);
    const big = Buffer.alloc(40_000, 0x61);
    const reader = new VmessChunkReader(security, s.key, s.iv);
    const up = reader.push(Buffer.concat([codec.encode(Buffer.from('hello')), codec.encode(big), codec.finish()]));
    assert.deepEqual(Buffer.concat(up.data), Buffer.concat([Buffer.from('hello'), big]), security);
    assert.equal(up.eof, true);

    const wire = serverResponse(s, security, [Buffer.from('world'), Buffer.alloc(20_000, 0x62)]);
    for (const step of [1, 7, 1000, wire.length]) {
      const c = new VmessCodec(vmessCmdKey(ID), security, IPV4, s);
      const got: Buffer[] = [];
      let eof = false;
      for (let i = 0; i < wire.length; i += step) {
        const r = c.decode(wire.subarray(i, i + step));
        got.push(...r.data);
        eof ||= r.eof;
      }
      assert.equal(c.answered, true);
      assert.equal(eof, true, `${security} step ${step}`);
      assert.deepEqual(Buffer.concat(got), Buffer.concat([Buffer.from('world'), Buffer.alloc(20_000, 0x62)]));
    }
  }
});

test('VMess response: wrong echo byte, garbage and tampered chunks are CodecErrors', () => {
  const s = session();
  const bad = serverResponse(s, 'aes-128-gcm', [Buffer.from('x')], s.responseByte ^ 1);
  assert.throws(
    () => new VmessCodec(vmessCmdKey(ID), 'aes-128-gcm', IPV4, s).decode(bad),
    (e: unknown) => e instanceof CodecError && /echoes/.test(e.message),
  );
  assert.throws(
    () => new VmessCodec(vmessCmdKey(ID), 'aes-128-gcm', IPV4, s).decode(Buffer.alloc(64, 7)),
    (e: unknown) => e instanceof CodecError && e.code === 'EAUTH',
  );
  const good = serverResponse(s, 'aes-128-gcm', [Buffer.from('payload')]);
  const tampered = Buffer.from(good);
  tampered[tampered.length - 20]! ^= 1;
  assert.throws(() => new VmessCodec(vmessCmdKey(ID), 'aes-128-gcm', IPV4, s).decode(tampered), CodecError);
  // A cut stream leaves bytes pending (FramedStream turns that into EPROTO at EOF).
  const c = new VmessCodec(vmessCmdKey(ID), 'aes-128-gcm', IPV4, s);
  c.decode(good.subarray(0, good.length - 25));
  assert.ok(c.pending > 0);
});

test('VMess auth ID carries the time and its checksum', () => {
  const id = vmessAuthId(vmessCmdKey(ID), 1234, Buffer.from([1, 2, 3, 4]));
  const d = createDecipheriv('aes-128-ecb', vmessKdf(vmessCmdKey(ID), 'AES Auth ID Encryption').subarray(0, 16), null);
  d.setAutoPadding(false);
  const p = Buffer.concat([d.update(id), d.final()]);
  assert.equal(p.toString('hex').slice(0, 24), '00000000000004d201020304');
  assert.equal(p.readUInt32BE(12), crc32(p.subarray(0, 12)));
});

// ── VLESS and Trojan ─────────────────────────────────────────────────────────

test('VLESS request bytes; response header stripped however it arrives', () => {
  assert.equal(encodeVlessRequest(ID, 1, IPV4).toString('hex'), `00${ID.replace(/-/g, '')}00010050010a000007`);
  for (const wire of [
    [Buffer.from([0, 0]), Buffer.from('data')],
    [Buffer.from([0]), Buffer.from([2, 9]), Buffer.from([9, 0x41])],
    [Buffer.from([0, 0, 0x42])],
  ]) {
    const c = new VlessCodec(ID, IPV4);
    const out = wire.flatMap((w) => c.decode(w).data);
    assert.equal(c.answered, true);
    assert.ok(['data', 'A', 'B'].includes(Buffer.concat(out).toString()));
  }
  assert.throws(
    () => new VlessCodec(ID, IPV4).decode(Buffer.from('HTTP/1.1 400')),
    (e: unknown) => e instanceof CodecError && /version 72/.test(e.message),
  );
});

test('Trojan request: hex SHA-224 of the password, CRLF, command, SOCKS5 address, CRLF', () => {
  // SHA-224("password"), the example of the Trojan protocol document's hash function.
  assert.equal(trojanPasswordHash('password'), 'd63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01');
  const req = encodeTrojanRequest(trojanPasswordHash('pw'), 1, DOMAIN);
  assert.equal(req.subarray(0, 56).toString(), trojanPasswordHash('pw'));
  assert.equal(req.subarray(56).toString('hex'), `0d0a01030f${Buffer.from('www.example.com').toString('hex')}01bb0d0a`);
  const c = new TrojanCodec(trojanPasswordHash('pw'), DOMAIN);
  assert.equal(c.answered, false);
  assert.deepEqual(c.decode(Buffer.from('x')).data, [Buffer.from('x')]);
  assert.equal(c.answered, true);
});

// ── WebSocket ────────────────────────────────────────────────────────────────

test('WebSocket client frames are masked; server frames decode across any split', () => {
  const mask = Buffer.from([1, 2, 3, 4]);
  const f = encodeClientFrame(OP_BINARY, Buffer.from('abcd'), mask);
  assert.equal(f.toString('hex'), '8284' + '01020304' + '60606060');
  assert.equal(encodeClientFrame(OP_BINARY, Buffer.alloc(200), mask).subarray(0, 4).toString('hex'), '82fe00c8');
  assert.equal(
    encodeClientFrame(OP_BINARY, Buffer.alloc(70_000), mask).subarray(0, 10).toString('hex'),
    '82ff0000000000011170',
  );
  // Masking undone by a masked-frame reader gives the payload back, whatever its length and offset.
  for (const n of [0, 1, 3, 5, 127, 65_537]) {
    const payload = randomBytes(n + 3).subarray(3);
    const events = new WsFrameDecoder().push(encodeClientFrame(OP_BINARY, payload, randomBytes(4)));
    assert.deepEqual(
      Buffer.concat(events.flatMap((e) => (e.type === 'data' ? [e.bytes] : []))),
      payload,
      `length ${n}`,
    );
  }
  const big = Buffer.alloc(70_000, 0x33);
  const server = Buffer.concat([
    Buffer.from([0x02, 0x03]),
    Buffer.from('abc'), // binary, not FIN
    Buffer.from([0x89, 0x02]),
    Buffer.from('hi'), // ping in between
    Buffer.from([0x80, 0x7f]),
    Buffer.from('0000000000011170', 'hex'),
    big, // continuation, 64-bit length
    Buffer.from([0x88, 0x02, 0x03, 0xe8]), // close 1000
  ]);
  for (const step of [1, 3, 100, server.length]) {
    const d = new WsFrameDecoder();
    const events = [];
    for (let i = 0; i < server.length; i += step) events.push(...d.push(server.subarray(i, i + step)));
    const data = Buffer.concat(events.flatMap((e) => (e.type === 'data' ? [e.bytes] : [])));
    assert.deepEqual(data, Buffer.concat([Buffer.from('abc'), big]), `step ${step}`);
    assert.deepEqual(
      events.filter((e) => e.type !== 'data'),
      [
        { type: 'ping', payload: Buffer.from('hi') },
        { type: 'close', code: 1000 },
      ],
    );
    assert.equal(d.pending, 0);
  }
});

test('WebSocket: bad frames and bad upgrade answers are refused', () => {
  assert.throws(() => new WsFrameDecoder().push(Buffer.from([0xc2, 0x00])), WsProtocolError); // RSV1
  assert.throws(() => new WsFrameDecoder().push(Buffer.from([0x83, 0x00])), WsProtocolError); // opcode 3
  assert.throws(() => new WsFrameDecoder().push(Buffer.from([0x89, 0x7e, 0x00, 0x80])), WsProtocolError); // ping of 128 bytes
  assert.throws(
    () => new WsFrameDecoder().push(Buffer.from([0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
    WsProtocolError,
  );
  // A frame length of 2^53 - 1 is streamed, never buffered.
  const d = new WsFrameDecoder();
  d.push(Buffer.from([0x82, 0x7f, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  assert.deepEqual(d.push(Buffer.from('xy')), [{ type: 'data', bytes: Buffer.from('xy') }]);
  assert.ok(d.pending > 1e15);
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  assert.equal(acceptKeyFor(key), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='); // RFC 6455 §1.3
  const ok = Buffer.from(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${acceptKeyFor(key)}\r\n\r\nrest`,
  );
  assert.deepEqual(parseUpgradeResponse(ok, key), { ok: true, length: ok.length - 4 });
  assert.equal(parseUpgradeResponse(ok.subarray(0, 20), key), 'need-more');
  const r404 = parseUpgradeResponse(Buffer.from('HTTP/1.1 404 Not Found\r\n\r\n'), key);
  assert.ok(r404 !== 'need-more' && !r404.ok && /404 Not Found instead of 101/.test(r404.error));
  const wrong = parseUpgradeResponse(Buffer.from('HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n'), key);
  assert.ok(wrong !== 'need-more' && !wrong.ok);
  const huge = parseUpgradeResponse(Buffer.alloc(20_000, 0x41), key);
  assert.ok(huge !== 'need-more' && !huge.ok, 'an endless head is refused, not buffered');
  assert.equal(encodeClientFrame(OP_CLOSE, Buffer.alloc(0), Buffer.alloc(4))[1], 0x80);
  assert.equal(encodeClientFrame(OP_PING, Buffer.alloc(0), Buffer.alloc(4))[0], 0x89);
});

// ── links ────────────────────────────────────────────────────────────────────

const vmessLink = (o: object) => `vmess://${Buffer.from(JSON.stringify(o)).toString('base64')}`;

test('vmess:// (v2rayN JSON), vless:// and trojan:// links parse into specs', () => {
  const v = parseNodeUri(
    vmessLink({
      v: '2',
      ps: '香港 01 🇭🇰',
      add: 'hk.example.com',
      port: '443',
      id: ID.toUpperCase(),
      aid: '0',
      scy: 'auto',
      net: 'ws',
      type: 'none',
      host: 'cdn.example.com',
      path: '/ray',
      tls: 'tls',
      sni: 'sni.example.com',
      alpn: 'h2,http/1.1',
      fp: 'chrome',
    }),
  );
  assert.deepEqual(v, {
    kind: 'vmess',
    name: '香港 01 🇭🇰',
    host: 'hk.example.com',
    port: 443,
    id: ID,
    security: 'aes-128-gcm',
    transport: {
      network: 'ws',
      security: 'tls',
      sni: 'sni.example.com',
      alpn: ['h2', 'http/1.1'],
      path: '/ray',
      host: 'cdn.example.com',
    },
  });
  assert.deepEqual(parseNodeUri(vmessLink({ add: '10.0.0.1', port: 10086, id: ID, scy: 'none' }), 'n1'), {
    kind: 'vmess',
    name: 'n1',
    host: '10.0.0.1',
    port: 10086,
    id: ID,
    security: 'none',
    transport: { network: 'tcp', security: 'none' },
  });
  assert.deepEqual(
    parseNodeUri(
      `vless://${ID}@[2001:db8::1]:443?type=ws&security=tls&sni=a.example&path=%2Fws%3Fed%3D2048&host=b.example&encryption=none#%E6%97%A5%E6%9C%AC`,
    ),
    {
      kind: 'vless',
      name: '日本',
      host: '2001:db8::1',
      port: 443,
      id: ID,
      transport: { network: 'ws', security: 'tls', sni: 'a.example', path: '/ws?ed=2048', host: 'b.example' },
    },
  );
  assert.deepEqual(parseNodeUri('trojan://p%40ss@t.example:443?allowInsecure=1&ca=%2Fetc%2Fca.pem#t'), {
    kind: 'trojan',
    name: 't',
    host: 't.example',
    port: 443,
    password: 'p@ss',
    transport: { network: 'tcp', security: 'tls', allowInsecure: true, caFile: '/etc/ca.pem' },
  });
  // Trojan is TLS unless the link says otherwise; the certificate is checked by default.
  const t = parseNodeUri('trojan://pw@1.2.3.4:443');
  assert.equal(t.kind === 'trojan' && t.transport.allowInsecure, undefined);
  assert.equal(t.name, 'trojan-1.2.3.4:443');
});

test('bad v2ray links get UsageErrors that never show the id or password', () => {
  const bad: Array<[string, RegExp]> = [
    ['vmess://not-base64!', /BASE64\(JSON\)/],
    [`vmess://${Buffer.from('[1]').toString('base64')}`, /not a JSON object/],
    [vmessLink({ add: 'h', port: 1, id: 'nope' }), /not a UUID/],
    [vmessLink({ add: 'h', port: 1, id: ID, scy: 'aes-256-cfb' }), /unknown security/],
    [vmessLink({ add: 'h', port: 1, id: ID, net: 'grpc' }), /transport 'grpc'/],
    [vmessLink({ add: 'h', port: 1, id: ID, net: 'tcp', type: 'http' }), /HTTP obfuscation/],
    [vmessLink({ add: 'h', port: 70000, id: ID }), /out of range/],
    [vmessLink({ port: 1, id: ID }), /missing "add"/],
    [`vless://${ID}@h:1?flow=xtls-rprx-vision`, /flow/],
    [`vless://${ID}@h:1?security=reality`, /security 'reality'/],
    [`vless://${ID}@h`, /missing port/],
    ['vless://h:1', /missing the id/],
    ['trojan://@h:1', /empty password/],
    ['trojan://secretpw@h:1/path', /no path/],
    ['trojan://secretpw@h:1?allowInsecure=maybe', /allowInsecure/],
    [`vless://${ID}@h:1?type=ws&path=nop`, /must start with/],
  ];
  for (const [uri, why] of bad) {
    assert.throws(
      () => parseNodeUri(uri),
      (e: unknown) => {
        assert.ok(e instanceof UsageError, uri);
        assert.match(e.message, why, uri);
        assert.ok(
          !e.message.includes(ID) &&
            !e.message.toLowerCase().includes(ID.replace(/-/g, '')) &&
            !e.message.includes('secretpw'),
          e.message,
        );
        return true;
      },
    );
  }
});

test('redactUri hides VMess/VLESS ids and Trojan passwords, keeps where the node is', () => {
  assert.equal(redactUri(`vless://${ID}@h.example:443?type=ws#n`), 'vless://***@h.example:443?type=ws#n');
  assert.equal(redactUri('trojan://pa#ss@word@h:443'), 'trojan://***@h:443');
  assert.equal(
    redactUri(vmessLink({ add: 'h.example', port: 443, id: ID, ps: 'x' })).startsWith('vmess://***@h.example:443'),
    true,
  );
  assert.equal(redactUri('vmess://garbage'), 'vmess://***');
  for (const u of [`vless://${ID}`, 'trojan://secret', `VMESS://${ID}`])
    assert.ok(!redactUri(u).includes('secret') && !redactUri(u).includes(ID), u);
});

test('TLS server name: sni, else the WebSocket Host, else the node name; never an IP', () => {
  assert.equal(serverName({ network: 'tcp', security: 'tls', sni: 's.example' }, 'n.example'), 's.example');
  assert.equal(serverName({ network: 'ws', security: 'tls', host: 'h.example:8443' }, '1.2.3.4'), 'h.example');
  assert.equal(serverName({ network: 'tcp', security: 'tls' }, 'n.example'), 'n.example');
  assert.equal(serverName({ network: 'tcp', security: 'tls' }, '1.2.3.4'), undefined);
});

// ── UDP framing ──────────────────────────────────────────────────────────────

test('UDP packets: Trojan address+length+CRLF, VLESS length prefix, VMess one chunk per datagram; split anywhere', () => {
  const t = new TrojanPacketCodec(trojanPasswordHash('pw'), IPV4);
  assert.equal(t.header.subarray(56).toString('hex'), '0d0a03010a00000700500d0a', 'command 3 (UDP associate)');
  const tp = t.encodePacket(Buffer.from('hi'));
  assert.equal(tp.toString('hex'), '010a0000070050' + '0002' + '0d0a' + '6869');
  const back = Buffer.concat([tp, t.encodePacket(Buffer.from('there'))]);
  for (let cut = 0; cut <= back.length; cut++) {
    const c = new TrojanPacketCodec(trojanPasswordHash('pw'), IPV4);
    const got = [...c.decode(back.subarray(0, cut)), ...c.decode(back.subarray(cut))];
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['hi', 'there'],
    );
    assert.deepEqual(got[0]!.address, IPV4);
  }
  assert.throws(
    () => new TrojanPacketCodec('h', IPV4).decode(Buffer.from('010a000007005000020000', 'hex')),
    CodecError,
  );

  const v = new VlessPacketCodec(ID, IPV4);
  assert.equal(v.header[17 + 1], 2, 'VLESS command UDP');
  assert.equal(v.encodePacket(Buffer.from('abc')).toString('hex'), '0003616263');
  const vWire = Buffer.concat([
    Buffer.from([0, 0]),
    v.encodePacket(Buffer.from('abc')),
    v.encodePacket(Buffer.alloc(0)),
    v.encodePacket(Buffer.from('d')),
  ]);
  for (let cut = 0; cut <= vWire.length; cut++) {
    const c = new VlessPacketCodec(ID, IPV4);
    assert.deepEqual(
      [...c.decode(vWire.subarray(0, cut)), ...c.decode(vWire.subarray(cut))].map((p) => p.payload.toString()),
      ['abc', '', 'd'],
    );
  }

  // VMess: a 60,000-byte datagram is one chunk (the TCP stream would split it at 16 KiB).
  const s = session(0);
  const m = new VmessPacketCodec(vmessCmdKey(ID), { security: 'aes-128-gcm' }, IPV4, s);
  const big = Buffer.alloc(60_000, 1);
  const reader = new VmessChunkReader('aes-128-gcm', s.key, s.iv);
  assert.deepEqual(reader.push(m.encodePacket(big)).data, [big]);
  assert.throws(() => m.encodePacket(Buffer.alloc(0xffff)), TypeError);
  const wire = serverResponse(s, 'aes-128-gcm', [Buffer.from('r1'), Buffer.from('r2')]);
  const mc = new VmessPacketCodec(vmessCmdKey(ID), { security: 'aes-128-gcm' }, IPV4, s);
  assert.deepEqual(
    mc.decode(wire).map((p) => p.payload.toString()),
    ['r1', 'r2'],
  );
});
