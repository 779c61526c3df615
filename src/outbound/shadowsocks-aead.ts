// Shadowsocks AEAD stream crypto (SIP004 with the session subkeys of the AEAD spec), pure:
// keys, chunk sealing and incremental opening. Kept apart from the outbound (shadowsocks.ts,
// which re-exports it) so the splice engine's loop can use it without the node connection code.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createSecretKey,
  randomBytes,
  type CipherGCMTypes,
  type KeyObject,
} from 'node:crypto';
import { aeadContext, type AeadContext } from '../kernel/aead.js';
import type { SsMethod } from './uri.js';

export interface SsCipherInfo {
  /** Node's cipher name. */
  cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyLen: number;
  saltLen: number;
}

export const SS_CIPHERS: Record<SsMethod, SsCipherInfo> = {
  'aes-128-gcm': { cipher: 'aes-128-gcm', keyLen: 16, saltLen: 16 },
  'aes-256-gcm': { cipher: 'aes-256-gcm', keyLen: 32, saltLen: 32 },
  'chacha20-ietf-poly1305': { cipher: 'chacha20-poly1305', keyLen: 32, saltLen: 32 },
};

export const TAG_LEN = 16;
export const NONCE_LEN = 12;
export const MAX_PAYLOAD = 0x3fff;
const SUBKEY_INFO = Buffer.from('ss-subkey');

/** OpenSSL EVP_BytesToKey with MD5, one iteration, no salt: the Shadowsocks master key. */
export function evpBytesToKey(password: string | Buffer, keyLen: number): Buffer {
  const pw = typeof password === 'string' ? Buffer.from(password) : password;
  const parts: Buffer[] = [];
  let prev = Buffer.alloc(0);
  let have = 0;
  while (have < keyLen) {
    prev = createHash('md5').update(prev).update(pw).digest();
    parts.push(prev);
    have += prev.length;
  }
  return Buffer.concat(parts).subarray(0, keyLen);
}

export function masterKey(method: SsMethod, password: string): Buffer {
  return evpBytesToKey(password, SS_CIPHERS[method].keyLen);
}

/**
 * HKDF-SHA1(master key, salt, "ss-subkey") → per-session subkey (RFC 5869 written out with
 * HMACs: two per connection, and hkdfSync costs about twice as much).
 */
export function deriveSubkey(master: Buffer, salt: Buffer, keyLen: number): Buffer {
  const prk = createHmac('sha1', salt).update(master).digest();
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1, have = 0; have < keyLen; i++) {
    prev = createHmac('sha1', prk).update(prev).update(SUBKEY_INFO).update(Buffer.of(i)).digest();
    blocks.push(prev);
    have += prev.length;
  }
  return Buffer.concat(blocks).subarray(0, keyLen);
}

/**
 * One direction's AEAD under one session subkey: OpenSSL's context reused for every chunk when
 * kernel/aead can reach it, else a node:crypto cipher per chunk (with the key as a KeyObject,
 * so each chunk skips the key's conversion).
 */
class SessionAead {
  private readonly ctx: AeadContext | undefined;
  private readonly key: KeyObject | undefined;

  constructor(
    private readonly info: SsCipherInfo,
    subkey: Buffer,
    op: 'seal' | 'open',
  ) {
    this.ctx = aeadContext(info.cipher, subkey, op);
    if (!this.ctx) this.key = createSecretKey(subkey);
  }

  /** Appends ciphertext and tag to `out` (one buffer or two). */
  seal(nonce: Buffer, plaintext: Buffer, out: Buffer[]): void {
    if (this.ctx) out.push(this.ctx.seal(nonce, plaintext));
    else out.push(...aeadSealParts(this.info, this.key!, nonce, plaintext));
  }

  /** The OpenSSL context, when there is one: it can seal into a caller's buffer. */
  get context(): AeadContext | undefined {
    return this.ctx;
  }

  open(nonce: Buffer, sealed: Buffer): Buffer | undefined {
    return this.ctx ? this.ctx.open(nonce, sealed) : aeadOpen(this.info, this.key!, nonce, sealed);
  }

  free(): void {
    this.ctx?.free();
  }
}

