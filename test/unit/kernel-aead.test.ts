// kernel/aead: OpenSSL contexts reused across nonces give node:crypto's bytes, refuse what
// node:crypto refuses, and survive many contexts, frees and garbage collections.
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import test from 'node:test';
import { aeadContext, type AeadCipherName } from '../../src/kernel/aead.js';

const CIPHERS: AeadCipherName[] = ['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305'];
const keyLen = (c: AeadCipherName): number => (c === 'aes-128-gcm' ? 16 : 32);

function nodeSeal(c: AeadCipherName, key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const x = createCipheriv(c as CipherGCMTypes, key, nonce, { authTagLength: 16 });
  return Buffer.concat([x.update(plain), x.final(), x.getAuthTag()]);
}

test('seal and open match node:crypto for the same key, nonces and data, one context for all', () => {
  for (const c of CIPHERS) {
    const key = randomBytes(keyLen(c));
    const seal = aeadContext(c, key, 'seal');
    const open = aeadContext(c, key, 'open');
    assert.ok(seal, `${c}: node's OpenSSL is reachable here`);
    assert.ok(open, `${c}: node's OpenSSL is reachable here`);
    for (const n of [0, 1, 2, 15, 16, 17, 100, 4095, 4096, 16383, 70000]) {
      const nonce = randomBytes(12);
      // A view at an odd offset into a larger buffer: addresses must include the offset.
      const plain = Buffer.concat([randomBytes(3), randomBytes(n)]).subarray(3);
      const want = nodeSeal(c, key, nonce, plain);
      const got: Buffer = seal.seal(nonce, plain);
      assert.ok(got.equals(want), `${c}, ${n} bytes: seal`);
      const into = Buffer.alloc(n + 16 + 7, 0xee);
      seal.sealTo(nonce, plain, into, 5);
      assert.ok(into.subarray(5, 5 + n + 16).equals(want), `${c}, ${n} bytes: sealTo`);
      assert.deepEqual(
        [...into.subarray(0, 5), ...into.subarray(5 + n + 16)],
        [0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee],
      );
      assert.ok(open.open(nonce, got)?.equals(plain), `${c}, ${n} bytes: open`);
      const bad: Buffer = Buffer.from(got);
      bad[Math.floor(Math.random() * bad.length)]! ^= 0x01;
      assert.equal(open.open(nonce, bad), undefined, `${c}, ${n} bytes: a flipped bit is refused`);
      assert.equal(open.open(randomBytes(12), got), undefined, `${c}, ${n} bytes: another nonce is refused`);
      assert.ok(open.open(nonce, got)?.equals(plain), `${c}, ${n} bytes: the context still works after a refusal`);
    }
    assert.equal(open.open(randomBytes(12), Buffer.alloc(15)), undefined, 'shorter than a tag');
    assert.throws(() => seal.sealTo(randomBytes(12), Buffer.alloc(10), Buffer.alloc(25), 0), RangeError);
    seal.free();
    seal.free();
    open.free();
    assert.throws(() => seal.seal(randomBytes(12), Buffer.alloc(1)), /after free/);
  }
});

test('many contexts, freed or dropped, under garbage collection', () => {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  const plain = randomBytes(300);
  const want = nodeSeal('aes-256-gcm', key, nonce, plain);
  for (let i = 0; i < 3000; i++) {
    const ctx = aeadContext('aes-256-gcm', key, 'seal')!;
    // Garbage between calls: scavenges run while contexts are alive.
    const junk = Array.from({ length: 50 }, () => Buffer.alloc(8));
    assert.ok(ctx.seal(nonce, plain).equals(want));
    assert.equal(junk.length, 50);
    if (i % 2 === 0) ctx.free();
  }
});
