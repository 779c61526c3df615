// Fuzz target: what upstream nodes send back — SOCKS5 replies (src/outbound/socks5.ts), the
// HTTP CONNECT response head (src/outbound/http-connect.ts) and Shadowsocks AEAD streams and
// packets (src/outbound/shadowsocks.ts). A hostile or broken node must never crash the proxy.
// Properties: no exception but the documented one (SsDecryptError); results have the
// Parsed shape; a parser's verdict on a message does not change when more bytes follow it
// or depend on bytes past `length` (no reads out of bounds); a proper prefix of a message
// is 'need-more', and an error stays an error; encoders and decoders round-trip; any
// tampering with a Shadowsocks stream is detected, never decrypted into other plaintext.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { parseConnectResponse } from '../../src/outbound/http-connect.js';
import type { Parsed } from '../../src/outbound/node-conn.js';
import {
  AeadStreamDecryptor,
  AeadStreamEncryptor,
  decryptUdpPacket,
  encryptUdpPacket,
  masterKey,
  SS_CIPHERS,
  SsDecryptError,
} from '../../src/outbound/shadowsocks.js';
import {
  ATYP_DOMAIN,
  ATYP_IPV4,
  ATYP_IPV6,
  decodeSocksAddress,
  decodeSocksUdpPacket,
  encodeSocksAddress,
  encodeSocksUdpPacket,
  parseAuthReply,
  parseConnectReply,
  parseMethodReply,
  type SocksAddress,
} from '../../src/outbound/socks5.js';
import type { SsMethod } from '../../src/outbound/uri.js';
import { bytesArb, corpus, cutsArb, fc, mutated, params, splitAt } from './harness.js';

type Parser = (b: Buffer) => Parsed<object>;

const SOCKS_PARSERS: Record<string, Parser> = {
  parseMethodReply,
  parseAuthReply,
  parseConnectReply,
  decodeSocksAddress: (b) => decodeSocksAddress(b, 0),
};
const HTTP_PARSERS: Record<string, Parser> = {
  parseConnectResponse: (b) => parseConnectResponse(b),
  'parseConnectResponse(maxHead 64)': (b) => parseConnectResponse(b, 64),
};

/** The Parsed contract, plus: the verdict does not move when bytes are added or cut. */
function checkParser(name: string, parse: Parser, b: Buffer, extra: Buffer): void {
  const r = parse(b);
  if (r === 'need-more') return;
  assert.equal(typeof r, 'object', `${name}: result shape`);
  if (!r.ok) {
    assert.equal(typeof r.error, 'string');
    assert.ok(r.error.length > 0, `${name}: an error says why`);
    assert.ok(!/[\r\n\x00]/.test(r.error), `${name}: error text is one printable line: ${JSON.stringify(r.error)}`);
    const more = parse(Buffer.concat([b, extra]));
    assert.ok(more !== 'need-more' && !more.ok, `${name}: an error stays an error when more bytes come`);
    return;
  }
  assert.ok(
    Number.isInteger(r.length) && r.length >= 1 && r.length <= b.length,
    `${name}: length ${r.length} within 1..${b.length}`,
  );
  // Exactly the first `length` bytes decide the result: nothing past them is read.
  const exact = parse(Buffer.from(b.subarray(0, r.length)));
  assert.deepEqual(exact, r, `${name}: result depends on bytes past length`);
  assert.deepEqual(
    parse(Buffer.concat([b.subarray(0, r.length), extra])),
    r,
    `${name}: result changes when other bytes follow`,
  );
  for (let k = 0; k < r.length; k++) {
    assert.equal(
      parse(Buffer.from(b.subarray(0, k))),
      'need-more',
      `${name}: a ${k}-byte prefix of a ${r.length}-byte message is not 'need-more'`,
    );
  }
}

function checkAllParsers(parsers: Record<string, Parser>, b: Buffer, extra: Buffer): void {
  for (const [name, p] of Object.entries(parsers)) checkParser(name, p, b, extra);
  const udp = decodeSocksUdpPacket(b);
  if (udp.ok) {
    assert.ok(udp.packet.frag >= 0 && udp.packet.frag <= 255);
    assert.ok(udp.packet.payload.length <= b.length);
  } else assert.ok(udp.error.length > 0);
}

