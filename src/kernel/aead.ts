// AEAD with one OpenSSL cipher context per key, the nonce given per call. node:crypto cannot
// re-key a cipher with a new nonce, so a Shadowsocks stream would build two cipher objects per
// 16 KiB chunk, which costs more than the encryption itself. The EVP functions are those of the
// OpenSSL Node runs on (the node binary exports them), reached through koffi; where they are
// not there, aeadContext() returns undefined and callers keep using node:crypto.
import { createRequire } from 'node:module';

export type AeadCipherName = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';

export const AEAD_TAG_LEN = 16;

/** seal/open for one key; every call names its own 12-byte nonce. */
export interface AeadContext {
  /** ciphertext followed by the tag, in one new buffer */
  seal(nonce: Buffer, plaintext: Buffer): Buffer;
  /** seal() written into `out` at `offset` (plaintext.length + 16 bytes) */
  sealTo(nonce: Buffer, plaintext: Buffer, out: Buffer, offset: number): void;
  /** the plaintext, or undefined when the tag does not verify */
  open(nonce: Buffer, sealed: Buffer): Buffer | undefined;
  /** Releases the OpenSSL context (idempotent); later calls throw. */
  free(): void;
}

type Fn = (...args: unknown[]) => unknown;
interface Evp {
  ctxNew: Fn;
  ctxFree: Fn;
  cipher: Record<AeadCipherName, unknown>;
  init: { seal: Fn; open: Fn };
  update: { seal: Fn; open: Fn };
  final: { seal: Fn; open: Fn };
  ctrl: Fn;
  address: (b: Buffer) => number;
  /** Where EVP_*Update/Final write their int output length (read by nobody, kept alive here). */
  outl: Buffer;
  /** Addresses of nonces, inputs and outputs: see AddressCache. */
  at: { nonce: AddressCache; input: AddressCache; output: AddressCache };
}

/**
 * A buffer's address from the last ArrayBuffer seen in its role: koffi.address costs more than
 * the EVP call it feeds, and a write's chunks (or a read's units) are views of one ArrayBuffer.
 * Holds that one ArrayBuffer, so the remembered address stays valid.
 */
class AddressCache {
  private ab: ArrayBufferLike | undefined;
  private base = 0;

  constructor(private readonly address: (b: Buffer) => number) {}

  of(b: Buffer): number {
    const ab = b.buffer;
    if (ab !== this.ab) {
      this.base = this.address(b) - b.byteOffset;
      this.ab = ab;
    }
    return this.base + b.byteOffset;
  }
}

const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

let evp: Evp | null | undefined;

/** The EVP functions, or null when koffi or the symbols are not there (then once, not per call). */
function load(): Evp | null {
  if (evp !== undefined) return evp;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as {
      load(path: string | null): { func(sig: string): Fn };
      address(v: unknown): bigint;
    };
    const lib = koffi.load(null); // the running program: node's own OpenSSL
    const f = (sig: string): Fn => lib.func(sig);
    const init = (op: string): Fn =>
      f(`int EVP_${op}Init_ex(void *ctx, void *cipher, void *engine, uintptr_t key, uintptr_t iv)`);
    const update = (op: string): Fn =>
      f(`int EVP_${op}Update(void *ctx, uintptr_t out, uintptr_t outl, uintptr_t src, int inl)`);
    const final = (op: string): Fn => f(`int EVP_${op}Final_ex(void *ctx, uintptr_t out, uintptr_t outl)`);
    // A small Uint8Array can live inside V8's heap, where a GC moves it; reading .buffer moves
    // it out for good, so the address stays valid across allocations (and is safe to keep).
    const address = (b: Buffer): number => {
      void b.buffer;
      return Number(koffi.address(b));
    };
    evp = {
      ctxNew: f('void *EVP_CIPHER_CTX_new()'),
      ctxFree: f('void EVP_CIPHER_CTX_free(void *ctx)'),
      cipher: {
        'aes-128-gcm': f('void *EVP_aes_128_gcm()')(),
        'aes-256-gcm': f('void *EVP_aes_256_gcm()')(),
        'chacha20-poly1305': f('void *EVP_chacha20_poly1305()')(),
      },
      init: { seal: init('Encrypt'), open: init('Decrypt') },
      update: { seal: update('Encrypt'), open: update('Decrypt') },
      final: { seal: final('Encrypt'), open: final('Decrypt') },
      ctrl: f('int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, uintptr_t ptr)'),
      outl: Buffer.alloc(4),
      address,
      at: { nonce: new AddressCache(address), input: new AddressCache(address), output: new AddressCache(address) },
    };
    for (const c of Object.values(evp.cipher)) if (!c) evp = null;
  } catch {
    evp = null;
  }
  return evp;
}

// A context whose owner was collected without free() is released here.
const orphans = new FinalizationRegistry<unknown>((ctx) => load()?.ctxFree(ctx));

/**
 * A context sealing or opening with `key` (the cipher's key length), or undefined when OpenSSL's
 * EVP functions cannot be reached. Contexts hold no state between calls but the key.
 */
export function aeadContext(cipher: AeadCipherName, key: Buffer, op: 'seal' | 'open'): AeadContext | undefined {
  const e = load();
  if (!e) return undefined;
  const ctx = e.ctxNew();
  if (!ctx) return undefined;
  if (e.init[op](ctx, e.cipher[cipher], null, e.address(key), 0) !== 1) {
    e.ctxFree(ctx);
    return undefined;
  }
  let live = true;
  const outlAt = e.address(e.outl);
  const holder: AeadContext = {
    seal(nonce, plaintext) {
      const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_LEN);
      holder.sealTo(nonce, plaintext, out, 0);
      return out;
    },
    sealTo(nonce, plaintext, out, offset) {
      if (!live) throw new Error('AEAD context used after free()');
      const n = plaintext.length;
      if (offset < 0 || offset + n + AEAD_TAG_LEN > out.length) throw new RangeError('sealTo: output too small');
      const at = e.at.output.of(out) + offset;
      e.init.seal(ctx, null, null, 0, e.at.nonce.of(nonce));
      if (n > 0) e.update.seal(ctx, at, outlAt, e.at.input.of(plaintext), n);
      e.final.seal(ctx, at + n, outlAt);
      e.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_LEN, at + n);
    },
    open(nonce, sealed) {
      if (!live) throw new Error('AEAD context used after free()');
      const n = sealed.length - AEAD_TAG_LEN;
      if (n < 0) return undefined;
      const out = Buffer.allocUnsafe(n);
      const at = e.at.output.of(out);
      const inAt = e.at.input.of(sealed);
      e.init.open(ctx, null, null, 0, e.at.nonce.of(nonce));
      if (n > 0) e.update.open(ctx, at, outlAt, inAt, n);
      e.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_LEN, inAt + n);
      // Final verifies the tag; for these ciphers it writes no bytes.
      return e.final.open(ctx, at + n, outlAt) === 1 ? out : undefined;
    },
    free() {
      if (!live) return;
      live = false;
      orphans.unregister(holder);
      e.ctxFree(ctx);
    },
  };
  orphans.register(holder, ctx, holder);
  return holder;
}
