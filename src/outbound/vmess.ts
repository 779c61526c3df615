// VMess outbound with AEAD headers (alterId 0), as v2ray-core's proxy/vmess/{aead,encoding}:
//   cmdKey = MD5(uuid bytes + "c48619fe-8f02-49e0-b9e9-edf763e17e21")
//   KDF(key, path…) = nested HMAC-SHA256: HMAC keyed "VMess AEAD KDF", each path element an
//     HMAC whose hash is the previous level.
//   request = authID (AES-128-ECB of time‖rand‖crc32) ‖ GCM(len) ‖ nonce(8) ‖ GCM(header),
//     header = ver 1, body iv(16), body key(16), response byte, options, padding‖security,
//     0, command, port-then-address, padding, FNV-1a.
//   body chunks: length (2, masked with SHAKE128(iv)) ‖ AEAD(payload) with nonce count(2)‖iv[2:12];
//     an empty chunk ends the direction. Response keys are SHA-256(request key/iv)[:16].
// Options sent: chunk stream + chunk masking (no global padding, no authenticated length).
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { CodecError, type FrameCodec } from './framed-stream.js';
import type { NodeConnOptions } from './node-conn.js';
import type { SocksAddress } from './socks5.js';
import { encodePortThenAddress, uuidBytes, V2rayTcpOutbound } from './v2ray-common.js';
import type { VmessNodeSpec, VmessSecurity } from './uri-v2ray.js';

export const VMESS_CMD_TCP = 1;
export const VMESS_CMD_UDP = 2;
const OPT_CHUNK_STREAM = 0x01;
const OPT_CHUNK_MASKING = 0x04;
const SECURITY_CODE: Record<VmessSecurity, number> = { 'aes-128-gcm': 3, 'chacha20-poly1305': 4, none: 5 };
const TAG = 16;
/** Largest payload per chunk this client sends (v2ray reads chunks of any 16-bit size). */
export const VMESS_MAX_CHUNK_PAYLOAD = 16 * 1024 - TAG;

// ── key derivation ───────────────────────────────────────────────────────────

type HashFn = (data: Buffer) => Buffer;

/** HMAC (RFC 2104) over an arbitrary hash with a 64-byte block. */
function hmacOver(hash: HashFn, key: Buffer, data: Buffer): Buffer {
  const k = Buffer.alloc(64);
  (key.length > 64 ? hash(key) : key).copy(k);
  const inner = Buffer.alloc(64);
  const outer = Buffer.alloc(64);
  for (let i = 0; i < 64; i++) {
    inner[i] = k[i]! ^ 0x36;
    outer[i] = k[i]! ^ 0x5c;
  }
  return hash(Buffer.concat([outer, hash(Buffer.concat([inner, data]))]));
}

/** v2ray's aead.KDF: 32 bytes. */
export function vmessKdf(key: Buffer, ...path: (string | Buffer)[]): Buffer {
  let h: HashFn = (d) => createHmac('sha256', 'VMess AEAD KDF').update(d).digest();
  for (const p of path) {
    const parent = h;
    const pk = typeof p === 'string' ? Buffer.from(p) : p;
    h = (d) => hmacOver(parent, pk, d);
  }
  return h(key);
}

export function vmessCmdKey(id: string): Buffer {
  return createHash('md5').update(uuidBytes(id)).update('c48619fe-8f02-49e0-b9e9-edf763e17e21').digest();
}

/** AES-128-ECB(KDF16(cmdKey, "AES Auth ID Encryption"), time(8) ‖ rand(4) ‖ crc32(first 12)). */
export function vmessAuthId(cmdKey: Buffer, unixSeconds: number, rand: Buffer = randomBytes(4)): Buffer {
  const plain = Buffer.alloc(16);
  plain.writeBigInt64BE(BigInt(unixSeconds), 0);
  rand.copy(plain, 8, 0, 4);
  plain.writeUInt32BE(crc32(plain.subarray(0, 12)), 12);
  const c = createCipheriv('aes-128-ecb', vmessKdf(cmdKey, 'AES Auth ID Encryption').subarray(0, 16), null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(plain), c.final()]);
}

