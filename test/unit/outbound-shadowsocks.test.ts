// Known-answer vectors computed independently with Python's `cryptography` package
// (EVP_BytesToKey/MD5, HKDF-SHA1 "ss-subkey", AESGCM / ChaCha20Poly1305, 12-byte LE nonce);
// the e2e test (outbound-peers) sends the aes-256-gcm stream vector to a real ss-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  AeadStreamDecryptor,
  AeadStreamEncryptor,
  decryptUdpPacket,
  deriveSubkey,
  encryptUdpPacket,
  evpBytesToKey,
  incrementNonce,
  masterKey,
  MAX_PAYLOAD,
  SS_CIPHERS,
  SsDecryptError,
} from '../../src/outbound/shadowsocks.js';
import { ATYP_IPV4 } from '../../src/outbound/socks5.js';
import type { SsMethod } from '../../src/outbound/uri.js';

const KAT_PASSWORD = 'tranproxy-kat';
/** Target 127.0.0.1:8080 + "GET / HTTP/1.1\r\n\r\n", salt = 00 01 02 … */
const KAT_PLAINTEXT = Buffer.concat([
  Buffer.from([1, 127, 0, 0, 1, 0x1f, 0x90]),
  Buffer.from('GET / HTTP/1.1\r\n\r\n'),
]);
const KAT: Record<
  SsMethod,
  { master: string; subkey: string; short: string; bigLen: number; bigSha256: string; udp: string }
> = {
  'aes-128-gcm': {
    master: '6ccbdc60be9902b57f71fb4e993b49d7',
    subkey: '32ea4c77f82a5739ffdff01a659e8522',
    short:
      '000102030405060708090a0b0c0d0e0f6db8c11e53ff2333570c2d92b0799b78083bf635c6562854c5312676cfea1c7fc32a5d745f74c3874609e6935a8808f16dcce9f54fca08061dff5c',
    bigLen: 20084,
    bigSha256: '7009c301f0856b10efdff37599328b3067cea81977d982729b01bb3dd474fa9a',
    udp: '000102030405060708090a0b0c0d0e0f6cde96473ab84557229ec47ae13d86c84e636a8c2036050dd2214f',
  },
  'aes-256-gcm': {
    master: '6ccbdc60be9902b57f71fb4e993b49d77023714923609f1cefeec70f92e90913',
    subkey: '42f330c4cdb9fb940ba81d2647ef5dd2a87f208b4cf691934b024c92dda67102',
    short:
      '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f71f37caea5924b90925651f9163ff4ad25cc87d71ba7f70424ae802a081a6959a50bfa8dee657971959e9ebcba328865ff2a3d20771f7acd0b2606',
    bigLen: 20100,
    bigSha256: 'b630cbe3d3d658eb7561709a0abd4e8ef31a1f0d3068aa6f3c6e998ca58f6597',
    udp: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f7095716d26abf54eb528c611f3ddb973c84d14b76374accf9cbf83',
  },
  'chacha20-ietf-poly1305': {
    master: '6ccbdc60be9902b57f71fb4e993b49d77023714923609f1cefeec70f92e90913',
    subkey: '42f330c4cdb9fb940ba81d2647ef5dd2a87f208b4cf691934b024c92dda67102',
    short:
      '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f7d527f183ec869c845add852cb76fddcc27c729554878800428710d9a2470d421108fdb49ff87ef3238ee6b5e52757add4aae6c768a3c1c536c87d',
    bigLen: 20100,
    bigSha256: '186483205a9b67696426a6bfe9c3438711978056202b411edf07f1eb86ed6df7',
    udp: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f7c343f6ec84399830cbb188f86d5fa43996a64d29dbbbecf23452a',
  },
};

const METHODS = Object.keys(KAT) as SsMethod[];
const fixedSalt = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i));
const big = Buffer.from(Array.from({ length: 20000 }, (_, i) => i % 251));

test('EVP_BytesToKey and HKDF-SHA1 subkeys match the reference', () => {
  // The classic EVP_BytesToKey("foobar") vector used by Shadowsocks implementations.
  assert.equal(
    evpBytesToKey('foobar', 32).toString('hex'),
    '3858f62230ac3c915f300c664312c63f568378529614d22ddb49237d2f60bfdf',
  );
  for (const m of METHODS) {
    const info = SS_CIPHERS[m];
    assert.equal(masterKey(m, KAT_PASSWORD).toString('hex'), KAT[m].master, m);
    assert.equal(
      deriveSubkey(masterKey(m, KAT_PASSWORD), fixedSalt(info.saltLen), info.keyLen).toString('hex'),
      KAT[m].subkey,
      m,
    );
  }
});

test('nonce is a little-endian counter', () => {
  const n = Buffer.alloc(12);
  incrementNonce(n);
  assert.equal(n.toString('hex'), '010000000000000000000000');
  n[0] = 0xff;
  incrementNonce(n);
  assert.equal(n.toString('hex'), '000100000000000000000000');
  n.fill(0xff);
  incrementNonce(n);
  assert.equal(n.toString('hex'), '000000000000000000000000');
});