// ── SOCKS5 ───────────────────────────────────────────────────────────────────

const ipv4Arb = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const ipv6Arb = fc.ipV6();
const domainArb = fc.oneof(fc.domain(), fc.stringMatching(/^[\x21-\x7e]{1,255}$/));
const addressArb: fc.Arbitrary<SocksAddress> = fc.oneof(
  fc.record({ host: ipv4Arb, port: fc.nat(65535), type: fc.constant(ATYP_IPV4) }),
  fc.record({ host: ipv6Arb, port: fc.nat(65535), type: fc.constant(ATYP_IPV6) }),
  fc.record({ host: domainArb, port: fc.nat(65535), type: fc.constant(ATYP_DOMAIN) }),
) as fc.Arbitrary<SocksAddress>;

/** Server → client SOCKS5 messages, well-formed, to mutate. */
const socksReplyArb = fc.oneof(
  fc.tuple(fc.nat(255)).map(([m]) => Buffer.from([5, m])),
  fc.tuple(fc.nat(255)).map(([s]) => Buffer.from([1, s])),
  fc.tuple(fc.nat(255), addressArb).map(([rep, a]) => Buffer.concat([Buffer.from([5, rep, 0]), encodeSocksAddress(a)])),
);

test('SOCKS5 corpus replays', () => {
  const entries = corpus('socks5');
  assert.ok(entries.length >= 8);
  for (const { name, data } of entries) {
    try {
      checkAllParsers(SOCKS_PARSERS, data, Buffer.from([5, 0, 0, 1]));
    } catch (e) {
      throw new Error(`corpus ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
});

test('SOCKS5 parsers: arbitrary and mutated replies', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        bytesArb(300),
        socksReplyArb.chain((b) => mutated(b)),
      ),
      bytesArb(8),
      (b, extra) => checkAllParsers(SOCKS_PARSERS, b, extra),
    ),
    params(20000),
  );
});

test('SOCKS5 addresses and UDP datagrams round-trip', () => {
  fc.assert(
    fc.property(addressArb, fc.nat(255), bytesArb(64), (addr, frag, payload) => {
      const enc = encodeSocksAddress(addr);
      const dec = decodeSocksAddress(Buffer.concat([enc, payload]), 0);
      assert.ok(dec !== 'need-more' && dec.ok);
      assert.equal(dec.length, enc.length);
      assert.equal(dec.address.type, addr.type);
      assert.equal(dec.address.port, addr.port);
      if (addr.type === ATYP_IPV6) {
        assert.ok(isIPv6(dec.address.host));
        assert.ok(encodeSocksAddress(dec.address).equals(enc), 'IPv6 text re-encodes to the same bytes');
      } else assert.equal(dec.address.host, addr.host);
      const udp = decodeSocksUdpPacket(encodeSocksUdpPacket({ frag, address: addr, payload }));
      assert.ok(udp.ok);
      assert.equal(udp.packet.frag, frag);
      assert.ok(udp.packet.payload.equals(payload));
    }),
    params(5000),
  );
});

// ── HTTP CONNECT ─────────────────────────────────────────────────────────────

const statusArb = fc.oneof(fc.constantFrom(200, 407, 403, 502, 101), fc.integer({ min: 100, max: 999 }));
const fieldArb = fc.tuple(
  fc.constantFrom('Proxy-Agent', 'Content-Length', 'Via', 'X-A', 'Connection'),
  fc.constantFrom(': ', ':', ':\t'),
  fc.stringMatching(/^[\x20-\x7e]{0,20}$/),
);
const connectResponseArb = fc
  .tuple(
    fc.constantFrom('HTTP/1.1', 'HTTP/1.0'),
    statusArb,
    fc.constantFrom(' Connection established', ' OK', '', ' '),
    fc.array(fieldArb, { maxLength: 5 }),
    bytesArb(16),
  )
  .map(([v, st, reason, fields, tunnel]) =>
    Buffer.concat([
      Buffer.from(`${v} ${st}${reason}\r\n${fields.map(([n, s, val]) => `${n}${s}${val}\r\n`).join('')}\r\n`, 'latin1'),
      tunnel,
    ]),
  );
const HTTP_FRAGMENTS = ['\r\n', '\n', '\r', ' ', '\t', ':', '\r\n\r\n', 'HTTP/1.1 ', '\x00', '\xff', ' folded\r\n'];

test('HTTP CONNECT corpus replays', () => {
  const entries = corpus('http-connect');
  assert.ok(entries.length >= 8);
  for (const { name, data } of entries) {
    try {
      checkAllParsers(HTTP_PARSERS, data, Buffer.from('\r\n\r\nxyz'));
    } catch (e) {
      throw new Error(`corpus ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
});

test('parseConnectResponse: arbitrary and mutated response heads', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        bytesArb(300),
        connectResponseArb,
        connectResponseArb.chain((b) => mutated(b, HTTP_FRAGMENTS)),
      ),
      bytesArb(8),
      (b, extra) => checkAllParsers(HTTP_PARSERS, b, extra),
    ),
    params(8000),
  );
});