function gcmSeal(key: Buffer, iv: Buffer, plain: Buffer, aad?: Buffer): Buffer {
  const c = createCipheriv('aes-128-gcm', key, iv, { authTagLength: TAG });
  if (aad) c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function gcmOpen(key: Buffer, iv: Buffer, sealed: Buffer, aad?: Buffer): Buffer | undefined {
  if (sealed.length < TAG) return undefined;
  const d = createDecipheriv('aes-128-gcm', key, iv, { authTagLength: TAG });
  if (aad) d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
  } catch {
    return undefined;
  }
}

/** authID ‖ GCM(len) ‖ nonce ‖ GCM(header): the AEAD request header (SealVMessAEADHeader). */
export function sealVmessHeader(
  cmdKey: Buffer,
  header: Buffer,
  authId: Buffer,
  nonce: Buffer = randomBytes(8),
): Buffer {
  const kdf = (what: string) => vmessKdf(cmdKey, what, authId, nonce);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(header.length);
  const sealedLen = gcmSeal(
    kdf('VMess Header AEAD Key_Length').subarray(0, 16),
    kdf('VMess Header AEAD Nonce_Length').subarray(0, 12),
    len,
    authId,
  );
  const sealedHeader = gcmSeal(
    kdf('VMess Header AEAD Key').subarray(0, 16),
    kdf('VMess Header AEAD Nonce').subarray(0, 12),
    header,
    authId,
  );
  return Buffer.concat([authId, sealedLen, nonce, sealedHeader]);
}

export interface VmessSession {
  key: Buffer;
  iv: Buffer;
  /** The byte the server must echo first in its response header. */
  responseByte: number;
  /** Random padding length, 0-15. */
  padding: Buffer;
}

export function newVmessSession(): VmessSession {
  const r = randomBytes(34);
  return { key: r.subarray(0, 16), iv: r.subarray(16, 32), responseByte: r[32]!, padding: randomBytes(r[33]! & 0x0f) };
}