/** Increments a little-endian counter nonce in place. */
export function incrementNonce(nonce: Buffer): void {
  for (let i = 0; i < nonce.length; i++) {
    nonce[i] = (nonce[i]! + 1) & 0xff;
    if (nonce[i] !== 0) return;
  }
}

/** ciphertext + tag */
export function aeadSeal(info: SsCipherInfo, key: Buffer | KeyObject, nonce: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv(info.cipher as CipherGCMTypes, key, nonce, { authTagLength: TAG_LEN });
  const out = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return out;
}

/** Ciphertext and tag as two buffers (no copy into one): for the stream's gathered write. */
function aeadSealParts(info: SsCipherInfo, key: KeyObject, nonce: Buffer, plaintext: Buffer): [Buffer, Buffer] {
  const c = createCipheriv(info.cipher as CipherGCMTypes, key, nonce, { authTagLength: TAG_LEN });
  const ct = c.update(plaintext);
  c.final(); // AEAD ciphers emit nothing here
  return [ct, c.getAuthTag()];
}

/** plaintext, or undefined when the tag does not verify. */
export function aeadOpen(
  info: SsCipherInfo,
  key: Buffer | KeyObject,
  nonce: Buffer,
  sealed: Buffer,
): Buffer | undefined {
  if (sealed.length < TAG_LEN) return undefined;
  const d = createDecipheriv(info.cipher as CipherGCMTypes, key, nonce, { authTagLength: TAG_LEN });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
  try {
    const plain = d.update(sealed.subarray(0, sealed.length - TAG_LEN));
    d.final(); // verifies the tag; AEAD ciphers emit nothing here
    return plain;
  } catch {
    return undefined;
  }
}

/** Encrypts one direction of a TCP session. The first output starts with the salt. */
export class AeadStreamEncryptor {
  readonly salt: Buffer;
  private readonly aead: SessionAead;
  private readonly nonce = Buffer.alloc(NONCE_LEN);
  private saltSent = false;

  constructor(info: SsCipherInfo, master: Buffer, salt?: Buffer) {
    this.salt = salt ?? randomBytes(info.saltLen);
    if (this.salt.length !== info.saltLen) throw new TypeError(`salt must be ${info.saltLen} bytes`);
    this.aead = new SessionAead(info, deriveSubkey(master, this.salt, info.keyLen), 'seal');
  }

  /** Releases the cipher context (the stream is done; a collected encryptor releases it too). */
  free(): void {
    this.aead.free();
  }

  /** Chunks of at most MAX_PAYLOAD bytes; an empty input gives no chunk (only the salt, once). */
  seal(data: Buffer): Buffer {
    const out = this.sealParts(data);
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /**
   * seal() as the pieces to send in order, not joined: a corked socket writes them with one
   * writev, and no 64 KiB buffer is allocated and copied per write.
   */
  sealParts(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (!this.saltSent) {
      out.push(this.salt);
      this.saltSent = true;
    }
    const ctx = this.aead.context;
    if (ctx && data.length > 0) {
      out.push(this.sealChunksTo(ctx, data));
      return out;
    }
    const len = Buffer.allocUnsafe(2);
    for (let off = 0; off < data.length; off += MAX_PAYLOAD) {
      const piece = data.subarray(off, Math.min(data.length, off + MAX_PAYLOAD));
      len.writeUInt16BE(piece.length, 0);
      const sealedLen: Buffer[] = [];
      this.aead.seal(this.nonce, len, sealedLen);
      incrementNonce(this.nonce);
      out.push(sealedLen.length === 1 ? sealedLen[0]! : Buffer.concat(sealedLen, 2 + TAG_LEN));
      this.aead.seal(this.nonce, piece, out);
      incrementNonce(this.nonce);
    }
    return out;
  }

  /** Every chunk of `data`, sealed into one buffer: one allocation per write, not three per chunk. */
  private sealChunksTo(ctx: AeadContext, data: Buffer): Buffer {
    const chunks = Math.ceil(data.length / MAX_PAYLOAD);
    const out = Buffer.allocUnsafe(data.length + chunks * (2 + 2 * TAG_LEN));
    const len = Buffer.allocUnsafe(2);
    let at = 0;
    for (let off = 0; off < data.length; off += MAX_PAYLOAD) {
      const piece = data.subarray(off, Math.min(data.length, off + MAX_PAYLOAD));
      len.writeUInt16BE(piece.length, 0);
      ctx.sealTo(this.nonce, len, out, at);
      incrementNonce(this.nonce);
      at += 2 + TAG_LEN;
      ctx.sealTo(this.nonce, piece, out, at);
      incrementNonce(this.nonce);
      at += piece.length + TAG_LEN;
    }
    return out;
  }
}

/** Why a stream could not be decrypted. */
export class SsDecryptError extends Error {
  constructor(
    readonly code: 'EAUTH' | 'EPROTO',
    message: string,
  ) {
    super(message);
    this.name = 'SsDecryptError';
  }
}

/** Decrypts one direction of a TCP session, incrementally. */
export class AeadStreamDecryptor {
  /** Bytes of the unit (salt, sealed length, sealed payload) that a read left incomplete. */
  private held: Buffer[] = [];
  private heldLen = 0;
  private aead: SessionAead | undefined;
  private readonly nonce = Buffer.alloc(NONCE_LEN);
  /** Payload length of the chunk whose length was read, awaiting its payload. */
  private payloadLen = -1;
  private broken = false;
  /** Payload bytes decrypted so far. */
  bytesOut = 0;