test('parseConnectResponse: a generated head parses to its own status and fields; the tunnel bytes are left alone', () => {
  fc.assert(
    fc.property(connectResponseArb, (b) => {
      const r = parseConnectResponse(b);
      assert.ok(r !== 'need-more' && r.ok, JSON.stringify(b.toString('latin1')));
      const head = b.toString('latin1', 0, r.length);
      assert.ok(head.endsWith('\r\n\r\n'));
      assert.equal(r.status, Number(head.slice(9, 12)));
      assert.equal(r.headers.length, head.split('\r\n').length - 3);
    }),
    params(3000),
  );
});

// ── Shadowsocks ──────────────────────────────────────────────────────────────

const METHODS = Object.keys(SS_CIPHERS) as SsMethod[];
const MASTER = Object.fromEntries(METHODS.map((m) => [m, masterKey(m, 'fuzz-password')])) as Record<SsMethod, Buffer>;
const methodArb = fc.constantFrom(...METHODS);

type DecryptOutcome = { plain: Buffer; error?: string; pending: number };

/** Push chunks; only SsDecryptError may come out, and after it every push fails the same way. */
function decryptAll(method: SsMethod, chunks: readonly Buffer[]): DecryptOutcome {
  const d = new AeadStreamDecryptor(SS_CIPHERS[method], MASTER[method]);
  const out: Buffer[] = [];
  for (const c of chunks) {
    try {
      for (const p of d.push(c)) {
        assert.ok(p.length >= 1 && p.length <= 0x3fff, 'payload chunk size');
        out.push(Buffer.from(p));
      }
    } catch (e) {
      assert.ok(e instanceof SsDecryptError, `unexpected ${(e as Error).name}: ${(e as Error).message}`);
      assert.ok(e.code === 'EAUTH' || e.code === 'EPROTO');
      assert.throws(
        () => d.push(Buffer.from([1])),
        (x: unknown) => x instanceof SsDecryptError && x.code === 'EPROTO',
        'a failed stream stays failed',
      );
      return { plain: Buffer.concat(out), error: e.code, pending: -1 }; // (pending is meaningless after a failure)
    }
  }
  return { plain: Buffer.concat(out), pending: d.pending };
}

test('Shadowsocks corpus replays (arbitrary streams for every method)', () => {
  const entries = corpus('shadowsocks');
  assert.ok(entries.length >= 4);
  for (const { name, data } of entries) {
    for (const m of METHODS) {
      const whole = decryptAll(m, [data]);
      const bytewise = decryptAll(
        m,
        [...data].map((x) => Buffer.from([x])),
      );
      assert.deepEqual(bytewise, whole, `corpus ${name} (${m}): chunking changed the outcome`);
      assert.equal(
        decryptUdpPacket(m, MASTER[m], data).ok,
        false,
        `corpus ${name} (${m}): garbage authenticated as a UDP packet`,
      );
    }
  }
});