/** The request header before sealing (ends with its FNV-1a). */
export function encodeVmessHeader(
  s: VmessSession,
  security: VmessSecurity,
  command: number,
  target: SocksAddress,
): Buffer {
  const head = Buffer.concat([
    Buffer.from([1]),
    s.iv,
    s.key,
    Buffer.from([
      s.responseByte,
      OPT_CHUNK_STREAM | OPT_CHUNK_MASKING,
      (s.padding.length << 4) | SECURITY_CODE[security],
      0,
      command,
    ]),
    encodePortThenAddress(target),
    s.padding,
  ]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(fnv1a32(head));
  return Buffer.concat([head, sum]);
}

export function fnv1a32(b: Buffer): number {
  let h = 0x811c9dc5;
  for (const x of b) h = Math.imul(h ^ x, 0x01000193) >>> 0;
  return h >>> 0;
}

// ── body chunks ──────────────────────────────────────────────────────────────

/** SHAKE128(iv) read two bytes at a time (the chunk length mask). */
export class ShakeMask {
  private readonly base: Hash;
  private block = Buffer.alloc(0);
  private used = 0;
  private produced = 0;

  constructor(iv: Buffer) {
    this.base = createHash('shake128').update(iv);
  }

  next(): number {
    if (this.used + 2 > this.block.length) {
      // Node's SHAKE has no streaming read: take a longer prefix of the same output.
      const want = Math.max(256, this.produced * 2);
      const all = this.base.copy({ outputLength: this.produced + want }).digest();
      this.block = all.subarray(this.produced);
      this.produced += want;
      this.used = 0;
    }
    const v = this.block.readUInt16BE(this.used);
    this.used += 2;
    return v;
  }
}

function chachaKey(k: Buffer): Buffer {
  const a = createHash('md5').update(k).digest();
  return Buffer.concat([a, createHash('md5').update(a).digest()]);
}

/** One direction's chunk cipher: seal/open with the counter nonce. */
class ChunkCipher {
  private count = 0;
  private readonly nonce: Buffer;
  private readonly key: Buffer;

  constructor(
    private readonly security: VmessSecurity,
    key: Buffer,
    iv: Buffer,
  ) {
    this.nonce = Buffer.from(iv.subarray(0, 12));
    this.key = security === 'chacha20-poly1305' ? chachaKey(key) : key;
  }

  get overhead(): number {
    return this.security === 'none' ? 0 : TAG;
  }

  private nextNonce(): Buffer {
    this.nonce.writeUInt16BE(this.count & 0xffff, 0);
    this.count++;
    return this.nonce;
  }

  seal(plain: Buffer): Buffer {
    if (this.security === 'none') return plain;
    // (typed as GCM: Node's typings lack ChaCha20-Poly1305's AEAD overload)
    const algo = (this.security === 'aes-128-gcm' ? 'aes-128-gcm' : 'chacha20-poly1305') as 'aes-128-gcm';
    const c = createCipheriv(algo, this.key, this.nextNonce(), { authTagLength: TAG });
    return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  }

  open(sealed: Buffer): Buffer | undefined {
    if (this.security === 'none') return sealed;
    if (sealed.length < TAG) return undefined;
    // (typed as GCM: Node's typings lack ChaCha20-Poly1305's AEAD overload)
    const algo = (this.security === 'aes-128-gcm' ? 'aes-128-gcm' : 'chacha20-poly1305') as 'aes-128-gcm';
    const d = createDecipheriv(algo, this.key, this.nextNonce(), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    try {
      return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
    } catch {
      return undefined;
    }
  }
}

/** Writes one direction of a VMess body: masked length ‖ sealed payload, per chunk. */
export class VmessChunkWriter {
  private readonly mask: ShakeMask;
  private readonly cipher: ChunkCipher;

  constructor(
    security: VmessSecurity,
    key: Buffer,
    iv: Buffer,
    /** Largest payload per chunk (UDP: a whole datagram is one chunk). */
    private readonly maxPayload = VMESS_MAX_CHUNK_PAYLOAD,
  ) {
    this.mask = new ShakeMask(iv);
    this.cipher = new ChunkCipher(security, key, iv);
  }

  /** Chunks of `data`; an empty `data` is the end-of-stream chunk. */
  write(data: Buffer): Buffer {
    const out: Buffer[] = [];
    let off = 0;
    do {
      const piece = data.subarray(off, off + this.maxPayload);
      const sealed = this.cipher.seal(piece);
      const len = Buffer.alloc(2);
      len.writeUInt16BE((sealed.length ^ this.mask.next()) & 0xffff);
      out.push(len, sealed);
      off += piece.length;
    } while (off < data.length);
    return Buffer.concat(out);
  }
}

/** Reads one direction of a VMess body, incrementally. Throws CodecError. */
export class VmessChunkReader {
  private readonly mask: ShakeMask;
  private readonly cipher: ChunkCipher;
  private buf: Buffer = Buffer.alloc(0);
  private size = -1;
  ended = false;

  constructor(security: VmessSecurity, key: Buffer, iv: Buffer) {
    this.mask = new ShakeMask(iv);
    this.cipher = new ChunkCipher(security, key, iv);
  }

  get pending(): number {
    return this.buf.length + (this.size >= 0 ? 1 : 0);
  }

  push(chunk: Buffer): { data: Buffer[]; eof: boolean } {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const data: Buffer[] = [];
    while (!this.ended) {
      if (this.size < 0) {
        if (this.buf.length < 2) break;
        this.size = this.buf.readUInt16BE(0) ^ this.mask.next();
        this.buf = this.buf.subarray(2);
        if (this.size < this.cipher.overhead)
          throw new CodecError('EPROTO', `chunk length ${this.size} is shorter than its tag (wrong id or security?)`);
        if (this.size === this.cipher.overhead) {
          this.ended = true;
          this.size = -1;
          break;
        }
      }
      if (this.buf.length < this.size) break;
      const plain = this.cipher.open(this.buf.subarray(0, this.size));
      if (!plain) throw new CodecError('EAUTH', 'chunk failed authentication');
      this.buf = this.buf.subarray(this.size);
      this.size = -1;
      data.push(plain);
    }
    if (this.ended) this.buf = Buffer.alloc(0);
    return { data, eof: this.ended };
  }
}

// ── response header ──────────────────────────────────────────────────────────

/** Decrypts the AEAD response header at the front of `b`: its total length on the wire, or 'need-more'. */
export function openVmessResponseHeader(
  b: Buffer,
  key: Buffer,
  iv: Buffer,
  responseByte: number,
): 'need-more' | { length: number } {
  if (b.length < 18) return 'need-more';
  const lenKey = vmessKdf(key, 'AEAD Resp Header Len Key').subarray(0, 16);
  const lenIv = vmessKdf(iv, 'AEAD Resp Header Len IV').subarray(0, 12);
  const len = gcmOpen(lenKey, lenIv, b.subarray(0, 18));
  if (!len)
    throw new CodecError('EAUTH', 'response header failed authentication (wrong id, or not a VMess AEAD server?)');
  const n = len.readUInt16BE(0);
  if (b.length < 18 + n + TAG) return 'need-more';
  const head = gcmOpen(
    vmessKdf(key, 'AEAD Resp Header Key').subarray(0, 16),
    vmessKdf(iv, 'AEAD Resp Header IV').subarray(0, 12),
    b.subarray(18, 18 + n + TAG),
  );
  if (!head) throw new CodecError('EAUTH', 'response header failed authentication');
  if (head.length < 4) throw new CodecError('EPROTO', `response header of ${head.length} bytes (at least 4)`);
  if (head[0] !== responseByte)
    throw new CodecError('EPROTO', `response header echoes ${head[0]}, expected ${responseByte}`);
  return { length: 18 + n + TAG };
}

// ── the codec and the outbound ───────────────────────────────────────────────

export class VmessCodec implements FrameCodec {
  readonly header: Buffer;
  private readonly writer: VmessChunkWriter;
  private readonly reader: VmessChunkReader;
  private readonly respKey: Buffer;
  private readonly respIv: Buffer;
  private headBuf: Buffer | undefined = Buffer.alloc(0);

  constructor(
    cmdKey: Buffer,
    security: VmessSecurity,
    target: SocksAddress,
    private readonly session: VmessSession = newVmessSession(),
    command = VMESS_CMD_TCP,
    now = Math.floor(Date.now() / 1000),
  ) {
    this.header = sealVmessHeader(
      cmdKey,
      encodeVmessHeader(session, security, command, target),
      vmessAuthId(cmdKey, now),
    );
    // UDP: one datagram per chunk, up to the 16-bit chunk length.
    this.writer = new VmessChunkWriter(
      security,
      session.key,
      session.iv,
      command === VMESS_CMD_UDP ? 0xffff - TAG : VMESS_MAX_CHUNK_PAYLOAD,
    );
    this.respKey = createHash('sha256').update(session.key).digest().subarray(0, 16);
    this.respIv = createHash('sha256').update(session.iv).digest().subarray(0, 16);
    this.reader = new VmessChunkReader(security, this.respKey, this.respIv);
  }

  get answered(): boolean {
    return this.headBuf === undefined;
  }

  get pending(): number {
    return (this.headBuf?.length ?? 0) + this.reader.pending;
  }

  encode(payload: Buffer): Buffer {
    return this.writer.write(payload);
  }

  finish(): Buffer {
    return this.writer.write(Buffer.alloc(0));
  }

  decode(chunk: Buffer): { data: Buffer[]; eof: boolean } {
    if (this.headBuf !== undefined) {
      const b = this.headBuf.length === 0 ? chunk : Buffer.concat([this.headBuf, chunk]);
      const r = openVmessResponseHeader(b, this.respKey, this.respIv, this.session.responseByte);
      if (r === 'need-more') {
        this.headBuf = b;
        return { data: [], eof: false };
      }
      this.headBuf = undefined;
      chunk = b.subarray(r.length);
    }
    return this.reader.push(chunk);
  }
}

export class VmessOutbound extends V2rayTcpOutbound<VmessNodeSpec> {
  readonly kind = 'vmess';
  private readonly cmdKey: Buffer;

  constructor(spec: VmessNodeSpec, opts: NodeConnOptions = {}) {
    super(spec, opts);
    this.cmdKey = vmessCmdKey(spec.id);
  }

  protected codecFor(target: SocksAddress): VmessCodec {
    return new VmessCodec(this.cmdKey, this.spec.security, target);
  }
}
