// A Shadowsocks AEAD session as the engine's loop runs it on raw descriptors: the client's
// bytes are sealed into chunks (the target address header in front of the first), the node's
// are opened; the streams are the outbound's own (shadowsocks-aead.ts), with OpenSSL's EVP
// contexts when kernel/aead reaches them. InspectedFlow moves the bytes: this is its
// "rewriter" one way and its decoder the other.
import {
  AeadStreamDecryptor,
  AeadStreamEncryptor,
  SsDecryptError,
  type SsCipherInfo,
} from '../../outbound/shadowsocks-aead.js';
import type { RewriteEvent } from '../../http/rewriter.js';
import type { UpstreamRewriter } from '../relay.js';

// As the JS path (shadowsocks.ts): a close before the node's first byte cannot say why.
const NO_REPLY =
  'closed the connection without answering: wrong password or method, or the target refused or closed the connection';

export class SsSession implements UpstreamRewriter {
  private header: Buffer | undefined;
  private readonly enc: AeadStreamEncryptor;
  private readonly dec: AeadStreamDecryptor;
  private sentPayload = false;
  /** Why the node's stream failed: the record's error code and words. */
  failure: { code: string; detail: string } | undefined;

  constructor(
    info: SsCipherInfo,
    master: Buffer,
    /** ATYP + address + port of the target (socks5-wire encodeSocksAddress). */
    header: Buffer,
    /** How messages name the node: `name: node host:port`. */
    private readonly where: string,
  ) {
    this.header = header;
    this.enc = new AeadStreamEncryptor(info, master);
    this.dec = new AeadStreamDecryptor(info, master);
  }

  /** Client bytes: sealed (after the header, the first time). */
  push(chunk: Buffer): RewriteEvent[] {
    if (chunk.length > 0) this.sentPayload = true;
    const data = this.header ? Buffer.concat([this.header, chunk]) : chunk;
    this.header = undefined;
    return [{ kind: 'forward', chunks: this.enc.sealParts(data) }];
  }

  /** The header alone, sealed, if no client byte took it along yet (the client waits for the server). */
  takeHeader(): Buffer[] | undefined {
    return this.header ? (this.push(Buffer.alloc(0))[0] as { chunks: Buffer[] }).chunks : undefined;
  }

  /** Node bytes (a buffer of its own: a chunk split across reads is held): the plaintext so far. Throws with `failure` set. */
  decode(chunk: Buffer): Buffer[] {
    try {
      return this.dec.push(chunk);
    } catch (e) {
      const err = e as SsDecryptError;
      this.failure = {
        code: err instanceof SsDecryptError ? err.code : 'EPROTO',
        detail: `data from ${this.where} ${err.message}`,
      };
      throw e;
    }
  }

  /** The node's EOF: undefined if the stream ended cleanly, else the failure (set too). */
  end(clientEnded: boolean): { code: string; detail: string } | undefined {
    if (!this.dec.started && (this.sentPayload || !clientEnded))
      this.failure = { code: 'ENOREPLY', detail: `${this.where} ${NO_REPLY}` };
    else if (this.dec.pending > 0)
      this.failure = { code: 'EPROTO', detail: `${this.where} closed the connection in the middle of a chunk` };
    return this.failure;
  }

  /** Releases the cipher contexts. */
  free(): void {
    this.enc.free();
    this.dec.free();
  }
}