test('Shadowsocks: arbitrary bytes never decrypt and never throw anything but SsDecryptError, whatever the chunking', () => {
  fc.assert(
    fc.property(methodArb, bytesArb(400), cutsArb, (m, b, cuts) => {
      const whole = decryptAll(m, [b]);
      assert.equal(whole.plain.length, 0, 'random bytes authenticated');
      assert.deepEqual(decryptAll(m, splitAt(b, cuts)), whole);
      const udp = decryptUdpPacket(m, MASTER[m], b);
      assert.equal(udp.ok, false);
    }),
    params(6000),
  );
});

const plaintextArb = fc.array(bytesArb(3000), { maxLength: 4 });
const saltArb = (m: SsMethod) =>
  fc.uint8Array({ minLength: SS_CIPHERS[m].saltLen, maxLength: SS_CIPHERS[m].saltLen }).map((u) => Buffer.from(u));

function encryptAll(m: SsMethod, salt: Buffer, writes: readonly Buffer[]): Buffer {
  const e = new AeadStreamEncryptor(SS_CIPHERS[m], MASTER[m], salt);
  return Buffer.concat(writes.map((w) => e.seal(w)));
}

test('Shadowsocks: streams round-trip through any chunking; truncation only leaves bytes pending', () => {
  fc.assert(
    fc.property(
      methodArb.chain((m) => fc.tuple(fc.constant(m), saltArb(m), plaintextArb, cutsArb, fc.nat())),
      ([m, salt, writes, cuts, cut]) => {
        const wire = encryptAll(m, salt, writes);
        const plain = Buffer.concat(writes);
        const r = decryptAll(m, splitAt(wire, cuts));
        assert.equal(r.error, undefined);
        assert.ok(r.plain.equals(plain));
        assert.equal(r.pending, 0);
        const truncated = decryptAll(m, [wire.subarray(0, cut % (wire.length + 1))]);
        assert.equal(truncated.error, undefined, 'a truncated stream is not an error (only at EOF)');
        assert.ok(plain.subarray(0, truncated.plain.length).equals(truncated.plain), 'a prefix of the plaintext');
      },
    ),
    params(1500),
  );
});

test('Shadowsocks: any change to a stream is detected, never decrypted into other plaintext', () => {
  fc.assert(
    fc.property(
      methodArb.chain((m) =>
        fc.tuple(
          fc.constant(m),
          saltArb(m),
          plaintextArb.filter((w) => w.some((x) => x.length > 0)),
          fc.nat(),
          fc.integer({ min: 1, max: 255 }),
        ),
      ),
      ([m, salt, writes, at, xor]) => {
        const wire = encryptAll(m, salt, writes);
        const plain = Buffer.concat(writes);
        const bad = Buffer.from(wire);
        const i = at % bad.length;
        bad[i] = bad[i]! ^ xor;
        const r = decryptAll(m, [bad]);
        assert.equal(r.error, 'EAUTH', `flipping byte ${i} of ${bad.length} was not detected`);
        assert.ok(
          plain.subarray(0, r.plain.length).equals(r.plain),
          'what came out before the damage is the real plaintext',
        );
      },
    ),
    params(1500),
  );
});

test('Shadowsocks UDP: packets round-trip; a flipped byte is refused', () => {
  fc.assert(
    fc.property(
      methodArb.chain((m) =>
        fc.tuple(fc.constant(m), saltArb(m), addressArb, bytesArb(200), fc.nat(), fc.integer({ min: 1, max: 255 })),
      ),
      ([m, salt, addr, payload, at, xor]) => {
        const pkt = encryptUdpPacket(m, MASTER[m], addr, payload, salt);
        const r = decryptUdpPacket(m, MASTER[m], pkt);
        assert.ok(r.ok);
        assert.ok(r.payload.equals(payload));
        assert.equal(r.address.port, addr.port);
        const bad = Buffer.from(pkt);
        bad[at % bad.length] ^= xor;
        assert.equal(decryptUdpPacket(m, MASTER[m], bad).ok, false);
      },
    ),
    params(1500),
  );
});
