// The client side of a SOCKS5 CONNECT as the engine's loop speaks it on a raw descriptor:
// greeting, RFC 1929 user/password when the node has credentials, then the request. Pure
// (no I/O): the loop writes what `first()` and `feed()` return, and reads exactly `want()`
// bytes each time, so nothing after the CONNECT reply is taken from the socket (the target's
// first bytes stay there for the splice that follows). One message at a time, not pipelined:
// microsocks 1.0.3 (Debian 12) handles one message per recv() and drops a request that
// arrives with the greeting.
import {
  CMD_CONNECT,
  destinationAddress,
  encodeGreeting,
  encodeRequest,
  encodeUserPassAuth,
  METHOD_NO_AUTH,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USERPASS,
  parseAuthReply,
  parseConnectReply,
  parseMethodReply,
  socksReplyText,
  ATYP_IPV4,
  ATYP_IPV6,
} from '../../outbound/socks5-wire.js';
import type { Endpoint } from '../../kernel/sockaddr.js';

/** What a node gets asked for: the destination, with the sniffed domain when there is one. */
export interface DialogTarget {
  dst: Endpoint;
  domain?: string;
}

/** The outcome of the bytes fed so far: more to send, need more, failed (code as the JS path's), or done. */
export type DialogStep =
  | { t: 'send'; bytes: Buffer }
  | { t: 'wait' }
  | { t: 'failed'; code: string; detail: string }
  | { t: 'done' };

type Stage = 'method' | 'auth' | 'connect';

/** The longest reply: VER REP RSV ATYP(3) LEN 255 bytes PORT. */
const MAX_REPLY = 4 + 1 + 255 + 2;

export class Socks5Dialog {
  private stage: Stage = 'method';
  private readonly buf = Buffer.alloc(MAX_REPLY);
  private have = 0;

  constructor(
    /** The node as messages name it (host:port). */
    private readonly where: string,
    private readonly target: DialogTarget,
    private readonly creds?: { username: string; password: string },
  ) {}

  /** The greeting: no-auth, and with credentials user/password too (as the JS path offers: a node may need none). */
  first(): Buffer {
    return encodeGreeting(this.creds ? [METHOD_NO_AUTH, METHOD_USERPASS] : [METHOD_NO_AUTH]);
  }

  /** Bytes to read next: exactly what completes the current reply as far as known. */
  want(): number {
    if (this.stage !== 'connect') return 2 - this.have;
    if (this.have < 5) return 5 - this.have;
    const atyp = this.buf[3];
    const len = atyp === ATYP_IPV4 ? 10 : atyp === ATYP_IPV6 ? 22 : 4 + 1 + this.buf[4]! + 2;
    return Math.max(1, len - this.have);
  }

  /** Bytes read from the node (at most want()). */
  feed(b: Buffer): DialogStep {
    const n = Math.min(b.length, this.buf.length - this.have);
    b.copy(this.buf, this.have, 0, n);
    this.have += n;
    const got = this.buf.subarray(0, this.have);
    if (this.stage === 'method') return this.onMethod(got);
    if (this.stage === 'auth') return this.onAuth(got);
    return this.onConnect(got);
  }

  /** What a node that closed before the dialog finished failed with. */
  closed(): DialogStep {
    if (this.stage === 'auth')
      return this.fail('EAUTH', 'closed the connection after authentication (wrong user name or password?)');
    return this.fail('EHANDSHAKE', 'closed the connection during the handshake');
  }

  private onMethod(b: Buffer): DialogStep {
    const m = parseMethodReply(b);
    if (m === 'need-more') return { t: 'wait' };
    if (!m.ok) return this.invalid('method selection reply', m.error);
    this.have = 0;
    if (m.method === METHOD_NONE_ACCEPTABLE)
      return this.fail(
        'EAUTH',
        this.creds
          ? 'accepted none of the offered authentication methods'
          : 'requires authentication (add user:password to the node URI)',
      );
    if (m.method === METHOD_USERPASS && this.creds) {
      this.stage = 'auth';
      return { t: 'send', bytes: encodeUserPassAuth(this.creds.username, this.creds.password) };
    }
    if (m.method !== METHOD_NO_AUTH)
      return this.fail('EHANDSHAKE', `chose authentication method ${m.method}, which was not offered`);
    return this.request();
  }

  private onAuth(b: Buffer): DialogStep {
    const a = parseAuthReply(b);
    if (a === 'need-more') return { t: 'wait' };
    if (!a.ok) return this.invalid('authentication reply', a.error);
    this.have = 0;
    if (!a.success) return this.fail('EAUTH', `rejected the user name or password (status ${a.status})`);
    return this.request();
  }

  private request(): DialogStep {
    this.stage = 'connect';
    const { dst, domain } = this.target;
    const addr = destinationAddress({
      ip: dst.address,
      port: dst.port,
      family: dst.family,
      ...(domain ? { domain } : {}),
    });
    return { t: 'send', bytes: encodeRequest(CMD_CONNECT, addr) };
  }

  private onConnect(b: Buffer): DialogStep {
    const r = parseConnectReply(b);
    if (r === 'need-more') return { t: 'wait' };
    if (!r.ok) return this.invalid('CONNECT reply', r.error);
    if (r.reply === 0) return { t: 'done' };
    const { dst, domain } = this.target;
    const shown = domain
      ? `${domain}:${dst.port}`
      : dst.family === 6
        ? `[${dst.address}]:${dst.port}`
        : `${dst.address}:${dst.port}`;
    return this.fail('EREFUSED', `could not connect to ${shown}: ${socksReplyText(r.reply)} (SOCKS reply ${r.reply})`);
  }

  private invalid(what: string, error: string): DialogStep {
    return this.fail('EHANDSHAKE', `sent an invalid ${what}: ${error}`);
  }

  private fail(code: string, text: string): DialogStep {
    return { t: 'failed', code, detail: `node ${this.where} ${text}` };
  }
}