test('stream encryption with a fixed salt gives the known answer, in one call or many', () => {
  for (const m of METHODS) {
    const info = SS_CIPHERS[m];
    const enc = new AeadStreamEncryptor(info, masterKey(m, KAT_PASSWORD), fixedSalt(info.saltLen));
    assert.equal(enc.seal(KAT_PLAINTEXT).toString('hex'), KAT[m].short, m);

    const encBig = new AeadStreamEncryptor(info, masterKey(m, KAT_PASSWORD), fixedSalt(info.saltLen));
    const out = encBig.seal(big);
    assert.equal(out.length, KAT[m].bigLen, m);
    assert.equal(createHash('sha256').update(out).digest('hex'), KAT[m].bigSha256, `${m}: chunks of at most 0x3FFF`);

    // The stream writes the pieces unjoined (one writev; the salt stays a piece of its own):
    // in order they are the same bytes.
    const parts = new AeadStreamEncryptor(info, masterKey(m, KAT_PASSWORD), fixedSalt(info.saltLen)).sealParts(big);
    assert.ok(parts.length >= 2, m);
    const joined = createHash('sha256');
    for (const p of parts) joined.update(p);
    assert.equal(joined.digest('hex'), KAT[m].bigSha256, `${m}: sealParts`);
  }
});

test('decryption: known answer, byte-by-byte and random splits, payload boundaries', () => {
  for (const m of METHODS) {
    const info = SS_CIPHERS[m];
    const master = masterKey(m, KAT_PASSWORD);
    const wire = Buffer.from(KAT[m].short, 'hex');
    const dec = new AeadStreamDecryptor(info, master);
    const got: Buffer[] = [];
    for (let i = 0; i < wire.length; i++) {
      got.push(...dec.push(wire.subarray(i, i + 1)));
      assert.equal(dec.started, i + 1 >= info.saltLen);
    }
    assert.deepEqual(Buffer.concat(got), KAT_PLAINTEXT, m);
    assert.equal(dec.pending, 0);

    for (const size of [1, MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 3 * MAX_PAYLOAD + 7]) {
      const payload = Buffer.alloc(size, 0x5a);
      const enc = new AeadStreamEncryptor(info, master);
      const stream = Buffer.concat([enc.seal(payload), enc.seal(Buffer.alloc(0)), enc.seal(Buffer.from('tail'))]);
      const d = new AeadStreamDecryptor(info, master);
      const parts: Buffer[] = [];
      let off = 0;
      let seed = size;
      while (off < stream.length) {
        seed = (seed * 48271) % 2147483647;
        const n = 1 + (seed % 5000);
        parts.push(...d.push(stream.subarray(off, off + n)));
        off += n;
      }
      assert.deepEqual(Buffer.concat(parts), Buffer.concat([payload, Buffer.from('tail')]), `${m} ${size}`);
      assert.ok(parts.every((p) => p.length <= MAX_PAYLOAD));
    }
  }
});

test('tampering, a wrong password and a truncated stream are detected', () => {
  for (const m of METHODS) {
    const info = SS_CIPHERS[m];
    const wire = Buffer.from(KAT[m].short, 'hex');
    const wrong = new AeadStreamDecryptor(info, masterKey(m, 'not-the-password'));
    assert.throws(
      () => wrong.push(wire),
      (e: unknown) => e instanceof SsDecryptError && e.code === 'EAUTH',
    );
    assert.throws(() => wrong.push(Buffer.alloc(1)), /already failed/);

    for (const at of [info.saltLen, info.saltLen + 1, info.saltLen + 2, wire.length - 1]) {
      const t = Buffer.from(wire);
      t[at]! ^= 0x01;
      assert.throws(
        () => new AeadStreamDecryptor(info, masterKey(m, KAT_PASSWORD)).push(t),
        SsDecryptError,
        `${m} flip at ${at}`,
      );
    }
    const cut = new AeadStreamDecryptor(info, masterKey(m, KAT_PASSWORD));
    assert.deepEqual(cut.push(wire.subarray(0, wire.length - 3)), []);
    assert.ok(cut.pending > 0, 'a truncated chunk stays pending (an error at EOF)');
  }
});

test('UDP packets: known answer, round-trip, rejection', () => {
  const addr = { type: ATYP_IPV4, host: '127.0.0.1', port: 8080 } as const;
  for (const m of METHODS) {
    const info = SS_CIPHERS[m];
    const master = masterKey(m, KAT_PASSWORD);
    const pkt = encryptUdpPacket(m, master, addr, Buffer.from('ping'), fixedSalt(info.saltLen));
    assert.equal(pkt.toString('hex'), KAT[m].udp, m);
    const d = decryptUdpPacket(m, master, pkt);
    assert.ok(d.ok);
    assert.deepEqual(d.address, addr);
    assert.equal(d.payload.toString(), 'ping');
    const random = encryptUdpPacket(m, master, { type: 3, host: 'dns.example', port: 53 }, Buffer.alloc(1200, 7));
    const r = decryptUdpPacket(m, master, random);
    assert.ok(r.ok && r.address.host === 'dns.example' && r.payload.length === 1200);
    assert.equal(decryptUdpPacket(m, masterKey(m, 'wrong'), pkt).ok, false);
    assert.equal(decryptUdpPacket(m, master, pkt.subarray(0, 20)).ok, false);
    assert.throws(() => encryptUdpPacket(m, master, addr, Buffer.alloc(0), Buffer.alloc(3)), /salt must be/);
  }
});