  constructor(
    private readonly info: SsCipherInfo,
    private readonly master: Buffer,
  ) {}

  /** True when the salt has arrived (the peer answered with this key's session). */
  get started(): boolean {
    return this.aead !== undefined;
  }

  /** Releases the cipher context (the stream is done; a collected decryptor releases it too). */
  free(): void {
    this.aead?.free();
  }

  /** Bytes held that are not yet a whole chunk (non-zero at EOF: truncated stream). */
  get pending(): number {
    return this.heldLen + (this.payloadLen >= 0 ? 1 : 0);
  }

  /**
   * Decrypted payloads of the complete chunks so far. Throws SsDecryptError. Units are opened
   * where they lie in `data`; only a unit split across reads is joined (at most one chunk).
   */
  push(data: Buffer): Buffer[] {
    if (this.broken) throw new SsDecryptError('EPROTO', 'stream already failed');
    const out: Buffer[] = [];
    try {
      let off = 0;
      if (this.heldLen > 0) {
        const need = this.unitLen() - this.heldLen;
        if (data.length < need) {
          this.hold(data);
          return out;
        }
        this.held.push(data.subarray(0, need));
        const unit = Buffer.concat(this.held, this.heldLen + need);
        this.held = [];
        this.heldLen = 0;
        this.open(unit, out);
        off = need;
      }
      for (let n = this.unitLen(); data.length - off >= n; n = this.unitLen()) {
        this.open(data.subarray(off, off + n), out);
        off += n;
      }
      if (off < data.length) this.hold(data.subarray(off));
    } catch (e) {
      this.broken = true;
      throw e;
    }
    return out;
  }

  /** Size of the next unit: the salt, a sealed length, or the sealed payload it announced. */
  private unitLen(): number {
    if (!this.aead) return this.info.saltLen;
    return this.payloadLen < 0 ? 2 + TAG_LEN : this.payloadLen + TAG_LEN;
  }

  private hold(b: Buffer): void {
    if (b.length === 0) return;
    this.held.push(b);
    this.heldLen += b.length;
  }

  /** Takes one whole unit. */
  private open(unit: Buffer, out: Buffer[]): void {
    if (!this.aead) {
      this.aead = new SessionAead(this.info, deriveSubkey(this.master, unit, this.info.keyLen), 'open');
      return;
    }
    if (this.payloadLen < 0) {
      const len = this.aead.open(this.nonce, unit);
      if (!len) throw new SsDecryptError('EAUTH', 'chunk length failed authentication (wrong password or method?)');
      incrementNonce(this.nonce);
      const n = len.readUInt16BE(0);
      if (n === 0 || n > MAX_PAYLOAD) throw new SsDecryptError('EPROTO', `invalid chunk length ${n}`);
      this.payloadLen = n;
      return;
    }
    const payload = this.aead.open(this.nonce, unit);
    if (!payload) throw new SsDecryptError('EAUTH', 'chunk payload failed authentication');
    incrementNonce(this.nonce);
    this.payloadLen = -1;
    this.bytesOut += payload.length;
    out.push(payload);
  }
}
